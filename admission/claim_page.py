"""The waitlist claim page: the link in a waitlist offer opens a page, not only an API call.

``GET /claim?c=<claim token>`` trades the signed claim token for an HttpOnly, SameSite=Lax cookie
scoped to ``/claim`` and redirects (303) to ``/claim``, which shows the offer (what, where, when, until
when) with a Claim button. ``POST /claim`` claims it (:meth:`shared.waitlist.Waitlist.claim`: a hold on
the seat and a fresh admission for the entry's person) and shows the booking form; ``POST /claim/book``
claims again (for the winner that answers the same hold and admission) and books the held seat
through the normal booking path (:func:`admission.appointments.book_as`), then sends the person to
their new appointment's manage link. No JavaScript; every form carries a token bound to the cookie.

When the event has a published eligibility rule set, the booking form carries its questions too
(:mod:`shared.eligibility_form`, as the queue page asks them): ``POST /claim/book`` first decides
with the claim's admission as the credential (:func:`admission.eligibility.evaluate_for`, the
evaluate endpoint's service, its per-admission limit included), shows the reasons in plain words
when the answer is no (403, the place stays held), and books with the decision's id when it is yes;
the booking checks the decision again at commit, as every booking does.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Any

from aiohttp import web

from admission import queries
from admission.appointments import BookingIn, PersonIn, book_as, request_digest, stored_answer
from admission.eligibility import EvaluateIn, decision_json, evaluate_for, limit_evaluations
from admission.keys import AVAILABILITY, CODEC, IDENTITIES, METRICS, POOL, RULEBOOK, SETTINGS, WAITLIST
from admission.pages import (
    STRINGS,
    e,
    facts,
    form_token,
    language_switch,
    local_when,
    page,
    pick_language,
    redirect,
    refusal_text,
)
from shared import eligibility_form, seats
from shared.eligibility_form import Step, evaluate_body, render_decision
from shared.errors import Refused, TokenExpired, TokenInvalid
from shared.http import read_form, validate
from shared.settings import Settings
from shared.statuses import Language
from shared.tokens import Admission
from shared.waitlist import Claimed

CLAIM_PATH = "/claim"
COOKIE = "sg_claim"
CSRF_SALT = b"surgegate.claim-csrf.v1"


def _csrf(settings: Settings, token: str) -> str:
    return form_token(settings, CSRF_SALT, token)


def _invalid(language: str, status: int = 401, detail: str = "") -> web.Response:
    t = STRINGS[language]
    words = detail or t["claim_invalid"]
    body = f'<h1>{e(t["claim_title"])}</h1>\n<p class="notice" role="status">{e(words)}</p>'
    return page(language, t["claim_title"], body, status=status)


def _claim_token(request: web.Request) -> str:
    """The claim token of the cookie, verified (TokenInvalid / TokenExpired otherwise)."""
    token = request.cookies.get(COOKIE, "")
    request.app[CODEC].read_claim(token)
    return token


async def _offer(request: web.Request, token: str) -> Any:
    claims = request.app[CODEC].read_claim(token)
    async with request.app[POOL].acquire() as con:
        return await con.fetchrow(queries.OFFER_FOR_PAGE, uuid.UUID(claims["o"]))


async def open_claim(request: web.Request) -> web.Response:
    """``GET /claim``: with ``?c=``, trade the token for the cookie and redirect; without, the offer."""
    language = pick_language(request)
    given = request.query.get("c")
    if given is not None:
        try:
            request.app[CODEC].read_claim(given)
        except (TokenInvalid, TokenExpired):
            return _invalid(language)
        response = redirect(f"{CLAIM_PATH}?lang={language}" if "lang" in request.query else CLAIM_PATH)
        response.set_cookie(COOKIE, given, path=CLAIM_PATH, httponly=True, samesite="Lax",
                            secure=request.secure or request.app[SETTINGS].api_url.startswith("https://"))  # fmt: skip
        return response
    try:
        token = _claim_token(request)
    except (TokenInvalid, TokenExpired):
        return _invalid(language)
    offer = await _offer(request, token)
    if offer is None:
        return _invalid(language, 404)
    t = STRINGS[language]
    expires = local_when(offer["expires_at"], offer["timezone"], language)
    csrf = _csrf(request.app[SETTINGS], token)
    body = "\n".join([
        language_switch(language, CLAIM_PATH, t["language"]),
        f"<h1>{e(t['claim_title'])}</h1>",
        f"<p>{e(t['claim_intro'].format(expires=expires))}</p>",
        facts(offer, language),
        f'<form method="post" action="{CLAIM_PATH}"><input type="hidden" name="csrf" value="{csrf}">'
        f'<input type="hidden" name="lang" value="{language}">'
        f'<button type="submit">{e(t["claim_button"])}</button></form>',
    ])  # fmt: skip
    return page(language, t["claim_title"], body)


async def _form(request: web.Request) -> tuple[str, Any, str]:
    """The cookie's claim token, the form and its language; TokenInvalid unless the form's token matches."""
    form = await read_form(request)
    language = pick_language(request, str(form.get("lang", "")))
    token = _claim_token(request)
    if not hmac.compare_digest(str(form.get("csrf", "")).encode(), _csrf(request.app[SETTINGS], token).encode()):
        raise TokenInvalid("the form does not belong to this page", reason="csrf")
    return token, form, language


async def _claim(request: web.Request, token: str) -> Claimed:
    async with request.app[POOL].acquire() as con, con.transaction():
        claimed = await request.app[WAITLIST].claim(con, token, seats.utcnow())
    request.app[AVAILABILITY].changed(claimed.slot.site_id)
    request.app[METRICS].waitlist.labels("claimed").inc()
    return claimed


async def _step(request: web.Request, event_id: str) -> Step | None:
    """The published rule set's questions, or None when the event has none (books as before)."""
    current = await request.app[RULEBOOK].current(request.app[POOL], event_id)
    if current.published is None or current.compiled is None:
        return None
    attributes = {n: a.model_dump(mode="json") for n, a in current.compiled.spec.attributes.items()}
    identity = await request.app[IDENTITIES].config(request.app[POOL], event_id) is not None
    return Step(current.published, attributes, identity)


