"""Changes to an appointment by the admission that made it: cancel and reschedule.

Handlers parse, call one service of :mod:`shared.appointments` (which holds the rules and runs in
one transaction), and render.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, model_validator

from admission.availability import state_place
from admission.idempotency import run_once
from admission.keys import AVAILABILITY, METRICS, POOL, WAITLIST, admission_of
from shared import appointments, seats
from shared.http import json_response, path_uuid, read_json
from shared.statuses import AppointmentStatus


async def cancel_appointment(request: web.Request) -> web.Response:
    """Cancel and return the seat in one transaction. Cancelling twice is harmless."""
    admission = admission_of(request)
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    now = seats.utcnow()
    async with request.app[POOL].acquire() as con, con.transaction():
        current = await appointments.lock_own(con, appointment_id, admission.token_id)
        done = await appointments.cancel(
            con, appointment_id, now=now, waitlist=request.app[WAITLIST], actor=admission.token_id
        )
    if done is None:
        return json_response({"appointment_id": str(appointment_id), "status": current["status"]})
    request.app[AVAILABILITY].changed(done.site_id)
    request.app[METRICS].cancellations.labels(done.event_id).inc()
    return json_response(
        {"appointment_id": str(appointment_id), "status": AppointmentStatus.CANCELLED, "late": done.late}
    )


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
    admission = admission_of(request)
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    target = await read_json(request, RescheduleIn)
    sites: list[str] = []

    async def run(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        moved = await appointments.reschedule(
            con, appointment_id, admission.token_id, admission.allows_site, slot_id=target.slot_id,
            hold_id=target.hold_id, now=seats.utcnow(), waitlist=request.app[WAITLIST],
        )  # fmt: skip
        sites.extend(moved.sites)
        body = {"appointment_id": str(appointment_id), "status": AppointmentStatus.CONFIRMED, **state_place(moved.slot)}
        if moved.from_slot_id is not None:
            body["from_slot_id"] = str(moved.from_slot_id)
        return 200, body

    response, executed = await run_once(
        request, admission.token_id, f"reschedule/{appointment_id}", target.model_dump(mode="json"), run
    )
    if executed:
        request.app[AVAILABILITY].changed(*sites)
        result = "rescheduled" if response.status == 200 else "refused"
        request.app[METRICS].reschedules.labels(admission.event_id, result).inc()
    return response
