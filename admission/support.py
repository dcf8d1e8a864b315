"""Support endpoints (role ``support``): look a person up, cancel or move an appointment for them.

The id number travels in a POST body only, never in a URL, so no access log, proxy or browser
history holds it. Answers carry no id number, keyed reference or birth date, and the person's name
and email only masked (:func:`shared.support.masked_contact`). Handlers parse, call one service of
:mod:`shared.support`, render.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admission.availability import slot_place_and_time, state_place
from admission.keys import AVAILABILITY, METRICS, POOL, VAULT, WAITLIST
from shared import eligibility_review, seats, support
from shared.booking import utc_iso
from shared.errors import CATALOGUE, Code
from shared.http import json_response, path_uuid, read_json
from shared.staff import Role, actor_of, requires
from shared.statuses import AppointmentStatus

_EVENT_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id_number: str = Field(min_length=1, max_length=64)
    event_id: str | None = Field(default=None, pattern=_EVENT_ID)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=500)


class MoveIn(ReasonIn):
    slot_id: uuid.UUID


def _at(moment: Any) -> str | None:
    return None if moment is None else utc_iso(moment)


def _appointment(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "appointment_id": str(row["appointment_id"]),
        "event_id": row["event_id"],
        "status": row["status"],
        "type_id": row["type_id"],
        **slot_place_and_time(row),
        "created_at": _at(row["created_at"]),
        "cancelled_at": _at(row["cancelled_at"]),
        "cancel_late": row["cancel_late"],
        "cancelled_by": row["cancelled_by"],
        "cancel_reason": row["cancel_reason"],
        "checked_in_at": _at(row["checked_in_at"]),
        "rescheduled_at": _at(row["rescheduled_at"]),
        "reviews": row["reviews"],  # a replay's flags (shared/eligibility_review.py), open until cleared
    }


def _attempt(row: dict[str, Any]) -> dict[str, Any]:
    code = row["code"]
    return {
        "attempt_id": str(row["attempt_id"]),
        "event_id": row["event_id"],
        "slot_id": row["slot_id"] or None,
        "status": row["status"],
        "code": code,
        # the catalogue's message for the code: what the person was told
        "reason": None if code is None else CATALOGUE[Code(code)].message,
        "appointment_id": None if row["appointment_id"] is None else str(row["appointment_id"]),
        "created_at": _at(row["created_at"]),
        "finished_at": _at(row["finished_at"]),
    }


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry_id": str(row["entry_id"]),
        "event_id": row["event_id"],
        "site_id": row["site_id"],
        "type_id": row["type_id"],
        "day": None if row["day"] is None else row["day"].isoformat(),
        "status": row["status"],
        "joined_at": _at(row["joined_at"]),
        "ended_at": _at(row["ended_at"]),
    }


@requires(Role.SUPPORT)
async def lookup(request: web.Request) -> web.Response:
    """A person's appointments, booking attempts, waitlist entries and eligibility decisions; audited."""
    body = await read_json(request, LookupIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        found = await support.look_up(
            con, request.app[VAULT], body.id_number, event_id=body.event_id, actor=actor_of(request).audit_name()
        )
    return json_response(
        {
            "person": found.contact,
            "appointments": [_appointment(row) for row in found.appointments],
            "attempts": [_attempt(row) for row in found.attempts],
            "waitlist": [_entry(row) for row in found.waitlist],
            "decisions": found.decisions,
        }
    )


@requires(Role.SUPPORT)
async def clear_review(request: web.Request) -> web.Response:
    """Clear the appointment's open review flags (a replay's), with a reason; audited."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    body = await read_json(request, ReasonIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        done = await eligibility_review.clear_flag(
            con, appointment_id, reason=body.reason, actor=actor_of(request).audit_name(), now=seats.utcnow()
        )
    return json_response(done)


@requires(Role.SUPPORT)
async def flagged(request: web.Request) -> web.Response:
    """The event's appointments a replay flagged for review (``?all=true``: cleared ones too)."""
    include_cleared = request.query.get("all", "false") == "true"
    async with request.app[POOL].acquire() as con:
        return json_response(
            await eligibility_review.flagged(con, request.match_info["event_id"], include_cleared=include_cleared)
        )


@requires(Role.SUPPORT)
async def cancel(request: web.Request) -> web.Response:
    """Cancel on the person's behalf, with a reason; the seat is offered to the waitlist."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    body = await read_json(request, ReasonIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        done = await support.cancel_on_behalf(
            con, appointment_id, reason=body.reason, actor=actor_of(request).audit_name(), now=seats.utcnow(),
            waitlist=request.app[WAITLIST],
        )  # fmt: skip
    request.app[AVAILABILITY].changed(done.site_id)
    request.app[METRICS].cancellations.labels(done.event_id).inc()
    return json_response(
        {"appointment_id": str(appointment_id), "status": AppointmentStatus.CANCELLED, "late": done.late}
    )


@requires(Role.SUPPORT)
async def reschedule(request: web.Request) -> web.Response:
    """Move the appointment to a free seat of another slot on the person's behalf, with a reason."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    body = await read_json(request, MoveIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        moved = await support.reschedule_on_behalf(
            con, appointment_id, body.slot_id, reason=body.reason, actor=actor_of(request).audit_name(),
            now=seats.utcnow(), waitlist=request.app[WAITLIST],
        )  # fmt: skip
    request.app[AVAILABILITY].changed(*moved.sites)
    answer = {"appointment_id": str(appointment_id), "status": AppointmentStatus.CONFIRMED, **state_place(moved.slot)}
    if moved.from_slot_id is not None:
        answer["from_slot_id"] = str(moved.from_slot_id)
    return json_response(answer)
