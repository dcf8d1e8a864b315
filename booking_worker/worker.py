"""arq worker settings and lifecycle for the booking worker.

``on_startup`` fills ``ctx`` with the settings, a PostgreSQL pool, the metrics object and (unless
``ctx["serve_metrics"]`` is False, as in tests) a small aiohttp server for ``/metrics``.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from aiohttp import web
from arq import cron, func
from arq.worker import Worker, create_worker

from booking_worker.booking import book, requeue_pending
from booking_worker.periodic import extend_schedules, mark_no_shows, purge_idempotency_keys, tidy_holds
from shared.db import create_pool
from shared.http import healthz, metrics_handler
from shared.metrics import Metrics
from shared.persons import PersonVault, person_key_of
from shared.redis import redis_settings
from shared.settings import Settings
from shared.tokens import TokenCodec
from shared.waitlist import Waitlist, WaitlistPolicy

MAX_JOBS = 20


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings.from_env()
    ctx["settings"] = settings
    ctx["pool"] = await create_pool(settings.require_database(), min_size=1, max_size=MAX_JOBS + 1)
    metrics: Metrics = ctx.get("metrics") or Metrics()
    ctx["metrics"] = metrics
    ctx["waitlist"] = Waitlist(
        TokenCodec(settings.secret_keys), PersonVault(person_key_of(settings)), WaitlistPolicy.from_settings(settings)
    )
    if ctx.get("serve_metrics", True):
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler(metrics))
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.worker_metrics_port).start()
        ctx["metrics_runner"] = runner


async def shutdown(ctx: dict[str, Any]) -> None:
    runner: web.AppRunner | None = ctx.get("metrics_runner")
    if runner is not None:
        await runner.cleanup()
    pool = ctx.get("pool")
    if pool is not None:
        await pool.close()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [func(book, name="book", max_tries=10)]
    cron_jobs: ClassVar[list[Any]] = [
        cron(requeue_pending, second={0, 30}, unique=True, run_at_startup=True),
        cron(tidy_holds, second=set(range(0, 60, 5)), unique=True),
        cron(mark_no_shows, minute=set(range(0, 60, 5)), second=15, unique=True),
        cron(purge_idempotency_keys, minute=17, second=0, unique=True),
        cron(extend_schedules, hour=set(range(24)), minute=3, second=0, unique=True, run_at_startup=True),
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


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker bound to the configured Redis and queue; ``overrides`` go to arq's Worker."""
    ctx = {"settings": settings, **overrides.pop("ctx", {})}
    worker: Worker = create_worker(
        cast(Any, WorkerSettings),  # arq's settings type is a Protocol our plain class satisfies
        redis_settings=redis_settings(settings.require_redis()),
        queue_name=settings.queue_name,
        ctx=ctx,
        **overrides,
    )
    return worker
