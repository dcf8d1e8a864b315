"""The manage page: a person's way back to their appointment, from the link in their confirmation.

``GET /manage?c=<credential>`` (the ``manage_url`` of :mod:`shared.manage`) trades the credential for
an HttpOnly, SameSite=Lax cookie scoped to ``/manage/{appointment_id}`` and redirects (303) there,
so the credential leaves the address bar, the history and any ``Referer`` (every page also says
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``). The page shows what, where and
when, and offers Cancel, Reschedule (another free time of the same type at the same site) and Add to
calendar, all as plain forms: no JavaScript needed. Every POST carries a per-session token (an HMAC
of the credential the cookie holds) besides the SameSite cookie. ``GET /manage`` without a
credential, and ``POST /manage``, are the "Lost your link?" form; ``POST /api/v1/manage-links`` is
the same for apps. Handlers parse, call one service (:mod:`shared.appointments`,
:mod:`shared.manage`), render.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admission import queries
from admission.auth import link_access
from admission.availability import bookable, remaining
from admission.calendar import calendar_file
from admission.changes import cancel_as
from admission.fields import EmailAddress
from admission.keys import AVAILABILITY, METRICS, POOL, SETTINGS, THROTTLE, VAULT, WAITLIST
from admission.pages import (
    STRINGS,
    duration_words,
    e,
    facts,
    form_token,
    language_switch,
    local_day,
    local_time,
    page,
    pick_language,
    redirect,
    refusal_text,
)
from shared import appointments, seats
from shared.errors import Ineligible, Refused, TokenExpired, TokenInvalid, ValidationFailed
from shared.http import json_response, read_form, read_json, validate
from shared.manage import CREDENTIAL_PARAM, MANAGE_PATH, manage_credential, resend_link, verify_manage_credential
from shared.settings import Settings
from shared.statuses import AppointmentStatus

COOKIE = "sg_manage"
CSRF_SALT = b"surgegate.manage-csrf.v1"
MAX_CHOICES = 120  # free times offered on the reschedule page
ACCEPTED = {
    "status": "accepted",
    "detail": "If these details match an active appointment, a new manage link is on its way to its email address.",
}


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    event_id: str = Field(min_length=1, max_length=64)
    id_number: str = Field(min_length=1, max_length=64)
    email: EmailAddress


# --- the session: the credential in its cookie, and the forms' token ------------------------------


def csrf_token(settings: Settings, credential: str) -> str:
    """The forms' per-session token: unguessable without the cookie's credential."""
    return form_token(settings, CSRF_SALT, credential)


def _page_path(appointment_id: uuid.UUID) -> str:
    return f"{MANAGE_PATH}/{appointment_id}"


def _set_cookie(request: web.Request, response: web.StreamResponse, appointment_id: uuid.UUID, credential: str) -> None:
    settings = request.app[SETTINGS]
    response.set_cookie(
        COOKIE, credential, path=_page_path(appointment_id), httponly=True, samesite="Lax",
        secure=request.secure or settings.api_url.startswith("https://"),
    )  # fmt: skip


class NoSession(Exception):
    """The request holds no valid credential for the page's appointment; ``key`` says which words to show."""

    def __init__(self, key: str, status: int) -> None:
        super().__init__(key)
        self.key = key
        self.status = status


def _session(request: web.Request) -> tuple[uuid.UUID, str]:
    """The page's appointment and the credential its cookie holds; NoSession otherwise."""
    try:
        appointment_id = uuid.UUID(request.match_info["appointment_id"])
    except ValueError:
        raise NoSession("no_session", 404) from None
    credential = request.cookies.get(COOKIE)
    if not credential:
        raise NoSession("no_session", 401)
    try:
        named = verify_manage_credential(request.app[SETTINGS], credential, seats.utcnow())
    except TokenExpired:
        raise NoSession("link_expired", 401) from None
    except TokenInvalid:
        raise NoSession("link_invalid", 401) from None
    if named != appointment_id:
        raise NoSession("no_session", 401)
    return appointment_id, credential


async def _form_session(request: web.Request) -> tuple[uuid.UUID, str, Any, str]:
    """A POST's session, form and language; NoSession unless its token matches the cookie's."""
    appointment_id, credential = _session(request)
    form = await read_form(request)
    language = pick_language(request, str(form.get("lang", "")))
    token = str(form.get("csrf", ""))
    if not hmac.compare_digest(token.encode(), csrf_token(request.app[SETTINGS], credential).encode()):
        raise NoSession("form_expired", 403)
    return appointment_id, credential, form, language


