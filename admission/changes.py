"""Changes to an appointment by the admission that made it: cancel and reschedule.

Both run as one transaction with the seat authority (shared.seats): the appointment row is locked
first, then the slots involved in slot-id order. A freed seat is offered to the waitlist in the
same transaction, so nobody can take it before the people waiting for it are asked.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, model_validator

from admission import queries
from admission.availability import state_place
from admission.idempotency import run_once
from admission.keys import AVAILABILITY, METRICS, POOL, WAITLIST, admission_of
from shared import queries as shared_queries
from shared import seats
from shared.errors import Conflict, NotFound, TokenScope
from shared.http import json_response, read_json

_DETAIL = {
    seats.SLOT_FULL: "that slot has no seat left; your appointment is unchanged",
    seats.SLOT_WITHDRAWN: "that slot is no longer offered; your appointment is unchanged",
    seats.OUTSIDE_WINDOW: "that slot cannot be booked now; your appointment is unchanged",
    seats.HOLD_EXPIRED: "the hold is gone (expired, released or used); your appointment is unchanged",
    "appointment_not_active": "only a confirmed appointment can be changed",
    "appointment_started": "the appointment has already started",
}


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no such appointment") from None


async def _lock_own(con: asyncpg.Connection, appointment_id: uuid.UUID, token_id: str) -> Any:
    row = await con.fetchrow(queries.LOCK_APPOINTMENT, appointment_id, token_id)
    if row is None:
        raise NotFound("no such appointment")
    return row


def cancel_is_late(starts_at: datetime, cutoff_minutes: int, now: datetime) -> bool:
    """After the type's cut-off a cancellation is still accepted, and flagged as late."""
    return now > starts_at - timedelta(minutes=cutoff_minutes)


async def cancel(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    *,
    now: datetime,
    waitlist: Any,
    actor: str,
    reason: str | None = None,
    by_site: bool = False,
) -> dict[str, Any] | None:
    """Cancel a confirmed appointment (locking it) and return its seat; None if it was not confirmed.
    The freed seat goes to the waitlist before anyone else can take it. Returns late, site_id, event_id."""
    row = await con.fetchrow(queries.APPOINTMENT_FOR_CHANGE, appointment_id)
    if row is None or row["status"] != "confirmed":
        return None
    if not by_site and now >= row["starts_at"]:
        raise Conflict("appointment_started", _DETAIL["appointment_started"])
    late = False if by_site else cancel_is_late(row["starts_at"], row["cancel_cutoff_minutes"] or 0, now)
    await con.execute(queries.MARK_CANCELLED, appointment_id, now, late, reason, "site" if by_site else "person")
    await seats.return_seat(con, row["slot_id"])
    await con.execute(
        shared_queries.INSERT_AUDIT, "cancelled_by_site" if by_site else "cancelled", row["event_id"], row["slot_id"],
        appointment_id, None, actor, {"late": late, **({"reason": reason} if reason else {})},
    )  # fmt: skip
    if not by_site:
        await waitlist.offer_freed(con, row["slot_id"], now)
    return {"late": late, "site_id": row["site_id"], "event_id": row["event_id"]}


async def cancel_appointment(request: web.Request) -> web.Response:
    """Cancel and return the seat in one transaction. Cancelling twice is harmless."""
    admission = admission_of(request)
    appointment_id = _uuid(request.match_info["appointment_id"])
    now = seats.utcnow()
    async with request.app[POOL].acquire() as con, con.transaction():
        current = await _lock_own(con, appointment_id, admission.token_id)
        done = await cancel(con, appointment_id, now=now, waitlist=request.app[WAITLIST], actor=admission.token_id)
    if done is None:
        return json_response({"appointment_id": str(appointment_id), "status": current["status"]})
    request.app[AVAILABILITY].changed(done["site_id"])
    request.app[METRICS].cancellations.labels(done["event_id"]).inc()
    return json_response({"appointment_id": str(appointment_id), "status": "cancelled", "late": done["late"]})


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RescheduleIn:
        if (self.slot_id is None) == (self.hold_id is None):
            raise ValueError("give exactly one of slot_id and hold_id")
        return self


