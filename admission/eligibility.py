"""Eligibility for the person: evaluate while waiting, read the answer again (issue 10).

``POST /api/v1/events/{event_id}/eligibility:evaluate`` takes the visitor's queue ticket (signed by
the edge, verified here offline with the same keys) or admission token, so the queue page can ask
while the visitor waits. Each ticket or admission may evaluate ``eligibility_limit_burst`` times at
once, refilled at ``eligibility_limit_per_min`` (429 ``rate_limited``). Client-side checks are never
trusted: the published rule set decides here, and the booking decides again at commit.
``GET /api/v1/events/{event_id}/eligibility/decisions/{decision_id}`` answers the decision in plain
words to the visitor whose credential asked for it (404 to anyone else).

Handlers parse, call one service of :mod:`shared.eligibility`, render. No attribute value, id
number or birth date is logged or counted.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admission.fields import BirthDate
from admission.keys import CODEC, IDENTITIES, METRICS, POOL, RULEBOOK, SETTINGS, THROTTLE, VAULT
from shared import eligibility, seats
from shared.booking import utc_iso
from shared.eligibility import Current, Decision, Inputs
from shared.errors import TicketInvalid, TokenInvalid
from shared.http import bearer, json_response, path_uuid, read_json
from shared.keys import eligibility_bucket_key
from shared.limits import Limit
from shared.rules import Evaluation
from shared.statuses import DecisionOutcome
from shared.tokens import device_hash

EVALUATE_SUFFIX = "/eligibility:evaluate"
DECISIONS_PART = "/eligibility/decisions/"


def is_eligibility_path(path: str) -> bool:
    """Paths whose credential is a ticket or an admission, checked here (not by the token middleware)."""
    return path.startswith("/api/v1/events/") and (path.endswith(EVALUATE_SUFFIX) or DECISIONS_PART in path)


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id_number: str = Field(min_length=1, max_length=64)
    birth_date: BirthDate


class EvaluateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: PersonIn
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=50)
    # An OpenID Connect ID token of the event's identity provider (shared/identity.py), for verified attributes.
    id_token: str | None = Field(default=None, max_length=16_384)


def language_of(request: web.Request) -> str:
    """``es`` when the caller prefers Spanish (Accept-Language), else ``en``."""
    accept = request.headers.get("Accept-Language", "")
    return "es" if accept.strip().lower().startswith("es") else "en"


def visitor_of(request: web.Request, event_id: str) -> str:
    """The visitor id of the queue ticket or admission token of this event in the Authorization
    header: 401 ``ticket_invalid`` for neither, ``token_expired`` for a lapsed admission."""
    token = bearer(request)
    if token is None:
        raise TicketInvalid("a queue ticket or admission token is required (Authorization: Bearer ...)")
    codec = request.app[CODEC]
    device = request.headers.get("X-Device-Key")
    try:
        ticket = codec.read_ticket(token)
    except TicketInvalid:
        ticket = None
    if ticket is None:
        try:
            admission = codec.verify_admission(token)
        except TokenInvalid:
            raise TicketInvalid("the queue ticket or admission token is missing or invalid") from None
        if admission.event_id != event_id or not admission.held_by(device):
            raise TokenInvalid("this admission is not valid here")
        return admission.visitor_id
    too_old = time.time() - ticket.issued_at > request.app[SETTINGS].ticket_max_age_s
    held = ticket.device is None or (device is not None and device_hash(device) == ticket.device)
    if ticket.event_id != event_id or too_old or not held:
        raise TicketInvalid("this queue ticket is not valid here")
    return ticket.visitor_id


def _verified_attributes(current: Current) -> list[str]:
    spec = None if current.compiled is None else current.compiled.spec
    return [] if spec is None else [n for n, a in spec.attributes.items() if a.source == "verified"]


def _count(
    request: web.Request,
    event_id: str,
    version: int,
    evaluation: Evaluation,
    current: Current,
    shadow: Evaluation | None,
) -> None:
    metrics = request.app[METRICS]
    v = str(version)
    metrics.eligibility_decisions.labels(event_id, v, evaluation.outcome).inc()
    for reason in evaluation.reasons:
        metrics.eligibility_reasons.labels(event_id, v, reason).inc()
    if evaluation.errors:
        metrics.eligibility_errors.labels(event_id, v).inc(evaluation.errors)
    if shadow is not None and current.shadow is not None:
        flip = (
            "agree"
            if shadow.eligible == evaluation.eligible
            else ("to_ineligible" if evaluation.eligible else "to_eligible")
        )
        metrics.eligibility_shadow.labels(event_id, str(current.shadow), flip).inc()


async def limit_evaluations(request: web.Request, visitor: str) -> None:
    """429 ``rate_limited`` past the visitor's evaluations (per ticket or admission)."""
    settings = request.app[SETTINGS]
    limit = Limit(settings.eligibility_limit_per_min, settings.eligibility_limit_burst)
    if limit.enabled:
        await request.app[THROTTLE].check_bucket(
            eligibility_bucket_key(visitor), limit, "too many eligibility checks from this ticket; retry later"
        )


