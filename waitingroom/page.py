"""The browser pages: ``/`` (open events), ``/e/{event_id}`` (the queue page) and the page's
no-JavaScript join (``POST /e/{event_id}/join``).

The queue page is rendered on the server with the visitor's current state, in the language of their
``Accept-Language``, so it is complete without JavaScript: a join form, and a refresh every
``poll_after_ms`` while waiting. With JavaScript, ``queue.js`` takes over: it polls the status API,
counts down, announces changes (aria-live) and shows the booking form once admitted.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from importlib import resources
from string import Template
from urllib.parse import urlsplit

from aiohttp import web

from shared.errors import EventClosed, Refused, TicketInvalid
from shared.http import read_form
from shared.settings import Settings
from waitingroom import eligibility
from waitingroom.events import Event
from waitingroom.i18n import STRINGS, duration, eta_minutes, pick_language
from waitingroom.keys import ROOM
from waitingroom.room import Status
from waitingroom.views import (
    MALFORMED,
    check_join_limit,
    check_work,
    cookie_name,
    count_malformed,
    joined_event,
    set_ticket_cookie,
)

STATIC = resources.files("waitingroom") / "static"
_QUEUE_PAGE = Template((STATIC / "queue.html").read_text())
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(settings: Settings) -> str:
    """What the pages may load: their own script, style and Web Worker (no inline script or style:
    the strings travel in a JSON data block, which never runs), requests to the edge and to the
    booking API the page books through, forms posted back to the edge; never framed (clickjacking)."""
    url = urlsplit(settings.api_url)
    api = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"  # its origin: scheme, host, port
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; worker-src 'self'; "
        f"connect-src 'self' {api}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def _eta_text(t: dict[str, str], status: Status) -> str:
    if status.eta_seconds is None:
        return t["eta_paused"]
    minutes = eta_minutes(status.eta_seconds)
    return t["eta_less_minute"] if minutes is None else t["eta_range"].format(lo=minutes[0], hi=minutes[1])


def render_queue_page(
    event: Event, language: str, status: Status | None, now: float, error: str = "", eligibility: str = ""
) -> str:
    t = STRINGS[language]
    e = html.escape
    state = status.state if status is not None else "none"
    position = ahead = eta = note = hint = refresh = no_js = ""
    progress = 0
    if status is not None and state in ("waiting", "prequeue"):
        hint = t["keep_open"]
        seconds = max(1, round(status.poll_after_ms / 1000))
        refresh = f'<noscript><meta http-equiv="refresh" content="{seconds}"></noscript>'
        no_js = t["no_js_refresh"].format(seconds=seconds)
    if status is not None and state == "waiting":
        position, ahead, eta = str(status.position), str(max(0, (status.position or 1) - 1)), _eta_text(t, status)
    elif status is not None and state == "prequeue" and status.opens_at:
        opens = datetime.fromisoformat(status.opens_at.replace("Z", "+00:00")).timestamp()
        eta, note = t["opens_in"].format(time=duration(opens - now)), t["lottery"]
    elif state == "admitted":
        position, ahead, progress, no_js = "0", "0", 100, t["needs_js"]
    joinable = state in ("none", "expired")
    person_field = ""
    if event.one_place_per_person and joinable:
        person_field = (
            f'<label for="person_id">{e(t["id_number"])}</label>'
            '<input id="person_id" name="person_id" required maxlength="64" autocomplete="off">'
        )
    return _QUEUE_PAGE.substitute(
        lang=language,
        title=e(t["page_title"].format(event=event.name)),
        event_id=e(event.event_id),
        event_name=e(event.name),
        state=state,
        one_place="true" if event.one_place_per_person else "false",
        pow_difficulty=event.pow_difficulty or 0,
        state_text=e(t[f"state_{state}"]),
        position=e(position or t["blank"]),
        ahead=e(ahead or t["blank"]),
        eta=e(eta or t["blank"]),
        progress=progress,
        note=e(note),
        hint=e(hint),
        refresh=refresh,
        no_js=e(no_js),
        join_hidden="" if joinable else "hidden",
        join_label=e(t["rejoin" if state == "expired" else "join"]),
        person_field=person_field,
        error=e(error),
        error_hidden="" if error else "hidden",
        strings_json=json.dumps(t).replace("</", "<\\/"),
        eligibility=eligibility,  # issue 10: the eligibility step (waitingroom/eligibility.py), already HTML
        **{f"s_{key}": e(text) for key, text in t.items()},
    )


async def queue_page(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    event = room.event(request.match_info["event_id"])
    language = pick_language(request.headers.get("Accept-Language"))
    status, error = None, ""
    ticket = request.cookies.get(cookie_name(event.event_id))
    if ticket:
        try:
            status = await room.status(event.event_id, ticket)
        except TicketInvalid:
            status = None
        except EventClosed as exc:
            error = exc.detail
    step = await eligibility.fragment(request, event, language, status.state if status else "none")  # issue 10
    body = render_queue_page(event, language, status, room.clock(), error, eligibility=step)
    return web.Response(text=body, content_type="text/html", headers={**_PAGE_HEADERS, "Content-Language": language})


async def join_form(request: web.Request) -> web.StreamResponse:
    """Join without JavaScript: the page's form posts here and is sent back to the page."""
    room = request.app[ROOM]
    event = joined_event(request)
    language = pick_language(request.headers.get("Accept-Language"))
    presented = request.cookies.get(cookie_name(event.event_id))
    try:
        try:
            form = await read_form(request)
        except MALFORMED:
            count_malformed(request, event.event_id)
            raise
        person_id = str(form.get("person_id") or "").strip() or None
        proof = {"challenge": str(form.get("challenge") or ""), "solution": str(form.get("solution") or "")}
        await check_join_limit(request, event.event_id)
        await check_work(request, event.event_id, proof if proof["challenge"] else None, presented)
        ticket, _ = await room.join(event.event_id, presented, person_id)
    except Refused as exc:
        body = render_queue_page(event, language, None, room.clock(), error=exc.detail)
        headers = dict(_PAGE_HEADERS)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return web.Response(text=body, status=exc.status, content_type="text/html", headers=headers)
    redirect = web.HTTPSeeOther(f"/e/{event.event_id}")
    set_ticket_cookie(redirect, room, event.event_id, ticket)
    raise redirect


async def index(request: web.Request) -> web.Response:
    events = request.app[ROOM].open_events()
    if len(events) == 1:
        raise web.HTTPFound(f"/e/{events[0].event_id}")
    items = "".join(f'<li><a href="/e/{html.escape(e.event_id)}">{html.escape(e.name)}</a></li>' for e in events) or (
        "<li>No event is open right now.</li>"
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Waiting rooms</title>'
        f'<link rel="stylesheet" href="/static/queue.css"></head><body><main><h1>Open events</h1><ul>{items}</ul>'
        "</main></body></html>"
    )
    return web.Response(text=body, content_type="text/html", headers=_PAGE_HEADERS)