def _no_session_page(request: web.Request, failure: NoSession) -> web.Response:
    language = pick_language(request)
    return _lost_page(request, language, STRINGS[language][failure.key], status=failure.status)


# --- rendering ---------------------------------------------------------------------------------------


def _hidden(csrf: str, language: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}"><input type="hidden" name="lang" value="{language}">'


def _cancel_section(row: Any, csrf: str, language: str, now: datetime) -> str:
    t = STRINGS[language]
    cutoff = int(row["cancel_cutoff_minutes"])
    warning = ""
    if cutoff > 0:
        words = duration_words(cutoff, language)
        late = appointments.cancel_is_late(row["starts_at"], cutoff, now)
        warning = f'<p class="warning">{e(t["cancel_late_now" if late else "cancel_policy"].format(cutoff=words))}</p>'
    action = f"{_page_path(row['appointment_id'])}/cancel"
    return (
        f'<section aria-labelledby="cancel-h"><h2 id="cancel-h">{e(t["cancel_heading"])}</h2>{warning}'
        f'<form method="post" action="{action}">{_hidden(csrf, language)}'
        f'<button type="submit" class="danger">{e(t["cancel_button"])}</button></form></section>'
    )


def _manage_html(row: Any, csrf: str, language: str, now: datetime, done: str | None, error: str = "") -> str:
    t = STRINGS[language]
    path = _page_path(row["appointment_id"])
    parts = [language_switch(language, path, t["language"]), f'<h1 tabindex="-1">{e(t["title"])}</h1>']
    if done in ("cancelled", "rescheduled"):
        parts.append(f'<p class="notice" role="status">{e(t["done_" + done])}</p>')
    if error:
        parts.append(f'<p class="error" role="alert">{e(t["error"].format(detail=error))}</p>')
    status = row["status"]
    if status != AppointmentStatus.CONFIRMED:
        parts.append(f'<p class="notice">{e(t.get("status_" + status, status))}</p>')
    parts.append(facts(row, language))
    if status == AppointmentStatus.CONFIRMED and now < row["starts_at"]:
        parts.append(f'<a class="button" href="{path}/calendar.ics">{e(t["calendar"])}</a>')
        parts.append(
            f'<section aria-labelledby="move-h"><h2 id="move-h">{e(t["reschedule_heading"])}</h2>'
            f'<a class="button" href="{path}/reschedule?lang={language}">{e(t["reschedule_link"])}</a></section>'
        )
        parts.append(_cancel_section(row, csrf, language, now))
    return "\n".join(parts)


def _choices_html(row: Any, choices: list[dict[str, Any]], language: str) -> str:
    """Free times grouped by the site's local day, as radio buttons (arrow keys move between them)."""
    groups: list[str] = []
    day = None
    for i, slot in enumerate(choices):
        this_day = local_day(slot["starts_at"], row["timezone"], language)
        if this_day != day:
            if day is not None:
                groups.append("</div>")
            groups.append(f'<div role="group" aria-label="{e(this_day)}"><h3>{e(this_day)}</h3>')
            day = this_day
        when = local_time(slot["starts_at"], row["timezone"])
        required = " required" if i == 0 else ""
        groups.append(
            f'<label><input type="radio" name="slot_id" value="{slot["slot_id"]}"{required}> '
            f"<span>{e(when)}</span></label>"
        )
    if day is not None:
        groups.append("</div>")
    return "".join(groups)


def _reschedule_html(row: Any, choices: list[dict[str, Any]], csrf: str, language: str, error: str = "") -> str:
    t = STRINGS[language]
    path = _page_path(row["appointment_id"])
    parts = [
        language_switch(language, f"{path}/reschedule", t["language"]),
        f"<h1>{e(t['reschedule_heading'])}</h1>",
    ]
    if error:
        parts.append(f'<p class="error" role="alert">{e(t["error"].format(detail=error))}</p>')
    parts.append(facts(row, language))
    what = row["type_name"] or row["type_id"] or "—"
    if not choices:
        parts.append(f'<p class="notice">{e(t["reschedule_none"])}</p>')
    else:
        parts.append(f"<p>{e(t['reschedule_intro'].format(site=row['site_name'], type=what))}</p>")
        parts.append(
            f'<form method="post" action="{path}/reschedule">{_hidden(csrf, language)}'
            f"<fieldset><legend>{e(t['when'])}</legend>{_choices_html(row, choices, language)}</fieldset>"
            f'<button type="submit">{e(t["reschedule_button"])}</button></form>'
        )
    parts.append(f'<a class="button" href="{path}?lang={language}">{e(t["back"])}</a>')
    return "\n".join(parts)


