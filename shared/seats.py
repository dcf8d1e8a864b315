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

from shared import queries
from shared.errors import Code, Refused
from shared.locks import LockNamespace, xact_lock
from shared.statuses import HoldStatus


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
) -> Code | None:
    """Why a slot cannot be booked at ``now`` (None: it can).

    Minimum notice is absolute time (24 h of notice is 24 h, whatever the clocks did); maximum advance
    counts calendar days at the site: bookable through the site's local date today + N.
    """
    if starts_at < now + timedelta(minutes=min_notice_minutes) or starts_at <= now:
        return Code.OUTSIDE_BOOKING_WINDOW
    if max_advance_days is not None:
        zone = ZoneInfo(timezone)
        if starts_at.astimezone(zone).date() > now.astimezone(zone).date() + timedelta(days=max_advance_days):
            return Code.OUTSIDE_BOOKING_WINDOW
    return None


def slot_problem(slot: SlotState, now: datetime) -> Code | None:
    if slot.withdrawn:
        return Code.SLOT_WITHDRAWN
    return window_problem(slot.starts_at, slot.timezone, slot.min_notice_minutes, slot.max_advance_days, now)


async def lock_slots(
    con: asyncpg.Connection, slot_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, SlotState]:
    """Lock the slots (id order) and read them with their live holds. Missing ids are absent."""
    ids = sorted(set(slot_ids))
    await con.execute(queries.LOCK_SLOTS, ids)
    rows = await con.fetch(queries.SLOT_STATE, ids, now)
    return {row["slot_id"]: SlotState.from_row(row) for row in rows}


async def read_slots(
    con: asyncpg.Connection, slot_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, SlotState]:
    """The same, without locking (an answer for a reader, never a basis for a write)."""
    rows = await con.fetch(queries.SLOT_STATE, sorted(set(slot_ids)), now)
    return {row["slot_id"]: SlotState.from_row(row) for row in rows}


async def take_seat(con: asyncpg.Connection, slot_id: uuid.UUID, now: datetime) -> bool:
    """Take one free seat (not held by anyone) if there is one. The only way a seat is taken without a hold."""
    await con.execute(queries.LOCK_SLOTS, [slot_id])
    return await con.fetchval(queries.TAKE_SEAT, slot_id, now) is not None


async def take_held_seat(
    con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, attempt_id: uuid.UUID | None, now: datetime
) -> uuid.UUID | None:
    """Turn a hold into a booked seat; returns its slot, or None if the hold is gone (expired, released,
    consumed). A hold pinned by ``attempt_id`` counts as live whatever its expiry."""
    slot_id = await con.fetchval(queries.SLOT_OF_HOLD, hold_id)
    if slot_id is None:
        return None
    await con.execute(queries.LOCK_SLOTS, [slot_id])
    if await con.fetchval(queries.CONSUME_HOLD, hold_id, attempt_id, now, token_id) is None:
        return None
    if await con.fetchval(queries.TAKE_HELD_SEAT, slot_id) is None:
        # The slot was withdrawn under the hold: undo the consumption with the caller's savepoint.
        raise Refused(Code.SLOT_WITHDRAWN)
    return uuid.UUID(str(slot_id))


async def return_seat(con: asyncpg.Connection, slot_id: uuid.UUID) -> None:
    """Give a booked seat back (cancel, reschedule away, site closure)."""
    await con.execute(queries.RETURN_SEAT, slot_id)