def _eligibility(step: Step, language: str, decision: dict[str, Any] | None, values: dict[str, Any] | None) -> str:
    """The rule set's questions inside the booking form, and a refusal's reasons above them."""
    words, t = eligibility_form.STRINGS[language], STRINGS[language]
    result = f'<div class="notice" role="alert">{render_decision(decision, language)}</div>' if decision else ""
    return (
        f'<fieldset id="eligibility"><legend>{e(words["heading"])}</legend>{result}'
        f'<p class="hint">{e(t["claim_eligibility_intro"])}</p>'
        f"{eligibility_form.questions(step, language, values)}</fieldset>"
    )


def _booking_form(
    request: web.Request,
    token: str,
    claimed: Claimed,
    language: str,
    error: str = "",
    *,
    step: Step | None = None,
    decision: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> str:
    t = STRINGS[language]
    expires = local_when(claimed.expires_at, claimed.slot.timezone, language)
    when = local_when(claimed.slot.starts_at, claimed.slot.timezone, language)
    fields = "".join(
        f'<label for="{name}">{e(t[name])}</label><input type="{kind}" id="{name}" name="{name}" required{extra}>'
        for name, kind, extra in (
            ("id_number", "text", ' maxlength="64" autocomplete="off"'),
            ("name", "text", ' maxlength="200" autocomplete="name"'),
            ("email", "email", ' maxlength="254" autocomplete="email"'),
            ("birth_date", "date", ' autocomplete="bday"'),
        )
    )
    if step is not None:
        fields += _eligibility(step, language, decision, values)
    error_html = f'<p class="error" role="alert">{e(t["error"].format(detail=error))}</p>' if error else ""
    return (
        f'<h1>{e(t["claim_title"])}</h1>{error_html}<p class="notice" role="status">'
        f"{e(t['claim_held'].format(expires=expires))}</p><p><strong>{e(when)}</strong></p>"
        f'<form method="post" action="{CLAIM_PATH}/book"><input type="hidden" name="csrf" '
        f'value="{_csrf(request.app[SETTINGS], token)}"><input type="hidden" name="lang" value="{language}">'
        f'{fields}<button type="submit">{e(t["book_button"])}</button></form>'
    )


async def claim(request: web.Request) -> web.Response:
    """``POST /claim``: claim the offer (a hold on the seat), then the booking form."""
    try:
        token, _form_data, language = await _form(request)
        claimed = await _claim(request, token)
    except (TokenInvalid, TokenExpired):
        return _invalid(pick_language(request))
    except Refused as refused:
        request.app[METRICS].waitlist.labels("claim_refused").inc()
        said = pick_language(request)
        return _invalid(said, refused.status, refusal_text(said, refused.code, refused.detail))
    step = await _step(request, claimed.event_id)
    html = _booking_form(request, token, claimed, language, step=step)
    return page(language, STRINGS[language]["claim_title"], html)


async def book(request: web.Request) -> web.Response:
    """``POST /claim/book``: book the held seat for the entry's person; on success to the manage link."""
    try:
        token, form, language = await _form(request)
        claimed = await _claim(request, token)  # the winner's repeat: the same hold and admission
    except (TokenInvalid, TokenExpired):
        return _invalid(pick_language(request))
    except Refused as refused:
        said = pick_language(request)
        return _invalid(said, refused.status, refusal_text(said, refused.code, refused.detail))
    step = await _step(request, claimed.event_id)
    person = {k: str(form.get(k, "")) for k in ("id_number", "name", "email", "birth_date")}
    asked = None if step is None else evaluate_body(form, step)
    values = None if asked is None else asked["attributes"]
    try:
        body = BookingIn(hold_id=claimed.hold_id, person=validate(PersonIn, person), language=Language(language))
        admission = request.app[CODEC].verify_admission(claimed.admission_token)
        # One key per hold and details: a double submit is the same attempt, never a second booking;
        # corrected details are a new attempt (the hold stays with the waiting person until it books).
        key = f"claim-page:{claimed.hold_id}:{request_digest(request, body)[:32]}"
        if step is not None and asked is not None:
            decision = await _decide(request, admission, key, asked, language)
            if isinstance(decision, web.Response):  # this request was answered already: the same answer
                return _after_booking(decision, language)
            if not decision["eligible"]:
                html = _booking_form(request, token, claimed, language, step=step, decision=decision, values=values)
                return page(language, STRINGS[language]["claim_title"], html, status=403)
            body = body.model_copy(update={"decision_id": uuid.UUID(decision["decision_id"])})
        answer = await book_as(request, admission, key, body)
    except Refused as refused:
        error = refusal_text(language, refused.code, refused.detail)
        html = _booking_form(request, token, claimed, language, error, step=step, values=values)
        return page(language, STRINGS[language]["claim_title"], html, status=refused.status)
    return _after_booking(answer, language)


async def _decide(
    request: web.Request, admission: Admission, key: str, asked: dict[str, Any], language: str
) -> dict[str, Any] | web.Response:
    """The person's eligibility decision (the evaluate answer's body), with the claim's admission as
    the credential; or, when a booking under ``key`` was made already (a double submit), its answer."""
    repeat = await stored_answer(request, admission, key)
    if repeat is not None:
        return repeat
    await limit_evaluations(request, admission.visitor_id)
    decision, current = await evaluate_for(request, admission.event_id, admission.visitor_id,
                                           validate(EvaluateIn, asked))  # fmt: skip
    return decision_json(decision, current, language)


def _after_booking(answer: web.Response, language: str) -> web.Response:
    """To the new appointment's manage link; still being confirmed: the email will say."""
    if answer.status != 201:
        t = STRINGS[language]
        pending = f'<h1>{e(t["claim_title"])}</h1><p class="notice">{e(t["claim_pending"])}</p>'
        return page(language, t["claim_title"], pending, status=202)
    assert isinstance(answer.body, bytes)
    return redirect(json.loads(answer.body)["manage_url"])
