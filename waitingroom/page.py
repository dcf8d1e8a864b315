"""The browser pages: ``/`` (open events), ``/e/{event_id}`` (the queue page) and the page's
no-JavaScript join (``POST /e/{event_id}/join``).

The queue page is rendered on the server with the visitor's current state, in the language of their
``Accept-Language``, so it is complete without JavaScript: a join form, a refresh every
``poll_after_ms`` (at least :data:`MIN_NO_JS_REFRESH_S`) while waiting, the confirmation of a used
admission (what, where, when: :mod:`waitingroom.booked`) on every reload, "this event is closed", and
for an unknown event an HTML "no such event" page (404). With JavaScript, ``queue.js`` takes over: it
polls the status API, counts down, announces state changes only, and books through the booking API.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web

from shared.errors import Code, EventClosed, NotFound, Refused, TicketInvalid
from shared.http import read_form
from shared.settings import Settings
from waitingroom import eligibility
from waitingroom.events import Event
from waitingroom.i18n import STRINGS, duration, eta_minutes, local_when, pick_language
from waitingroom.keys import ROOM
from waitingroom.room import Status
from waitingroom.views import (
    MALFORMED,
    check_join_limit,
    check_work,
    cookie_name,
    count_malformed,
    join_charge,
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


# The no-JavaScript page refreshes itself while waiting, never faster than this: a page that reloads
# every second takes the reader's place away (WCAG 2.2.1); the "Check now" link is there in between.
MIN_NO_JS_REFRESH_S = 10


def no_js_refresh_s(poll_after_ms: int) -> int:
    """Seconds between the no-JavaScript page's refreshes: the told ``poll_after_ms``, at least 10 s."""
    return max(MIN_NO_JS_REFRESH_S, round(poll_after_ms / 1000))


@dataclass(frozen=True)
class PageView:
    """What the queue page shows besides the event: the visitor's status (None: no place yet), an
    error to show, and whether the event has closed."""

    status: Status | None = None
    error: str = ""
    closed: bool = False
    eligibility: str = ""  # issue 10: the eligibility step (waitingroom/eligibility.py), already HTML


def _queue_figures(t: dict[str, str], status: Status | None, state: str, now: float) -> dict[str, str]:
    """The queue section's words and figures for the server-rendered state."""
    v = {"position": "", "ahead": "", "eta": "", "note": "", "hint": "", "refresh": "", "no_js": "", "progress": "0"}
    if status is not None and state in ("waiting", "prequeue"):
        seconds = no_js_refresh_s(status.poll_after_ms)
        v["hint"], v["no_js"] = t["keep_open"], t["no_js_refresh"].format(seconds=seconds)
        v["refresh"] = f'<noscript><meta http-equiv="refresh" content="{seconds}"></noscript>'
    if status is not None and state == "waiting":
        v["position"], v["ahead"] = str(status.position), str(max(0, (status.position or 1) - 1))
        v["eta"] = _eta_text(t, status)
    elif status is not None and state == "prequeue" and status.opens_at:
        opens = datetime.fromisoformat(status.opens_at.replace("Z", "+00:00")).timestamp()
        v["eta"], v["note"] = t["opens_in"].format(time=duration(opens - now)), t["lottery"]
    elif state == "admitted":
        v["position"], v["ahead"], v["progress"], v["no_js"] = "0", "0", "100", t["needs_js"]
    return v


def _confirmation(event: Event, language: str, booked: dict[str, Any] | None, api_url: str) -> dict[str, Any]:
    """The confirmation section (what, where, when, calendar) of a used admission, else blanks."""
    if booked is None:
        return {"what": "", "where": "", "address": "", "when": "", "calendar_url": "", "cancelled": False}
    starts = datetime.fromisoformat(booked["local_starts_at"]).astimezone(ZoneInfo(booked["timezone"]))
    what = event.name if not booked["type_name"] else f"{event.name} — {booked['type_name']}"
    return {
        "what": what,
        "where": booked["site_name"],
        "address": booked["address"] or "",
        "when": local_when(starts, language),
        "calendar_url": f"{api_url}/api/v1/appointments/{booked['appointment_id']}/calendar.ics",
        "cancelled": booked["status"] == "cancelled",
    }


def _state_of(view: PageView) -> str:
    if view.closed:
        return "closed"
    if view.status is None:
        return "none"
    if view.status.appointment is not None:
        return "booked"
    return view.status.state


