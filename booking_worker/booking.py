"""The booking job: one booking attempt, committed exactly once in effect.

arq delivers a job at least once (retries, a worker dying mid-job, a duplicate enqueue after its
result expired). The job runs :func:`shared.attempts.execute` in one transaction, which claims the
attempt's row, takes the seat, inserts the appointment and writes the audit row together, so a
repeat returns the stored outcome and changes nothing (the rules are in that module's docstring).

Business outcomes (slot full, already booked, admission used) are results, not exceptions;
serialisation failures, deadlocks, lock timeouts and lost connections raise arq's ``Retry``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.exceptions
from arq import Retry

from booking_worker import queries
from shared import attempts
from shared.booking import BookingJob, BookingOutcome
from shared.keys import active_admissions_key, booking_latency_key
from shared.metrics import Metrics
from shared.statuses import AttemptStatus

log = logging.getLogger("surgegate.booking_worker")

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
            outcome, executed = await attempts.execute(con, job)
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
    release = outcome.status == AttemptStatus.CONFIRMED and job.rank is not None
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
