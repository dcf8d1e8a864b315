"""Operator endpoints of the waiting room (``/admin/v1``, role ``operator``: see shared/staff.py)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from shared.errors import NotFound, ValidationFailed
from shared.http import json_response, read_json, validate
from shared.staff import Role, actor_of, requires
from waitingroom.events import EVENT_ID, EventUpdate, get_draw
from waitingroom.keys import ROOM
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