def render_queue_page(event: Event, language: str, view: PageView, now: float, settings: Settings) -> str:
    """The whole page for the visitor's current state, complete without JavaScript."""
    t = STRINGS[language]
    e = html.escape
    status, state = view.status, _state_of(view)
    figures = _queue_figures(t, status, state, now)
    booked = _confirmation(event, language, status.appointment if status is not None else None, settings.api_url)
    joinable = state in ("none", "expired")
    person_field = ""
    if event.one_place_per_person and joinable:
        person_field = (
            f'<label for="person_id">{e(t["id_number"])}</label>'
            '<input id="person_id" name="person_id" required maxlength="64" autocomplete="off">'
        )
    check_now = f'<a href="/e/{e(event.event_id)}">{e(t["check_now"])}</a>' if figures["refresh"] else ""
    updated = datetime.fromtimestamp(now, UTC)
    return _QUEUE_PAGE.substitute(
        lang=language,
        title=e(t["page_title"].format(event=event.name)),
        event_id=e(event.event_id),
        event_name=e(event.name),
        state=state,
        one_place="true" if event.one_place_per_person else "false",
        pow_difficulty=event.pow_difficulty or 0,
        api_url=e(settings.api_url),
        org_name=e(settings.org_name),
        org_hidden="" if settings.org_name else "hidden",
        state_text=e(t[f"state_{state}"]),
        position=e(figures["position"] or t["blank"]),
        ahead=e(figures["ahead"] or t["blank"]),
        eta=e(figures["eta"] or t["blank"]),
        progress=figures["progress"],
        note=e(figures["note"]),
        hint=e(figures["hint"]),
        refresh=figures["refresh"],
        no_js=e(figures["no_js"]),
        check_now=check_now,
        queue_hidden="hidden" if state == "booked" else "",
        join_hidden="" if joinable else "hidden",
        join_label=e(t["rejoin" if state == "expired" else "join"]),
        person_field=person_field,
        privacy=e(t["privacy"].format(days=settings.retention_days)),
        done_hidden="" if state == "booked" else "hidden",
        cancelled_hidden="" if booked["cancelled"] else "hidden",
        what=e(str(booked["what"])),
        where=e(str(booked["where"])),
        address=e(str(booked["address"])),
        when=e(str(booked["when"])),
        calendar_url=e(str(booked["calendar_url"])),
        calendar_hidden="" if booked["calendar_url"] and not booked["cancelled"] else "hidden",
        error=e(view.error),
        error_hidden="" if view.error else "hidden",
        updated=e(t["last_updated"].format(time=f"{updated:%H:%M:%S} UTC")),
        updated_at=_iso(now),
        strings_json=json.dumps(t).replace("</", "<\\/"),
        eligibility=view.eligibility,
        **{f"s_{key}": e(text) for key, text in t.items()},
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def not_found_page(language: str) -> str:
    """The HTML answer to ``/e/{unknown}``: no such event, and the way to the open ones."""
    t = STRINGS[language]
    e = html.escape
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(t["not_found_title"])}</title><link rel="stylesheet" href="/static/queue.css"></head>'
        f"<body><main><h1>{e(t['not_found_title'])}</h1><p>{e(t['not_found_text'])}</p>"
        f'<p><a href="/">{e(t["all_events"])}</a></p></main></body></html>'
    )


async def queue_page(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    language = pick_language(request.headers.get("Accept-Language"))
    headers = {**_PAGE_HEADERS, "Content-Language": language}
    try:
        event = room.event(request.match_info["event_id"])
    except NotFound:
        return web.Response(text=not_found_page(language), status=404, content_type="text/html", headers=headers)
    now = room.clock()
    view = PageView(closed=event.phase(now) == "closed")
    ticket = request.cookies.get(cookie_name(event.event_id))
    if ticket and not view.closed:
        try:
            view = PageView(status=await room.status(event.event_id, ticket))
        except TicketInvalid:
            pass
        except EventClosed:
            view = PageView(closed=True)
    view = replace(view, eligibility=await _eligibility_step(request, event, language, _state_of(view)))
    body = render_queue_page(event, language, view, now, room.settings)
    return web.Response(text=body, content_type="text/html", headers=headers)


async def _eligibility_step(request: web.Request, event: Event, language: str, state: str) -> str:
    """The eligibility step's HTML for this state (issue 10: ``waitingroom.eligibility.fragment``); none
    without a published rule set. ``state`` may also be "booked" or "closed", where no step belongs."""
    return await eligibility.fragment(request, event, language, state)


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
        await check_join_limit(request, event.event_id, join_charge(request))
        await check_work(request, event.event_id, proof if proof["challenge"] else None, presented)
        ticket, _ = await room.join(event.event_id, presented, person_id)
    except Refused as exc:
        # The refusal in the page's language; a form that cannot be read says what was wrong with it.
        said = (
            exc.detail if exc.code == Code.VALIDATION_ERROR else STRINGS[language].get(f"code_{exc.code}", exc.detail)
        )
        view = PageView(error=said, closed=exc.code == Code.EVENT_CLOSED)
        body = render_queue_page(event, language, view, room.clock(), room.settings)
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
