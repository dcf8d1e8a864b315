"""Holds: set one seat aside for an admission while its holder fills in the form.

``POST /api/v1/holds {"slot_id"}`` → 201 ``{"hold_id", "slot_id", "expires_at", ...}``; one live hold
per admission (a new one replaces the old atomically); ``DELETE /api/v1/holds/{id}`` releases it;
``GET /api/v1/holds/{id}`` shows it. Booking with ``hold_id`` consumes it. A hold stops counting the
moment it expires (no sweeper needed); the worker's periodic job only tidies the rows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from admission.availability import state_place
from admission.idempotency import run_once
from admission.keys import AVAILABILITY, METRICS, POOL, SETTINGS, admission_of
from shared import seats
from shared.booking import utc_iso
from shared.errors import Conflict, NotFound, TokenScope
from shared.http import json_response, read_json

_DETAIL = {
    seats.SLOT_FULL: "that slot has no seat left; pick another",
    seats.SLOT_NOT_FOUND: "no such slot",
    seats.SLOT_WITHDRAWN: "that slot is no longer offered; pick another",
    seats.OUTSIDE_WINDOW: "that slot cannot be booked now (too soon, too far ahead, or past)",
    "admission_used": "this admission has already been used to book",
    "booking_in_progress": "a booking from this admission's hold is in progress",
}


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: uuid.UUID


def hold_json(hold_id: uuid.UUID, slot: seats.SlotState, expires_at: Any, status: str = "active") -> dict[str, Any]:
    return {"hold_id": str(hold_id), **state_place(slot), "expires_at": utc_iso(expires_at), "status": status}


async def post_hold(request: web.Request) -> web.Response:
    admission = admission_of(request)
    body = await read_json(request, HoldIn)
    ttl = timedelta(seconds=request.app[SETTINGS].hold_ttl_s)
    changed_sites: list[str] = []

    async def hold(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        now = seats.utcnow()
        # An admission that booked may still hold a seat to reschedule into; one whose appointment
        # ended (cancelled, completed) is used up.
        booked = await con.fetchval("SELECT status FROM appointments WHERE token_id = $1", admission.token_id)
        if booked not in (None, "confirmed"):
            raise Conflict("admission_used", _DETAIL["admission_used"])
        if await con.fetchval(seats.PINNED_HOLD_OF, admission.token_id):
            raise Conflict("booking_in_progress", _DETAIL["booking_in_progress"])
        site = await con.fetchval("SELECT site_id FROM slots WHERE slot_id = $1", body.slot_id)
        if site is not None and not admission.allows_site(site):
            raise TokenScope("this admission does not cover that slot's site")
        try:
            placed = await seats.place_hold(
                con, token_id=admission.token_id, event_id=admission.event_id, slot_id=body.slot_id,
                expires_at=now + ttl, now=now,
            )  # fmt: skip
        except seats.SeatRejected as exc:
            if exc.code == seats.SLOT_NOT_FOUND:
                raise NotFound(_DETAIL[exc.code]) from None
            raise Conflict(exc.code, _DETAIL.get(exc.code, exc.code)) from None
        changed_sites.extend((placed.slot.site_id, *placed.replaced_sites))
        return 201, hold_json(placed.hold_id, placed.slot, placed.expires_at)

    response, executed = await run_once(request, admission.token_id, "hold", body.model_dump(mode="json"), hold)
    if executed:
        request.app[METRICS].holds.labels(admission.event_id, "placed" if response.status == 201 else "refused").inc()
        request.app[AVAILABILITY].changed(*changed_sites)
    return response


def _hold_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["hold_id"])
    except ValueError:
        raise NotFound("no such hold") from None


async def get_hold(request: web.Request) -> web.Response:
    admission = admission_of(request)
    hold_id = _hold_id(request)
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(seats.GET_HOLD, hold_id)
        if row is None or row["token_id"] != admission.token_id:
            raise NotFound("no such hold")
        slot = (await seats.read_slots(con, [row["slot_id"]], seats.utcnow()))[row["slot_id"]]
    now = seats.utcnow()
    status = row["status"]
    if status == "active" and row["pinned_attempt"] is None and row["expires_at"] <= now:
        status = "expired"
    return json_response(hold_json(hold_id, slot, row["expires_at"], status))


async def delete_hold(request: web.Request) -> web.Response:
    """Release the hold; its seat is free at once. Releasing twice, or an expired hold, is harmless."""
    admission = admission_of(request)
    hold_id = _hold_id(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        row = await con.fetchrow(seats.GET_HOLD, hold_id)
        if row is None or row["token_id"] != admission.token_id:
            raise NotFound("no such hold")
        if row["pinned_attempt"] is not None and row["status"] == "active":
            raise Conflict("booking_in_progress", _DETAIL["booking_in_progress"])
        released = await con.fetchval(seats.RELEASE_HOLD, hold_id, admission.token_id, seats.utcnow())
        site = await con.fetchval("SELECT site_id FROM slots WHERE slot_id = $1", row["slot_id"])
    if released is not None:
        request.app[AVAILABILITY].changed(site)
        request.app[METRICS].holds.labels(admission.event_id, "released").inc()
    return json_response({"hold_id": str(hold_id), "status": "released" if released else row["status"]})
