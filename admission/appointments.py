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
from dataclasses import replace
from datetime import date
from typing import Any

import redis.exceptions
from aiohttp import web
from arq.jobs import Job, ResultNotFound
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from admission import queries
from admission.availability import slot_place_and_time
from admission.idempotency import idempotency_key
from admission.keys import ARQ, METRICS, POOL, SETTINGS, VAULT, admission_of
from shared import queries as shared_queries
from shared import seats
from shared.booking import HOLD_EXPIRED, BookingJob, BookingOutcome, attempt_id_for, utc_iso
from shared.errors import BookingRejected, IdempotencyConflict, IdempotencyInProgress, NotFound, Overloaded
from shared.http import json_response, read_json

log = logging.getLogger("surgegate.admission")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id_number: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    birth_date: date

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("birth_date")
    @classmethod
    def _birth_date(cls, value: date) -> date:
        if not date(1900, 1, 1) <= value <= date.today():
            raise ValueError("must be a past date after 1900")
        return value


class BookingIn(BaseModel):
    """Exactly one of ``slot_id`` (take any free seat) and ``hold_id`` (the seat this admission holds)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    slot_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    person: PersonIn

    @model_validator(mode="after")
    def _one_target(self) -> BookingIn:
        if (self.slot_id is None) == (self.hold_id is None):
            raise ValueError("give exactly one of slot_id and hold_id")
        return self


def _request_hash(key: bytes, body: BookingIn) -> str:
    # Keyed, so the stored hash of a body that holds a person's data cannot be brute-forced.
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _answer(request: web.Request, outcome: BookingOutcome, request_hash: str) -> web.Response:
    metrics = request.app[METRICS]
    if not hmac.compare_digest(outcome.request_hash, request_hash):
        metrics.booking_requests.labels(outcome.event_id, "idempotency_conflict").inc()
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request")
    if outcome.status == "pending":
        metrics.booking_requests.labels(outcome.event_id, "idempotency_in_progress").inc()
        raise IdempotencyInProgress(
            f"the first request with this Idempotency-Key is still pending: /api/v1/attempts/{outcome.attempt_id}"
        )
    if outcome.status == "confirmed":
        metrics.booking_requests.labels(outcome.event_id, "confirmed").inc()
        return json_response(outcome.confirmation(), status=201)
    assert outcome.code is not None
    metrics.booking_requests.labels(outcome.event_id, outcome.code).inc()
    # A token used outside its scope, or used again after it booked, fails verification late.
    failure = {"token_scope": "scope", "admission_used": "replay"}.get(outcome.code)
    if failure is not None:
        metrics.token_verify.labels(outcome.event_id, failure).inc()
    raise BookingRejected(outcome.code, _REJECTION_DETAIL.get(outcome.code, outcome.code))


_REJECTION_DETAIL = {
    "slot_full": "that slot has no seat left; pick another",
    "already_booked": "this person already holds an appointment for this event",
    "admission_used": "this admission has already been used to book",
    "not_found": "no such slot",
    "token_scope": "this admission does not cover that slot's site",
    "hold_expired": "the hold is gone (expired, released or used); hold a seat again",
    "slot_withdrawn": "that slot is no longer offered; pick another",
    "outside_booking_window": "that slot cannot be booked now (too soon, too far ahead, or past)",
}


async def _stored_outcome(request: web.Request, attempt_id: uuid.UUID) -> BookingOutcome | None:
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(shared_queries.ATTEMPT_OUTCOME, attempt_id)
    return None if row is None else BookingOutcome.from_row(row)


async def create_appointment(request: web.Request) -> web.Response:
    admission = admission_of(request)
    settings = request.app[SETTINGS]
    vault = request.app[VAULT]
    key = idempotency_key(request, required=True)
    assert key is not None
    body = await read_json(request, BookingIn)
    request_hash = _request_hash(vault.hash_key, body)
    attempt_id = attempt_id_for(admission.token_id, key)

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
        person_ref=vault.ref(body.person.id_number).hex(),
        person_sealed=vault.seal(
            {"name": body.person.name, "email": body.person.email, "birth_date": body.person.birth_date.isoformat()}
        ).decode(),
        rank=admission.rank,
        hold_id=None if body.hold_id is None else str(body.hold_id),
    )
    arq = request.app[ARQ]
    try:
        if await arq.zcard(settings.queue_name) >= settings.max_queue_depth:
            request.app[METRICS].booking_requests.labels(admission.event_id, "overloaded").inc()
            raise Overloaded("the booking queue is full; retry shortly", retry_after=5)
        # Accepted = durable: from here on the attempt runs even if Redis loses its job.
        accepted = await _accept(request, job)
        if accepted is None:
            # A concurrent request with this key won, or the hold was gone: either way it is stored.
            raced = await _stored_outcome(request, attempt_id)
            assert raced is not None
            return _answer(request, raced, request_hash)
        job = accepted
        await arq.enqueue_job("book", job.to_dict(), _job_id=str(attempt_id))
        result = await Job(str(attempt_id), arq, _queue_name=settings.queue_name).result(
            timeout=settings.booking_wait_s, poll_delay=0.05
        )
    except (TimeoutError, ResultNotFound):
        # Still queued or running, or finished with its result already gone from Redis.
        stored = await _stored_outcome(request, attempt_id)
        if stored is None or stored.status == "pending":
            return _pending(request, attempt_id, admission.event_id)
        return _answer(request, stored, request_hash)
    except (redis.exceptions.RedisError, OSError):
        if await _stored_outcome(request, attempt_id) is not None:
            # Accepted before Redis failed: it runs once the worker's re-queue job finds Redis again.
            return _pending(request, attempt_id, admission.event_id)
        request.app[METRICS].booking_requests.labels(admission.event_id, "overloaded").inc()
        raise Overloaded("the booking queue is unavailable; retry with the same Idempotency-Key") from None
    except (Overloaded, IdempotencyInProgress, IdempotencyConflict, BookingRejected):
        raise
    except Exception as exc:
        # The job failed after all its retries; the attempt stays pending and is re-queued later.
        log.warning("booking attempt %s failed: %s", attempt_id, type(exc).__name__)
        return _pending(request, attempt_id, admission.event_id)
    return _answer(request, BookingOutcome.from_dict(result), request_hash)


async def _accept(request: web.Request, job: BookingJob) -> BookingJob | None:
    """Record the attempt as pending (None if it already existed, or was refused on the spot). A booking from a hold
    pins the hold to the attempt in the same transaction, so it cannot lapse while the attempt waits
    in the queue; a hold already gone is refused here, recorded as the attempt's outcome."""
    attempt_id = uuid.UUID(job.attempt_id)
    async with request.app[POOL].acquire() as con, con.transaction():
        if job.hold_id is not None:
            slot_id = await con.fetchval(
                seats.PIN_HOLD, uuid.UUID(job.hold_id), job.token_id, attempt_id, seats.utcnow()
            )
            job = replace(job, slot_id="" if slot_id is None else str(slot_id))
        accepted = await con.fetchval(
            shared_queries.ACCEPT_ATTEMPT, attempt_id, job.token_id, job.event_id, job.slot_id,
            bytes.fromhex(job.request_hash), job.to_dict(),
        )  # fmt: skip
        if not accepted:
            return None
        if job.hold_id is not None and not job.slot_id:
            await con.execute(
                "UPDATE booking_attempts SET status = 'rejected', code = $2, job = NULL, finished_at = now()"
                " WHERE attempt_id = $1",
                attempt_id,
                HOLD_EXPIRED,
            )
            await con.execute(
                shared_queries.INSERT_AUDIT, "booking_rejected", job.event_id, None, None, attempt_id, job.token_id,
                {"code": HOLD_EXPIRED},
            )  # fmt: skip
            return None
    return job


def _pending(request: web.Request, attempt_id: uuid.UUID, event_id: str) -> web.Response:
    request.app[METRICS].booking_requests.labels(event_id, "pending").inc()
    return json_response(
        {"attempt_id": str(attempt_id), "status": "pending", "status_url": f"/api/v1/attempts/{attempt_id}"},
        status=202,
        headers={"Location": f"/api/v1/attempts/{attempt_id}"},
    )


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no such id") from None


async def get_attempt(request: web.Request) -> web.Response:
    admission = admission_of(request)
    attempt_id = _uuid(request.match_info["attempt_id"])
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(shared_queries.ATTEMPT_OUTCOME, attempt_id)
    if row is None or row["token_id"] != admission.token_id:
        raise NotFound("no such attempt")
    outcome = BookingOutcome.from_row(row)
    return json_response(
        {
            "attempt_id": outcome.attempt_id,
            "status": outcome.status,
            "appointment_id": outcome.appointment_id,
            "code": outcome.code,
        }
    )


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
    admission = admission_of(request)
    appointment_id = _uuid(request.match_info["appointment_id"])
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(queries.GET_APPOINTMENT, appointment_id, admission.token_id)
    if row is None:
        raise NotFound("no such appointment")
    return json_response(_appointment_json(row))
