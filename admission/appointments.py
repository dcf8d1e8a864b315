"""Booking endpoints: turn a request into a queued attempt, wait briefly, answer; read; cancel.

``POST /api/v1/appointments`` never writes a booking itself. It derives the attempt id from the
admission token and the ``Idempotency-Key``, answers a repeat from the stored outcome, and
otherwise enqueues the attempt on arq with ``_job_id`` = attempt id (a duplicate enqueue is a no-op)
and waits up to ``booking_wait_s`` for the worker's outcome: 201 confirmed, 409 rejected, or 202
pending with a status URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import redis.exceptions
from aiohttp import web
from arq.jobs import ResultNotFound
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from admission import queries
from admission.auth import appointment_access, token_failed
from admission.availability import slot_place_and_time
from admission.eligibility import language_of
from admission.fields import BirthDate, EmailAddress
from admission.idempotency import check_key_cap, idempotency_key
from admission.keys import ARQ, FREEZES, METRICS, POOL, RULEBOOK, SETTINGS, VAULT, admission_of
from shared import attempts, seats
from shared.booking import BookingJob, BookingOutcome, attempt_id_for, utc_iso
from shared.eligibility import reasons_in
from shared.errors import (
    Code,
    IdempotencyConflict,
    IdempotencyInProgress,
    Ineligible,
    NotFound,
    Overloaded,
    Refused,
    ValidationFailed,
)
from shared.http import json_response, path_uuid, read_json
from shared.manage import manage_url
from shared.redis import job_of
from shared.statuses import AttemptStatus, Language
from shared.tokens import Admission

log = logging.getLogger("surgegate.admission")

# An answer carrying a manage link carries a credential: no cache keeps it (RFC 9111 no-store).
CREDENTIAL_HEADERS = {"Cache-Control": "no-store"}
# E.164: a plus, a country code and up to 15 digits in all; spaces, dots, dashes and brackets are ignored.
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s.\-()]")


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id_number: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: EmailAddress
    birth_date: BirthDate
    # For text messages (reminders and the rest) through the SMS webhook; kept only sealed.
    phone: str | None = Field(default=None, max_length=32)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        compact = _PHONE_SEPARATORS.sub("", value)
        if not _PHONE.match(compact):
            raise ValueError("not a phone number in international form (+ country code, then the number)")
        return compact


class BookingIn(BaseModel):
    """Exactly one of ``slot_id`` (take any free seat) and ``hold_id`` (the seat this admission holds)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    slot_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    person: PersonIn
    decision_id: uuid.UUID | None = None  # an eligibility decision; required while the event has published rules
    # What the messages are written in; default: the request's Accept-Language, else English.
    language: Language | None = None

    @model_validator(mode="after")
    def _one_target(self) -> BookingIn:
        if (self.slot_id is None) == (self.hold_id is None):
            raise ValueError("give exactly one of slot_id and hold_id")
        return self


