"""Admission token verification, rate limits and CORS, as middlewares of the booking API.

Every ``/api/v1/*`` request must carry ``Authorization: Bearer <admission token>``. The token is
verified offline (signature under any configured kid, type, expiry); each verification is counted
in ``surgegate_token_verify_total{event,result}`` with ``result`` = ok or the failure reason; each
failure also in :class:`~shared.token_failures.TokenFailureCounter`, which the console reads from
Redis across processes (:func:`token_failed`). On one appointment's own routes
(``/api/v1/appointments/{id}`` and below) an appointment's manage credential (:mod:`shared.manage`)
may stand in for the admission token; :func:`appointment_access` is how every handler there learns
who may act on which appointment. Then
every ``/api/v1/*`` and ``/admin/v1/*`` request is held to the limits of its token and its client
(:mod:`admission.throttle`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from admission.eligibility import is_eligibility_path
from admission.keys import ADMISSION, CODEC, MANAGED, METRICS, SETTINGS, THROTTLE, TOKEN_FAILURES
from shared import seats
from shared.errors import NotFound, TokenExpired, TokenInvalid
from shared.http import Handler, bearer
from shared.manage import verify_manage_credential

# The signed claim link is the credential there (an offer may come long after the admission expired).
CLAIMS_PATH = "/api/v1/waitlist/claims"
# One-click reminder opt-out (RFC 8058): the link's own signed token is the credential.
UNSUBSCRIBE_PREFIX = "/api/v1/reminders/unsubscribe/"
LIMITED_PATHS = ("/api/v1/", "/admin/v1/")
# Lost manage links: anyone may ask (the answer never says whether anything matched).
MANAGE_LINKS_PATH = "/api/v1/manage-links"
# One appointment's own routes, where its manage credential is a credential too.
_APPOINTMENT_ROUTE = re.compile(r"^/api/v1/appointments/[^/]+(/reschedule|/calendar\.ics)?$")

_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Device-Key"
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"


def token_failed(app: web.Application, event_id: str | None, reason: str) -> None:
    """Count one failed token: the metric (``event`` ``-`` when unknown) and the console's counter.
    ``event_id`` only when the token's signature held; never anything of the person."""
    app[METRICS].token_verify.labels(event_id or "-", reason).inc()
    app[TOKEN_FAILURES].count(event_id, reason)


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not path.startswith("/api/v1/") or path in (CLAIMS_PATH, MANAGE_LINKS_PATH) or is_eligibility_path(path):
        # A claim link is its own credential, a lost link needs none; eligibility takes a queue ticket too
        # (admission/eligibility.py).
        return await handler(request)
    if path.startswith(UNSUBSCRIBE_PREFIX):
        return await handler(request)
    token = bearer(request)
    try:
        if token is None:
            raise TokenInvalid("an admission token is required (Authorization: Bearer ...)", reason="missing")
        admission = request.app[CODEC].verify_admission(token)
    except TokenInvalid as exc:
        if exc.reason == "signature" and token is not None and _APPOINTMENT_ROUTE.match(request.path):
            # Not an admission token: perhaps the appointment's manage credential (its own salt).
            managed = _manage_credential(request, token)
            if managed is not None:
                request[MANAGED] = managed
                return await handler(request)
        # The event of an unverified token is unknown and attacker-chosen: never a label.
        token_failed(request.app, None, exc.reason)
        raise
    except TokenExpired as exc:
        token_failed(request.app, exc.event_id, "expired")  # its signature held: the event is ours
        raise
    if not admission.held_by(request.headers.get("X-Device-Key")):
        token_failed(request.app, admission.event_id, "binding")
        raise TokenInvalid(
            "this admission is bound to the device it was issued to: send its X-Device-Key", reason="binding"
        )
    request.app[METRICS].token_verify.labels(admission.event_id, "ok").inc()
    request[ADMISSION] = admission
    return await handler(request)


def _manage_credential(request: web.Request, token: str) -> uuid.UUID | None:
    """The appointment a manage credential names; None if ``token`` is none; TokenExpired once it is over."""
    try:
        return verify_manage_credential(request.app[SETTINGS], token, seats.utcnow())
    except TokenInvalid:
        return None


@dataclass(frozen=True)
class AppointmentAccess:
    """Who acts on one appointment: the admission that booked it, or the holder of its manage credential."""

    appointment_id: uuid.UUID
    token_id: str | None  # the admission's token id; None for a manage credential (it names the appointment)
    event_id: str | None  # the admission's event (None for a manage credential: read it from the appointment)
    actor: str  # for the audit log and idempotency keys
    allows_site: Callable[[str], bool]

    @property
    def by_link(self) -> bool:
        return self.token_id is None


def link_access(appointment_id: uuid.UUID) -> AppointmentAccess:
    """Access by the appointment's own manage credential (verified by the caller: header or cookie)."""
    return AppointmentAccess(appointment_id, None, None, f"manage:{appointment_id}", lambda _site: True)


def appointment_access(request: web.Request, appointment_id: uuid.UUID) -> AppointmentAccess:
    """The credential of this request, for ``appointment_id``: an admission token (the appointment
    queries then filter on its token id) or that appointment's own manage credential. A manage
    credential of another appointment is not_found, as another admission's appointment is. Routes
    under ``/api/v1/appointments/{id}`` use this (the token middleware already verified the credential)."""
    managed = request.get(MANAGED)
    if managed is not None:
        if managed != appointment_id:
            raise NotFound("no such appointment")
        return link_access(appointment_id)
    admission = request[ADMISSION]
    return AppointmentAccess(appointment_id, admission.token_id, admission.event_id, admission.token_id,
                             admission.allows_site)  # fmt: skip


@web.middleware
async def throttle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After the token middleware: the verified token (if any) names the token's buckets."""
    throttle = request.app[THROTTLE]
    if throttle.enabled and request.path.startswith(LIMITED_PATHS):
        admission = request.get(ADMISSION)
        managed = request.get(MANAGED)
        await throttle.check(
            method=request.method,
            token_id=f"manage:{managed}" if managed is not None else None if admission is None else admission.token_id,
            peer=request.remote,
            forwarded_for=request.headers.get("X-Forwarded-For"),
        )
    return await handler(request)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let the queue page (another origin under ``up``) call the API.

    Hand-written because it is a dozen lines for a fixed policy: allowed origins from settings,
    no cookies (the admission token travels in a header).
    """
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[SETTINGS].allowed_origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204 if allowed else 403)
        if allowed:
            response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if allowed:
        assert origin is not None
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    response.headers.add("Vary", "Origin")
    return response
