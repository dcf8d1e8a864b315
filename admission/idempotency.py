"""Idempotency-Key for the synchronous POSTs (holds, reschedule, waitlist, claims).

Keys are scoped to the admission token and kept 24 h. Within one transaction, a non-blocking
advisory lock on (token, key) tells "in flight" apart: whoever holds it runs the operation and
stores its response (business refusals included) before committing; a concurrent request with the
same key gets 409 ``idempotency_in_progress`` with Retry-After; a later one gets the stored
response, or 409 ``idempotency_conflict`` if its body differs. A crash releases the lock and leaves
nothing stored, so a retry simply runs again. Bookings keep their keys in ``booking_attempts``.

An admission may store at most ``SURGEGATE_MAX_KEYS_PER_ADMISSION`` keys here (and, apart, make as
many booking attempts): past that, a new key is refused 409 ``too_many_keys`` before anything runs or
is stored, while a key already stored still answers its repeats. New keys of one admission are
counted one at a time under an advisory lock, so concurrent requests cannot overshoot the cap.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from admission import queries
from admission.keys import POOL, SETTINGS, VAULT
from shared.errors import Code, IdempotencyConflict, IdempotencyInProgress, Refused, ValidationFailed
from shared.http import json_response, problem
from shared.locks import LockNamespace, try_xact_lock, xact_lock
from shared.queries import IDEMPOTENCY_KEPT_HOURS as KEPT_HOURS

KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

Operation = Callable[[asyncpg.Connection], Awaitable[tuple[int, dict[str, Any]]]]


def idempotency_key(request: web.Request, *, required: bool = False) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None and not required:
        return None
    if key is None or not KEY.match(key):
        raise ValidationFailed("an Idempotency-Key header (1-255 visible ASCII characters) is required")
    return key


def body_hash(request: web.Request, route: str, body: dict[str, Any]) -> bytes:
    canonical = json.dumps({"route": route, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(request.app[VAULT].hash_key, canonical.encode(), hashlib.sha256).digest()


async def run_once(
    request: web.Request, token_id: str, route: str, body: dict[str, Any], operation: Operation
) -> tuple[web.Response, bool]:
    """Run ``operation`` in a transaction, at most once per (token, Idempotency-Key).

    Returns (response, executed). Without a key the operation simply runs. A Refused raised by the
    operation undoes its writes (savepoint) and is stored and answered as problem+json."""
    key = idempotency_key(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        digest = b""
        if key is not None:
            digest = body_hash(request, route, body)
            if not await try_xact_lock(con, LockNamespace.IDEMPOTENCY_KEY, f"{token_id}\n{key}"):
                raise IdempotencyInProgress()
            stored = await con.fetchrow(queries.STORED_RESPONSE, token_id, key, KEPT_HOURS)
            if stored is not None:
                if not hmac.compare_digest(bytes(stored["request_hash"]), digest):
                    raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
                return _respond(stored["response_status"], stored["response_body"]), False
            await check_key_cap(con, request, token_id, queries.KEYS_STORED_BY)
        try:
            async with con.transaction():
                status, payload = await operation(con)
        except Refused as exc:
            if key is None or exc.code in (Code.OVERLOADED, Code.VALIDATION_ERROR):
                raise
            status = exc.status
            payload = {"problem": True, "code": exc.code, "detail": exc.detail}
        if key is not None:
            await con.execute(queries.STORE_RESPONSE, token_id, key, digest, status, payload)
    return _respond(status, payload), True


async def check_key_cap(con: asyncpg.Connection, request: web.Request, token_id: str, count_query: str) -> None:
    """Refuse too_many_keys when the admission already has its cap of rows counted by ``count_query``
    (``$1`` token id, ``$2`` the cap). Call it in the transaction that writes the new row: it holds
    the admission's key lock until that transaction ends."""
    cap = request.app[SETTINGS].max_keys_per_admission
    if not cap:
        return
    await xact_lock(con, LockNamespace.ADMISSION_KEYS, token_id)
    if await con.fetchval(count_query, token_id, cap) >= cap:
        raise Refused(Code.TOO_MANY_KEYS)


def _respond(status: int, payload: dict[str, Any]) -> web.Response:
    if payload.get("problem") is True:
        return problem(status, str(payload["code"]), str(payload["detail"]))
    return json_response(payload, status=status)
