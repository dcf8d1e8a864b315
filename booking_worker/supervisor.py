"""Keep the booking worker running through Redis and PostgreSQL outages of any length.

An arq worker ends when Redis fails under it: its poll loop raises the connection error (an idle
Valkey restart used to end ``surgegate worker`` within 2 s). :class:`Supervisor` owns what must
outlive one arq worker — the PostgreSQL pool, the metrics, the ``/metrics`` and ``/healthz`` server
and the outage log — and runs arq workers one after another:

* Redis lost, while connecting or under a running worker: the jobs in flight finish their database
  work, which needs no Redis (arq's job timeout bounds them); the worker and its Redis pool are
  dropped, and a fresh one connects after 0.5 s, then 1, 2, 4, 5, 5... s until Redis answers. On
  connecting, the jobs the dropped worker still held are released (their ``in-progress`` keys,
  which would otherwise block them for arq's in-progress timeout when Redis kept its data), and
  every pending attempt whose job Redis lost or never got is queued again.
* PostgreSQL lost: the worker keeps polling. The booking job retries without end, at most
  ``RETRY_MAX_S`` apart (``booking_worker.booking``), periodic jobs skip their runs, and the
  asyncpg pool reconnects by itself. Only at start, before a pool exists, is it retried here.

Each outage logs one line when it begins and one when it ends (``booking_worker.outages``). Anything
else that ends a worker is a bug: it ends the process with its traceback, and the process manager
starts it again (compose: ``restart: unless-stopped``; Kubernetes: the Deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import web
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

from booking_worker.booking import requeue_pending
from booking_worker.dispatcher import Dispatcher
from booking_worker.outages import POSTGRESQL, REDIS, Outages
from booking_worker.worker import WorkerSettings, build_worker, open_database
from shared.db import DATABASE_UNAVAILABLE
from shared.http import healthz, metrics_handler
from shared.metrics import Metrics
from shared.redis import create_arq_pool, refuse_cluster
from shared.settings import Settings, SettingsError

log = logging.getLogger("surgegate.booking_worker")

RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError)  # OSError: refused, timed out
# Jobs in flight when Redis went away get this long to finish: arq's job timeout, plus its margin.
DRAIN_S = WorkerSettings.job_timeout + 10


class Supervisor:
    """Runs arq booking workers until :meth:`stop`, one after another across outages.

    ``worker_options`` go to every arq worker (tests pass a short ``poll_delay``, say). Attributes a
    caller may read: ``outages``, ``workers_started`` and ``worker`` (the one running now, if any).
    """

    def __init__(
        self, settings: Settings, *, metrics: Metrics | None = None, serve_metrics: bool = True, **worker_options: Any
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.serve_metrics = serve_metrics
        self.worker_options = worker_options
        self.outages = Outages()
        self.workers_started = 0
        self.worker: Worker | None = None
        self._pool: asyncpg.Pool | None = None
        self._stopping = asyncio.Event()
        self._held: set[str] = set()  # jobs a dropped worker could not hand back

    def stop(self) -> None:
        """Make :meth:`run` return: running jobs are cancelled and handed back to the queue (as
        arq does on SIGTERM), so another worker runs them again."""
        self._stopping.set()

    async def run(self) -> None:
        """Run workers until :meth:`stop`; closes everything it opened before returning."""
        runner = await self._serve_metrics() if self.serve_metrics else None
        dispatching = asyncio.create_task(self._dispatch())
        delay = RECONNECT_FIRST_S
        try:
            while not self._stopping.is_set():
                if await self._run_one():
                    delay = RECONNECT_FIRST_S  # it ran: a new outage starts the backoff over
                if self._stopping.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._stopping.set()
            await asyncio.gather(dispatching, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            if self._pool is not None:
                await self._pool.close()

    async def _run_one(self) -> bool:
        """Connect and run one arq worker until it ends or :meth:`stop`; True if it got to run."""
        pool = await self._database()
        if pool is None:
            return False
        try:
            redis = await create_arq_pool(
                self.settings.require_queue_redis(), self.settings.queue_name, connect_retries=0
            )
        except REDIS_UNAVAILABLE as exc:
            self.outages.down(REDIS, exc)
            return False
        try:
            await refuse_cluster(redis)  # SettingsError: not an outage, the worker stops with the reason
            if self._held:
                await redis.delete(*(in_progress_key_prefix + job_id for job_id in self._held))
                self._held.clear()
            # What Redis lost (emptied) or never got (accepted while it was away) is queued now, not
            # at the re-queue job's next run; queued and running jobs are left alone.
            await requeue_pending({"pool": pool, "redis": redis}, older_than_s=0)
        except REDIS_UNAVAILABLE as exc:
            await _close(redis)
            self.outages.down(REDIS, exc)
            return False
        except SettingsError:
            await _close(redis)
            raise
        self.outages.up(REDIS)
        ctx = {"pool": pool, "metrics": self.metrics, "outages": self.outages}
        worker = build_worker(self.settings, redis_pool=redis, handle_signals=False, ctx=ctx, **self.worker_options)
        self.worker = worker
        self.workers_started += 1
        main = asyncio.create_task(worker.main())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self._drop(worker, main)
            self.worker = None
        error = None if main.cancelled() else main.exception()
        if error is not None:
            if not isinstance(error, REDIS_UNAVAILABLE):
                raise error
            self.outages.down(REDIS, error)
        return True

    async def _dispatch(self) -> None:
        """The outbox's dispatcher (booking_worker/dispatcher.py) on the pool the workers share: it
        needs no Redis, so it runs through Redis outages, from the first moment a pool exists."""
        while self._pool is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.5)
            if self._stopping.is_set():
                return
        if not self.settings.secret_keys:
            log.warning("notifications stay queued: no SURGEGATE_SECRET_KEYS to sign their links with")
            return
        dispatcher = Dispatcher(self._pool, self.settings, metrics=self.metrics)
        if not dispatcher.channels:
            log.warning("notifications stay queued: neither SURGEGATE_SMTP_URL nor the SMS webhook is set")
        await dispatcher.run(self._stopping)

    async def _database(self) -> asyncpg.Pool | None:
        if self._pool is None:
            try:
                self._pool = await open_database(self.settings)
            except DATABASE_UNAVAILABLE as exc:
                self.outages.down(POSTGRESQL, exc)
                return None
            self.outages.up(POSTGRESQL)
        return self._pool

    async def _drop(self, worker: Worker, main: asyncio.Task[None]) -> None:
        """End one arq worker. Its jobs run on when it ended by itself (Redis lost: their database
        work needs no Redis) and are cancelled, as arq does, when it is being stopped."""
        ended_by_itself = main.done()
        while not main.done():
            # Cancelled again until it ends: on Python 3.11 asyncio.wait_for, which redis-py wraps
            # around socket writes when a socket timeout is set, can swallow a cancellation that
            # arrives as the write completes (fixed in 3.12), and the poll loop would run on.
            main.cancel()
            await asyncio.wait({main}, timeout=0.1)
        tasks = dict(worker.tasks)
        if ended_by_itself and tasks:
            await asyncio.wait(tasks.values(), timeout=DRAIN_S)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(main, *tasks.values(), return_exceptions=True)
        # A job whose end could not be written to Redis still holds its in-progress key.
        self._held |= {job_id for job_id, task in tasks.items() if task.cancelled() or task.exception() is not None}
        if not ended_by_itself:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                await worker.pool.delete(worker.health_check_key)
        await _close(worker.pool)
        room_redis = worker.ctx.pop("room_redis", None)  # opened by its on_startup (worker.py); arq's
        if room_redis is not None:  # on_shutdown is not run for a supervised worker
            await _close(room_redis)

    async def _observe(self) -> None:
        """Refresh the gauges a scrape reads: reachability of Redis and PostgreSQL as the outage log
        has it, and the booking queue's depth (left as it was when Redis does not answer in 1 s)."""
        for dependency, name in ((REDIS, "redis"), (POSTGRESQL, "postgresql")):
            self.metrics.dependency_up.labels(name).set(0 if self.outages.is_down(dependency) else 1)
        worker = self.worker
        if worker is None:
            return
        with contextlib.suppress(*REDIS_UNAVAILABLE, TimeoutError):
            depth = await asyncio.wait_for(worker.pool.zcard(self.settings.queue_name), 1.0)
            self.metrics.booking_queue_depth.set(depth)

    async def _serve_metrics(self) -> web.AppRunner:
        app = web.Application()
        render = metrics_handler(self.metrics)

        async def scrape(request: web.Request) -> web.StreamResponse:
            await self._observe()
            return await render(request)

        app.router.add_get("/metrics", scrape)
        app.router.add_get("/healthz", healthz)  # alive while retrying: a restart would not help
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.host, self.settings.worker_metrics_port).start()
        return runner


async def _close(redis: Any) -> None:
    with contextlib.suppress(*REDIS_UNAVAILABLE):
        await redis.aclose()


def run(settings: Settings) -> None:
    """``surgegate worker``: supervise booking workers until SIGINT or SIGTERM."""

    async def main() -> None:
        supervisor = Supervisor(settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _stopper(supervisor, signum))
        await supervisor.run()

    asyncio.run(main())


def _stopper(supervisor: Supervisor, signum: signal.Signals) -> Callable[[], None]:
    def stop() -> None:
        log.info("stopping on %s", signum.name)
        supervisor.stop()

    return stop
