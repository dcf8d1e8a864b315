"""The worker rides out Redis and PostgreSQL outages and resumes by itself (servers started and
stopped by the tests themselves). Slow: real restarts, and PostgreSQL held down for 10 s."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq import func
from arq.constants import in_progress_key_prefix

from booking_worker.booking import book
from booking_worker.outages import POSTGRESQL, REDIS
from booking_worker.supervisor import Supervisor
from shared import attempts, seats
from shared.booking import BookingJob, attempt_id_for
from shared.db import create_pool, migrate
from shared.keys import BOOKING_QUEUE_NAME
from shared.persons import PersonVault
from shared.redis import create_arq_pool, job_of
from shared.settings import Settings
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from tests.helpers import TEST_KEYS, seed_site_and_slot

pytestmark = pytest.mark.slow

# The worker as it ran before the supervisor: arq's own run loop, which ends on a Redis error.
BARE_ARQ_WORKER = (
    "import logging; from booking_worker.worker import build_worker; from shared.settings import Settings; "
    "logging.basicConfig(level=logging.INFO); build_worker(Settings.from_env()).run()"
)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 (polls a server or a child process: no event to await)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within:.0f} s: {what}") from None


async def accept(pool: asyncpg.Pool, slot_id: str, n: int) -> BookingJob:
    """Accept attempt ``n`` (person ``n``) as the API does: pending in PostgreSQL, not queued yet."""
    vault = PersonVault(b"k" * 32)
    job = BookingJob(
        attempt_id=str(attempt_id_for(f"tok-{n}", "key")), token_id=f"tok-{n}", event_id="ev", scope=None,
        slot_id=slot_id, request_hash="ab" * 32, person_ref=vault.ref(f"ID-{n}").hex(),
        person_sealed=vault.seal({"name": "x"}).decode(),
    )  # fmt: skip
    async with pool.acquire() as con, con.transaction():
        accepted = await attempts.accept(con, job, seats.utcnow())
    assert accepted is not None
    return accepted


async def status_of(pool: asyncpg.Pool, job: BookingJob) -> str:
    status: str = await pool.fetchval(
        "SELECT status FROM booking_attempts WHERE attempt_id = $1", uuid.UUID(job.attempt_id)
    )
    return status


# --- Redis -----------------------------------------------------------------------------------------


def start_worker(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")  # append-only file: a restart keeps the queue
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-its-data", "emptied"])
async def test_the_worker_rides_out_a_valkey_restart(
    settings: Settings, pool: asyncpg.Pool, valkey: EmbeddedValkey, tmp_path: Path, keep_data: bool
) -> None:
    assert settings.database_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
    env |= {
        "SURGEGATE_DATABASE_URL": settings.database_url,
        "SURGEGATE_REDIS_URL": valkey.url,
        "SURGEGATE_SECRET_KEYS": ",".join(f"{kid}:{secret}" for kid, secret in TEST_KEYS),
    }
    logs = tmp_path / "worker.log", tmp_path / "bare.log"
    worker = start_worker(["-m", "surgegate", "worker"], env | {"SURGEGATE_WORKER_METRICS_PORT": str(free_port())},
                          logs[0])  # fmt: skip
    bare = start_worker(["-c", BARE_ARQ_WORKER], env, logs[1])
    slot_id = await seed_site_and_slot(pool)
    arq = await create_arq_pool(valkey.url, BOOKING_QUEUE_NAME)
    try:
        await eventually(lambda: _said(logs[0], "Starting worker for"), "the worker started")
        await eventually(lambda: _said(logs[1], "Starting worker for"), "the bare arq worker started")
        before = await accept(pool, slot_id, 1)
        await arq.enqueue_job("book", before.to_dict(), _job_id=before.attempt_id)
        await eventually(lambda: _is(pool, before, "confirmed"), "a booking before the restart")
        await arq.aclose()

        await asyncio.to_thread(valkey.stop)
        if not keep_data:
            for path in valkey.data_dir.iterdir():
                if path.name != "valkey.log":
                    _remove(path)
        # negative control: arq's own run loop ends while Redis is away (the bug this fixes)
        await eventually(lambda: _ended(bare), "the bare arq worker ended")
        during = await accept(pool, slot_id, 2)  # accepted by the API, whose enqueue then failed
        await asyncio.sleep(3)  # the outage goes on: reconnection attempts 0.5, 1 and 2 s apart
        await asyncio.to_thread(valkey.start)

        # queued on reconnection, not 30 to 60 s later by the re-queue job (this times out without)
        await eventually(lambda: _is(pool, during, "confirmed"), "a booking accepted during the outage")
        arq = await create_arq_pool(valkey.url, BOOKING_QUEUE_NAME)
        after = await accept(pool, slot_id, 3)
        await arq.enqueue_job("book", after.to_dict(), _job_id=after.attempt_id)
        await eventually(lambda: _is(pool, after, "confirmed"), "a booking queued after the restart")
        assert worker.poll() is None, logs[0].read_text()
    finally:
        await arq.aclose()
        stop_worker(worker)
        stop_worker(bare)
    told = logs[0].read_text()
    assert worker.returncode == 0, told
    assert told.count("Redis unreachable") == 1, told  # one line per outage, not per retry
    assert told.count("Redis reachable again") == 1, told


async def _said(log: Path, text: str) -> bool:
    return await asyncio.to_thread(lambda: log.exists() and text in log.read_text(errors="replace"))


async def _is(pool: asyncpg.Pool, job: BookingJob, status: str) -> bool:
    return await status_of(pool, job) == status


async def _ended(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


async def test_a_job_in_flight_when_valkey_restarts_runs_again_at_once(
    settings: Settings, pool: asyncpg.Pool, valkey: EmbeddedValkey
) -> None:
    """Valkey stops (keeping its data) while a booking runs: the job finishes its database work, but
    its end cannot be written, so its in-progress key outlives the restart and would hold the job back
    for arq's in-progress timeout (70 s). The worker releases it on reconnecting: the job runs again
    (and returns the stored outcome) at once. Without the release this test times out."""
    settings = replace(settings, redis_url=valkey.url)
    slot_id = await seed_site_and_slot(pool)
    supervisor = Supervisor(settings, serve_metrics=False, poll_delay=0.01, cron_jobs=[])
    running = asyncio.create_task(supervisor.run())
    arq = await create_arq_pool(valkey.url, settings.queue_name)
    try:
        await eventually(lambda: _polling(supervisor), "the worker polling")
        job = await accept(pool, slot_id, 1)
        async with pool.acquire() as con:
            blocker = con.transaction()
            await blocker.start()
            await con.execute(
                "SELECT 1 FROM booking_attempts WHERE attempt_id = $1 FOR UPDATE", uuid.UUID(job.attempt_id)
            )
            await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
            await eventually(lambda: _exists(arq, in_progress_key_prefix + job.attempt_id), "the job in flight")
            await arq.aclose()
            await asyncio.to_thread(valkey.stop)
            await blocker.rollback()  # the job goes on with Redis away
        await eventually(lambda: _is(pool, job, "confirmed"), "the booking committed with Redis away")
        await eventually(lambda: _redis_down(supervisor), "the worker finding Redis gone")
        await asyncio.to_thread(valkey.start)
        arq = await create_arq_pool(valkey.url, settings.queue_name)
        outcome = await job_of(arq, job.attempt_id).result(timeout=30, poll_delay=0.05)
    finally:
        await arq.aclose()
        supervisor.stop()
        await running
    assert outcome["status"] == "confirmed"
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 1


# Cancelling a worker in the middle of a Redis pipeline is the point of this test; redis-py's pipeline
# then warns from its finaliser that it was not reset (seen under heavy load), which is not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_stop_ends_the_worker_even_when_a_cancellation_is_swallowed(settings: Settings) -> None:
    """On Python 3.11 a cancellation that meets a finishing socket write inside redis-py's
    asyncio.wait_for is lost, and a worker cancelled once polled on (a SIGTERM'd ``surgegate worker``
    ran until SIGKILL about one stop in four). Stopping right after startup, while its startup jobs
    run, many times over: each stop must end the supervisor. (Negative control, run by hand: with a
    single cancel in Supervisor._drop this fails on every run here.)"""
    for n in range(20):
        supervisor = Supervisor(settings, serve_metrics=False)
        running = asyncio.create_task(supervisor.run())
        await eventually(functools.partial(_polling, supervisor), "the worker polling")
        await asyncio.sleep(0.005 * n)  # the startup jobs at different stages
        supervisor.stop()
        await asyncio.wait_for(running, 10)


# --- PostgreSQL ------------------------------------------------------------------------------------

OUTAGE_S = 10
ATTEMPTS = 20


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("own-pg") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def own_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """This module's own PostgreSQL (its URL), migrated and emptied; started again should a test
    fail while it was stopped."""
    if postgres.proc is None:
        await asyncio.to_thread(postgres.start)
    con = await asyncpg.connect(postgres.dsn)
    try:
        await migrate(con)
        await con.execute("TRUNCATE appointments, booking_attempts, slots, sites, events CASCADE")
    finally:
        await con.close()
    yield postgres.dsn
    if postgres.proc is None:
        await asyncio.to_thread(postgres.start)


@pytest.mark.parametrize("try_limit", [None, 3], ids=["ours", "negative-control-a-try-limit"])
async def test_queued_attempts_complete_once_postgresql_is_back(
    settings: Settings,
    postgres: EmbeddedPostgres,
    own_database: str,
    caplog: pytest.LogCaptureFixture,
    try_limit: int | None,
) -> None:
    """PostgreSQL goes away with attempts accepted and then queued; held down OUTAGE_S, then back.

    With the booking job's own retry policy every attempt completes (the time from PostgreSQL
    answering again to the last outcome is printed); with a try limit (the policy before), the
    jobs run out of tries during the outage and the attempts stay pending although the queue is empty.
    """
    caplog.set_level(logging.INFO, logger="surgegate.booking_worker")
    settings = replace(settings, database_url=own_database)
    assert settings.database_url and settings.redis_url
    options: dict[str, Any] = {"poll_delay": 0.01, "cron_jobs": []}  # no re-queue job: the retries alone
    if try_limit is not None:
        options["functions"] = [func(book, name="book", max_tries=try_limit)]
    supervisor = Supervisor(settings, serve_metrics=False, **options)
    running = asyncio.create_task(supervisor.run())
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    try:
        await eventually(lambda: _polling(supervisor), "the worker polling")
        pool = await create_pool(settings.database_url)
        slot_id = await seed_site_and_slot(pool, capacity=ATTEMPTS)
        jobs = [await accept(pool, slot_id, n) for n in range(ATTEMPTS)]
        await pool.close()
        await asyncio.to_thread(postgres.stop)
        for job in jobs:
            await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        await eventually(lambda: _down(supervisor), "the worker finding PostgreSQL gone")
        await asyncio.sleep(OUTAGE_S)  # the outage itself, not a wait for an outcome
        await asyncio.to_thread(postgres.start)
        back = time.monotonic()
        pool = await create_pool(settings.database_url)
        try:
            if try_limit is None:
                await eventually(lambda: _none_pending(pool), "every attempt final", within=60)
                print(f"\nall {ATTEMPTS} attempts final {time.monotonic() - back:.2f} s after PostgreSQL was back")
                assert await pool.fetchval("SELECT count(*) FROM appointments") == ATTEMPTS
                assert await pool.fetchval("SELECT booked FROM slots") == ATTEMPTS
            else:
                await eventually(lambda: _queue_empty(arq, settings.queue_name), "every job ended", within=60)
                pending = await pool.fetchval("SELECT count(*) FROM booking_attempts WHERE status = 'pending'")
                assert pending == ATTEMPTS  # stranded: what the unlimited retries prevent
        finally:
            await pool.close()
    finally:
        await arq.aclose()
        supervisor.stop()
        await running
    assert running.exception() is None
    if try_limit is None:
        told = [r.getMessage() for r in caplog.records if r.name == "surgegate.booking_worker"]
        assert sum("PostgreSQL unreachable" in m for m in told) == 1, told  # one line per outage
        assert sum("PostgreSQL reachable again" in m for m in told) == 1, told


async def _polling(supervisor: Supervisor) -> bool:
    return supervisor.worker is not None and supervisor.worker.ctx.get("waitlist") is not None


async def _redis_down(supervisor: Supervisor) -> bool:
    return supervisor.outages.is_down(REDIS)


async def _exists(arq: Any, key: str) -> bool:
    return bool(await arq.exists(key))


async def _down(supervisor: Supervisor) -> bool:
    return supervisor.outages.is_down(POSTGRESQL)


async def _none_pending(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM booking_attempts WHERE status = 'pending'") == 0


async def _queue_empty(arq: Any, queue_name: str) -> bool:
    return await arq.zcard(queue_name) == 0


async def test_the_worker_starts_while_postgresql_is_down_and_begins_once_it_is_up(
    settings: Settings, postgres: EmbeddedPostgres, own_database: str
) -> None:
    settings = replace(settings, database_url=own_database)
    assert settings.redis_url
    await asyncio.to_thread(postgres.stop)
    supervisor = Supervisor(settings, serve_metrics=False, poll_delay=0.01, cron_jobs=[])
    running = asyncio.create_task(supervisor.run())
    try:
        await eventually(lambda: _down(supervisor), "the worker finding PostgreSQL gone")
        assert not running.done()
        await asyncio.to_thread(postgres.start)
        await eventually(lambda: _polling(supervisor), "the worker polling")
        pool = await create_pool(own_database)
        arq = await create_arq_pool(settings.redis_url, settings.queue_name)
        try:
            job = await accept(pool, await seed_site_and_slot(pool), 1)
            await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
            await eventually(lambda: _is(pool, job, "confirmed"), "the booking")
        finally:
            await arq.aclose()
            await pool.close()
    finally:
        supervisor.stop()
        await running