async def reschedule(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    token_id: str,
    allows_site: Any,
    target: RescheduleIn,
    *,
    now: datetime,
    waitlist: Any,
) -> dict[str, Any]:
    """Move the appointment to another seat: the new seat is taken and the old one freed, or nothing
    changes (every refusal raises before a write, or inside the caller's savepoint)."""
    current = await _lock_own(con, appointment_id, token_id)
    if current["status"] != "confirmed":
        raise Conflict("appointment_not_active", _DETAIL["appointment_not_active"])
    old = current["slot_id"]
    if target.hold_id is not None:
        hold = await con.fetchrow(seats.GET_HOLD, target.hold_id)
        live = hold is not None and hold["status"] == "active" and hold["expires_at"] > now
        if not live or hold["token_id"] != token_id or hold["pinned_attempt"] is not None:
            raise Conflict(seats.HOLD_EXPIRED, _DETAIL[seats.HOLD_EXPIRED])
        new = hold["slot_id"]
    else:
        assert target.slot_id is not None
        new = target.slot_id
    slots = await seats.lock_slots(con, [old, new], now)
    if new not in slots:
        raise NotFound("no such slot")
    if not allows_site(slots[new].site_id):
        raise TokenScope("this admission does not cover that slot's site")
    if now >= slots[old].starts_at:
        raise Conflict("appointment_started", _DETAIL["appointment_started"])
    if new == old:
        if target.hold_id is not None:
            await con.execute(seats.RELEASE_HOLD, target.hold_id, token_id, now)
        return {"appointment_id": str(appointment_id), "status": "confirmed", **state_place(slots[old])}
    if target.hold_id is not None:
        if await seats.take_held_seat(con, target.hold_id, token_id, None, now) != new:
            raise Conflict(seats.HOLD_EXPIRED, _DETAIL[seats.HOLD_EXPIRED])
    else:
        problem = seats.slot_problem(slots[new], now)
        if problem is not None:
            raise Conflict(problem, _DETAIL[problem])
        if not await seats.take_seat(con, new, now):
            raise Conflict(seats.SLOT_FULL, _DETAIL[seats.SLOT_FULL])
    await seats.return_seat(con, old)
    await con.execute(queries.MOVE_APPOINTMENT, appointment_id, new, now)
    await con.execute(
        shared_queries.INSERT_AUDIT, "rescheduled", current["event_id"], new, appointment_id, None, token_id,
        {"from_slot_id": str(old)},
    )  # fmt: skip
    await waitlist.offer_freed(con, old, now)
    return {"appointment_id": str(appointment_id), "status": "confirmed", **state_place(slots[new]),
            "from_slot_id": str(old),
            "sites": [slots[old].site_id, slots[new].site_id]}  # fmt: skip


async def reschedule_appointment(request: web.Request) -> web.Response:
    admission = admission_of(request)
    appointment_id = _uuid(request.match_info["appointment_id"])
    target = await read_json(request, RescheduleIn)
    sites: list[str] = []

    async def run(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        result = await reschedule(
            con, appointment_id, admission.token_id, admission.allows_site, target,
            now=seats.utcnow(), waitlist=request.app[WAITLIST],
        )  # fmt: skip
        sites.extend(result.pop("sites", []))
        return 200, result

    response, executed = await run_once(
        request, admission.token_id, f"reschedule/{appointment_id}", target.model_dump(mode="json"), run
    )
    if executed:
        request.app[AVAILABILITY].changed(*sites)
        result = "rescheduled" if response.status == 200 else "refused"
        request.app[METRICS].reschedules.labels(admission.event_id, result).inc()
    return response
