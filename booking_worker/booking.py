"""The booking job: one booking attempt, committed exactly once in effect.

arq delivers a job at least once (retries, a worker dying mid-job, a duplicate enqueue after its
result expired). The job runs :func:`shared.attempts.execute` in one transaction, which claims the
attempt's row, takes the seat, inserts the appointment and writes the audit row together, so a
repeat returns the stored outcome and changes nothing (the rules are in that module's docstring).

Business outcomes (slot full, already booked, admission used) are results, not exceptions;
serialisation failures, deadlocks, lock timeouts and an unreachable PostgreSQL raise arq's ``Retry``
with a capped backoff (:func:`retry_delay`) and no practical limit on tries (``BOOK_MAX_TRIES``), so
however long PostgreSQL is away, every queued attempt is tried again within ``RETRY_MAX_S`` of its
return. The argument is checked before anything runs (:meth:`BookingJob.from_dict`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.exceptions
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix

from booking_worker import queries
from booking_worker.outages import POSTGRESQL, outages_of, skipped_while_database_down
from shared import attempts
from shared.booking import BookingJob, BookingOutcome
from shared.db import DATABASE_UNAVAILABLE
from shared.keys import active_admissions_key, booking_latency_key
from shared.metrics import Metrics
from shared.statuses import AttemptStatus

log = logging.getLogger("surgegate.booking_worker")

CONFLICTS = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,  # waited past lock_timeout (shared.locks)
)
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
# No practical limit: at RETRY_MAX_S apart, 100,000 tries outlast the job itself, which arq drops
# after a day (expires_extra_ms); requeue_pending then queues the attempt again from PostgreSQL.
BOOK_MAX_TRIES = 100_000


def retry_delay(job_try: int) -> float:
    """Seconds before try ``job_try + 1``: 0.1, 0.2, 0.4, ... doubling up to RETRY_MAX_S."""
    return min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** min(max(job_try, 1) - 1, 16))


async def book(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """arq job: run one accepted booking attempt in its own transaction and return its outcome (a dict).

    Of the payload only the attempt id is used: the attempt is executed as the API accepted it
    (stored in PostgreSQL), so a job written into Redis by anyone else books nothing. Raises
    :class:`shared.booking.InvalidJob` (arq fails the job; nothing ran) for a payload that is not a
    BookingJob or names no accepted attempt, and arq's ``Retry`` for a conflict or an unreachable
    PostgreSQL.
    """
    attempt_id = BookingJob.from_dict(payload).attempt_id
    pool: asyncpg.Pool = ctx["pool"]
    metrics: Metrics = ctx["metrics"]
    started = time.perf_counter()
    try:
        async with pool.acquire() as con, con.transaction():
            done = await attempts.execute(con, attempt_id, vault=ctx.get("vault"))
    except CONFLICTS:
        raise Retry(defer=retry_delay(ctx.get("job_try", 1))) from None
    except DATABASE_UNAVAILABLE as exc:
        outages_of(ctx).down(POSTGRESQL, exc)
        raise Retry(defer=retry_delay(ctx.get("job_try", 1))) from None
    except attempts.UnknownAttempt:
        log.warning("dropped a booking job for attempt %s: no such accepted attempt", attempt_id)
        raise
    outages_of(ctx).up(POSTGRESQL)
    outcome = done.outcome
    if done.executed:
        metrics.booking_seconds.labels(outcome.event_id).observe(time.perf_counter() - started)
        metrics.booking_attempts.labels(outcome.event_id, outcome.code or "confirmed").inc()
    if done.job is not None:
        await _tell_the_edge(ctx, done.job, outcome, done.executed)
    return outcome.to_dict()


async def _tell_the_edge(ctx: dict[str, Any], job: BookingJob, outcome: BookingOutcome, executed: bool) -> None:
    """After the commit, in one Redis round trip: free the admission's max_active slot (it is used;
    harmless to repeat, and a lost release frees itself when the admission lapses) and report how
    long the attempt took from enqueue to outcome (read by the edge's auto rate controller)."""
    if "redis" not in ctx:
        return
    # The event's keys live in the waiting room's Redis; arq's own is another when the queue has its
    # own URL (SURGEGATE_QUEUE_REDIS_URL: then worker.py opens ``room_redis``).
    room_redis = ctx.get("room_redis", ctx["redis"])
    enqueued = ctx.get("enqueue_time")
    report = executed and isinstance(enqueued, datetime)
    release = outcome.status == AttemptStatus.CONFIRMED and job.rank is not None
    if not (report or release):
        return
    try:
        async with room_redis.pipeline(transaction=False) as pipe:
            if release:
                pipe.zrem(active_admissions_key(job.event_id), job.rank)
            if report and isinstance(enqueued, datetime):
                latency = max(0.0, (datetime.now(UTC) - enqueued).total_seconds())
                pipe.lpush(booking_latency_key(job.event_id), f"{latency:.3f}")
                pipe.ltrim(booking_latency_key(job.event_id), 0, 199)
            await pipe.execute()
    except (redis.exceptions.RedisError, OSError) as exc:
        log.warning("could not update the edge's booking signals: %s", type(exc).__name__)


@skipped_while_database_down
async def requeue_pending(ctx: dict[str, Any], older_than_s: float = 30.0, limit: int = 1000) -> int | None:
    """arq cron job: queue again every accepted attempt still pending after ``older_than_s``.

    The attempt's row is the truth and a job only carries it, so the job is rebuilt from the row.
    Its job may be waiting or running (then nothing is done: same ``_job_id``); it may be gone with a
    Redis that lost its data; or it may have ended without an outcome (failed, expired, refused as
    malformed), leaving a failed result that would block the ``_job_id`` for ``keep_result``: that
    result is stale (a committed outcome is never pending) and is dropped. Either way the attempt
    runs, exactly once in effect. Returns how many were actually queued again.
    """
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as con:
        rows = await con.fetch(queries.STALE_PENDING, older_than_s, limit)
    requeued = 0
    for row in rows:
        if await queue_again(ctx["redis"], str(row["attempt_id"]), row["job"]):
            requeued += 1
    if requeued:
        log.warning("re-queued %d accepted booking attempts whose jobs were missing or failed", requeued)
    return requeued


async def queue_again(redis: ArqRedis, attempt_id: str, job: dict[str, Any]) -> bool:
    """Queue a pending attempt's job unless it is queued or running; True if it was queued now."""
    if await redis.enqueue_job("book", job, _job_id=attempt_id) is not None:
        return True
    if await redis.exists(job_key_prefix + attempt_id):
        return False  # waiting, deferred for a retry, or running
    # Ended without an outcome: drop its failed result (a concurrent re-queue may do the same; the
    # second enqueue is then a no-op, and a duplicate job would still book once).
    await redis.delete(result_key_prefix + attempt_id)
    return await redis.enqueue_job("book", job, _job_id=attempt_id) is not None
