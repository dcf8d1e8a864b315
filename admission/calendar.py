"""The appointment's calendar file (issue 9).

``GET /api/v1/appointments/{id}/calendar.ics``: authorised like ``GET /api/v1/appointments/{id}``
(the admission that booked it, or the appointment's manage credential:
:func:`admission.auth.appointment_access`); the manage page serves the same file
(:func:`calendar_file`). The reminder opt-out link is :mod:`admission.reminders`.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from admission import queries
from admission.auth import appointment_access
from admission.keys import POOL
from shared.calendar import appointment_ics
from shared.errors import NotFound
from shared.http import path_uuid
from shared.statuses import AppointmentStatus


async def get_calendar(request: web.Request) -> web.Response:
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    return await calendar_file(request, appointment_id, appointment_access(request, appointment_id).token_id)


async def calendar_file(request: web.Request, appointment_id: uuid.UUID, token_id: str | None) -> web.Response:
    """The appointment's .ics: of the admission ``token_id``, or any (None: the caller verified its
    manage credential)."""
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(queries.APPOINTMENT_CALENDAR, appointment_id, token_id)
    if row is None:
        raise NotFound("no such appointment")
    cancelled = row["status"] == AppointmentStatus.CANCELLED
    ics = appointment_ics(
        appointment_id=row["appointment_id"], sequence=row["sequence"], starts_at=row["starts_at"],
        ends_at=row["ends_at"], timezone=row["timezone"], site_name=row["site_name"], address=row["address"],
        summary=row["type_name"] or "Appointment", method="CANCEL" if cancelled else "PUBLISH",
    )  # fmt: skip
    return web.Response(
        body=ics,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="appointment.ics"', "Cache-Control": "no-store"},
    )
