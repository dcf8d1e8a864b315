"""The seat authority: every way a seat is taken, held, returned or withdrawn, in one module.

One rule guards capacity, applied under the slot's row lock:

    booked + holds(active and unexpired, or pinned by an accepted attempt) <= capacity

Every function takes a connection and runs inside the caller's transaction. Whoever changes seats
or holds of a slot first locks the slot row (``FOR UPDATE``), then reads the holds in a *new*
statement: in READ COMMITTED each statement takes a fresh snapshot, so the read sees every hold
committed by whoever held the lock before. Several slots are always locked in slot-id order, so two
reschedules in opposite directions cannot deadlock.

``now`` is passed in (the callers' clock, the database's by default) so that hold expiry and the
booking window can be tested at their exact boundaries. A hold is live while ``now < expires_at``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.locks import LockNamespace, xact_lock

# Rejection codes of seat operations (the contract's codes plus this issue's).
SLOT_FULL = "slot_full"
SLOT_NOT_FOUND = "not_found"
SLOT_WITHDRAWN = "slot_withdrawn"
HOLD_EXPIRED = "hold_expired"
OUTSIDE_WINDOW = "outside_booking_window"
BOOKING_IN_PROGRESS = "booking_in_progress"


def live_holds(now_param: str) -> str:
    """SQL: the live holds of slot ``s`` at the instant in parameter ``now_param`` (e.g. "$2").
    The one definition of what a hold takes from availability; every availability query uses it."""
    live = f"h.expires_at > {now_param} OR h.pinned_attempt IS NOT NULL"
    return f"(SELECT count(*) FROM holds h WHERE h.slot_id = s.slot_id AND h.status = 'active' AND ({live}))"  # noqa: S608


_HELD = live_holds("$2")

LOCK_SLOTS = "SELECT slot_id FROM slots WHERE slot_id = ANY($1::uuid[]) ORDER BY slot_id FOR UPDATE"

SLOT_STATE = f"""
SELECT s.slot_id, s.site_id, s.type_id, s.starts_at, s.ends_at, s.capacity, s.booked, s.withdrawn_at,
       si.timezone, t.min_notice_minutes, t.max_advance_days, t.cancel_cutoff_minutes,
       {_HELD} AS held
