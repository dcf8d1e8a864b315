"""Exactly once in effect: duplicate enqueues, re-runs, a crash between commit and result,
concurrent duplicate executions and client resubmits all end with one appointment."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from admission.app import create_app as create_api
from booking_worker.booking import BOOK_MAX_TRIES, RETRY_MAX_S, book, requeue_pending, retry_delay
from booking_worker.worker import WorkerSettings
from shared import seats
from shared.attempts import execute as run_attempt
from shared.booking import BookingJob, InvalidJob, attempt_id_for
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.redis import create_arq_pool, job_of
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import (
    accepted,
    admission_token,
    booking_headers,
    metric_value,
    person,
    run_burst,
    running_worker,
    seed_site_and_slot,
    serve,
)


def job_for(slot_id: str, *, token_id: str = "tok-1", key: str = "key-1", person_no: int = 1) -> BookingJob:
    vault = PersonVault(b"k" * 32)
    return BookingJob(
        attempt_id=str(attempt_id_for(token_id, key)),
        token_id=token_id,
        event_id="ev",
        scope=None,
        slot_id=slot_id,
        request_hash="ab" * 32,
        person_ref=vault.ref(f"ID-{person_no}").hex(),
        person_sealed=vault.seal({"name": "x"}).decode(),
    )


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    return (
        await pool.fetchval("SELECT count(*) FROM appointments"),
        await pool.fetchval("SELECT count(*) FROM booking_attempts"),
        await pool.fetchval("SELECT COALESCE(sum(booked), 0) FROM slots"),
    )


async def arq_pool(settings: Settings) -> ArqRedis:
    assert settings.redis_url
    return await create_arq_pool(settings.redis_url, settings.queue_name)


def ctx(pool: asyncpg.Pool, metrics: Metrics) -> dict[str, Any]:
    return {"pool": pool, "metrics": metrics, "job_try": 1}


async def test_duplicate_enqueue_is_a_no_op_and_books_once(settings: Settings, pool: asyncpg.Pool) -> None:
    slot_id = await seed_site_and_slot(pool)
    job = job_for(slot_id)
    await accepted(pool, job)
    arq = await arq_pool(settings)
    try:
        first = await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        second = await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        assert first is not None
        assert second is None
        metrics = Metrics()
        worker = await run_burst(settings, metrics)
        assert worker.jobs_complete == 1
        result = await job_of(arq, job.attempt_id).result(timeout=5)
        assert result["status"] == "confirmed"
        # after completion a further enqueue is also refused while the result is kept
        assert await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id) is None
    finally:
        await arq.aclose()
    assert await counts(pool) == (1, 1, 1)
    assert metric_value(metrics, "surgegate_booking_attempts_total", event="ev", outcome="confirmed") == 1


async def test_running_the_same_attempt_twice_returns_the_stored_outcome(pool: asyncpg.Pool, clean: None) -> None:
    slot_id = await seed_site_and_slot(pool)
    metrics = Metrics()
    first = await book(ctx(pool, metrics), await accepted(pool, job_for(slot_id)))
    second = await book(ctx(pool, metrics), await accepted(pool, job_for(slot_id)))
    assert first == second
    assert first["status"] == "confirmed"
    assert await counts(pool) == (1, 1, 1)
    # only the execution that did the work is counted
    assert metric_value(metrics, "surgegate_booking_attempts_total", event="ev", outcome="confirmed") == 1


async def test_crash_between_commit_and_result_then_redelivery(settings: Settings, pool: asyncpg.Pool) -> None:
    """A worker commits and dies before arq records the result; the job is still queued and runs again."""
    slot_id = await seed_site_and_slot(pool)
    job = job_for(slot_id)
    await accepted(pool, job)
    arq = await arq_pool(settings)
    try:
        await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        committed = await book(ctx(pool, Metrics()), job.to_dict())  # the "crashed" execution
        assert await job_of(arq, job.attempt_id).result_info() is None
        await run_burst(settings)  # redelivery
        redelivered = await job_of(arq, job.attempt_id).result(timeout=5)
    finally:
        await arq.aclose()
    assert redelivered == committed
    assert await counts(pool) == (1, 1, 1)


async def test_concurrent_duplicate_executions_book_once(pool: asyncpg.Pool, clean: None) -> None:
    slot_id = await seed_site_and_slot(pool)
    payload = await accepted(pool, job_for(slot_id))
    results = await asyncio.gather(*(book(ctx(pool, Metrics()), payload) for _ in range(8)))
    assert all(r == results[0] for r in results)
    assert await counts(pool) == (1, 1, 1)


async def test_failure_before_commit_leaves_no_trace(pool: asyncpg.Pool, clean: None) -> None:
    """An execution whose transaction aborts leaves the attempt pending as accepted, so its retry runs
    from scratch."""
    slot_id = await seed_site_and_slot(pool)
    job = job_for(slot_id)
    await accepted(pool, job)
    async with pool.acquire() as con:
        tx = con.transaction()
        await tx.start()
        await run_attempt(con, job.attempt_id)
        await tx.rollback()
    assert await counts(pool) == (0, 1, 0)
    assert await pool.fetchval("SELECT status FROM booking_attempts") == "pending"
    assert (await book(ctx(pool, Metrics()), job.to_dict()))["status"] == "confirmed"
    assert await counts(pool) == (1, 1, 1)


async def test_business_outcomes_are_results(pool: asyncpg.Pool, clean: None) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=1)
    m = Metrics()
    first = await book(ctx(pool, m), await accepted(pool, job_for(slot_id, token_id="a", person_no=1)))
    assert first["status"] == "confirmed"
    full = await book(ctx(pool, m), await accepted(pool, job_for(slot_id, token_id="b", person_no=2)))
    assert (full["status"], full["code"]) == ("rejected", "slot_full")
    other = await seed_site_and_slot(pool, capacity=5)
    again = await book(ctx(pool, m), await accepted(pool, job_for(other, token_id="c", person_no=1)))
    assert again["code"] == "already_booked"
    used = await book(ctx(pool, m), await accepted(pool, job_for(other, token_id="a", key="key-2", person_no=3)))
    assert used["code"] == "admission_used"
    missing = await book(ctx(pool, m), await accepted(pool, job_for(str(uuid.uuid4()), token_id="d", person_no=4)))
    assert missing["code"] == "not_found"
    # a rejected attempt took no seat, and each outcome is audited
    assert await pool.fetchval("SELECT booked FROM slots WHERE slot_id = $1", uuid.UUID(other)) == 0
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY audit_id")]
    assert actions == [
        "booked",
        "booking_rejected",
        "booking_rejected",
        "booking_rejected",
        "booking_rejected",
    ]


async def test_resubmit_with_same_idempotency_key_books_once(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool)
    token = admission_token(codec)
    headers = booking_headers(token, "same-key")
    body = {"slot_id": slot_id, "person": person(1)}
    async with running_worker(settings):
        answers = await asyncio.gather(
            *(api.post("/api/v1/appointments", json=body, headers=headers) for _ in range(5))
        )
        bodies = [await r.json() for r in answers]
        later = await api.post("/api/v1/appointments", json=body, headers=headers)
        later_body = await later.json()
    # One runs; a duplicate that arrives while it is in flight hears 409 in progress, one that arrives
    # after it finished hears the same 201: never a second booking, never a different answer.
    statuses = [r.status for r in answers]
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    assert {b["code"] for b in bodies if "code" in b} <= {"idempotency_in_progress"}
    confirmed = [b for b in bodies if "appointment_id" in b]
    assert len({b["appointment_id"] for b in confirmed}) == 1
    assert later.status == 201
    assert later_body == confirmed[0]
    assert await counts(pool) == (1, 1, 1)


async def test_an_accepted_attempt_survives_redis_losing_its_job(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, redis: Redis
) -> None:
    from dataclasses import replace

    slot_id = await seed_site_and_slot(pool)
    token = admission_token(codec)
    async with serve(create_api(replace(settings, booking_wait_s=0.1))) as api:  # no worker running yet
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k"))  # fmt: skip
        accepted = await resp.json()
        assert resp.status == 202
        await redis.flushdb()  # the queue loses everything
        await run_burst(settings)
        # negative control: with the job gone, a worker alone never books it
        assert await pool.fetchval("SELECT status FROM booking_attempts") == "pending"
        arq = await arq_pool(settings)
        try:
            assert await requeue_pending({"pool": pool, "redis": arq}, older_than_s=0) == 1
            assert await requeue_pending({"pool": pool, "redis": arq}, older_than_s=0) == 0  # already queued
        finally:
            await arq.aclose()
        await run_burst(settings)
        status = await (await api.get(accepted["status_url"], headers={"Authorization": f"Bearer {token}"})).json()
    assert status["status"] == "confirmed"
    assert await counts(pool) == (1, 1, 1)
    assert await pool.fetchval("SELECT job FROM booking_attempts") is None  # ciphertext dropped once final


@pytest.mark.parametrize("error", [asyncpg.SerializationError, asyncpg.DeadlockDetectedError])
async def test_serialization_and_deadlock_errors_retry_and_leave_nothing(
    pool: asyncpg.Pool, clean: None, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    slot_id = await seed_site_and_slot(pool)

    async def conflicting_take_seat(con: asyncpg.Connection, slot: uuid.UUID, now: datetime) -> bool:
        raise error("could not serialize access")

    monkeypatch.setattr(seats, "take_seat", conflicting_take_seat)
    with pytest.raises(Retry):
        await book(ctx(pool, Metrics()), await accepted(pool, job_for(slot_id)))
    # rolled back whole: the attempt is still pending as accepted and the retry starts from scratch
    assert await counts(pool) == (0, 1, 0)
    assert await pool.fetchval("SELECT status FROM booking_attempts") == "pending"
    monkeypatch.undo()
    assert (await book(ctx(pool, Metrics()), await accepted(pool, job_for(slot_id))))["status"] == "confirmed"


@pytest.mark.parametrize(
    "payload",
    [
        {"attempt_id": str(uuid.uuid4())},  # fields missing
        {**job_for("x").to_dict(), "extra": 1},  # a field we do not know
        {**job_for("x").to_dict(), "scope": "all"},  # a field of the wrong type
        ["not", "an", "object"],
    ],
)
async def test_a_payload_that_is_not_a_booking_job_runs_nothing(pool: asyncpg.Pool, clean: None, payload: Any) -> None:
    with pytest.raises(InvalidJob):
        await book(ctx(pool, Metrics()), payload)
    assert await counts(pool) == (0, 0, 0)


async def test_an_attempt_whose_job_failed_is_queued_again(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, redis: Redis
) -> None:
    """A job that ended without an outcome (here: tampered with in Redis, so refused unrun) leaves a
    failed result that blocks its job id; the re-queue job drops it and queues the attempt again from
    its row in PostgreSQL."""
    from dataclasses import replace

    slot_id = await seed_site_and_slot(pool)
    token = admission_token(codec)
    async with serve(create_api(replace(settings, booking_wait_s=0.1))) as api:  # no worker running yet
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k"))  # fmt: skip
        attempt_id = (await resp.json())["attempt_id"]
    await redis.set(job_key_prefix + attempt_id, b'{"not": "a job"}')
    worker = await run_burst(settings)
    assert worker.jobs_failed == 1
    assert await pool.fetchval("SELECT status FROM booking_attempts") == "pending"
    arq = await arq_pool(settings)
    try:
        job = await pool.fetchval("SELECT job FROM booking_attempts")
        # negative control: the failed result blocks a plain enqueue of the same job id
        assert await arq.enqueue_job("book", job, _job_id=attempt_id) is None
        assert await requeue_pending({"pool": pool, "redis": arq}, older_than_s=0) == 1
        assert await requeue_pending({"pool": pool, "redis": arq}, older_than_s=0) == 0  # queued now
        await run_burst(settings)
        outcome = await job_of(arq, attempt_id).result(timeout=5)
    finally:
        await arq.aclose()
    assert outcome["status"] == "confirmed"
    assert await counts(pool) == (1, 1, 1)


def test_database_errors_are_retried_without_a_try_limit_and_at_most_2_s_apart() -> None:
    delays = [retry_delay(n) for n in range(1, 8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert retry_delay(BOOK_MAX_TRIES) == 2.0
    # a day of tries at the cap: the job expires (arq drops it after a day) before its tries run out
    assert BOOK_MAX_TRIES * RETRY_MAX_S > 24 * 3600
    assert WorkerSettings.functions[0].max_tries == BOOK_MAX_TRIES


async def test_the_edges_signals_go_to_the_waiting_rooms_redis_when_the_queue_has_its_own(redis: Redis) -> None:
    """With SURGEGATE_QUEUE_REDIS_URL apart, a booked admission frees its max_active place and reports its
    latency in the waiting room's Redis (``room_redis``), not in arq's, where the edge never reads."""
    from booking_worker.booking import _tell_the_edge
    from shared.booking import BookingOutcome
    from shared.keys import active_admissions_key, booking_latency_key
    from shared.statuses import AttemptStatus

    room_db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    queue = Redis(**{**redis.connection_pool.connection_kwargs, "db": (room_db + 1) % 16})  # another server's stand-in
    try:
        await queue.flushdb()
        job = replace(job_for(str(uuid.uuid4())), rank=3)
        outcome = BookingOutcome(attempt_id=job.attempt_id, status=AttemptStatus.CONFIRMED, code=None,
                                 request_hash=job.request_hash, event_id=job.event_id)  # fmt: skip
        await redis.delete(booking_latency_key(job.event_id), active_admissions_key(job.event_id))
        await redis.zadd(active_admissions_key(job.event_id), {"3": 1})
        ctx = {"redis": queue, "room_redis": redis, "enqueue_time": datetime.now(UTC)}
        await _tell_the_edge(ctx, job, outcome, executed=True)
        assert await redis.zcard(active_admissions_key(job.event_id)) == 0
        assert await redis.llen(booking_latency_key(job.event_id)) == 1
        assert await queue.dbsize() == 0
        # the control: without the room's client they land in arq's Redis, where the edge does not look
        await _tell_the_edge({**ctx, "room_redis": queue}, job, outcome, executed=True)
        assert await queue.llen(booking_latency_key(job.event_id)) == 1
    finally:
        await queue.flushdb()
        await queue.aclose()
