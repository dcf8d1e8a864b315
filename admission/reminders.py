"""The reminder opt-out link (issue 9): ``/api/v1/reminders/unsubscribe/{token}``.

One address for both readers of a reminder email. A mail client's one-click ``POST`` (RFC 8058,
the ``List-Unsubscribe`` header) opts out and gets ``{"reminders": "off"}``. A person who clicks the
link in the body ``GET``s a page (en/es) that asks "Stop reminders for your appointment?" with a
button; its form ``POST``s to the same address, and a browser (``Accept: text/html``) gets a
confirmation page. ``GET`` never opts out: mail scanners and link previews fetch links unasked.

The link's signed token (its own salt, no expiry) is the credential and names the appointment; the
person of that appointment gets no more reminders (:func:`shared.notifications.opt_out_of_appointment`);
confirmations, changes and cancellations still go.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from admission.keys import CODEC, POOL
from admission.pages import STRINGS, e, language_switch, page, pick_language
from shared import notifications
from shared.errors import NotFound, TokenExpired, TokenInvalid
from shared.http import json_response, read_form


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _appointment(request: web.Request) -> uuid.UUID:
    """The appointment the path's token names; TokenInvalid otherwise."""
    return uuid.UUID(request.app[CODEC].read_unsubscribe(request.match_info["token"]))


def _notice(language: str, words: str, status: int) -> web.Response:
    t = STRINGS[language]
    body = f'<h1>{e(t["unsub_title"])}</h1>\n<p class="notice" role="status">{e(words)}</p>'
    return page(language, t["unsub_title"], body, status=status)


async def ask(request: web.Request) -> web.Response:
    """``GET``: the question and its button. Changes nothing (a prefetch must not opt anyone out)."""
    language = pick_language(request)
    t = STRINGS[language]
    try:
        _appointment(request)
    except (TokenInvalid, TokenExpired):
        return _notice(language, t["unsub_invalid"], 401)
    path = request.path  # the link itself: the form posts back to it
    body = "\n".join([
        language_switch(language, path, t["language"]),
        f"<h1>{e(t['unsub_question'])}</h1>",
        f"<p>{e(t['unsub_intro'])}</p>",
        f'<form method="post" action="{e(path)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<input type="hidden" name="lang" value="{language}">'
        f'<button type="submit">{e(t["unsub_button"])}</button></form>',
    ])  # fmt: skip
    return page(language, t["unsub_title"], body)


async def unsubscribe(request: web.Request) -> web.Response:
    """``POST``: the person of the link's appointment gets no more reminders. Safe to repeat.
    JSON for a one-click client; a page for a browser."""
    if not _wants_html(request):
        appointment_id = _appointment(request)
        if not await _opt_out(request, appointment_id):
            raise NotFound("no such appointment")
        return json_response({"reminders": "off"})
    form = await read_form(request)
    language = pick_language(request, str(form.get("lang", "")))
    t = STRINGS[language]
    try:
        appointment_id = _appointment(request)
    except (TokenInvalid, TokenExpired):
        return _notice(language, t["unsub_invalid"], 401)
    if not await _opt_out(request, appointment_id):
        return _notice(language, t["unsub_invalid"], 404)
    return _notice(language, t["unsub_done"], 200)


async def _opt_out(request: web.Request, appointment_id: uuid.UUID) -> bool:
    async with request.app[POOL].acquire() as con, con.transaction():
        return await notifications.opt_out_of_appointment(con, appointment_id)
