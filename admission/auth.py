"""Admission token verification, rate limits and CORS, as middlewares of the booking API.

Every ``/api/v1/*`` request must carry ``Authorization: Bearer <admission token>``. The token is
verified offline (signature under any configured kid, type, expiry); each verification is counted
in ``surgegate_token_verify_total{event,result}`` with ``result`` = ok or the failure reason. Then
every ``/api/v1/*`` and ``/admin/v1/*`` request is held to the limits of its token and its client
(:mod:`admission.throttle`).
"""

from __future__ import annotations

from aiohttp import web

from admission.eligibility import is_eligibility_path
from admission.keys import ADMISSION, CODEC, METRICS, SETTINGS, THROTTLE
from shared.errors import TokenExpired, TokenInvalid
from shared.http import Handler, bearer

# The signed claim link is the credential there (an offer may come long after the admission expired).
CLAIMS_PATH = "/api/v1/waitlist/claims"
LIMITED_PATHS = ("/api/v1/", "/admin/v1/")
_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Device-Key"
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/v1/") or request.path == CLAIMS_PATH or is_eligibility_path(request.path):
        # A claim link is its own credential; eligibility takes a queue ticket too (admission/eligibility.py).
        return await handler(request)
    metrics = request.app[METRICS]
    token = bearer(request)
    try:
        if token is None:
            raise TokenInvalid("an admission token is required (Authorization: Bearer ...)", reason="missing")
        admission = request.app[CODEC].verify_admission(token)
    except TokenInvalid as exc:
        # The event of an unverified token is unknown and attacker-chosen: never a label.
        metrics.token_verify.labels("-", exc.reason).inc()
        raise
    except TokenExpired:
        metrics.token_verify.labels("-", "expired").inc()
        raise
    if not admission.held_by(request.headers.get("X-Device-Key")):
        metrics.token_verify.labels(admission.event_id, "binding").inc()
        raise TokenInvalid(
            "this admission is bound to the device it was issued to: send its X-Device-Key", reason="binding"
        )
    metrics.token_verify.labels(admission.event_id, "ok").inc()
    request[ADMISSION] = admission
    return await handler(request)


@web.middleware
async def throttle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After the token middleware: the verified token (if any) names the token's buckets."""
    throttle = request.app[THROTTLE]
    if throttle.enabled and request.path.startswith(LIMITED_PATHS):
        admission = request.get(ADMISSION)
        await throttle.check(
            method=request.method,
            token_id=None if admission is None else admission.token_id,
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