def _lost_form(language: str) -> str:
    t = STRINGS[language]
    return (
        f'<section aria-labelledby="lost-h"><h2 id="lost-h">{e(t["lost_heading"])}</h2><p>{e(t["lost_intro"])}</p>'
        f'<form method="post" action="{MANAGE_PATH}"><input type="hidden" name="lang" value="{language}">'
        f'<label for="event_id">{e(t["event"])}</label>'
        '<input type="text" id="event_id" name="event_id" required maxlength="64" autocomplete="off">'
        f'<label for="id_number">{e(t["id_number"])}</label>'
        '<input type="text" id="id_number" name="id_number" required maxlength="64" autocomplete="off">'
        f'<label for="email">{e(t["email"])}</label>'
        '<input type="email" id="email" name="email" required maxlength="254" autocomplete="email">'
        f'<button type="submit">{e(t["send_link"])}</button></form></section>'
    )


def _lost_page(
    request: web.Request, language: str, notice: str = "", *, status: int = 200, retry_after: int | None = None
) -> web.Response:
    t = STRINGS[language]
    parts = [language_switch(language, MANAGE_PATH, t["language"]), f"<h1>{e(t['title'])}</h1>"]
    if notice:
        parts.append(f'<p class="notice" role="status">{e(notice)}</p>')
    parts.append(_lost_form(language))
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return page(language, t["title"], "\n".join(parts), status=status, headers=headers)


# --- handlers ----------------------------------------------------------------------------------------


async def open_link(request: web.Request) -> web.Response:
    """``GET /manage``: with ``?c=<credential>``, trade it for the cookie and redirect to the clean
    page; without, the "Lost your link?" form."""
    language = pick_language(request)
    credential = request.query.get(CREDENTIAL_PARAM)
    if credential is None:
        return _lost_page(request, language)
    try:
        appointment_id = verify_manage_credential(request.app[SETTINGS], credential, seats.utcnow())
    except TokenExpired:
        return _lost_page(request, language, STRINGS[language]["link_expired"], status=401)
    except TokenInvalid:
        return _lost_page(request, language, STRINGS[language]["link_invalid"], status=401)
    chosen = f"?lang={language}" if "lang" in request.query else ""
    response = redirect(f"{_page_path(appointment_id)}{chosen}")
    _set_cookie(request, response, appointment_id, credential)
    return response


async def _appointment_row(request: web.Request, appointment_id: uuid.UUID) -> Any:
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(queries.MANAGED_APPOINTMENT, appointment_id)
    if row is None:  # erased since the link was made
        raise NoSession("no_session", 404)
    return row


async def show(request: web.Request) -> web.Response:
    """``GET /manage/{appointment_id}``: the appointment and what can be done with it."""
    try:
        appointment_id, credential = _session(request)
        row = await _appointment_row(request, appointment_id)
    except NoSession as failure:
        return _no_session_page(request, failure)
    language = pick_language(request)
    body = _manage_html(row, csrf_token(request.app[SETTINGS], credential), language, seats.utcnow(),
                        request.query.get("done"))  # fmt: skip
    return page(language, STRINGS[language]["title"], body)


async def cancel(request: web.Request) -> web.Response:
    """``POST /manage/{appointment_id}/cancel``: cancel, then back to the page (303)."""
    try:
        appointment_id, credential, _form, language = await _form_session(request)
    except NoSession as failure:
        return _no_session_page(request, failure)
    try:
        await cancel_as(request, link_access(appointment_id))
    except Refused as refused:
        row = await _appointment_row(request, appointment_id)
        body = _manage_html(row, csrf_token(request.app[SETTINGS], credential), language, seats.utcnow(), None,
                            refusal_text(language, refused.code, refused.detail))  # fmt: skip
        return page(language, STRINGS[language]["title"], body, status=refused.status)
    return redirect(f"{_page_path(appointment_id)}?done=cancelled&lang={language}")


async def calendar(request: web.Request) -> web.StreamResponse:
    """``GET /manage/{appointment_id}/calendar.ics``: the page's "Add to calendar" (the cookie is the credential)."""
    try:
        appointment_id, _ = _session(request)
    except NoSession as failure:
        return _no_session_page(request, failure)
    return await calendar_file(request, appointment_id, None)


async def _choices(request: web.Request, row: Any) -> list[dict[str, Any]]:
    """Other free times of the appointment's type at its site, within the type's booking window."""
    now = seats.utcnow()
    found = []
    for slot in await request.app[AVAILABILITY].site_slots(request.app[POOL], row["site_id"], now):
        if slot["type_id"] != row["type_id"] or slot["slot_id"] == row["slot_id"]:
            continue
        if remaining(slot) > 0 and bookable(slot, now):
            found.append(slot)
            if len(found) >= MAX_CHOICES:
                break
    return found


