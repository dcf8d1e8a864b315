"""Public HTTP endpoints of the waiting room: join and status."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import hdrs, web
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import NotFound, RateLimited, TicketInvalid, ValidationFailed
from shared.http import bearer, json_response, read_json
from shared.keys import join_bucket_key
from shared.limits import Charge, client_key
from waitingroom import invites, pow
from waitingroom.events import Event
from waitingroom.keys import JOIN_LIMIT, LIMITER, METRICS, ROOM, TRUSTED_PROXIES
from waitingroom.room import JOIN_LIMITED, Room

NO_STORE = {"Cache-Control": "no-store"}
# A cookie name or value that needs no quoting (a ticket is always one: its kid, base64url and dots).
_COOKIE_SAFE = re.compile(r"[A-Za-z0-9._-]+")
# The event label of a join to an event that does not exist: the id in the URL is the client's to
# choose, so it never becomes a label (parentheses: no event id can be this).
UNKNOWN_EVENT = "(unknown)"
# A join body that cannot be read: not JSON, invalid fields, too large, or cut short.
MALFORMED = (ValidationFailed, web.HTTPRequestEntityTooLarge, web.RequestPayloadError)


class Proof(BaseModel):
    """A solved challenge (see :mod:`waitingroom.pow`). Other keys are ignored, as in the join body."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    challenge: str | None = None
    solution: str | None = None


class JoinRequest(BaseModel):
    """Optional body of a join. ``person_id`` (e.g. a health-card number) is required by events with
    one place per person and ignored by others; it is kept only as a keyed hash. Every field may be
    left out or sent as null (the same thing); unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    person_id: str | None = Field(default=None, min_length=1, max_length=64)
    pow: Proof | None = None  # where the event asks for work
    # SHA-256 (hex) of a secret only the visitor's browser keeps: the admission is then bound to it.
    device_key_hash: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")


def joined_event(request: web.Request) -> Event:
    """The event a join names; an unknown one is NotFound (404) and counted as ``unknown_event``."""
    try:
        return request.app[ROOM].event(request.match_info["event_id"])
    except NotFound:
        request.app[METRICS].join_rejected.labels(UNKNOWN_EVENT, "unknown_event").inc()
        raise


def count_malformed(request: web.Request, event_id: str) -> None:
    request.app[METRICS].join_rejected.labels(event_id, "malformed").inc()


def cookie_name(event_id: str) -> str:
    return f"sg_ticket_{event_id}"


def presented_ticket(request: web.Request, event_id: str) -> str | None:
    """The ticket from ``Authorization: Bearer`` or, for browsers, the event's cookie."""
    return bearer(request) or request.cookies.get(cookie_name(event_id))


def join_charge(request: web.Request) -> Charge | None:
    """This client's join bucket and its limit; None when the join limit is off."""
    limit = request.app[JOIN_LIMIT]
    if not limit.enabled:
        return None
    trusted = request.app[TRUSTED_PROXIES]
    client = client_key(request.remote, request.headers.get("X-Forwarded-For"), trusted)
    return join_bucket_key(client), limit


def refused_for_limit(request: web.Request, event_id: str) -> None:
    request.app[METRICS].join_rejected.labels(event_id, "rate_limited").inc()


async def check_join_limit(request: web.Request, event_id: str, charge: Charge | None) -> None:
    """Take one join from this client's allowance; raise RateLimited when it is spent."""
    if charge is None:
        return
    verdict = await request.app[LIMITER].take(request.app[ROOM].clock(), [charge])
    if not verdict.allowed:
        refused_for_limit(request, event_id)
        raise RateLimited(JOIN_LIMITED, retry_after=verdict.retry_after_s)


def folds_limit(room: Room, event: Event, presented: str | None, person_id: str | None) -> bool:
    """Whether the client's bucket can be taken in the join's own script call, with the same outcome
    as taking it first: on a single Redis (a cluster keeps a script in one slot: the event's), and
    when nothing checked between the two could refuse or answer the join without a new place (a
    ticket presented, proof of work, a missing person_id, a queue not open)."""
    return (
        room.queue.single_node
        and presented is None
        and not event.pow_difficulty
        and (person_id is not None or not event.one_place_per_person)
        and event.phase(room.clock()) in ("open", "prequeue")
    )


