"""HTTP pieces both aiohttp services share: problem+json errors, JSON bodies, admin auth, probes.

:func:`problem_middleware` is the one place where domain errors become HTTP: it maps the
contract's ``code`` to a status, answers every error as ``application/problem+json`` (RFC 9457)
and turns anything unexpected into a problem too, never a stack trace.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, TypeVar

import asyncpg
import pydantic
import pydantic_core
import redis.exceptions
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import MatchInfoError
from prometheus_client import Counter, Histogram

from shared.db import DATABASE_UNAVAILABLE
from shared.errors import (
    CODE_OF_HTTP_STATUS,
    Code,
    Ineligible,
    NotFound,
    Overloaded,
    Refused,
    ValidationFailed,
    message_of,
    status_of,
)
from shared.metrics import Metrics

log = logging.getLogger("surgegate.http")

PROBLEM_TYPE = "application/problem+json"

# Redis or PostgreSQL away: the request is answered 503 overloaded with Retry-After.
BACKEND_UNAVAILABLE: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, *DATABASE_UNAVAILABLE)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=pydantic.BaseModel)

# The Content-Security-Policy of every response that is not a page: load nothing, be framed by nobody.
NOT_A_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'"


def add_security_headers(app: web.Application, page_policy: str = NOT_A_PAGE_POLICY) -> None:
    """Give every response of ``app`` a Content-Security-Policy: ``page_policy`` to HTML (the pages
    say what they load), :data:`NOT_A_PAGE_POLICY` to the rest (JSON, problems, static files). A
    policy a handler set itself is kept."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        policy = page_policy if response.content_type == "text/html" else NOT_A_PAGE_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)

    app.on_response_prepare.append(on_prepare)


class QuietParseErrors(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, minus the traceback for a request aiohttp could not parse.

    aiohttp answers a malformed request (a NUL or other invalid byte in a header, a line too long, a
    broken chunk) with 400 itself, before any middleware runs, and logs it at ERROR with a traceback
    as if a handler had failed; so it does for a body that cannot be decoded and that no handler
    read. It is the client's error: one INFO line naming its kind, never the offending bytes (they
    are whatever the client sent). Every other record passes unchanged.
    """

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, BadHttpMessage | web.RequestPayloadError):
            self.logger.info("a malformed request was refused (%s)", type(exc_info).__name__)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def server_handler_args() -> dict[str, Any]:
    """``handler_args`` of both services' ``web.Application``: aiohttp's server log, made quiet."""
    return {"logger": QuietParseErrors(logging.getLogger("aiohttp.server"), {})}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    retry_after: int | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://surgegate.dev/problems/{code.replace('_', '-')}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update(extra)
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None or status in (429, 503):
        headers["Retry-After"] = str(retry_after if retry_after is not None else 1)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE, headers=headers)


def refusal_problem(exc: Refused) -> web.Response:
    extra: dict[str, Any] | None = None
    if isinstance(exc, ValidationFailed) and exc.errors:
        extra = {"errors": exc.errors}
    elif isinstance(exc, Ineligible):
        extra = {"reasons": exc.reasons}
    return problem(exc.status, exc.code, exc.detail, retry_after=exc.retry_after, extra=extra)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as exc:
        return refusal_problem(exc)
    except web.RequestPayloadError:  # a body that cannot be decoded (Content-Encoding) or ends early
        return refusal_problem(ValidationFailed("the request body could not be read"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = CODE_OF_HTTP_STATUS.get(exc.status, Code.HTTP_ERROR)
        detail = exc.reason if exc.status != 413 else message_of(code)
        resp = problem(exc.status, code, detail)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except BACKEND_UNAVAILABLE as exc:
        log.warning("backend unavailable: %s", type(exc).__name__)
        return refusal_problem(Overloaded("a backing service is unavailable; retry shortly"))
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, asyncpg.LockNotAvailableError):
        # Both transactions were consistent; one lost a race (or waited past lock_timeout) and was
        # rolled back whole.
        return refusal_problem(Overloaded("a concurrent change got in the way; retry", retry_after=1))
    except asyncpg.IntegrityConstraintViolationError as exc:
        # The schema refused the write (a CHECK or foreign key): bad input that validation missed.
        log.warning("constraint %s refused a write on %s", exc.constraint_name, logged_route(request))
        return refusal_problem(Refused(Code.CONFLICT))
    except Exception:
        # Unexpected: log the type and place, never the request body (it may hold a person's data).
        log.exception("unhandled error on %s %s", request.method, logged_route(request))
        return problem(status_of(Code.INTERNAL_ERROR), Code.INTERNAL_ERROR, message_of(Code.INTERNAL_ERROR))


# Methods counted by name; any other token a client sends counts as "other" (they are unbounded).
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route label of a request no route matched (an unknown path, or a known one with a method it lacks).
UNMATCHED = "unmatched"


def route_label(request: web.Request) -> str:
    """The matched route's path template (``/api/v1/events/{event_id}/status``), never the URL itself:
    ids, event ids and query strings stay out of the label, so its values are as few as the routes."""
    match_info = request.match_info
    if isinstance(match_info, MatchInfoError):
        return UNMATCHED
    return match_info.route.resource.canonical if match_info.route.resource is not None else UNMATCHED


def logged_route(request: web.Request) -> str:
    """Where a request went, as a log line may say it: the matched route's template (``-`` when none
    matched), never the path itself. Manage, claim and opt-out links carry their credential in the
    path or query (``/api/v1/reminders/unsubscribe/{token}``); the access log writes the same
    (``surgegate.logs.RouteAccessLogger``)."""
    label = route_label(request)
    return "-" if label == UNMATCHED else label


def http_metrics_middleware(metrics: Metrics, service: str) -> Middleware:
    """Count each request in ``surgegate_http_requests_total{service,route,method,status}`` and time it
    in ``surgegate_http_request_seconds``. Put it first, so it sees the answers the other middlewares
    (problems, CORS, throttling) give. A request whose client went away before the answer (cancelled)
    is not counted: it got no status."""

    # prometheus_client's ``labels()`` costs a lock, a tuple check and a dict look-up per call; the
    # children of each (route, method, status) are taken once. Every label is from a bounded set (routes,
    # COUNTED_METHODS, statuses), so this cache is as small as the metric itself.
    children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def count(request: web.Request, status: int, seconds: float) -> None:
        route = route_label(request)
        method = request.method if request.method in COUNTED_METHODS else "other"
        key = (route, method, status)
        child = children.get(key)
        if child is None:
            child = children[key] = (
                metrics.http_requests.labels(service, route, method, str(status)),
                metrics.http_request_seconds.labels(service, route, method),
            )
        child[0].inc()
        child[1].observe(seconds)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status: int | None = 500  # what escapes the problem middleware is answered 500 by aiohttp
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect raised by a handler, or an error past the problems
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = None
            raise
        finally:
            if status is not None:
                count(request, status, time.perf_counter() - started)

    return middleware


def parse_json(raw: bytes) -> Any:
    """The one parse of a JSON request body: UTF-8 JSON nested at most ~200 deep, else ValidationFailed.

    pydantic-core's parser (jiter), not ``json.loads``: it stops at a fixed depth with a ValueError
    where ``json.loads`` recurses until ``RecursionError`` (a 64 KiB body of brackets is 32,000 deep),
    and it refuses strings with lone surrogates, which no database or hash could encode later. Its
    messages give a position, never the input.
    """
    try:
        return pydantic_core.from_json(raw.removeprefix(codecs.BOM_UTF8))
    except ValueError as exc:
        raise ValidationFailed(f"the body is not valid JSON: {exc}") from None


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body; bad input becomes ValidationFailed (never echoing values)."""
    raw = await request.read()  # aiohttp raises 413 past the app's client_max_size
    return validate(model, parse_json(raw) if raw else None)


