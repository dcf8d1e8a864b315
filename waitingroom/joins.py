"""Joins coalesced per event: the joins an edge receives within a short window take their numbers in
one script call (:meth:`waitingroom.queue.QueueStore.join_many`), one Redis round trip for all.

What a caller can rely on:

* **Arrival order.** Joins are numbered in the order :meth:`JoinBatcher.join` was called, within a
  batch and across batches: an event has at most one batch in flight, and the next one (everyone who
  arrived meanwhile) is sent when it returns. Each join is decided as if it had joined alone in that
  order (one place per person, the lottery's pre-queue, the client's bucket when folded in).
* **Latency.** The first join after a quiet spell opens a window of ``window_s`` (or until
  ``max_batch`` joins wait); under load the window costs nothing, since joins gather while the
  previous batch is in Redis.
* **Failure.** If the call fails (Redis away, a timeout), every join of the batch gets that exception
  (a 503 at the edge) and nobody of it gets a ticket; the call is one script, run wholly or not at
  all, as a single join's always was. A join cancelled before its batch is sent is left out of it.

Hand-written because redis-py has no request coalescing (its pipelines send what one caller queued).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from waitingroom.queue import Arrival, QueueConfig, QueueState, QueueStore, Seat

# What a batch is sent with, read when it is sent: the queue clock's now and the event's queue config.
BatchInputs = Callable[[str], tuple[float, QueueConfig]]
Remember = Callable[[str, QueueState, float], None]  # (event, state after a batch, the batch's now)
Outcome = tuple[QueueState, Seat, float]  # the state after the batch, this join's seat, the batch's now


@dataclass
class _Lane:
    """One event's joins waiting for the next batch, and whether the window may close early."""

    waiting: list[tuple[Arrival, asyncio.Future[Outcome]]] = field(default_factory=list)
    full: asyncio.Event = field(default_factory=asyncio.Event)


class JoinBatcher:
    def __init__(
        self, queue: QueueStore, inputs: BatchInputs, remember: Remember, *, window_s: float, max_batch: int
    ) -> None:
        """``inputs`` gives a batch its clock and config when it is sent; ``remember`` is told each
        batch's resulting state once (the edge's snapshot and metrics)."""
        self._queue = queue
        self._inputs = inputs
        self._remember = remember
        self._window_s = window_s
        self._max_batch = max(1, max_batch)
        self._lanes: dict[str, _Lane] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = 0  # script calls made (for tests and the bench: round trips per join)

    async def join(self, event_id: str, arrival: Arrival) -> Outcome:
        """Join ``arrival`` to ``event_id`` in the next batch; returns the queue state after that batch,
        the arrival's seat and the queue clock's time the batch was decided at. Redis errors propagate."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        lane = self._lanes.get(event_id)
        if lane is None:
            lane = self._lanes[event_id] = _Lane()
            task = asyncio.create_task(self._drain(event_id, lane))
            self._senders.add(task)  # a running task must be referenced
            task.add_done_callback(self._senders.discard)
        lane.waiting.append((arrival, future))
        if len(lane.waiting) >= self._max_batch:
            lane.full.set()
        return await future

    async def _drain(self, event_id: str, lane: _Lane) -> None:
        """Send the lane's batches one after the other until nobody waits, then retire the lane."""
        try:
            if self._window_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.full.wait(), self._window_s)
            else:
                await asyncio.sleep(0)  # the joins ready in this turn of the loop come along
            while lane.waiting:
                batch = [(a, f) for a, f in lane.waiting[: self._max_batch] if not f.done()]
                del lane.waiting[: self._max_batch]
                if batch:
                    await self._send(event_id, batch)
        finally:
            # A join that arrives from here on opens a new lane (and its own window).
            del self._lanes[event_id]
            for _, future in lane.waiting:
                future.cancel()  # only if this task itself was cancelled (shutdown)

    async def _send(self, event_id: str, batch: list[tuple[Arrival, asyncio.Future[Outcome]]]) -> None:
        try:
            now, config = self._inputs(event_id)
            self.batches += 1
            state, seats = await self._queue.join_many(event_id, now, config, [a for a, _ in batch])
            self._remember(event_id, state, now)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every join of the batch fails alike; the script wrote nothing
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), seat in zip(batch, seats, strict=True):
            if not future.done():
                future.set_result((state, seat, now))
