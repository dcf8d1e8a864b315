"""The operator console: the page ``GET /admin``, its live figures ``GET /admin/v1/live`` (server-sent
events) and its recent-actions list ``GET /admin/v1/actions``.

The page itself is a shell with no data (``static/console.html``, ``console.js``, ``console.css``):
the operator types a staff key or the owner token into it, the script keeps it in sessionStorage and
sends it as ``Authorization: Bearer`` on every call, never in a URL. ``EventSource`` cannot send that
header, so the script reads the stream with ``fetch()``.

The stream sends one ``stats`` message at once and then every :data:`LIVE_INTERVAL_S`: every event
that is not closed, with the figures of ``GET /admin/v1/events/{id}``. Its first message also
carries :class:`~waitingroom.trends.Trends`, what this edge recorded of the last 15 minutes, so the
sparklines start full. The credential is checked again before each message: a revoked key ends the
stream (``signed_out``) within a second. While Redis or PostgreSQL is away the stream stays open and
says ``unavailable`` each second. Controls are the existing ``PUT /admin/v1/events/{id}`` (audited
there).

Each event's entry also carries ``booking``, the booking side's figures, which the edge computes itself
from PostgreSQL and Redis (:class:`~waitingroom.booking_figures.BookingFigures`, at most once a second per
event): confirmed appointments, refusals by code, booking latency over the last 5 minutes, the booking
queue's depth, the event's invites and its admission-token failures by reason over the last 15 minutes
(which the booking API processes add to Redis). Failures of tokens that named no event the service
issued are in the message's ``token_failures_unknown_event``; its ``notifications`` is the notification
backlog of all events (queued and due, the oldest's age in seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from shared.audit import plain
from shared.errors import Code, Refused
from shared.http import BACKEND_UNAVAILABLE, json_response, validate
from shared.staff import Role, require_role, requires
from shared.token_failures import UNKNOWN_EVENT
from waitingroom.booking_figures import BookingFigures
from waitingroom.events import EVENT_ID
from waitingroom.keys import BOOKING_FIGURES, CLOSING, ROOM, TRENDS
from waitingroom.page import STATIC
from waitingroom.queries import RECENT_EVENT_ACTIONS
from waitingroom.room import Room
from waitingroom.trends import TREND_STEP_S, Trends

LIVE_INTERVAL_S = 1.0

_PAGE = (STATIC / "console.html").read_bytes()
_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def trends_ctx(app: web.Application) -> AsyncIterator[None]:
    """Record the trends every TREND_STEP_S while the app runs (after the room exists)."""

    async def loop() -> None:
        while True:
            if ROOM in app:
                app[TRENDS].record(app[ROOM], app[ROOM].clock())
            await asyncio.sleep(TREND_STEP_S)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every live stream at once (aiohttp would wait for them up to its
    shutdown timeout, 60 s under ``run_app``)."""
    app[CLOSING].set()


async def console_page(request: web.Request) -> web.Response:
    """The console's shell: public, holds no data (everything it shows needs the operator's credential)."""
    return web.Response(body=_PAGE, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


async def figures(room: Room, trends: Trends | None, booking: BookingFigures) -> dict[str, Any]:
    """One stream message: every event that is not closed, with its live stats, its booking figures
    (and trends, if given)."""
    events = []
    for event in room.open_events():
        entry = {
            **event.to_json(),
            "phase": event.phase(room.clock()),
            "stats": await room.stats(event.event_id),
            "booking": await booking.of(room, event.event_id),
        }
        if trends is not None:
            entry["trend"] = trends.of(event.event_id)
        events.append(entry)
    booking.forget_others({e["event_id"] for e in events})
    unknown = (await booking.token_failures(room)).of(UNKNOWN_EVENT)
    backlog = await booking.notification_backlog(room)
    return {"at": room.clock(), "events": events, "token_failures_unknown_event": unknown, "notifications": backlog}


def sse(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; JSON on one line, so it is one ``data:`` field."""
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@requires(Role.OPERATOR)
async def live(request: web.Request) -> web.StreamResponse:
    """``text/event-stream`` of ``stats`` messages until the client leaves, its credential stops
    holding the operator role (then one ``signed_out`` message ends it) or the edge shuts down
    (``closing``: the page reconnects, to another edge if there is one)."""
    room = request.app[ROOM]
    first = await figures(
        room, request.app[TRENDS], request.app[BOOKING_FIGURES]
    )  # before the 200: a failing backend is a 503 problem
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    try:
        await resp.write(sse("stats", first))
        closing = request.app[CLOSING]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), LIVE_INTERVAL_S)
            if closing.is_set():  # the edge is stopping: end now, not after the shutdown timeout
                await resp.write(sse("closing", {}))
                break
            try:
                await require_role(request, Role.OPERATOR)
                message = await figures(room, None, request.app[BOOKING_FIGURES])
            except Refused as exc:
                await resp.write(sse("signed_out", {"code": exc.code, "detail": exc.detail}))
                break
            except BACKEND_UNAVAILABLE as exc:
                # The response has begun: no problem+json now. Say so, and try again next second.
                detail = f"a backing service is unavailable ({type(exc).__name__}); retrying"
                await resp.write(sse("unavailable", {"code": Code.OVERLOADED, "detail": detail}))
                continue
            await resp.write(sse("stats", message))
    except ConnectionResetError:
        pass  # the client left
    return resp


class ActionsQuery(BaseModel):
    event_id: str | None = Field(default=None, pattern=EVENT_ID.pattern)
    limit: int = Field(default=20, ge=1, le=200)


@requires(Role.OPERATOR)
async def recent_actions(request: web.Request) -> web.Response:
    """Operators' latest changes to events (the audit log's ``event_*`` rows), newest first."""
    q = validate(ActionsQuery, dict(request.query))
    async with request.app[ROOM].pool.acquire() as con:
        rows = await con.fetch(RECENT_EVENT_ACTIONS, q.event_id, q.limit)
    return json_response({"actions": [{k: plain(v) for k, v in r.items()} for r in rows]})