async def read_form(request: web.Request) -> Mapping[str, Any]:
    """Parse a form body (urlencoded or multipart); an unparseable one becomes ValidationFailed."""
    try:
        return await request.post()
    except ValueError:  # e.g. multipart without a boundary, undecodable bytes
        raise ValidationFailed("the form could not be read") from None


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        # Each error names its field (``loc``) and the kind of problem (pydantic's ``type``, e.g.
        # ``missing``, ``string_too_long``, ``value_error``): the page marks the field and says it in
        # its own language. Never the value sent.
        errors: list[dict[str, object]] = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise ValidationFailed("the request is invalid", errors) from None


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    """The path parameter ``name`` as a UUID; anything else is 404 "no such {what}" (as an unknown id)."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {what}") from None


def bearer(request: web.Request) -> str | None:
    """The ``Authorization: Bearer`` credential, or None. Credentials are ASCII (RFC 6750); other bytes
    reach us as surrogate escapes that cannot even be encoded again, so they count as no credential."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or not value.isascii():
        return None
    return value.strip()


# ``json.dumps(v, default=str)`` builds a new encoder per call; this one is built once (same output).
_encode_json = json.JSONEncoder(default=str).encode


def json_response(data: Any, status: int = 200, *, headers: dict[str, str] | None = None) -> web.Response:
    """``web.json_response`` (``application/json; charset=utf-8``), its encoder made once."""
    return web.Response(text=_encode_json(data), status=status, headers=headers, content_type="application/json")


def openapi_document(package: str) -> Handler:
    """``GET /openapi.json``: the package's own ``openapi.json``, read once (tests keep it true)."""
    body = (resources.files(package) / "openapi.json").read_bytes()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handle


def metrics_handler(metrics: Metrics) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        resp = web.Response(body=metrics.render())
        resp.content_type = "text/plain"
        resp.charset = "utf-8"
        return resp

    return handle


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})
