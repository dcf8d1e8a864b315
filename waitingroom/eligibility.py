"""The queue page's eligibility step (issue 10): the published rule set's questions, asked while waiting.

When an event has a published rule set, the queue page of a visitor holding a place (waiting,
pre-queue or admitted) carries a form rendered here from the version's attribute schema (labels and
help in the page's language, one input per attribute type: :mod:`shared.eligibility_form`, which the
waitlist claim page renders too) with the person's id number and birth date. Attributes marked
``verified`` are not asked: they come from the ID token of the event's identity provider
(:mod:`shared.identity`), sent as ``id_token``.

The booking API decides (``POST /api/v1/events/{id}/eligibility:evaluate``, with the queue ticket or
the admission token). The ticket is an HttpOnly cookie of the edge, out of the page script's reach,
so the edge forwards: its own ``POST /api/v1/events/{id}/eligibility:evaluate`` (the page script,
JSON in, the API's answer out) and ``POST /e/{id}/eligibility`` (the no-JavaScript form, answered 303
back to the page) send the visitor's body to the API with the ticket from the cookie as
``Authorization: Bearer``, their ``X-Device-Key`` and ``Accept-Language``, and the visitor's address
in ``X-Forwarded-For`` (list the edge in the API's ``SURGEGATE_TRUSTED_PROXIES``). Nothing of the
body is read, kept or logged here; the decision's id is kept in an HttpOnly cookie so the page
(rendered again at each no-JavaScript refresh) shows the decision, read back from the API with the
same ticket. Booking waits for an eligible decision: the page's script sends its ``decision_id``
with the booking, and the booking API checks it again at commit.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from shared import eligibility_form
from shared.eligibility_form import STRINGS, Step, evaluate_body, render_decision
from shared.errors import Code, Overloaded, Refused, TicketInvalid
from shared.http import read_form
from waitingroom import queries
from waitingroom.events import Event
from waitingroom.i18n import pick_language
from waitingroom.keys import ROOM, SETTINGS
from waitingroom.views import cookie_name, presented_ticket

FORWARD_TIMEOUT_S = 10.0
# The states whose page shows the questions; for the others the step is rendered hidden and the page
# script shows it (it joins by itself, so a ticket is there by the time the visitor has answered).
SHOWN_IN = ("waiting", "prequeue", "admitted")
NEVER_IN = ("booked", "closed")  # nothing left to check
# The step's words, questions, decision and form reading are shared with the claim page's.
__all__ = ["STRINGS", "Step", "evaluate_body", "render_decision"]

API_SESSION = web.AppKey("eligibility_api_session", aiohttp.ClientSession)


def decision_cookie(event_id: str) -> str:
    return f"sg_decision_{event_id}"


@dataclass
class Steps:
    """Each event's published attribute schema as this edge last read it, at most ``refresh_s`` old
    (``Settings.event_refresh_s``, the age of everything else the edge knows of its events)."""

    refresh_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[float, Step | None]] = field(default_factory=dict)

    async def step(self, pool: asyncpg.Pool, event_id: str) -> Step | None:
        now = self.clock()
        seen = self._seen.get(event_id)
        if seen is None or now - seen[0] >= self.refresh_s:
            async with pool.acquire() as con:
                row = await con.fetchrow(queries.PUBLISHED_ATTRIBUTES, event_id)
            step = None
            if row is not None and row["attributes"] is not None:
                step = Step(row["version"], row["attributes"], bool(row["identity"]))
            seen = (now, step)
            self._seen[event_id] = seen
        return seen[1]


STEPS = web.AppKey("eligibility_steps", Steps)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    """The edge's client session to the booking API (one per app) and the schema cache."""
    app[STEPS] = Steps(refresh_s=app[SETTINGS].event_refresh_s)
    app[API_SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S))
    try:
        yield
    finally:
        await app[API_SESSION].close()


# --- rendering ---------------------------------------------------------------------------------------