def accepted_language(header: str | None) -> Language:
    """The first of our languages the Accept-Language header names (by its q order), else English."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, index, tag.strip().lower().split("-")[0]))
    for neg_q, _, primary in sorted(ranked):
        if neg_q < 0 and primary in {lang.value for lang in Language}:
            return Language(primary)
    return Language.EN


def _person_record(body: BookingIn, language: Language) -> dict[str, Any]:
    """What is sealed of the person: how to reach them, and in which language."""
    record: dict[str, Any] = {
        "name": body.person.name,
        "email": body.person.email,
        "birth_date": body.person.birth_date.isoformat(),
        "language": language,
    }
    if body.person.phone:
        record["phone"] = body.person.phone
    return record


def _request_hash(key: bytes, body: BookingIn) -> str:
    # Keyed, so the stored hash of a body that holds a person's data cannot be brute-forced.
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def request_digest(request: web.Request, body: BookingIn) -> str:
    """A keyed digest of a booking body (nothing of the person can be read back from it)."""
    return _request_hash(request.app[VAULT].hash_key, body)


def _answer(request: web.Request, outcome: BookingOutcome, request_hash: str) -> web.Response:
    metrics = request.app[METRICS]
    if not hmac.compare_digest(outcome.request_hash, request_hash):
        metrics.booking_requests.labels(outcome.event_id, "idempotency_conflict").inc()
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    if outcome.status == AttemptStatus.PENDING:
        metrics.booking_requests.labels(outcome.event_id, "idempotency_in_progress").inc()
        raise IdempotencyInProgress(
            f"the first request with this Idempotency-Key is still pending: /api/v1/attempts/{outcome.attempt_id}"
        )
    if outcome.status == AttemptStatus.CONFIRMED:
        metrics.booking_requests.labels(outcome.event_id, "confirmed").inc()
        body = {**outcome.confirmation(), "manage_url": outcome_manage_url(request, outcome)}
        return json_response(body, status=201, headers=CREDENTIAL_HEADERS)
    assert outcome.code is not None
    metrics.booking_requests.labels(outcome.event_id, outcome.code).inc()
    if outcome.code == Code.INELIGIBLE:
        raise Ineligible(reasons_in(outcome.reasons or [], language_of(request)))
    # A token used outside its scope, or used again after it booked, fails verification late.
    failure = {Code.TOKEN_SCOPE: "scope", Code.ADMISSION_USED: "replay"}.get(Code(outcome.code))
    if failure is not None:
        token_failed(request.app, outcome.event_id, failure)
    raise Refused(Code(outcome.code))


def outcome_manage_url(request: web.Request, outcome: BookingOutcome) -> str:
    """The manage link of a confirmed outcome, valid until its appointment ends."""
    assert outcome.appointment_id is not None
    assert outcome.starts_at is not None
    # An outcome stored before ends_at was recorded: a day past the start bounds any appointment type.
    ends = outcome.ends_at or utc_iso(datetime.fromisoformat(outcome.starts_at) + timedelta(days=1))
    return manage_url(request.app[SETTINGS], uuid.UUID(outcome.appointment_id), datetime.fromisoformat(ends))


async def _stored_outcome(request: web.Request, attempt_id: uuid.UUID) -> BookingOutcome | None:
    async with request.app[POOL].acquire() as con:
        return await attempts.outcome_of(con, attempt_id)


async def stored_answer(request: web.Request, admission: Admission, key: str) -> web.Response | None:
    """The answer already given to ``admission``'s booking under ``key``, or None when there is none.
    For a caller whose key already stands for the whole request (the claim page's: the hold and the
    person's details), so a repeat is answered as the first was even though its eligibility decision
    is a fresh one; the API's callers go through :func:`book_as`, which compares the bodies."""
    stored = await _stored_outcome(request, attempt_id_for(admission.token_id, key))
    return None if stored is None else _answer(request, stored, stored.request_hash)


async def create_appointment(request: web.Request) -> web.Response:
    admission = admission_of(request)
    key = idempotency_key(request, required=True)
    assert key is not None
    body = await read_json(request, BookingIn)
    return await book_as(request, admission, key, body)


async def book_as(request: web.Request, admission: Admission, key: str, body: BookingIn) -> web.Response:
    """Book for ``admission`` under ``key`` (the API, and the claim page with its own key): 201, 202 or
    a Refused raised, exactly as ``POST /api/v1/appointments`` answers."""
    vault = request.app[VAULT]
    person_ref = vault.ref(body.person.id_number, field=("person", "id_number"))
    request_hash = _request_hash(vault.hash_key, body)
    attempt_id = attempt_id_for(admission.token_id, key)
    language = body.language or accepted_language(request.headers.get("Accept-Language"))

    stored = await _stored_outcome(request, attempt_id)
    if stored is not None:
        return _answer(request, stored, request_hash)

    job = BookingJob(
        attempt_id=str(attempt_id),
        token_id=admission.token_id,
        event_id=admission.event_id,
        scope=None if admission.scope is None else list(admission.scope),
        slot_id=str(body.slot_id or ""),
        request_hash=request_hash,
        person_ref=person_ref.hex(),
        person_sealed=vault.seal(_person_record(body, language)).decode(),
        rank=admission.rank,
        hold_id=None if body.hold_id is None else str(body.hold_id),
        language=language,
        decision_id=None if body.decision_id is None else str(body.decision_id),
    )
    await _check_frozen(request, admission.event_id)
    await _check_decision_given(request, admission.event_id, body)
    await _check_queue_depth(request, admission.event_id)
    # Accepted = durable. A database failure here propagates (503 from the problem middleware): nothing
    # was accepted, and a retry with the same Idempotency-Key is safe.
    async with request.app[POOL].acquire() as con, con.transaction():
        try:
            await check_key_cap(con, request, admission.token_id, queries.ATTEMPTS_MADE_BY)
        except Refused:
            # At the cap, a concurrent request with this very key may have made the attempt meanwhile.
            if await attempts.outcome_of(con, attempt_id) is None:
                request.app[METRICS].booking_requests.labels(admission.event_id, Code.TOO_MANY_KEYS).inc()
                raise
        accepted = await attempts.accept(con, job, seats.utcnow())
    if accepted is None:
        # A concurrent request with this key won, or the hold was gone: either way it is stored.
        raced = await _stored_outcome(request, attempt_id)
        assert raced is not None
        return _answer(request, raced, request_hash)
    return await _enqueue_and_wait(request, accepted, request_hash)


async def _check_frozen(request: web.Request, event_id: str) -> None:
    """Accept nothing new while the event's operators have frozen its bookings (admission/freeze.py)."""
    try:
        await request.app[FREEZES].check(request.app[POOL], event_id)
    except Refused:
        request.app[METRICS].booking_requests.labels(event_id, Code.BOOKINGS_FROZEN).inc()
        raise


async def _check_decision_given(request: web.Request, event_id: str, body: BookingIn) -> None:
    """While the event has published rules, a booking names an eligibility decision (400 early; the
    booking transaction checks the decision itself, under the version published at its commit)."""
    if body.decision_id is not None:
        return
    current = await request.app[RULEBOOK].current(request.app[POOL], event_id)
    if current.published is not None:
        raise ValidationFailed(
            "decision_id is required: this event has eligibility rules (POST …/eligibility:evaluate first)",
            [{"loc": ["decision_id"], "msg": "required"}],
        )


async def _check_queue_depth(request: web.Request, event_id: str) -> None:
    """Shed load before accepting anything: 503 overloaded when the queue is full or unreachable."""
    settings = request.app[SETTINGS]
    try:
        depth = await request.app[ARQ].zcard(settings.queue_name)
    except (redis.exceptions.RedisError, OSError):
        request.app[METRICS].booking_requests.labels(event_id, "overloaded").inc()
        raise Overloaded("the booking queue is unavailable; retry with the same Idempotency-Key") from None
    if depth >= settings.max_queue_depth:
        request.app[METRICS].booking_requests.labels(event_id, "overloaded").inc()
        raise Overloaded("the booking queue is full; retry shortly", retry_after=5)


async def _enqueue_and_wait(request: web.Request, job: BookingJob, request_hash: str) -> web.Response:
    """Queue the accepted attempt and wait up to ``booking_wait_s`` for its outcome. The attempt is
    durable from here on, so every failure answers 202 pending: the worker's re-queue job runs it."""
    settings = request.app[SETTINGS]
    arq = request.app[ARQ]
    attempt_id = uuid.UUID(job.attempt_id)
    try:
        await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        result = await job_of(arq, job.attempt_id).result(timeout=settings.booking_wait_s, poll_delay=0.05)
    except (TimeoutError, ResultNotFound):
        # Still queued or running, or finished with its result already gone from Redis.
        stored = await _stored_outcome(request, attempt_id)
        if stored is None or stored.status == AttemptStatus.PENDING:
            return _pending(request, attempt_id, job.event_id)
        return _answer(request, stored, request_hash)
    except (redis.exceptions.RedisError, OSError):
        # Redis failed after the attempt was accepted: it runs once the re-queue job finds Redis again.
        return _pending(request, attempt_id, job.event_id)
    except Exception:
        # arq re-raises the job's own failure after its retries; the attempt stays pending and is
        # re-queued. The traceback names code, never the person (the job holds only a hash and ciphertext).
        log.exception("booking attempt %s failed in the worker; it stays pending", attempt_id)
        return _pending(request, attempt_id, job.event_id)
    return _answer(request, BookingOutcome.from_dict(result), request_hash)


def _pending(request: web.Request, attempt_id: uuid.UUID, event_id: str) -> web.Response:
    request.app[METRICS].booking_requests.labels(event_id, "pending").inc()
    return json_response(
        {
            "attempt_id": str(attempt_id),
            "status": AttemptStatus.PENDING,
            "status_url": f"/api/v1/attempts/{attempt_id}",
        },
        status=202,
        headers={"Location": f"/api/v1/attempts/{attempt_id}"},
    )


async def get_attempt(request: web.Request) -> web.Response:
    admission = admission_of(request)
    attempt_id = path_uuid(request, "attempt_id", "attempt")
    async with request.app[POOL].acquire() as con:
        outcome = await attempts.outcome_of(con, attempt_id, token_id=admission.token_id)
    if outcome is None:
        raise NotFound("no such attempt")
    body: dict[str, Any] = {
        "attempt_id": outcome.attempt_id,
        "status": outcome.status,
        "appointment_id": outcome.appointment_id,
        "code": outcome.code,
    }
    if outcome.status == AttemptStatus.CONFIRMED:
        body["manage_url"] = outcome_manage_url(request, outcome)
    return json_response(body, headers=CREDENTIAL_HEADERS)


def _appointment_json(row: Any) -> dict[str, Any]:
    return {
        "appointment_id": str(row["appointment_id"]),
        "status": row["status"],
        "event_id": row["event_id"],
        **slot_place_and_time(row),
        "type_id": row["type_id"],
        "created_at": utc_iso(row["created_at"]),
        "cancelled_at": None if row["cancelled_at"] is None else utc_iso(row["cancelled_at"]),
        "cancel_late": row["cancel_late"],
        "checked_in_at": None if row["checked_in_at"] is None else utc_iso(row["checked_in_at"]),
        "rescheduled_at": None if row["rescheduled_at"] is None else utc_iso(row["rescheduled_at"]),
    }


async def get_appointment(request: web.Request) -> web.Response:
    """The appointment, for the admission that made it or the holder of its manage credential."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    access = appointment_access(request, appointment_id)
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(queries.GET_APPOINTMENT, appointment_id, access.token_id)
    if row is None:
        raise NotFound("no such appointment")
    return json_response(
        {**_appointment_json(row), "manage_url": manage_url(request.app[SETTINGS], appointment_id, row["ends_at"])},
        headers=CREDENTIAL_HEADERS,
    )
