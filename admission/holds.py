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
from shared import holds, seats
from shared.booking import utc_iso
from shared.http import json_response, path_uuid, read_json
from shared.statuses import HoldStatus


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slot_id: uuid.UUID


def hold_json(
    hold_id: uuid.UUID, slot: seats.SlotState, expires_at: Any, status: HoldStatus = HoldStatus.ACTIVE
) -> dict[str, Any]:
    return {"hold_id": str(hold_id), **state_place(slot), "expires_at": utc_iso(expires_at), "status": status}


async def post_hold(request: web.Request) -> web.Response:
    admission = admission_of(request)
    body = await read_json(request, HoldIn)
    settings = request.app[SETTINGS]
    ttl = timedelta(seconds=settings.hold_ttl_s)
    changed_sites: list[str] = []

    async def hold(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        now = seats.utcnow()
        placed = await holds.place(
            con, token_id=admission.token_id, event_id=admission.event_id, allows_site=admission.allows_site,
            slot_id=body.slot_id, expires_at=now + ttl, now=now, max_holds=settings.max_holds_per_admission,
        )  # fmt: skip
        changed_sites.extend((placed.slot.site_id, *placed.replaced_sites))
        return 201, hold_json(placed.hold_id, placed.slot, placed.expires_at)

    response, executed = await run_once(request, admission.token_id, "hold", body.model_dump(mode="json"), hold)
    if executed:
        request.app[METRICS].holds.labels(admission.event_id, "placed" if response.status == 201 else "refused").inc()
        request.app[AVAILABILITY].changed(*changed_sites)
    return response


async def get_hold(request: web.Request) -> web.Response:
    admission = admission_of(request)
    hold_id = path_uuid(request, "hold_id", "hold")
    async with request.app[POOL].acquire() as con:
        found = await holds.view(con, hold_id, admission.token_id, seats.utcnow())
    return json_response(hold_json(hold_id, found.slot, found.hold.expires_at, found.status))


async def delete_hold(request: web.Request) -> web.Response:
    """Release the hold; its seat is free at once. Releasing twice, or an expired hold, is harmless."""
    admission = admission_of(request)
    hold_id = path_uuid(request, "hold_id", "hold")
    async with request.app[POOL].acquire() as con, con.transaction():
        released = await holds.release(con, hold_id, admission.token_id, seats.utcnow(), event_id=admission.event_id)
    if released.site_id is not None:
        request.app[AVAILABILITY].changed(released.site_id)
        request.app[METRICS].holds.labels(admission.event_id, "released").inc()
    return json_response({"hold_id": str(hold_id), "status": released.status})