async def check_work(request: web.Request, event_id: str, proof: dict[str, str] | None, presented: str | None) -> None:
    """Where the event asks for proof of work, a new place costs one (a live ticket needs none)."""
    room = request.app[ROOM]
    event = room.event(event_id)
    if not event.pow_difficulty or (presented is not None and await room.holds_place(event_id, presented)):
        return
    try:
        await pow.check(room.codec, room.queue.redis, event_id, event.pow_difficulty, proof, room.clock())
    except pow.ProofRejected as exc:
        request.app[METRICS].join_rejected.labels(event_id, f"pow_{exc.reason}").inc()
        raise


async def challenge(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    event = room.event(request.match_info["event_id"])
    return json_response(
        pow.issue(room.codec, event.event_id, event.pow_difficulty or 0, room.clock()), headers=NO_STORE
    )


def set_ticket_cookie(response: web.StreamResponse, room: Room, event_id: str, ticket: str) -> None:
    name, secure = cookie_name(event_id), room.settings.edge_url.startswith("https://")
    if _COOKIE_SAFE.fullmatch(name) and _COOKIE_SAFE.fullmatch(ticket):
        # The header aiohttp's set_cookie writes (tests/waitingroom/test_joins.py compares them), written
        # directly: through http.cookies it cost about as much as the rest of a join's response.
        response.headers.add(
            hdrs.SET_COOKIE,
            f"{name}={ticket}; HttpOnly; Max-Age={room.settings.ticket_max_age_s}; Path=/; SameSite=Lax"
            + ("; Secure" if secure else ""),
        )
        return
    response.set_cookie(
        name, ticket, max_age=room.settings.ticket_max_age_s, path="/", httponly=True, samesite="Lax", secure=secure
    )


async def join(request: web.Request) -> web.Response:
    event = joined_event(request)  # unknown events are 404 and spend nobody's join allowance
    event_id = event.event_id
    try:
        body = await read_json(request, JoinRequest) if request.can_read_body else JoinRequest()
    except MALFORMED:
        count_malformed(request, event_id)
        raise
    room = request.app[ROOM]
    charge = join_charge(request)
    presented = presented_ticket(request, event_id)
    if not folds_limit(room, event, presented, body.person_id):
        await check_join_limit(request, event_id, charge)
        charge = None
    proof = None if body.pow is None else body.pow.model_dump(exclude_none=True)
    await check_work(request, event_id, proof, presented)
    try:
        ticket, status = await room.join(event_id, presented, body.person_id, body.device_key_hash, charge=charge)
    except RateLimited:
        refused_for_limit(request, event_id)
        raise
    resp = json_response({"ticket": ticket, **status.to_json()}, status=201, headers=NO_STORE)
    set_ticket_cookie(resp, room, event_id, ticket)
    return resp


async def status(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    room = request.app[ROOM]
    room.event(event_id)  # an unknown event is 404 even without a ticket
    ticket = presented_ticket(request, event_id)
    if ticket is None:
        raise TicketInvalid("present your ticket as a Bearer token or the queue cookie")
    result = await room.status(event_id, ticket)
    return json_response(result.to_json(), headers=NO_STORE)


class RedeemRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    invite: str = Field(min_length=1, max_length=4096)
    # As at join: the admission is then bound to the browser holding the secret with this SHA-256.
    device_key_hash: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")


async def redeem_invite(request: web.Request) -> web.Response:
    """Trade an invite link's token (sent in the body: never in a URL, so never in a log) for an
    admission to the event, skipping its queue. Once per invite (waitingroom/invites.py)."""
    event_id = request.match_info["event_id"]
    room = request.app[ROOM]
    event = room.event(event_id)
    now = room.clock()
    body = await read_json(request, RedeemRequest)
    redeemed = await invites.redeem(
        room.pool,
        room.queue.redis,
        room.codec,
        request.app[METRICS],
        event,
        body.invite,
        now=now,
        device=body.device_key_hash,
    )
    return json_response(
        {
            "state": "admitted",
            "admission_token": redeemed.admission_token,
            "admission_expires_at": datetime.fromtimestamp(redeemed.expires_at, UTC).isoformat().replace("+00:00", "Z"),
            "booking_url": f"{room.settings.api_url}/api/v1",
        },
        status=201,
        headers=NO_STORE,
    )