@dataclass(frozen=True)
class Hold:
    hold_id: uuid.UUID
    slot: SlotState
    expires_at: datetime
    replaced_sites: tuple[str, ...] = ()  # where the admission's previous hold gave a seat back
    replaced_holds: tuple[uuid.UUID, ...] = ()  # the admission's previous holds it replaced


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
    replaced in the same transaction. Refused: booking_in_progress, not_found ("no such slot"),
    slot_withdrawn, outside_booking_window, slot_full."""
    replaced: list[asyncpg.Record] = []
    if token_id is not None:
        # One admission, one hold: concurrent requests of the same admission queue up here.
        await xact_lock(con, LockNamespace.ADMISSION_HOLD, token_id)
        replaced = await con.fetch(queries.REPLACE_HOLDS, token_id, now)
        # A hold pinned by a booking in flight is not replaced; checked after the replace, whose row
        # locks made any concurrent pin either fail (hold replaced) or commit before this read.
        if await con.fetchval(queries.PINNED_HOLD_OF, token_id):
            raise Refused(Code.BOOKING_IN_PROGRESS)
    state = (await lock_slots(con, [slot_id], now)).get(slot_id)
    if state is None:
        raise Refused(Code.NOT_FOUND, "no such slot")
    problem = Code.SLOT_WITHDRAWN if state.withdrawn else (slot_problem(state, now) if check_window else None)
    if problem is not None:
        raise Refused(problem)
    if state.free < 1:
        raise Refused(Code.SLOT_FULL)
    hold_id = uuid.uuid4()
    await con.execute(queries.INSERT_HOLD, hold_id, slot_id, token_id, event_id, offer_id, expires_at)
    return Hold(
        hold_id=hold_id, slot=state, expires_at=expires_at, replaced_sites=tuple(r["site_id"] for r in replaced),
        replaced_holds=tuple(r["hold_id"] for r in replaced),
    )  # fmt: skip


async def expire_holds(con: asyncpg.Connection, now: datetime, limit: int = 5000) -> list[uuid.UUID]:
    """Mark lapsed holds expired (tidying; availability never counted them). Returns their slots."""
    return [r["slot_id"] for r in await con.fetch(queries.EXPIRE_HOLDS, now, limit)]


@dataclass(frozen=True)
class HoldRow:
    hold_id: uuid.UUID
    slot_id: uuid.UUID
    token_id: str | None
    expires_at: datetime
    status: HoldStatus
    pinned_attempt: uuid.UUID | None

    def live(self, now: datetime) -> bool:
        """Sets a seat aside at ``now`` (the one definition, as in :func:`shared.queries.live_holds`)."""
        return self.status == HoldStatus.ACTIVE and (self.pinned_attempt is not None or now < self.expires_at)

    def status_at(self, now: datetime) -> HoldStatus:
        """The status a reader sees: an active hold past its expiry (not pinned) has expired."""
        return HoldStatus.EXPIRED if self.status == HoldStatus.ACTIVE and not self.live(now) else self.status


async def get_hold(con: asyncpg.Connection, hold_id: uuid.UUID) -> HoldRow | None:
    row = await con.fetchrow(queries.GET_HOLD, hold_id)
    if row is None:
        return None
    return HoldRow(
        hold_id=row["hold_id"], slot_id=row["slot_id"], token_id=row["token_id"], expires_at=row["expires_at"],
        status=HoldStatus(row["status"]), pinned_attempt=row["pinned_attempt"],
    )  # fmt: skip


async def pin_hold(
    con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, attempt_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """Pin the admission's live hold to an accepted booking attempt (from then on only that attempt
    consumes or releases it, whatever its expiry). Returns its slot, or None if the hold is gone.
    Pinning again for the same attempt is harmless."""
    slot_id: uuid.UUID | None = await con.fetchval(queries.PIN_HOLD, hold_id, token_id, attempt_id, now)
    return slot_id


async def unpin_hold(
    con: asyncpg.Connection, hold_id: uuid.UUID, attempt_id: uuid.UUID, now: datetime, *, release: bool = True
) -> None:
    """Release a hold pinned by an attempt that did not book: its seat is free at once. With
    ``release=False`` the hold goes back to its admission instead, live until its own expiry."""
    if release:
        await con.execute(queries.UNPIN_HOLD, hold_id, attempt_id, now)
    else:
        await con.execute(queries.UNPIN_HOLD_KEEP, hold_id, attempt_id)


async def release_hold(con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, now: datetime) -> uuid.UUID | None:
    """Release the admission's unpinned live hold; returns its slot, None if there was nothing to release."""
    slot_id: uuid.UUID | None = await con.fetchval(queries.RELEASE_HOLD, hold_id, token_id, now)
    return slot_id


async def release_admission_holds(con: asyncpg.Connection, token_id: str, now: datetime) -> None:
    """Release every unpinned live hold of the admission (it booked: they are moot)."""
    await con.execute(queries.RELEASE_ADMISSION_HOLDS, token_id, now)


async def has_pinned_hold(con: asyncpg.Connection, token_id: str) -> bool:
    return bool(await con.fetchval(queries.PINNED_HOLD_OF, token_id))


async def site_of_slot(con: asyncpg.Connection, slot_id: uuid.UUID) -> str | None:
    site: str | None = await con.fetchval(queries.SITE_OF_SLOT, slot_id)
    return site
