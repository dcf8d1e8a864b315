"""The browser pages: ``/`` (open events) and ``/e/{event_id}`` (the queue page)."""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from aiohttp import web

from waitingroom.keys import ROOM

STATIC = resources.files("waitingroom") / "static"
_QUEUE_PAGE = Template((STATIC / "queue.html").read_text())
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def queue_page(request: web.Request) -> web.Response:
    event = request.app[ROOM].event(request.match_info["event_id"])
    body = _QUEUE_PAGE.substitute(title=html.escape(event.name), event_id=html.escape(event.event_id))
    return web.Response(text=body, content_type="text/html", headers=_PAGE_HEADERS)


async def index(request: web.Request) -> web.Response:
    events = request.app[ROOM].open_events()
    if len(events) == 1:
        raise web.HTTPFound(f"/e/{events[0].event_id}")
    items = (
        "".join(f'<li><a href="/e/{html.escape(e.event_id)}">{html.escape(e.name)}</a></li>' for e in events)
        or "<li>No event is open right now.</li>"
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Waiting rooms</title>'
        f'<link rel="stylesheet" href="/static/queue.css"></head><body><main><h1>Open events</h1><ul>{items}</ul>'
        "</main></body></html>"
    )
    return web.Response(text=body, content_type="text/html", headers=_PAGE_HEADERS)