async def evaluate_for(request: web.Request, event_id: str, visitor: str, body: EvaluateIn) -> tuple[Decision, Current]:
    """Decide ``body`` for ``visitor`` (the visitor id of a queue ticket or an admission) under the
    version published now, store the decision (:func:`shared.eligibility.decide`) and count it. The
    evaluate endpoint and the waitlist claim page both call this. 404 without a published version,
    400 naming an attribute that does not fit, 403 ``identity_required`` without a valid ID token."""
    current = await request.app[RULEBOOK].current(request.app[POOL], event_id)
    # Verified attributes come from the ID token of the event's identity provider, never the form; an
    # event with a provider needs a valid token at its level from everyone (shared/identity.py).
    schema = {} if current.compiled is None else current.compiled.spec.attributes
    verified = await request.app[IDENTITIES].verified(request.app[POOL], event_id, schema, body.id_token,
                                                      seats.utcnow())  # fmt: skip
    attributes = {**{n: v for n, v in body.attributes.items() if n not in _verified_attributes(current)}, **verified}
    async with request.app[POOL].acquire() as con, con.transaction():
        decision = await eligibility.decide(
            con, request.app[VAULT], current, event_id, id_number=body.person.id_number,
            inputs=Inputs(body.person.birth_date, attributes), credential=visitor, now=seats.utcnow(),
            ttl_s=request.app[SETTINGS].eligibility_decision_ttl_s,
        )  # fmt: skip
    _count(request, event_id, decision.rule_version, decision.evaluation, current, decision.shadow)
    return decision, current


def decision_json(decision: Decision, current: Current, language: str) -> dict[str, Any]:
    """The evaluate answer's body."""
    return {
        "decision_id": str(decision.decision_id),
        "eligible": decision.evaluation.eligible,
        "rule_version": decision.rule_version,
        "reasons": eligibility.reasons_json(current.compiled, decision.evaluation.reasons, language),
        "valid_until": utc_iso(decision.valid_until),
    }


async def evaluate(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    visitor = visitor_of(request, event_id)
    await limit_evaluations(request, visitor)
    body = await read_json(request, EvaluateIn)
    decision, current = await evaluate_for(request, event_id, visitor, body)
    return json_response(decision_json(decision, current, language_of(request)), headers={"Cache-Control": "no-store"})


_SUMMARY = {
    ("en", True): "You are eligible. You can book an appointment.",
    ("en", False): "You are not eligible for this program, for the reasons below.",
    ("es", True): "Es elegible. Puede reservar una cita.",
    ("es", False): "No es elegible para este programa, por los motivos siguientes.",
}
_NEXT = {
    ("en", True): "Book before this answer expires; the booking checks the rules again.",
    ("en", False): "If an answer you gave was wrong, check again with the right one. If you think the rules "
    "were applied wrongly, contact support with this decision's id.",
    ("es", True): "Reserve antes de que caduque esta respuesta; la reserva vuelve a comprobar las reglas.",
    ("es", False): "Si alguna respuesta era incorrecta, vuelva a comprobarlo con la correcta. Si cree que las "
    "reglas se aplicaron mal, contacte con soporte indicando el identificador de esta decisión.",
}


async def get_decision(request: web.Request) -> web.Response:
    """The visitor's own decision in plain words (never the answers they gave)."""
    event_id = request.match_info["event_id"]
    visitor = visitor_of(request, event_id)
    decision_id = path_uuid(request, "decision_id", "decision")
    language = language_of(request)
    async with request.app[POOL].acquire() as con:
        row = await eligibility.decision_for(con, event_id, decision_id, visitor)
        compiled = await eligibility.compiled_version(con, event_id, row["rule_version"])
    eligible = row["outcome"] == DecisionOutcome.ELIGIBLE
    return json_response(
        {
            "decision_id": str(row["decision_id"]),
            "eligible": eligible,
            "rule_version": row["rule_version"],
            "summary": _SUMMARY[language, eligible],
            "reasons": eligibility.reasons_json(compiled, list(row["reasons"]), language),
            "next_steps": _NEXT[language, eligible],
            "valid_until": utc_iso(row["valid_until"]),
            "decided_at": utc_iso(row["created_at"]),
        },
        headers={"Cache-Control": "no-store"},
    )
