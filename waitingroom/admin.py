"""Operator endpoints of the waiting room (``/admin/v1``, bearer admin token)."""

from __future__ import annotations

from aiohttp import web

from shared.errors import ValidationFailed
from shared.http import json_response, read_json, require_admin
from waitingroom.events import EVENT_ID, EventUpdate
from waitingroom.keys import ROOM


async def put_event(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    require_admin(request, room.settings.admin_tokens)
    event_id = request.match_info["event_id"]
    if not EVENT_ID.match(event_id):
        raise ValidationFailed("event ids are lowercase letters, digits, - and _ (at most 64)")
    update = await read_json(request, EventUpdate)
    event = await room.put_event(event_id, update)
    return json_response(event.to_json())


async def get_event(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    require_admin(request, room.settings.admin_tokens)
    event_id = request.match_info["event_id"]
    event = room.event(event_id)
    return json_response({**event.to_json(), "stats": await room.stats(event_id)})
