"""Operator endpoints of the waiting room (``/admin/v1``, role ``operator``: see shared/staff.py)."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.errors import NotFound, ValidationFailed
from shared.http import json_response, read_json, validate
from shared.settings import Settings
from shared.staff import Role, actor_of, requires
from waitingroom import invites
from waitingroom.events import EVENT_ID, EventUpdate, get_draw
from waitingroom.keys import METRICS, ROOM
from waitingroom.lottery import ALGORITHM, Lottery


@requires(Role.OPERATOR)
async def put_event(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    event_id = request.match_info["event_id"]
    if not EVENT_ID.match(event_id):
        raise ValidationFailed("event ids are lowercase letters, digits, - and _ (at most 64)")
    update = await read_json(request, EventUpdate)
    event = await room.put_event(event_id, update, actor=actor_of(request), exists=_precondition(request))
    return json_response(event.to_json())


def _precondition(request: web.Request) -> bool | None:
    """``If-Match: *``: update only (404 if there is no such event); ``If-None-Match: *``: create only
    (409 conflict if it exists). Events carry no ETags, so only ``*`` has a meaning."""
    if_match, if_none_match = request.headers.get("If-Match"), request.headers.get("If-None-Match")
    if if_match is not None and if_none_match is not None:
        raise ValidationFailed("send If-Match or If-None-Match, not both")
    for header, value, exists in (("If-Match", if_match, True), ("If-None-Match", if_none_match, False)):
        if value is not None:
            if value.strip() != "*":
                raise ValidationFailed(f"{header} accepts only * (events carry no ETags)")
            return exists
    return None


@requires(Role.OPERATOR)
async def close_event(request: web.Request) -> web.Response:
    """Close the event now: joins and ticket polls answer ``event_closed``. Safe to repeat."""
    event = await request.app[ROOM].close_event(request.match_info["event_id"], actor=actor_of(request))
    return json_response(event.to_json())


@requires(Role.OPERATOR)
async def list_events(request: web.Request) -> web.Response:
    return json_response({"events": await request.app[ROOM].list_events()})


@requires(Role.OPERATOR)
async def get_event(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    event_id = request.match_info["event_id"]
    event = room.event(event_id)
    stats = await room.stats(event_id)
    lottery = room.lottery(event_id)
    drawn = None if lottery is None else {"size": lottery.size, "seed": lottery.seed, "algorithm": ALGORITHM}
    return json_response({**event.to_json(), "stats": stats, "lottery": drawn})


class OrderPage(BaseModel):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=1000, ge=1, le=10_000)


@requires(Role.OPERATOR)
async def get_lottery(request: web.Request) -> web.Response:
    """The recorded pre-queue draw and the arrival numbers in drawn order (paged), for audits."""
    room = request.app[ROOM]
    event_id = request.match_info["event_id"]
    room.event(event_id)
    page = validate(OrderPage, dict(request.query))
    async with room.pool.acquire() as con:
        row = await get_draw(con, event_id)
    if row is None:
        raise NotFound("no lottery has been drawn for this event yet")
    lottery = Lottery(row["size"], row["seed"])
    return json_response(
        {
            "size": lottery.size,
            "seed": lottery.seed,
            "algorithm": row["algorithm"],
            "recorded_at": row["recorded_at"].isoformat(),
            "offset": page.offset,
            "order": lottery.order(page.offset, page.limit),
        }
    )


class InviteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    count: int = Field(default=1, ge=1, le=invites.MAX_BATCH)
    expires_at: AwareDatetime
    label: str = Field(default="", max_length=200)


def invite_link(settings: Settings, event_id: str, token: str) -> str:
    """The link handed to an invitee: the token rides in the fragment, which browsers never send to
    a server, so no access log or proxy ever records it; the page posts it to the redeem API."""
    return f"{settings.edge_url}/e/{event_id}/invite#{token}"


@requires(Role.OPERATOR)
async def post_invites(request: web.Request) -> web.Response:
    """Issue a batch of invite links for the event (shown only in this answer)."""
    room = request.app[ROOM]
    event = room.event(request.match_info["event_id"])
    body = await read_json(request, InviteRequest)
    issued = await invites.issue(
        room.pool, room.codec, request.app[METRICS], event, count=body.count, expires_at=body.expires_at,
        label=body.label, actor=actor_of(request), now=room.clock(),
    )  # fmt: skip
    return json_response(
        {
            "batch": str(issued.batch_id),
            "expires_at": issued.expires_at.isoformat(),
            "links": [invite_link(room.settings, event.event_id, t) for t in issued.tokens],
        },
        status=201,
        headers={"Cache-Control": "no-store"},
    )


@requires(Role.OPERATOR)
async def get_invites(request: web.Request) -> web.Response:
    """How many invites of each batch are issued, used, revoked, expired and still open."""
    room = request.app[ROOM]
    event = room.event(request.match_info["event_id"])
    return json_response({"batches": await invites.counts(room.pool, event.event_id, room.clock())})


@requires(Role.OPERATOR)
async def delete_invites(request: web.Request) -> web.Response:
    """Revoke a batch, or one invite (its id), of the event: its unused links stop working."""
    room = request.app[ROOM]
    event = room.event(request.match_info["event_id"])
    try:
        target = uuid.UUID(request.match_info["batch"])
    except ValueError:
        raise ValidationFailed("a batch or invite id is a UUID") from None
    batch, revoked = await invites.revoke(
        room.pool, request.app[METRICS], event.event_id, target, actor=actor_of(request), now=room.clock()
    )
    return json_response({"batch": str(batch), "revoked": revoked})
