"""The booking job: one booking attempt, committed exactly once in effect.

arq delivers a job at least once (retries, a worker dying mid-job, a duplicate enqueue after its
result expired). The attempt id is the primary key of ``booking_attempts`` and is claimed in the
same transaction that takes the seat, inserts the appointment and writes the audit row, so:

* an execution that finds the attempt already claimed returns the stored outcome and changes nothing;
* an execution that fails before commit leaves no trace, and the retry starts from scratch;
* two executions running at once serialise on the claim; the second sees the first's outcome.

Business outcomes (slot full, already booked, admission used) are results, not exceptions;
serialisation failures, deadlocks and lost connections raise arq's ``Retry``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.exceptions
from arq import Retry

from booking_worker import queries
from shared import queries as shared_queries
from shared import seats
from shared.booking import (
    ADMISSION_USED,
    ALREADY_BOOKED,
    HOLD_EXPIRED,
    OUT_OF_SCOPE,
    SLOT_FULL,
    SLOT_NOT_FOUND,
    BookingJob,
    BookingOutcome,
    local_iso,
    utc_iso,
)
from shared.keys import active_admissions_key, booking_latency_key
from shared.metrics import Metrics

log = logging.getLogger("surgegate.booking_worker")

_CONSTRAINT_CODES = {
    "appointments_token_once": ADMISSION_USED,
    "appointments_person_active": ALREADY_BOOKED,
}


class _Rejected(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def _attempt_outcome(con: asyncpg.Connection, attempt_id: uuid.UUID) -> BookingOutcome:
    return BookingOutcome.from_row(await con.fetchrow(shared_queries.ATTEMPT_OUTCOME, attempt_id))


async def run_attempt(
    con: asyncpg.Connection, job: BookingJob, now: datetime | None = None
) -> tuple[BookingOutcome, bool]:
    """Execute the attempt inside the caller's transaction.

    Returns (outcome, executed): ``executed`` is False when the attempt already had its outcome,
    which is then returned unchanged. With ``job.hold_id`` the seat comes from that hold (pinned to
    this attempt when the API accepted it); a rejected attempt releases its pinned hold.
    """
    now = now or seats.utcnow()
    attempt_id = uuid.UUID(job.attempt_id)
    hold_id = None if job.hold_id is None else uuid.UUID(job.hold_id)
    status = await con.fetchval(queries.LOCK_ATTEMPT, attempt_id)
    if status is None:
        # Queued without being accepted through the API first (an older client, a manual enqueue).
        await con.execute(
            shared_queries.ACCEPT_ATTEMPT, attempt_id, job.token_id, job.event_id, job.slot_id,
            bytes.fromhex(job.request_hash), job.to_dict(),
        )  # fmt: skip
        status = await con.fetchval(queries.LOCK_ATTEMPT, attempt_id)
    if status != "pending":
        return await _attempt_outcome(con, attempt_id), False

    appointment_id: uuid.UUID | None = None
    code: str | None = None
    slot = None
    try:
        try:
            slot_uuid = uuid.UUID(job.slot_id)
        except ValueError:
            raise _Rejected(SLOT_NOT_FOUND) from None
        known = await con.fetchrow(
            queries.BEFORE_SEAT, slot_uuid, job.token_id, job.event_id, bytes.fromhex(job.person_ref)
        )
        if known["slot_id"] is None:
            raise _Rejected(SLOT_NOT_FOUND)
        slot = known
        if job.scope is not None and slot["site_id"] not in job.scope:
            raise _Rejected(OUT_OF_SCOPE)
        if known["admission_used"]:
            raise _Rejected(ADMISSION_USED)
        if known["already_booked"]:
            raise _Rejected(ALREADY_BOOKED)
        if hold_id is None:
            problem = (
                seats.SLOT_WITHDRAWN
                if known["withdrawn_at"] is not None
                else seats.window_problem(
                    known["starts_at"], known["timezone"], known["min_notice_minutes"] or 0,
                    known["max_advance_days"], now,
                )
            )  # fmt: skip
            if problem is not None:
                raise _Rejected(problem)
        async with con.transaction():  # savepoint: a unique violation undoes the seat (and hold) too
            if hold_id is not None:
                try:
                    if await seats.take_held_seat(con, hold_id, job.token_id, attempt_id, now) != slot_uuid:
                        raise _Rejected(HOLD_EXPIRED)
                except seats.SeatRejected as exc:
                    raise _Rejected(exc.code) from None
            elif not await seats.take_seat(con, slot_uuid, now):
                raise _Rejected(SLOT_FULL)
            appointment_id = uuid.uuid4()
            try:
                await con.execute(
                    queries.INSERT_APPOINTMENT,
                    appointment_id,
                    job.event_id,
                    slot_uuid,
                    job.token_id,
                    bytes.fromhex(job.person_ref),
                    job.person_sealed.encode(),
                )
            except asyncpg.UniqueViolationError as exc:
                code = _CONSTRAINT_CODES.get(exc.constraint_name or "")
                if code is None:
                    raise
                raise _Rejected(code) from None
    except _Rejected as rejected:
        appointment_id = None
        code = rejected.code

    if hold_id is not None and code is not None:
        await con.execute(seats.UNPIN_HOLD, hold_id, attempt_id, now)  # its seat returns at once
    if code is None and slot is not None and slot["holds_seats"]:
        await con.execute(seats.RELEASE_TOKEN_HOLDS, job.token_id, now)  # booked: any other hold is moot
    final = "confirmed" if code is None else "rejected"
    await con.execute(queries.FINISH_ATTEMPT, attempt_id, final, code, appointment_id)
    await con.execute(
        shared_queries.INSERT_AUDIT,
        "booked" if code is None else "booking_rejected",
        job.event_id,
        None if slot is None else slot["slot_id"],
        appointment_id,
        attempt_id,
        job.token_id,
        {} if code is None else {"code": code},
    )
    booked = slot if code is None else None  # where and when, for a confirmation only
    outcome = BookingOutcome(
        attempt_id=job.attempt_id,
        status=final,
        code=code,
        request_hash=job.request_hash,
        event_id=job.event_id,
        appointment_id=None if appointment_id is None else str(appointment_id),
        slot_id=job.slot_id,
        site_id=None if booked is None else booked["site_id"],
        starts_at=None if booked is None else utc_iso(booked["starts_at"]),
        local_starts_at=None if booked is None else local_iso(booked["starts_at"], booked["timezone"]),
    )
    return outcome, True


RETRYABLE = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,  # waited past lock_timeout (shared.locks)
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
)


async def book(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """arq job: run one booking attempt in its own transaction and return its outcome (a dict)."""
    job = BookingJob.from_dict(payload)
    pool: asyncpg.Pool = ctx["pool"]
    metrics: Metrics = ctx["metrics"]
    started = time.perf_counter()
    try:
        async with pool.acquire() as con, con.transaction():
            outcome, executed = await run_attempt(con, job)
    except RETRYABLE:
        raise Retry(defer=min(5.0, 0.1 * ctx.get("job_try", 1))) from None
    if executed:
        metrics.booking_seconds.labels(job.event_id).observe(time.perf_counter() - started)
        metrics.booking_attempts.labels(job.event_id, outcome.code or "confirmed").inc()
    await _tell_the_edge(ctx, job, outcome, executed)
    return outcome.to_dict()


async def _tell_the_edge(ctx: dict[str, Any], job: BookingJob, outcome: BookingOutcome, executed: bool) -> None:
    """After the commit, in one Redis round trip: free the admission's max_active slot (it is used;
    harmless to repeat, and a lost release frees itself when the admission lapses) and report how
    long the attempt took from enqueue to outcome (read by the edge's auto rate controller)."""
    if "redis" not in ctx:
        return
    enqueued = ctx.get("enqueue_time")
    report = executed and isinstance(enqueued, datetime)
    release = outcome.status == "confirmed" and job.rank is not None
    if not (report or release):
        return
    try:
        async with ctx["redis"].pipeline(transaction=False) as pipe:
            if release:
                pipe.zrem(active_admissions_key(job.event_id), job.rank)
            if report and isinstance(enqueued, datetime):
                latency = max(0.0, (datetime.now(UTC) - enqueued).total_seconds())
                pipe.lpush(booking_latency_key(job.event_id), f"{latency:.3f}")
                pipe.ltrim(booking_latency_key(job.event_id), 0, 199)
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("could not update the edge's booking signals: %s", type(exc).__name__)


async def requeue_pending(ctx: dict[str, Any], older_than_s: float = 30.0, limit: int = 1000) -> int:
    """arq cron job: queue again every accepted attempt still pending after ``older_than_s``.

    Its job may be waiting or running (then the enqueue is a no-op: same ``_job_id``), or it may be
    gone with a Redis that lost its data; either way the attempt runs, exactly once in effect.
    Returns how many were actually queued again.
    """
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as con:
        rows = await con.fetch(queries.STALE_PENDING, older_than_s, limit)
    requeued = 0
    for row in rows:
        if await ctx["redis"].enqueue_job("book", row["job"], _job_id=str(row["attempt_id"])) is not None:
            requeued += 1
    if requeued:
        log.warning("re-queued %d accepted booking attempts whose jobs were missing", requeued)
    return requeued
