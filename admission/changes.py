"""Changes to an appointment by the admission that made it, or by the holder of its manage
credential (:func:`admission.auth.appointment_access`): cancel and reschedule.

Handlers parse, call one service of :mod:`shared.appointments` (which holds the rules and runs in
one transaction), and render.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, model_validator

from admission.auth import AppointmentAccess, appointment_access
from admission.availability import state_place
from admission.eligibility import language_of
from admission.idempotency import run_once
from admission.keys import AVAILABILITY, METRICS, POOL, SETTINGS, WAITLIST
from shared import appointments, seats
from shared.errors import ValidationFailed
from shared.http import json_response, path_uuid, read_json
from shared.manage import manage_url
from shared.statuses import AppointmentStatus


async def cancel_appointment(request: web.Request) -> web.Response:
    """Cancel and return the seat in one transaction. Cancelling twice is harmless."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    access = appointment_access(request, appointment_id)
    done, status = await cancel_as(request, access)
    if done is None:
        return json_response({"appointment_id": str(appointment_id), "status": status})
    return json_response(
        {"appointment_id": str(appointment_id), "status": AppointmentStatus.CANCELLED, "late": done.late}
    )


async def cancel_as(request: web.Request, access: AppointmentAccess) -> tuple[appointments.Cancelled | None, str]:
    """Cancel the appointment ``access`` covers (the API and the manage page): what was done (None:
    it was not confirmed) and its status before."""
    now = seats.utcnow()
    async with request.app[POOL].acquire() as con, con.transaction():
        current = await appointments.lock_own(con, access.appointment_id, access.token_id)
        done = await appointments.cancel(
            con, access.appointment_id, now=now, waitlist=request.app[WAITLIST], actor=access.actor
        )
    if done is not None:
        request.app[AVAILABILITY].changed(done.site_id)
        request.app[METRICS].cancellations.labels(done.event_id).inc()
    return done, current["status"]


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RescheduleIn:
        if (self.slot_id is None) == (self.hold_id is None):
            raise ValueError("give exactly one of slot_id and hold_id")
        return self


async def reschedule_appointment(request: web.Request) -> web.Response:
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    access = appointment_access(request, appointment_id)
    target = await read_json(request, RescheduleIn)
    if access.by_link and target.hold_id is not None:
        raise ValidationFailed("a manage link reschedules to a slot_id (holds belong to an admission)")
    sites: list[str] = []
    events: list[str] = []

    async def run(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        moved = await _move(con, request, access, target)
        sites.extend(moved.sites)
        body = {"appointment_id": str(appointment_id), "status": AppointmentStatus.CONFIRMED, **state_place(moved.slot)}
        if moved.from_slot_id is not None:
            body["from_slot_id"] = str(moved.from_slot_id)
        body["manage_url"] = manage_url(request.app[SETTINGS], appointment_id, moved.slot.ends_at)
        events.append(moved.event_id)
        return 200, body

    response, executed = await run_once(
        request, access.actor, f"reschedule/{appointment_id}", target.model_dump(mode="json"), run
    )
    if executed:
        request.app[AVAILABILITY].changed(*sites)
        result = "rescheduled" if response.status == 200 else "refused"
        event_id = access.event_id or (events[0] if events else "-")
        request.app[METRICS].reschedules.labels(event_id, result).inc()
    response.headers["Cache-Control"] = "no-store"  # the answer carries a fresh manage link
    return response


async def _move(
    con: asyncpg.Connection, request: web.Request, access: AppointmentAccess, target: RescheduleIn
) -> appointments.Rescheduled:
    now = seats.utcnow()
    if access.by_link:
        assert target.slot_id is not None
        return await appointments.reschedule_by_link(
            con, access.appointment_id, target.slot_id, now=now, waitlist=request.app[WAITLIST],
            language=language_of(request),
        )  # fmt: skip
    assert access.token_id is not None
    return await appointments.reschedule(
        con, access.appointment_id, access.token_id, access.allows_site, slot_id=target.slot_id,
        hold_id=target.hold_id, now=now, waitlist=request.app[WAITLIST], language=language_of(request),
    )  # fmt: skip
