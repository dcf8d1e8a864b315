"""Jobs and results are JSON: bytes planted under an arq key are never unpickled, and a job that is
not one of ours fails before anything runs, while the worker goes on with the rest."""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq.constants import job_key_prefix
from redis.asyncio import Redis

from shared import job_codec
from shared.booking import BookingJob, BookingOutcome, attempt_id_for
from shared.persons import PersonVault
from shared.redis import create_arq_pool, job_of
from shared.settings import Settings
from shared.statuses import AttemptStatus
from tests.helpers import accepted, make_worker, seed_site_and_slot


class WritesAFile:
    """A benign stand-in for an attacker's pickle: unpickling it writes a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "unpickled"))


def planted_job(path: Path) -> bytes:
    """What someone with write access to Redis could put under ``arq:job:{id}``."""
    envelope = {"t": None, "f": "book", "a": (WritesAFile(path),), "k": {}, "et": int(time.time() * 1000)}
    return pickle.dumps(envelope)


def booking_job(slot_id: str) -> BookingJob:
    vault = PersonVault(b"k" * 32)
    return BookingJob(
        attempt_id=str(attempt_id_for("tok-1", "key-1")), token_id="tok-1", event_id="ev", scope=None,
        slot_id=slot_id, request_hash="ab" * 32, person_ref=vault.ref("ID-1").hex(),
        person_sealed=vault.seal({"name": "x"}).decode(),
    )  # fmt: skip


async def plant(redis: Redis, queue_name: str, job_id: str, payload: bytes) -> None:
    await redis.set(job_key_prefix + job_id, payload)
    await redis.zadd(queue_name, {job_id: int(time.time() * 1000) - 1000})  # due before the real job


async def test_a_planted_pickle_is_not_run_and_the_worker_goes_on(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, tmp_path: Path
) -> None:
    written = tmp_path / "pwned"
    planted = str(uuid.uuid4())
    await plant(redis, settings.queue_name, planted, planted_job(written))
    slot_id = await seed_site_and_slot(pool)
    job = booking_job(slot_id)
    await accepted(pool, job)
    assert settings.redis_url
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    try:
        await arq.enqueue_job("book", job.to_dict(), _job_id=job.attempt_id)
        worker = make_worker(settings, burst=True, poll_delay=0)
        try:
            await worker.main()
        finally:
            await worker.close()
        assert not written.exists()
        assert (worker.jobs_failed, worker.jobs_complete) == (1, 1)
        refused = await job_of(arq, planted).result_info()  # a failed result, itself JSON
        booked = await job_of(arq, job.attempt_id).result(timeout=5)
    finally:
        await arq.aclose()
    assert refused is not None and not refused.success
    assert refused.result == {"error": "DeserializationError"}
    assert BookingOutcome.from_dict(booked).status == AttemptStatus.CONFIRMED
    assert await redis.zcard(settings.queue_name) == 0
    assert await redis.exists(job_key_prefix + planted) == 0


async def test_negative_control_arqs_default_pickle_runs_the_planted_code(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    written = tmp_path / "pwned"
    await plant(redis, settings.queue_name, str(uuid.uuid4()), planted_job(written))
    worker = make_worker(settings, burst=True, poll_delay=0, job_deserializer=pickle.loads)
    try:
        await worker.main()
    finally:
        await worker.close()
    assert written.read_text() == "unpickled"


def envelope(**changes: Any) -> dict[str, Any]:
    return {"t": None, "f": "book", "a": [{"attempt_id": "x"}], "k": {}, "et": 1_700_000_000_000, **changes}


def result(**changes: Any) -> dict[str, Any]:
    return envelope(**{"s": True, "r": {"status": "confirmed"}, "st": 1, "ft": 2, "q": "queue", "id": "job", **changes})


@pytest.mark.parametrize("data", [envelope(), envelope(a=[]), envelope(t=3), result(), result(s=False, r=None)])
def test_jobs_and_results_of_our_shape_round_trip(data: dict[str, Any]) -> None:
    assert job_codec.loads(job_codec.dumps(data)) == data


def test_an_exception_result_is_stored_as_its_class_name_only() -> None:
    stored = job_codec.loads(job_codec.dumps(result(s=False, r=ValueError("id 12345 is taken"))))
    assert stored["r"] == {"error": "ValueError"}


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps(envelope()),  # the default serialiser's bytes
        b"\xff\xfe not utf-8",
        b"[" * 5000 + b"]" * 5000,  # deeper than the parser goes
        json.dumps([envelope()]).encode(),
        json.dumps({**envelope(), "x": 1}).encode(),  # a key we do not know
        json.dumps({k: v for k, v in envelope().items() if k != "et"}).encode(),
        json.dumps(envelope(f=1)).encode(),
        json.dumps(envelope(a=[{}, {}])).encode(),  # our jobs take one argument at most
        json.dumps(envelope(a=["text"])).encode(),  # ... and it is an object
        json.dumps(envelope(k={"older_than_s": 0})).encode(),  # no keyword arguments
        json.dumps(envelope(t="1")).encode(),
        json.dumps(envelope(et=True)).encode(),
        json.dumps(result(s="yes")).encode(),
        json.dumps(result(ft=None)).encode(),
    ],
)
def test_anything_else_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        job_codec.loads(raw)


async def test_a_forged_job_of_the_right_shape_books_nothing(
    settings: Settings, pool: asyncpg.Pool, redis: Redis
) -> None:
    """Anyone who can write to Redis can write a well-formed job (any slot, no scope, any person): the
    worker executes only attempts the API accepted, as they were accepted."""
    slot_id = await seed_site_and_slot(pool)
    forged = booking_job(slot_id)
    assert settings.redis_url
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    try:
        await arq.enqueue_job("book", forged.to_dict(), _job_id=forged.attempt_id)
        worker = make_worker(settings, burst=True, poll_delay=0)
        try:
            await worker.main()
        finally:
            await worker.close()
        assert (worker.jobs_failed, worker.jobs_complete) == (1, 0)
        assert await pool.fetchval("SELECT count(*) FROM appointments") == 0
        assert await pool.fetchval("SELECT booked FROM slots") == 0
        # control: the same job, once the API accepted its attempt, books (the forgery was well formed)
        await accepted(pool, forged)
        await arq.enqueue_job("book", forged.to_dict(), _job_id=f"{forged.attempt_id}-again")
        worker = make_worker(settings, burst=True, poll_delay=0)
        try:
            await worker.main()
        finally:
            await worker.close()
        assert worker.jobs_complete == 1
    finally:
        await arq.aclose()
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 1


async def test_a_tampered_job_books_what_was_accepted(settings: Settings, pool: asyncpg.Pool) -> None:
    """A job rewritten in Redis (another slot, no scope) still books exactly the accepted request."""
    slot_id = await seed_site_and_slot(pool, capacity=5)
    other = await seed_site_and_slot(pool, capacity=5, site_id="site-b")
    job = booking_job(slot_id)
    await accepted(pool, job)
    tampered = {**job.to_dict(), "slot_id": other, "scope": None}
    assert settings.redis_url
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    try:
        await arq.enqueue_job("book", tampered, _job_id=job.attempt_id)
        worker = make_worker(settings, burst=True, poll_delay=0)
        try:
            await worker.main()
        finally:
            await worker.close()
    finally:
        await arq.aclose()
    assert await pool.fetchval("SELECT slot_id::text FROM appointments") == slot_id
