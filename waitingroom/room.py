"""The waiting room's logic: join, status, the admission ticker, event changes and stats.

Hot-path budget (status is polled by every waiting visitor): a *waiting* visitor's status costs no
Redis or database call at all. Their ticket is signed and carries their arrival number; the serving
position comes from a per-process snapshot that :meth:`Room.tick` refreshes every ``edge_tick_s``
(100 ms) with one Redis call per event. Only an *admitted* visitor costs one Redis call (to read the
moment of admission, which fixes the token's expiry: :mod:`waitingroom.admissions`). Event
definitions are cached and reloaded from PostgreSQL every ``event_refresh_s``; no request touches the
database, apart from recovering an admission moment that Redis has lost (once per visitor).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared import keys
from shared.errors import (
    Code,
    EventClosed,
    NotFound,
    RateLimited,
    Refused,
    SpecificRefusal,
    TicketInvalid,
    ValidationFailed,
)
from shared.http import BACKEND_UNAVAILABLE
from shared.limits import Charge
from shared.locks import LockNamespace, xact_lock
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.settings import Settings
from shared.staff import Actor, audit_admin
from shared.statuses import RateMode
from shared.tokens import Ticket, TokenCodec
from waitingroom.admissions import Admissions
from waitingroom.autorate import RateController, next_rate
from waitingroom.booked import ManageLink, booked_appointment
from waitingroom.events import (
    Checkpoint,
    Event,
    EventUpdate,
    get_event,
    list_events,
    load_checkpoints,
    load_draws,
    save_event,
    unknown_sites,
)
from waitingroom.joins import JoinBatcher
from waitingroom.lottery import ALGORITHM, Lottery
from waitingroom.polling import poll_after_ms
from waitingroom.queries import COUNT_USED, PING, SAVE_CHECKPOINT, SAVE_DRAW, SAVE_MARK
from waitingroom.queue import Arrival, QueueConfig, QueueState, QueueStore
from waitingroom.recovery import Known, restore_point
from waitingroom.stats import actual_rate, quantile

log = logging.getLogger("surgegate.waitingroom")

Clock = Callable[[], float]

# An admitted or expired visitor has nothing to wait for: the page stops polling anyway.
IDLE_POLL_MS = 30_000


class EventNotOpen(SpecificRefusal):
    code = Code.EVENT_NOT_OPEN


@dataclass(frozen=True)
class Status:
    state: str
    position: int | None
    eta_seconds: float | None
    poll_after_ms: int
    admission_token: str | None = None
    admission_expires_at: str | None = None
    booking_url: str | None = None
    opens_at: str | None = None  # extension: the countdown target while in the pre-queue
    # extension: what this admission booked (waitingroom/booked.py), once it has been used
    appointment: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "position": self.position,
            "eta_seconds": self.eta_seconds,
            "poll_after_ms": self.poll_after_ms,
            "admission_token": self.admission_token,
            "admission_expires_at": self.admission_expires_at,
            "booking_url": self.booking_url,
            "opens_at": self.opens_at,
            "appointment": self.appointment,
        }


# A join refused by its client's allowance (the per-client join limit).
JOIN_LIMITED = "too many joins from your network; try again shortly"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class Room:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: Redis,
        codec: TokenCodec,
        metrics: Metrics,
        clock: Clock = time.time,
        queue_redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        # The booking queue's Redis (its depth): SURGEGATE_QUEUE_REDIS_URL's, by default ``redis``.
        self.queue_redis = redis if queue_redis is None else queue_redis
        self.pool = pool
        self.queue = QueueStore(redis)
        self.joins = JoinBatcher(
            self.queue,
            self._batch_inputs,
            self._remember,
            window_s=settings.join_batch_window_ms / 1000,
            max_batch=settings.join_batch_max,
        )
        self.admissions = Admissions(redis, pool, pin_ttl_s=settings.ticket_max_age_s)
        self.codec = codec
        self.metrics = metrics
        self.clock = clock
        self.vault = PersonVault.from_settings(settings)
        self._rates = RateController(
            redis,
            queue_redis=self.queue_redis,
            queue_name=settings.queue_name,
            edge_id=secrets.token_hex(8),
            interval_s=settings.rate_control_interval_s,
        )
        self._controlled_at = float("-inf")
        self._events: dict[str, Event] = {}
        self._states: dict[str, QueueState] = {}
        self._state_at: dict[str, float] = {}  # queue-clock time of each snapshot
        self._checkpoints: dict[str, Checkpoint] = {}
        self._draws: dict[str, Lottery] = {}  # recorded in PostgreSQL
        self._join_rates: dict[str, float] = {}
        self._checkpointed: dict[str, tuple[float, int]] = {}  # (time, joined) at this edge's last save
        self._redis_lost_at: float | None = None
        self._history: dict[str, deque[tuple[float, int]]] = {}  # (time, admitted), last 2 minutes
        self._alive: dict[str, dict[int, float]] = {}  # event -> rank -> present-until, not yet flushed
        self._events_waiting = 0  # events with anyone waiting: they share the poll budget
        self._events_loaded_at = float("-inf")
        # Changes this process made, numbered: a reload that began before one must not undo it.
        self._writes = 0
        self._written: dict[str, int] = {}
        # Signs an appointment's manage link for the page's confirmation (waitingroom/booked.py); None: none.
        self.manage_link: ManageLink | None = None

    # --- events -------------------------------------------------------------------------------

    async def refresh_events(self) -> None:
        """Reload every event from PostgreSQL. An event this process changed after the reload began
        keeps its changed definition (the reload's read may predate it): a pause, a rate or a freeze
        never reverts, not even for one tick."""
        began = self._writes
        async with self.pool.acquire() as con:
            events = await list_events(con)
            checkpoints = await load_checkpoints(con)
            draws = await load_draws(con)
        loaded = {e.event_id: e for e in events}
        for event_id, write in self._written.items():
            if write > began and event_id in self._events:
                loaded[event_id] = self._events[event_id]
        self._events = loaded
        self._checkpoints = checkpoints
        self._draws = draws
        self._events_loaded_at = time.monotonic()

    def event(self, event_id: str) -> Event:
        event = self._events.get(event_id)
        if event is None:
            raise NotFound(f"no event {event_id!r}")
        return event

    def open_events(self) -> list[Event]:
        now = self.clock()
        return [e for e in self._events.values() if e.phase(now) != "closed"]

    async def put_event(self, event_id: str, update: EventUpdate, *, actor: Actor, exists: bool | None = None) -> Event:
        """Create or update an event; its rate/pause apply to every edge on their next tick. The change
        is audited (``event_created``/``event_updated``, the fields sent) by ``actor`` in its transaction.
        Refused (validation) when a rule between fields fails on the merged result, or ``site_ids`` names
        a site that does not exist. ``exists``: True = update only (NotFound otherwise), False = create
        only (conflict otherwise), None = either (checked in the same transaction as the write)."""

        def checked(current: Event | None) -> EventUpdate:
            if exists is True and current is None:
                raise NotFound(f"no event {event_id!r}")
            if exists is False and current is not None:
                raise Refused(Code.CONFLICT, f"event {event_id!r} already exists")
            return update

        return await self._change(event_id, checked, actor=actor)

    async def close_event(self, event_id: str, *, actor: Actor) -> Event:
        """Close the event now (``closes_at`` = now; an opening still ahead is cancelled, set to null
        with its pre-queue time, so the event stays consistent): joins and status polls answer
        ``event_closed`` from then on. Safe to repeat: an event already closed keeps its closing time.
        Audited as ``event_closed`` with what changed. NotFound when there is no such event."""
        at = datetime.fromtimestamp(self.clock(), UTC)

        def closing(current: Event | None) -> EventUpdate:
            if current is None:
                raise NotFound(f"no event {event_id!r}")
            changes: dict[str, datetime | None] = {}
            if current.closes_at is None or current.closes_at > at:
                changes["closes_at"] = at
            if current.opens_at is not None and current.opens_at >= at:
                changes["opens_at"] = None
                if current.prequeue_opens_at is not None:  # no pre-queue without an opening (events.check)
                    changes["prequeue_opens_at"] = None
            return EventUpdate.model_validate(changes)

        return await self._change(event_id, closing, actor=actor, action="event_closed")

    async def list_events(self) -> list[dict[str, Any]]:
        """Every event with its phase and this process's latest queue figures (no Redis call: the
        snapshot of the last tick; ``None`` for an event no tick has reached yet)."""
        now = self.clock()
        async with self.pool.acquire() as con:
            events = await list_events(con)
        listed = []
        for event in events:
            state = self._states.get(event.event_id)
            figures = None if state is None else {
                "joined": state.joined, "admitted": state.admitted, "waiting": state.waiting}  # fmt: skip
            listed.append({**event.to_json(), "phase": event.phase(now), "stats": figures})
        return listed

    async def _change(
        self, event_id: str, make: Callable[[Event | None], EventUpdate], *, actor: Actor, action: str | None = None
    ) -> Event:
        now = self.clock()
        async with self.pool.acquire() as con, con.transaction():
            # Serialized per event: two partial updates must not both pass the rules on the same
            # stored event, then each write a row the other never saw (nor two creations race).
            await xact_lock(con, LockNamespace.EVENT_CHANGE, event_id)
            current = await get_event(con, event_id)
            update = make(current)
            try:
                event = update.apply(event_id, current)
            except ValueError as exc:
                raise ValidationFailed(str(exc)) from None
            if update.site_ids:
                missing = await unknown_sites(con, update.site_ids)
                if missing:
                    raise ValidationFailed(f"no such site: {', '.join(missing)}")
            event = await save_event(con, event)
            changed = update.model_dump(mode="json", exclude_unset=True)
            if action is None:
                action = "event_created" if current is None else "event_updated"
            await audit_admin(con, actor, action, event_id=event_id, detail=changed)
            if current is None:  # a new queue has reached nobody yet: its first mark (admissions.py)
                await con.execute(SAVE_MARK, event_id, 0, now)
        config = self._config(event, now)
        live = self._states.get(event_id)
        if event.rate_mode == RateMode.AUTO and live is not None and "rate_per_s" not in update.model_fields_set:
            # An edit of other fields keeps the rate the controller has found, within the new bounds.
            low, high = event.rate_min or 0.0, event.rate_max or live.rate_per_s
            config = replace(config, rate_per_s=min(high, max(low, live.rate_per_s)))
        self._writes += 1
        self._written[event_id] = self._writes
        self._events[event_id] = event
        state = await self.queue.configure(event_id, now, config)
        self._remember(event_id, state, now)
        return event

    # --- the admission ticker -----------------------------------------------------------------

    def _remember(self, event_id: str, state: QueueState, now: float) -> None:
        if state.restored:
            log.warning("queue state of %r was missing in Redis; resumed at %d joined, %.1f served",
                        event_id, state.joined, state.served)  # fmt: skip
            self.metrics.queue_restored.labels(event_id).inc()
        if state.newly_admitted:
            self.metrics.admitted.labels(event_id).inc(state.newly_admitted)
        if state.newly_abandoned:
            self.metrics.abandoned.labels(event_id).inc(state.newly_abandoned)
        if state.newly_lapsed:
            self.metrics.admissions_lapsed.labels(event_id).inc(state.newly_lapsed)
        previous = self._states.get(event_id)
        # Snapshots can arrive out of order (a join racing a tick); keep the most advanced one.
        if previous is None or (state.served, state.joined) >= (previous.served, previous.joined):
            self._states[event_id] = state
            self._state_at[event_id] = now
            history = self._history.setdefault(event_id, deque())
            history.append((now, state.admitted))
            while history and now - history[0][0] > 120:
                history.popleft()
            self.metrics.queue_waiting.labels(event_id).set(state.waiting)
            self._events_waiting = sum(1 for st in self._states.values() if st.waiting > 0)
            self.metrics.admissions_active.labels(event_id).set(state.active)
            self.metrics.admission_rate.labels(event_id).set(0 if state.paused else state.rate_per_s)

    async def tick(self) -> None:
        """Advance every live event's serving position once (one Redis call per event), and
        checkpoint where each queue stands into PostgreSQL every ``checkpoint_interval_s``."""
        if time.monotonic() - self._events_loaded_at >= self.settings.event_refresh_s:
            try:
                await self.refresh_events()
            except BACKEND_UNAVAILABLE as exc:
                # PostgreSQL away: keep admitting on the definitions we have; retry next tick.
                log.warning("could not reload events: %s", type(exc).__name__)
        now = self.clock()
        try:
            if self._alive:
                alive, self._alive = self._alive, {}
                await self.queue.note_alive(alive)
            for event in list(self._events.values()):
                if event.phase(now) == "closed":
                    continue
                state = await self.queue.advance(event.event_id, now, self._config(event, now))
                self._remember(event.event_id, state, now)
        except BACKEND_UNAVAILABLE:
            # From here on nobody can join or be admitted, so the queue stands still until Redis is back.
            if self._redis_lost_at is None:
                self._redis_lost_at = now
            raise
        self._redis_lost_at = None
        try:
            await self._checkpoint(now)
        except BACKEND_UNAVAILABLE as exc:
            log.warning("could not save queue checkpoints: %s", type(exc).__name__)
        if now - self._controlled_at >= self._rates.interval_s:
            self._controlled_at = now
            try:
                await self._control_rates(now)
            except BACKEND_UNAVAILABLE as exc:
                log.warning("could not steer auto rates: %s", type(exc).__name__)

    async def _control_rates(self, now: float) -> None:
        """Move each auto event's live rate toward what the booking side absorbs (autorate.py)."""
        for event in list(self._events.values()):
            state = self._states.get(event.event_id)
            if event.rate_mode != RateMode.AUTO or state is None or event.halted or event.phase(now) == "closed":
                continue
            if not await self._rates.leads(event.event_id):
                continue
            depth, latency = await self._rates.signals(event.event_id)
            rate = next_rate(event, state.rate_per_s, depth, latency)
            if rate == state.rate_per_s:
                continue
            config = replace(self._config(event, now), rate_per_s=rate)
            self._remember(event.event_id, await self.queue.configure(event.event_id, now, config), now)
            direction = "up" if rate > state.rate_per_s else "down"
            self.metrics.rate_changes.labels(event.event_id, direction).inc()
            log.info("auto rate of %r: %.3f -> %.3f/s (queue depth %d, p90 latency %s s)",
                     event.event_id, state.rate_per_s, rate, depth, latency)  # fmt: skip

    async def _checkpoint(self, now: float) -> None:
        undrawn = [
            (event_id, state.lottery)
            for event_id, state in self._states.items()
            if state.lottery is not None and event_id not in self._draws
        ]
        if undrawn:
            async with self.pool.acquire() as con:
                await con.executemany(SAVE_DRAW, [(e, lot.size, lot.seed, ALGORITHM) for e, lot in undrawn])
            self._draws.update(undrawn)
        due = [
            (event_id, state)
            for event_id, state in self._states.items()
            if now - self._checkpointed.get(event_id, (float("-inf"), 0))[0] >= self.settings.checkpoint_interval_s
        ]
        if not due:
            return
        rows, marks = [], []
        for event_id, state in due:
            last_at, last_joined = self._checkpointed.get(event_id, (now, state.joined))
            recent = (state.joined - last_joined) / (now - last_at) if now > last_at else 0.0
            # Sized for the worst recent burst, decaying slowly: it bounds joins we may not have seen.
            self._join_rates[event_id] = max(recent, self._join_rates.get(event_id, 0.0) * 0.9)
            rows.append((event_id, state.joined, state.served, self._join_rates[event_id], now))
            # When the snapshot was taken, not now: the position may have moved on since.
            marks.append((event_id, state.passed, self._state_at[event_id]))
        async with self.pool.acquire() as con:
            await con.executemany(SAVE_CHECKPOINT, rows)
            await con.executemany(SAVE_MARK, marks)
        for event_id, state in due:
            self._checkpointed[event_id] = (now, state.joined)

    def _config(self, event: Event, now: float) -> QueueConfig:
        """The event's queue settings plus a restore point, used only if Redis has lost the queue."""
        known: list[Known] = []
        state = self._states.get(event.event_id)
        if state is not None:
            until = self._redis_lost_at if self._redis_lost_at is not None else now
            known.append(Known(state.joined, state.served, until - self._state_at[event.event_id]))
        checkpoint = self._checkpoints.get(event.event_id)
        if checkpoint is not None:
            known.append(Known(checkpoint.joined, checkpoint.served, now - checkpoint.taken_at))
        lottery = state.lottery if state is not None and state.lottery else self._draws.get(event.event_id)
        join_rate = max(self._join_rates.get(event.event_id, 0.0), checkpoint.join_rate if checkpoint else 0.0)
        # The highest rate that can have applied: auto mode may have raised it up to rate_max.
        admit_rate = (
            0.0
            if event.halted
            else max(
                event.rate_per_s,
                state.rate_per_s if state is not None else 0.0,
                (event.rate_max or 0.0) if event.rate_mode == RateMode.AUTO else 0.0,
            )
        )
        point = restore_point(
            known,
            join_rate=join_rate,
            admit_rate=admit_rate,
            horizon_s=self.settings.checkpoint_interval_s + self.settings.edge_tick_s,
        )
        if point is None:
            return replace(event.queue_config, restore_lottery=lottery)
        return replace(event.queue_config, restore_joined=point[0], restore_served=point[1], restore_lottery=lottery)

    async def run(self) -> None:
        """Tick forever; a failing tick (Redis or PostgreSQL away) is logged and retried."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("admission tick failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.edge_tick_s)

    async def _state(self, event: Event) -> QueueState:
        state = self._states.get(event.event_id)
        if state is None:
            now = self.clock()
            state = await self.queue.advance(event.event_id, now, self._config(event, now))
            self._remember(event.event_id, state, now)
        return state

    # --- visitors -----------------------------------------------------------------------------

    async def join(
        self,
        event_id: str,
        presented: str | None,
        person_id: str | None = None,
        device: str | None = None,
        *,
        charge: Charge | None = None,
    ) -> tuple[str, Status]:
        """Give a visitor a place; a visitor presenting a live ticket of this event keeps theirs, and
        on a one-place-per-person event a person who already has a place gets that place back. Joins
        of one event go to Redis in batches (:mod:`waitingroom.joins`), in arrival order. ``charge``: the
        client's join bucket, taken in the same script call (single Redis only); RateLimited if spent."""
        event = self.event(event_id)
        now = self.clock()
        phase = event.phase(now)
        if phase == "closed":
            raise EventClosed(f"the queue for {event_id!r} has closed")
        if phase == "not_open":
            assert event.prequeue_opens_at is not None
            raise EventNotOpen(f"the queue opens at {event.prequeue_opens_at.isoformat()}")
        if presented is not None:
            try:
                status = await self.status(event_id, presented)
            except TicketInvalid:
                pass
            else:
                if status.state != "expired":
                    return presented, status
        person_ref = ""
        if event.one_place_per_person:
            if not person_id:
                raise ValidationFailed("this event gives one place per person: send your person_id to join")
            person_ref = keys.person_ref_text(self.vault.ref(person_id, field=("person_id",)))  # only the keyed hash
        new_visitor = secrets.token_urlsafe(16)
        state, seat, now = await self.joins.join(event_id, Arrival(new_visitor, person_ref, charge))
        if seat.retry_after_s is not None:
            raise RateLimited(JOIN_LIMITED, retry_after=max(1, math.ceil(seat.retry_after_s)))
        if seat.visitor == new_visitor:
            self.metrics.queue_joined.labels(event_id).inc()
        ticket = Ticket(event_id=event_id, visitor_id=seat.visitor, seq=seat.seq, issued_at=now, device=device)
        return self.codec.sign_ticket(ticket), await self._status(event, ticket, state, now)

    def _batch_inputs(self, event_id: str) -> tuple[float, QueueConfig]:
        """A join batch's clock and queue config, read when it is sent."""
        now = self.clock()
        return now, self._config(self.event(event_id), now)

    async def holds_place(self, event_id: str, presented: str) -> bool:
        """Whether this ticket still holds a place (joining with it returns that place)."""
        try:
            return (await self.status(event_id, presented)).state != "expired"
        except TicketInvalid:
            return False

    async def status(self, event_id: str, presented: str) -> Status:
        """The visitor's state. A ticket dies with its event (closed: refused) and at its maximum
        age (``ticket_max_age_s``: expired, join again)."""
        event = self.event(event_id)
        ticket = self.codec.read_ticket(presented)
        if ticket.event_id != event_id:
            raise TicketInvalid("the ticket belongs to another event")
        now = self.clock()
        if event.phase(now) == "closed":
            raise EventClosed(f"the queue for {event_id!r} has closed; its tickets are no longer valid")
        if now - ticket.issued_at > self.settings.ticket_max_age_s:
            status = Status("expired", None, None, IDLE_POLL_MS)
        else:
            status = await self._status(event, ticket, await self._state(event), now)
        if status.state in ("admitted", "expired"):
            # A used admission shows what it booked, never a form the booking API would refuse.
            booked = await booked_appointment(self.pool, event_id, ticket.visitor_id, self.manage_link)
            if booked is not None:
                status = replace(status, appointment=booked)
        return status

    async def _status(self, event: Event, ticket: Ticket, state: QueueState, now: float) -> Status:
        if state.lottery is None or event.phase(now) == "prequeue":
            # Before the draw nobody has a position yet: the pre-queue's order is drawn at opens_at.
            opens = event.opens_at.timestamp() if event.opens_at is not None else now
            until_open = max(0.0, opens - now)
            return Status("prequeue", None, None, self._poll_after(ticket.seq, state, until_open), opens_at=_iso(opens))
        rank = state.lottery.rank(ticket.seq)
        # At most this many admissions stand before the visitor (fewer if some ahead have left).
        position = rank - state.passed
        if position > 0:
            rate = 0.0 if state.paused else state.rate_per_s
            eta = round(position / rate, 1) if rate > 0 else None
            poll_ms = self._poll_after(position, state, eta)
            if event.abandon_after_s is not None:
                self._note_alive(event.event_id, rank, now + poll_ms / 1000 + event.abandon_after_s)
            return Status("waiting", position, eta, poll_ms)
        moment = await self.admissions.moment(event.event_id, ticket.visitor_id, rank, now, ticket.issued_at)
        if moment is None:  # passed over while away: they learn so and may join again
            return Status("expired", None, None, IDLE_POLL_MS)
        if moment.first_seen:
            self.metrics.queue_wait_seconds.labels(event.event_id).observe(max(0.0, now - ticket.issued_at))
        expires_at = moment.at + event.admission_ttl_s
        if now > expires_at:
            return Status("expired", None, None, IDLE_POLL_MS)
        token = self.codec.sign_admission(
            event_id=event.event_id,
            visitor_id=ticket.visitor_id,
            scope=event.site_ids,
            expires_at=expires_at,
            rank=rank,
            device=ticket.device,
        )
        return Status(
            "admitted",
            0,
            0.0,
            IDLE_POLL_MS,
            admission_token=token,
            admission_expires_at=_iso(expires_at),
            booking_url=f"{self.settings.api_url}/api/v1",
        )

    def snapshot(self, event_id: str) -> QueueState | None:
        """The most advanced queue state this edge has seen for the event (None before the first);
        read-only, no Redis call: what this edge's answers and metrics are currently based on."""
        return self._states.get(event_id)

    def lottery(self, event_id: str) -> Lottery | None:
        """The event's pre-queue draw as this edge knows it (its snapshot, else the recorded one)."""
        state = self._states.get(event_id)
        return state.lottery if state is not None and state.lottery is not None else self._draws.get(event_id)

    async def check_ready(self) -> None:
        """Raise if Redis or PostgreSQL cannot be reached."""
        await self.queue.ping()
        async with self.pool.acquire() as con:
            await con.fetchval(PING)

    def _note_alive(self, event_id: str, rank: int, deadline: float) -> None:
        """Remember (in memory; flushed to Redis once per tick) that this rank's holder is present."""
        ranks = self._alive.setdefault(event_id, {})
        ranks[rank] = max(deadline, ranks.get(rank, 0.0))

    def _poll_after(self, position: int, state: QueueState, eta: float | None) -> int:
        # The budget is for all events together: each event with people waiting gets an equal share.
        budget = self.settings.poll_budget_per_s / max(1, self._events_waiting)
        return poll_after_ms(position, state.waiting, budget, eta)

    async def stats(self, event_id: str) -> dict[str, Any]:
        """Live figures of an event for operators (admin only: costs a few Redis and one SQL call)."""
        event = self.event(event_id)
        now = self.clock()
        state = await self.queue.advance(event_id, now, self._config(event, now))
        self._remember(event_id, state, now)
        active, lapsed, waits = await self.queue.counts(event_id, now)
        async with self.pool.acquire() as con:
            used = int(await con.fetchval(COUNT_USED, event_id))
        configured = 0.0 if state.paused else state.rate_per_s  # the live rate (auto mode moves it)
        return {
            "joined": state.joined,
            "admitted": state.admitted,
            "waiting": state.waiting,
            "abandoned": state.abandoned,
            "active": active,
            "used": used,
            "expired_unused": lapsed,
            "rate_per_s": {"configured": configured, "actual_last_60s": actual_rate(self._history.get(event_id), now)},
            "time_in_queue_s": {"median": quantile(waits, 0.5), "p90": quantile(waits, 0.9), "sample": len(waits)},
            "tail_eta_s": round(state.waiting / configured, 1) if configured > 0 else None,
        }