async def reschedule_form(request: web.Request) -> web.Response:
    """``GET /manage/{appointment_id}/reschedule``: the other free times, as a form."""
    try:
        appointment_id, credential = _session(request)
        row = await _appointment_row(request, appointment_id)
    except NoSession as failure:
        return _no_session_page(request, failure)
    language = pick_language(request)
    if row["status"] != AppointmentStatus.CONFIRMED:
        return redirect(f"{_page_path(appointment_id)}?lang={language}")
    csrf = csrf_token(request.app[SETTINGS], credential)
    body = _reschedule_html(row, await _choices(request, row), csrf, language)
    return page(language, STRINGS[language]["reschedule_heading"], body)


async def reschedule(request: web.Request) -> web.Response:
    """``POST /manage/{appointment_id}/reschedule`` ``slot_id=``: move, renew the cookie, back to the page."""
    try:
        appointment_id, credential, form, language = await _form_session(request)
    except NoSession as failure:
        return _no_session_page(request, failure)
    try:
        slot_id = uuid.UUID(str(form.get("slot_id", "")))
    except ValueError:
        slot_id = None
    try:
        if slot_id is None:
            raise ValidationFailed("choose a time")
        moved = await _move(request, appointment_id, slot_id, language)
    except Refused as refused:
        row = await _appointment_row(request, appointment_id)
        csrf = csrf_token(request.app[SETTINGS], credential)
        body = _reschedule_html(
            row,
            await _choices(request, row),
            csrf,
            language,
            _refusal(language, refused),
        )
        return page(language, STRINGS[language]["reschedule_heading"], body, status=refused.status)
    response = redirect(f"{_page_path(appointment_id)}?done=rescheduled&lang={language}")
    # Valid until the new end: a later time must not lock the person out of their own page.
    _set_cookie(request, response, appointment_id,
                manage_credential(request.app[SETTINGS], appointment_id, moved.slot.ends_at))  # fmt: skip
    return response


def _refusal(language: str, refused: Refused) -> str:
    """The refusal in words; an ineligible move also says each reason (the rules' own texts)."""
    text = refusal_text(language, refused.code, refused.detail)
    if isinstance(refused, Ineligible) and refused.reasons:
        text += " " + " ".join(r["text"] for r in refused.reasons)
    return text


async def _move(
    request: web.Request, appointment_id: uuid.UUID, slot_id: uuid.UUID, language: str
) -> appointments.Rescheduled:
    metrics = request.app[METRICS]
    try:
        async with request.app[POOL].acquire() as con, con.transaction():
            moved = await appointments.reschedule_by_link(
                con, appointment_id, slot_id, now=seats.utcnow(), waitlist=request.app[WAITLIST], language=language
            )
    except Refused:
        metrics.reschedules.labels("-", "refused").inc()
        raise
    request.app[AVAILABILITY].changed(*moved.sites)
    metrics.reschedules.labels(moved.event_id, "rescheduled").inc()
    return moved


async def _resend(request: web.Request, body: LinkIn) -> None:
    """Rate-limit the client, then match and (on a match) queue the link; says nothing of which."""
    await request.app[THROTTLE].check_manage_links(
        peer=request.remote, forwarded_for=request.headers.get("X-Forwarded-For")
    )
    async with request.app[POOL].acquire() as con, con.transaction():
        await resend_link(
            con, request.app[SETTINGS], request.app[VAULT], event_id=body.event_id, id_number=body.id_number,
            email=body.email,
        )  # fmt: skip


async def request_link(request: web.Request) -> web.Response:
    """``POST /api/v1/manage-links``: always 202 with the same body (no way to learn whether anyone booked)."""
    body = await read_json(request, LinkIn)
    await _resend(request, body)
    return json_response(ACCEPTED, status=202)


async def request_link_form(request: web.Request) -> web.Response:
    """``POST /manage``: the "Lost your link?" form; the same answer whatever matched."""
    form = await read_form(request)
    language = pick_language(request, str(form.get("lang", "")))
    fields = {k: str(form.get(k, "")) for k in ("event_id", "id_number", "email")}
    try:
        body = validate(LinkIn, fields)
        await _resend(request, body)
    except Refused as refused:  # a field the form cannot hold, or too many requests from this network
        detail = STRINGS[language]["error"].format(detail=refusal_text(language, refused.code, refused.detail))
        return _lost_page(request, language, detail, status=refused.status, retry_after=refused.retry_after)
    return _lost_page(request, language, STRINGS[language]["lost_sent"])
