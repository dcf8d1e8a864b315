"""Holds of an admission: one seat set aside while its holder fills in the form.

Service functions over the seat authority (:mod:`shared.seats`), each run in the caller's
transaction, each writing its audit rows in it (``hold_placed``, ``hold_replaced``, ``hold_released``;
the actor is the admission token's id). One live hold per admission: a new one replaces the old
atomically; a hold pinned by a booking in flight belongs to that booking and can be neither replaced
nor released. A replaced hold stays as a row (what was set aside, and when), so the rows one
admission can leave are capped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared import queries, seats
from shared.errors import Code, NotFound, Refused, TokenScope
from shared.locks import LockNamespace, xact_lock
from shared.statuses import AppointmentStatus, HoldStatus


async def place(
    con: asyncpg.Connection,
    *,
    token_id: str,
    event_id: str,
    allows_site: Callable[[str], bool],
    slot_id: uuid.UUID,
    expires_at: datetime,
    now: datetime,
    max_holds: int = 0,
) -> seats.Hold:
    """Hold one seat of the slot for the admission until ``expires_at``, replacing its previous hold.

    Refused: admission_used (its appointment ended), booking_in_progress, token_scope, not_found,
    slot_withdrawn, outside_booking_window, slot_full, and too_many_holds once the admission has
    placed ``max_holds`` holds in all (0: no cap). An admission whose appointment is confirmed may
    still hold a seat (to reschedule into)."""
    if max_holds:
        # Under the admission's hold lock (seats.place_hold takes it again: advisory locks nest), so
        # concurrent requests of one admission are counted one after the other and none slips past.
        await xact_lock(con, LockNamespace.ADMISSION_HOLD, token_id)
        if await con.fetchval(queries.HOLDS_PLACED_BY, token_id, max_holds) >= max_holds:
            raise Refused(Code.TOO_MANY_HOLDS)
    booked = await con.fetchval(queries.APPOINTMENT_STATUS_OF_ADMISSION, token_id)
    if booked not in (None, AppointmentStatus.CONFIRMED):
        raise Refused(Code.ADMISSION_USED)
    if await seats.has_pinned_hold(con, token_id):
        raise Refused(Code.BOOKING_IN_PROGRESS)
    site = await seats.site_of_slot(con, slot_id)
    if site is not None and not allows_site(site):
        raise TokenScope()
    hold = await seats.place_hold(
        con, token_id=token_id, event_id=event_id, slot_id=slot_id, expires_at=expires_at, now=now
    )
    for old in hold.replaced_holds:
        await con.execute(
            queries.INSERT_AUDIT, "hold_replaced", event_id, None, None, None, token_id,
            {"hold_id": str(old), "by": str(hold.hold_id)},
        )  # fmt: skip
    await con.execute(
        queries.INSERT_AUDIT, "hold_placed", event_id, slot_id, None, None, token_id,
        {"hold_id": str(hold.hold_id), "expires_at": expires_at.isoformat()},
    )  # fmt: skip
    return hold


@dataclass(frozen=True)
class HoldView:
    hold: seats.HoldRow
    slot: seats.SlotState
    status: HoldStatus  # as a reader sees it at the time of reading


async def view(con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, now: datetime) -> HoldView:
    """The admission's hold with its slot; not_found for anyone else's."""
    row = await seats.get_hold(con, hold_id)
    if row is None or row.token_id != token_id:
        raise NotFound("no such hold")
    slot = (await seats.read_slots(con, [row.slot_id], now))[row.slot_id]
    return HoldView(row, slot, row.status_at(now))


@dataclass(frozen=True)
class Released:
    status: HoldStatus
    site_id: str | None  # where a seat came free (None: nothing was released)


async def release(
    con: asyncpg.Connection, hold_id: uuid.UUID, token_id: str, now: datetime, *, event_id: str | None = None
) -> Released:
    """Release the admission's hold; its seat is free at once. Releasing twice, or an expired hold,
    is harmless (answers the hold's status). Refused booking_in_progress while a booking pins it."""
    row = await seats.get_hold(con, hold_id)
    if row is None or row.token_id != token_id:
        raise NotFound("no such hold")
    if row.pinned_attempt is not None and row.status == HoldStatus.ACTIVE:
        raise Refused(Code.BOOKING_IN_PROGRESS)
    released = await seats.release_hold(con, hold_id, token_id, now)
    if released is None:
        return Released(row.status, None)
    await con.execute(
        queries.INSERT_AUDIT, "hold_released", event_id, row.slot_id, None, None, token_id, {"hold_id": str(hold_id)}
    )
    return Released(HoldStatus.RELEASED, await seats.site_of_slot(con, row.slot_id))