def render_step(
    event: Event,
    step: Step,
    language: str,
    *,
    decision: Mapping[str, Any] | None = None,
    error: str = "",
    values: Mapping[str, Any] | None = None,
    hidden: bool = False,
) -> str:
    """The step's HTML: the questions (always, to check again) and the decision if there is one;
    ``hidden`` until the visitor holds a place (the page script shows it)."""
    e, t = html.escape, STRINGS[language]
    values = values or {}
    questions = [
        f'<label for="el_id_number">{e(t["id_number"])}</label>'
        '<input id="el_id_number" name="id_number" required maxlength="64" autocomplete="off">',
        f'<label for="el_birth_date">{e(t["birth_date"])}</label>'
        '<input id="el_birth_date" name="birth_date" type="date" required '
        f'value="{e(str(values.get("birth_date", "")))}">',
    ]
    questions.append(eligibility_form.questions(step, language, values))
    result = render_decision(decision, language) if decision else ""
    data = ""
    if decision:
        data = (f' data-decision-id="{e(str(decision.get("decision_id", "")))}"'
                f' data-eligible="{"true" if decision.get("eligible") else "false"}"'
                f' data-valid-until="{e(str(decision.get("valid_until", "")))}"')  # fmt: skip
    button = t["check_again" if decision else "check"]
    strings = json.dumps(t).replace("</", "<\\/")  # a data block, never closed early
    return (
        f'<section id="eligibility" aria-labelledby="eligibility-heading" data-rule-version="{step.rule_version}"'
        f"{data}{' hidden' if hidden else ''}>"
        f'<h2 id="eligibility-heading">{e(t["heading"])}</h2>'
        f'<div id="eligibility-result" aria-live="polite"{"" if result else " hidden"}>{result}</div>'
        f'<p id="eligibility-error" role="alert"{"" if error else " hidden"}>{e(error)}</p>'
        f'<p class="hint">{e(t["intro"])}</p>'
        f'<form id="eligibility-form" method="post" action="/e/{e(event.event_id)}/eligibility">'
        + "".join(questions)
        + f'<button type="submit" id="eligibility-check">{e(button)}</button></form>'
        f"</section>"
        f'<script type="application/json" id="eligibility-strings">{strings}</script>'
        '<link rel="stylesheet" href="/static/eligibility.css"><script src="/static/eligibility.js"></script>'
    )


async def fragment(request: web.Request, event: Event, language: str, state: str) -> str:
    """The step for the queue page (empty when the event has no published rule set; hidden while the
    visitor holds no place). A decision named by the visitor's cookie is read back from the API."""
    if state in NEVER_IN:
        return ""
    step = await request.app[STEPS].step(request.app[ROOM].pool, event.event_id)
    if step is None:
        return ""
    decision = None
    ticket = request.cookies.get(cookie_name(event.event_id))
    decision_id = request.cookies.get(decision_cookie(event.event_id), "")
    if ticket and _is_uuid(decision_id) and state in SHOWN_IN:
        path = f"/api/v1/events/{event.event_id}/eligibility/decisions/{decision_id}"
        try:
            status, _, body, _ = await _forward(request, "GET", path, ticket, None, language)
        except Refused:
            status, body = 503, b""
        if status == 200:
            decision = json.loads(body)
    return render_step(event, step, language, decision=decision, hidden=state not in SHOWN_IN)


# --- forwarding to the booking API ---------------------------------------------------------------------


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def _forward(
    request: web.Request, method: str, path: str, ticket: str, body: bytes | None, language: str
) -> tuple[int, str, bytes, str | None]:
    """One request to the booking API on the visitor's behalf: (status, content type, body, Retry-After)."""
    settings = request.app[SETTINGS]
    forwarded = ", ".join(p for p in (request.headers.get("X-Forwarded-For"), request.remote) if p)
    headers = {"Authorization": f"Bearer {ticket}", "Accept-Language": language, "Accept": "application/json"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    device = request.headers.get("X-Device-Key")
    if device:
        headers["X-Device-Key"] = device
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        async with request.app[API_SESSION].request(
            method, f"{settings.api_url}{path}", data=body, headers=headers
        ) as resp:
            return resp.status, resp.content_type, await resp.read(), resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError):
        raise Overloaded("the booking service cannot be reached; retry shortly") from None