FROM slots s
JOIN sites si ON si.site_id = s.site_id
LEFT JOIN appointment_types t ON t.type_id = s.type_id
WHERE s.slot_id = ANY($1::uuid[])
"""  # noqa: S608 (a constant fragment, no input)

# After LOCK_SLOTS: a seat is taken only while booked + live holds leave one free.
TAKE_SEAT = f"""
UPDATE slots s SET booked = booked + 1
WHERE s.slot_id = $1 AND s.withdrawn_at IS NULL AND s.booked + {_HELD} < s.capacity
RETURNING booked
"""  # noqa: S608 (a constant fragment, no input)

# After LOCK_SLOTS, for a seat already counted by a hold that is being consumed in the same transaction.
TAKE_HELD_SEAT = """
UPDATE slots SET booked = booked + 1
WHERE slot_id = $1 AND withdrawn_at IS NULL AND booked < capacity
RETURNING booked
"""

RETURN_SEAT = "UPDATE slots SET booked = booked - 1 WHERE slot_id = $1 RETURNING booked"

INSERT_HOLD = """
INSERT INTO holds (hold_id, slot_id, token_id, event_id, offer_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""

# The admission's live hold is replaced by a new one (a pinned hold belongs to a booking in flight).
REPLACE_HOLDS = """
UPDATE holds h SET status = 'replaced', ended_at = $2
FROM slots s
WHERE h.token_id = $1 AND h.status = 'active' AND h.pinned_attempt IS NULL AND s.slot_id = h.slot_id
RETURNING s.site_id
"""

PINNED_HOLD_OF = "SELECT 1 FROM holds WHERE token_id = $1 AND status = 'active' AND pinned_attempt IS NOT NULL"

RELEASE_HOLD = """
UPDATE holds SET status = 'released', ended_at = $3
WHERE hold_id = $1 AND token_id = $2 AND status = 'active' AND pinned_attempt IS NULL
RETURNING slot_id
"""

GET_HOLD = "SELECT hold_id, slot_id, token_id, expires_at, status, pinned_attempt FROM holds WHERE hold_id = $1"

# Pin a live hold to an accepted booking attempt: from now on only that attempt consumes or releases it.
PIN_HOLD = """
UPDATE holds SET pinned_attempt = $3
WHERE hold_id = $1 AND token_id = $2 AND status = 'active'
  AND (pinned_attempt = $3 OR (pinned_attempt IS NULL AND expires_at > $4))
RETURNING slot_id
"""

CONSUME_HOLD = """
UPDATE holds SET status = 'consumed', ended_at = $3
WHERE hold_id = $1 AND token_id = $4 AND status = 'active'
  AND (pinned_attempt = $2 OR (pinned_attempt IS NULL AND expires_at > $3))
RETURNING slot_id
"""

UNPIN_HOLD = """
UPDATE holds SET status = 'released', ended_at = $3
WHERE hold_id = $1 AND pinned_attempt = $2 AND status = 'active'
"""

RELEASE_TOKEN_HOLDS = """
UPDATE holds SET status = 'released', ended_at = $2
WHERE token_id = $1 AND status = 'active' AND pinned_attempt IS NULL
"""  # noqa: S105 (SQL, not a password)

# Tidying only: availability already ignores expired holds.
EXPIRE_HOLDS = """
WITH gone AS (
    SELECT hold_id FROM holds
    WHERE status = 'active' AND pinned_attempt IS NULL AND expires_at <= $1
    ORDER BY expires_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE holds h SET status = 'expired', ended_at = h.expires_at
FROM gone WHERE h.hold_id = gone.hold_id
RETURNING h.slot_id
"""


@dataclass(frozen=True)
class SlotState:
    slot_id: uuid.UUID
    site_id: str
    type_id: str | None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    booked: int
    held: int
    withdrawn: bool
    timezone: str
    min_notice_minutes: int
    max_advance_days: int | None
    cancel_cutoff_minutes: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.booked - self.held)

    @classmethod
    def from_row(cls, row: Any) -> SlotState:
        return cls(
            slot_id=row["slot_id"],
            site_id=row["site_id"],
            type_id=row["type_id"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            capacity=row["capacity"],
            booked=row["booked"],
            held=row["held"],
            withdrawn=row["withdrawn_at"] is not None,
            timezone=row["timezone"],
            min_notice_minutes=row["min_notice_minutes"] or 0,
            max_advance_days=row["max_advance_days"],
            cancel_cutoff_minutes=row["cancel_cutoff_minutes"] or 0,
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def window_problem(
    starts_at: datetime, timezone: str, min_notice_minutes: int, max_advance_days: int | None, now: datetime
) -> str | None:
    """Why a slot cannot be booked at ``now`` (None: it can).

    Minimum notice is absolute time (24 h of notice is 24 h, whatever the clocks did); maximum advance
    counts calendar days at the site: bookable through the site's local date today + N.
    """
    if starts_at < now + timedelta(minutes=min_notice_minutes) or starts_at <= now:
        return OUTSIDE_WINDOW
    if max_advance_days is not None:
        zone = ZoneInfo(timezone)
        if starts_at.astimezone(zone).date() > now.astimezone(zone).date() + timedelta(days=max_advance_days):
            return OUTSIDE_WINDOW
    return None


def slot_problem(slot: SlotState, now: datetime) -> str | None:
    if slot.withdrawn:
        return SLOT_WITHDRAWN
    return window_problem(slot.starts_at, slot.timezone, slot.min_notice_minutes, slot.max_advance_days, now)


async def lock_slots(
    con: asyncpg.Connection, slot_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, SlotState]:
    """Lock the slots (id order) and read them with their live holds. Missing ids are absent."""
    ids = sorted(set(slot_ids))
    await con.execute(LOCK_SLOTS, ids)
    rows = await con.fetch(SLOT_STATE, ids, now)
    return {row["slot_id"]: SlotState.from_row(row) for row in rows}


async def read_slots(
    con: asyncpg.Connection, slot_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, SlotState]:
    """The same, without locking (an answer for a reader, never a basis for a write)."""
    rows = await con.fetch(SLOT_STATE, sorted(set(slot_ids)), now)
    return {row["slot_id"]: SlotState.from_row(row) for row in rows}


async def take_seat(con: asyncpg.Connection, slot_id: uuid.UUID, now: datetime) -> bool:
    """Take one free seat (not held by anyone) if there is one. The only way a seat is taken without a hold."""
    await con.execute(LOCK_SLOTS, [slot_id])
    return await con.fetchval(TAKE_SEAT, slot_id, now) is not None


async def take_held_seat(
    con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, attempt_id: uuid.UUID | None, now: datetime
) -> uuid.UUID | None:
    """Turn a hold into a booked seat; returns its slot, or None if the hold is gone (expired, released,
    consumed). A hold pinned by ``attempt_id`` counts as live whatever its expiry."""
    slot_id = await con.fetchval("SELECT slot_id FROM holds WHERE hold_id = $1", hold_id)
    if slot_id is None:
        return None
    await con.execute(LOCK_SLOTS, [slot_id])
    if await con.fetchval(CONSUME_HOLD, hold_id, attempt_id, now, token_id) is None:
        return None
    if await con.fetchval(TAKE_HELD_SEAT, slot_id) is None:
        # The slot was withdrawn under the hold: undo the consumption with the caller's savepoint.
        raise SeatRejected(SLOT_WITHDRAWN)
    return uuid.UUID(str(slot_id))


async def return_seat(con: asyncpg.Connection, slot_id: uuid.UUID) -> None:
    """Give a booked seat back (cancel, reschedule away, site closure)."""
    await con.execute(RETURN_SEAT, slot_id)


class SeatRejected(Exception):
    """A business outcome of a seat operation, with its contract code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Hold:
    hold_id: uuid.UUID
    slot: SlotState
    expires_at: datetime
    replaced_sites: tuple[str, ...] = ()  # where the admission's previous hold gave a seat back


async def place_hold(
    con: asyncpg.Connection,
    *,
    token_id: str | None,
    event_id: str | None,
    slot_id: uuid.UUID,
    expires_at: datetime,
    now: datetime,
    offer_id: uuid.UUID | None = None,
    check_window: bool = True,
) -> Hold:
    """Set one seat of the slot aside until ``expires_at``; an admission's previous live hold is
    replaced in the same transaction. Raises SeatRejected (booking_in_progress, not_found,
    slot_withdrawn, outside_booking_window, slot_full)."""
    replaced: tuple[str, ...] = ()
    if token_id is not None:
        # One admission, one hold: concurrent requests of the same admission queue up here.
        await xact_lock(con, LockNamespace.ADMISSION_HOLD, token_id)
        replaced = tuple(r["site_id"] for r in await con.fetch(REPLACE_HOLDS, token_id, now))
        # A hold pinned by a booking in flight is not replaced; checked after the replace, whose row
        # locks made any concurrent pin either fail (hold replaced) or commit before this read.
        if await con.fetchval(PINNED_HOLD_OF, token_id):
            raise SeatRejected(BOOKING_IN_PROGRESS)
    state = (await lock_slots(con, [slot_id], now)).get(slot_id)
    if state is None:
        raise SeatRejected(SLOT_NOT_FOUND)
    problem = SLOT_WITHDRAWN if state.withdrawn else (slot_problem(state, now) if check_window else None)
    if problem is not None:
        raise SeatRejected(problem)
    if state.free < 1:
        raise SeatRejected(SLOT_FULL)
    hold_id = uuid.uuid4()
    await con.execute(INSERT_HOLD, hold_id, slot_id, token_id, event_id, offer_id, expires_at)
    return Hold(hold_id=hold_id, slot=state, expires_at=expires_at, replaced_sites=replaced)


async def expire_holds(con: asyncpg.Connection, now: datetime, limit: int = 5000) -> list[uuid.UUID]:
    """Mark lapsed holds expired (tidying; availability never counted them). Returns their slots."""
    return [r["slot_id"] for r in await con.fetch(EXPIRE_HOLDS, now, limit)]
