"""Admission-token failures by event and reason, counted across processes for the operator console.

Each booking API process counts its failures in memory (:class:`TokenFailureCounter`, no Redis call
on the request path) and adds them to Redis once a second (:func:`flush_loop`), into one hash per
minute of Redis server time (``shared.keys.token_failures_key``), so every process and every edge
agree on the minute whatever their own clocks say. The edge reads the last :data:`WINDOW_MINUTES`
of them (:func:`read_window`) for the console: a total and a per-minute series per event.

Bounded: a reason is one of ``TOKEN_FAILURE_REASONS`` (anything else counts as ``other``); the
event is named only when the token's signature held (so it is an event this service issued), else
:data:`UNKNOWN_EVENT`. Nothing of a person is counted: only event, reason and a number.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import TOKEN_FAILURE_REASONS
from shared.keys import token_failures_key

log = logging.getLogger("surgegate.token_failures")

UNKNOWN_EVENT = "-"  # the token named no event that could be trusted (as the metric's label)
OTHER_REASON = "other"
STEP_S = 60  # one bucket a minute
WINDOW_MINUTES = 15  # the console's span: this minute and the 14 before it
KEEP_S = 20 * 60  # each bucket outlives the window a little, then Redis drops it
FLUSH_INTERVAL_S = 1.0


@dataclass
class TokenFailureCounter:
    """One process's failures not yet added to Redis. ``count`` is synchronous and never fails."""

    pending: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, event_id: str | None, reason: str) -> None:
        reason = reason if reason in TOKEN_FAILURE_REASONS else OTHER_REASON
        self.pending[(event_id or UNKNOWN_EVENT, reason)] += 1

    async def flush(self, redis: Redis) -> None:
        """Add the pending counts to the current minute's hash. Safe to call at any time; if Redis
        fails the counts stay pending for the next call (bounded: events x reasons)."""
        if not self.pending:
            return
        taken, self.pending = self.pending, Counter()
        try:
            seconds, _ = await redis.time()
            key = token_failures_key(int(seconds) // STEP_S)
            async with redis.pipeline(transaction=False) as pipe:
                for (event_id, reason), n in taken.items():
                    pipe.hincrby(key, f"{event_id}:{reason}", n)
                pipe.expire(key, KEEP_S)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self.pending.update(taken)
            log.warning("token failures not counted in Redis yet (%s); retrying", type(exc).__name__)


async def flush_loop(counter: TokenFailureCounter, redis: Redis) -> None:
    """Flush every FLUSH_INTERVAL_S until cancelled (the API's cleanup context flushes once more)."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        await counter.flush(redis)


@dataclass(frozen=True)
class TokenFailures:
    """The last WINDOW_MINUTES of failures: per event (or UNKNOWN_EVENT) its counts by reason and a
    per-minute series of totals, oldest minute first (the last is the current, partial minute)."""

    by_event: dict[str, dict[str, int]]
    series: dict[str, list[int]]

    def of(self, event_id: str) -> dict[str, Any]:
        reasons = self.by_event.get(event_id, {})
        return {
            "total": sum(reasons.values()),
            "by_reason": dict(sorted(reasons.items())),
            "per_minute": self.series.get(event_id, [0] * WINDOW_MINUTES),
            "window_s": WINDOW_MINUTES * STEP_S,
            "step_s": STEP_S,
        }


async def read_window(redis: Redis) -> TokenFailures:
    """Read the current minute and the WINDOW_MINUTES - 1 before it (one round trip, plus TIME)."""
    seconds, _ = await redis.time()
    now = int(seconds) // STEP_S
    minutes = range(now - WINDOW_MINUTES + 1, now + 1)
    async with redis.pipeline(transaction=False) as pipe:
        for minute in minutes:
            pipe.hgetall(token_failures_key(minute))
        buckets: list[dict[bytes, bytes]] = await pipe.execute()
    by_event: dict[str, Counter[str]] = {}
    series: dict[str, list[int]] = {}
    for i, bucket in enumerate(buckets):
        for raw, raw_n in bucket.items():
            event_id, _, reason = raw.decode().rpartition(":")
            n = int(raw_n)
            by_event.setdefault(event_id, Counter())[reason] += n
            series.setdefault(event_id, [0] * WINDOW_MINUTES)[i] += n
    return TokenFailures({e: dict(c) for e, c in by_event.items()}, series)
