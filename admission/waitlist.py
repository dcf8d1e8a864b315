"""Waitlist endpoints: join when a day is full, leave, and claim an offered seat.

``POST /api/v1/waitlist/claims {"claim"}`` needs no admission token: the signed claim link is the
credential (an offer may come hours after the original admission expired). It answers a fresh
admission token and a hold on the seat; the claimant books with ``hold_id`` through the normal path.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admission.appointments import PersonIn, accepted_language
from admission.holds import hold_json
from admission.idempotency import run_once
from admission.keys import AVAILABILITY, CODEC, METRICS, POOL, VAULT, WAITLIST, admission_of
from shared import seats
from shared.booking import utc_iso
from shared.errors import Refused, TokenExpired, TokenInvalid, TokenScope
from shared.http import json_response, path_uuid, read_json
from shared.statuses import WaitlistEntryStatus


class WaitlistIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    site_id: str = Field(min_length=1, max_length=64)
    type_id: str = Field(min_length=1, max_length=64)
    day: date  # the site's local date
    person: PersonIn


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim: str = Field(min_length=1, max_length=4096)


async def join_waitlist(request: web.Request) -> web.Response:
    admission = admission_of(request)
    body = await read_json(request, WaitlistIn)
    if not admission.allows_site(body.site_id):
        raise TokenScope("this admission does not cover that site")
    vault = request.app[VAULT]
    person_ref = vault.ref(body.person.id_number, field=("person", "id_number"))

    # How to reach them about offers (by email, and text message with a phone), in their language.
    contact: dict[str, Any] = {"name": body.person.name, "email": body.person.email,
                               "language": accepted_language(request.headers.get("Accept-Language"))}  # fmt: skip
    if body.person.phone:
        contact["phone"] = body.person.phone

    async def join(con: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
        entry = await request.app[WAITLIST].join_as_admission(
            con, event_id=admission.event_id, site_id=body.site_id, type_id=body.type_id, day=body.day,
            person_ref=person_ref,
            person_sealed=vault.seal(contact),
            token_id=admission.token_id, now=seats.utcnow(),
        )  # fmt: skip
        return 201, {**entry, "site_id": body.site_id, "type_id": body.type_id, "day": body.day.isoformat(),
                     "status": WaitlistEntryStatus.WAITING}  # fmt: skip

    response, executed = await run_once(request, admission.token_id, "waitlist", body.model_dump(mode="json"), join)
    if executed and response.status == 201:
        request.app[METRICS].waitlist.labels("joined").inc()
    return response


async def leave_waitlist(request: web.Request) -> web.Response:
    admission = admission_of(request)
    entry_id = path_uuid(request, "entry_id", "waitlist entry")
    async with request.app[POOL].acquire() as con, con.transaction():  # the change and its audit row
        status = await request.app[WAITLIST].leave(con, entry_id, admission.token_id)
    return json_response({"entry_id": str(entry_id), "status": status})


async def claim_offer(request: web.Request) -> web.Response:
    body = await read_json(request, ClaimIn)
    codec = request.app[CODEC]
    try:
        codec.read_claim(body.claim)
    except (TokenInvalid, TokenExpired):
        request.app[METRICS].waitlist.labels("claim_refused").inc()
        raise
    try:
        async with request.app[POOL].acquire() as con, con.transaction():
            claimed = await request.app[WAITLIST].claim(con, body.claim, seats.utcnow())
    except Refused:
        request.app[METRICS].waitlist.labels("claim_refused").inc()
        raise
    request.app[METRICS].waitlist.labels("claimed").inc()
    request.app[AVAILABILITY].changed(claimed.slot.site_id)
    return json_response(
        {
            "admission_token": claimed.admission_token,
            "event_id": claimed.event_id,
            **hold_json(claimed.hold_id, claimed.slot, claimed.expires_at),
            "book": {"method": "POST", "url": "/api/v1/appointments", "hold_id": str(claimed.hold_id)},
            "hold_expires_at": utc_iso(claimed.expires_at),
        },
        status=201,
    )
