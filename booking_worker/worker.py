"""arq worker settings and lifecycle for the booking worker.

``on_startup`` fills ``ctx`` with the settings, a PostgreSQL pool (unless one is given: the
supervisor's outlives each arq worker), the metrics object, the outage log and the waitlist.
Jobs and results are JSON (``shared.job_codec``), never pickle. ``surgegate worker`` runs these
workers under ``booking_worker.supervisor``, which keeps one running through Redis and PostgreSQL
outages and serves ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, ClassVar, cast

import asyncpg
from arq import cron, func
from arq.worker import Worker, create_worker
from redis.exceptions import RedisError

from booking_worker.booking import BOOK_MAX_TRIES, book, requeue_pending
from booking_worker.outages import Outages
from booking_worker.periodic import (
    erase_person_details,
    extend_schedules,
    mark_no_shows,
    purge_idempotency_keys,
    reseal_person_details,
    seal_audit,
    tidy_holds,
)
from shared import job_codec
from shared.audit import AuditKeys
from shared.db import create_pool
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.redis import connect_redis, redis_settings
from shared.settings import Settings
from shared.tokens import TokenCodec
from shared.waitlist import Waitlist, WaitlistPolicy

MAX_JOBS = 20

log = logging.getLogger("surgegate.booking_worker")


async def open_database(settings: Settings) -> asyncpg.Pool:
    """The worker's PostgreSQL pool: one connection per job slot, plus one for the periodic jobs and
    one for the notification dispatcher (booking_worker/dispatcher.py)."""
    return await create_pool(settings.require_database(), min_size=1, max_size=MAX_JOBS + 2)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings.from_env()
    ctx["settings"] = settings
    if "pool" not in ctx:
        ctx["pool"] = await open_database(settings)
        ctx["owns_pool"] = True
    ctx.setdefault("metrics", Metrics())
    ctx.setdefault("outages", Outages())
    ctx["vault"] = PersonVault.from_settings(settings)
    ctx["audit_keys"] = AuditKeys.from_seeds(settings.audit_signing_keys)
    if ctx["audit_keys"].signing is None:
        log.warning("audit checkpoints are not signed: SURGEGATE_AUDIT_SIGNING_KEY is not set")
    ctx["waitlist"] = Waitlist(TokenCodec(settings.secret_keys), ctx["vault"], WaitlistPolicy.from_settings(settings))
    if settings.queue_redis_url and settings.redis_url and settings.queue_redis_url != settings.redis_url:
        # The queue has its own Redis: the edge's signals (an admission used, a booking's latency)
        # belong with the event's keys in the waiting room's Redis (maybe a cluster), not in arq's.
        # This is the client booking.py's _tell_the_edge writes them through.
        try:
            ctx["room_redis"] = await connect_redis(settings.redis_url)
        except (RedisError, OSError) as exc:
            log.warning("waiting room Redis unreachable at startup (%s): no booking signals", type(exc).__name__)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "room_redis" in ctx:
        await ctx.pop("room_redis").aclose()
    if ctx.get("owns_pool"):
        await ctx["pool"].close()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [func(book, name="book", max_tries=BOOK_MAX_TRIES)]
    cron_jobs: ClassVar[list[Any]] = [
        cron(requeue_pending, second={0, 30}, unique=True, run_at_startup=True),
        cron(tidy_holds, second=set(range(0, 60, 5)), unique=True),
        cron(mark_no_shows, minute=set(range(0, 60, 5)), second=15, unique=True),
        cron(purge_idempotency_keys, minute=17, second=0, unique=True),
        cron(seal_audit, second=set(range(60)), unique=True),
        cron(extend_schedules, hour=set(range(24)), minute=3, second=0, unique=True, run_at_startup=True),
        cron(erase_person_details, minute=41, second=0, unique=True),
        # Daily; right after a rotation, `surgegate persons reencrypt` does it at once.
        cron(reseal_person_details, hour=4, minute=23, second=0, unique=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = MAX_JOBS
    job_timeout = 60
    # Long enough for the API's wait; the outcome itself lives in PostgreSQL. A job that failed all
    # its tries is re-queued by requeue_pending once its failed result has expired.
    keep_result = 300
    poll_delay = 0.02
    # Results hold no identity data, but keep logs lean on the hottest job anyway.
    log_results = False
    job_serializer = job_codec.dumps
    job_deserializer = job_codec.loads


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker bound to the configured Redis and queue; ``overrides`` go to arq's Worker (a
    ``redis_pool`` from ``shared.redis.create_arq_pool`` instead of connecting itself, say).

    Each worker gets its own copies of the cron jobs: arq keeps a cron job's next run on the object,
    and a worker started after an outage must neither replay every run it missed nor skip the runs
    at startup (``requeue_pending`` then re-queues at once what an emptied Redis lost).
    """
    ctx = {"settings": settings, **overrides.pop("ctx", {})}
    cron_jobs = overrides.pop("cron_jobs", WorkerSettings.cron_jobs)
    worker: Worker = create_worker(
        cast(Any, WorkerSettings),  # arq's settings type is a Protocol our plain class satisfies
        redis_settings=redis_settings(settings.require_queue_redis()),
        queue_name=settings.queue_name,
        ctx=ctx,
        cron_jobs=[replace(job, next_run=None) for job in cron_jobs],
        **overrides,
    )
    return worker