def _event(request: web.Request) -> Event:
    return request.app[ROOM].event(request.match_info["event_id"])


def _keep_decision(response: web.StreamResponse, request: web.Request, event_id: str, body: bytes) -> None:
    decision_id = str(json.loads(body).get("decision_id", ""))
    if _is_uuid(decision_id):
        settings = request.app[SETTINGS]
        response.set_cookie(decision_cookie(event_id), decision_id, max_age=settings.ticket_max_age_s, path="/",
                            httponly=True, samesite="Lax", secure=settings.edge_url.startswith("https://"))  # fmt: skip


async def evaluate(request: web.Request) -> web.Response:
    """``POST /api/v1/events/{event_id}/eligibility:evaluate`` on the edge: the API's evaluate, with
    the ticket cookie as the credential (the body passes through unread)."""
    event = _event(request)
    ticket = presented_ticket(request, event.event_id)
    if ticket is None:
        raise TicketInvalid("join the queue first: the eligibility check needs your queue ticket")
    language = pick_language(request.headers.get("Accept-Language"))
    path = f"/api/v1/events/{event.event_id}/eligibility:evaluate"
    status, content_type, body, retry_after = await _forward(request, "POST", path, ticket, await request.read(),
                                                             language)  # fmt: skip
    headers = {"Cache-Control": "no-store"}
    if retry_after:
        headers["Retry-After"] = retry_after
    response = web.Response(body=body, status=status, content_type=content_type, headers=headers)
    if status == 200:
        _keep_decision(response, request, event.event_id, body)
    return response


def _problem_text(body: bytes, language: str) -> str:
    try:
        code = str(json.loads(body).get("code", ""))
    except ValueError:
        code = ""
    t = STRINGS[language]
    known = {Code.IDENTITY_REQUIRED, Code.RATE_LIMITED, Code.VALIDATION_ERROR, Code.TICKET_INVALID}
    return t[f"error_{code}"] if code in known else t["error_generic"]


async def evaluate_form(request: web.Request) -> web.StreamResponse:
    """``POST /e/{event_id}/eligibility``: the step without JavaScript. Answers 303 back to the page,
    which shows the decision; a refusal renders the page again with what to do."""
    from waitingroom import page  # the page imports this module

    event = _event(request)
    language = pick_language(request.headers.get("Accept-Language"))
    room = request.app[ROOM]
    ticket = request.cookies.get(cookie_name(event.event_id))
    step = await request.app[STEPS].step(room.pool, event.event_id)
    if ticket is None or step is None:
        raise web.HTTPSeeOther(f"/e/{event.event_id}")  # nothing to check: the page says what to do
    form = await read_form(request)
    body = evaluate_body(form, step)
    path = f"/api/v1/events/{event.event_id}/eligibility:evaluate"
    try:
        status, _, answer, _ = await _forward(request, "POST", path, ticket, json.dumps(body).encode(), language)
    except Refused:
        status, answer = 503, b"{}"
    if status == 200:
        redirect = web.HTTPSeeOther(f"/e/{event.event_id}")
        _keep_decision(redirect, request, event.event_id, answer)
        raise redirect
    values = {**body["attributes"], "birth_date": body["person"]["birth_date"]}  # never the id number
    step_html = render_step(event, step, language, error=_problem_text(answer, language), values=values)
    try:
        queue_status = await room.status(event.event_id, ticket)
    except Refused:
        queue_status = None
    view = page.PageView(status=queue_status, eligibility=step_html)
    text = page.render_queue_page(event, language, view, room.clock(), room.settings)
    return web.Response(text=text, status=status if 400 <= status < 600 else 502, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Content-Language": language})  # fmt: skip
