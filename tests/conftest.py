"""Fixtures: real PostgreSQL and Redis, never fakes.

``SURGEGATE_TEST_DATABASE_URL`` / ``SURGEGATE_TEST_REDIS_URL`` point at existing servers when set;
otherwise an embedded PostgreSQL and Valkey are started once per session (as asyncpg's _testbase
does). Every test that touches them starts from empty tables and an empty Redis database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker
from redis.asyncio import Redis

from admission.app import create_app as create_api
from booking_worker.worker import build_worker
from shared.db import create_pool, migrate
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey
from waitingroom.app import create_app as create_edge
from waitingroom.room import Room

TEST_KEYS = (("k1", "test-secret-key-number-one"),)
ADMIN = "test-admin-token"
TABLES = (
    "notifications, waitlist_offer_recipients, waitlist_offers, waitlist_entries, idempotency_keys, holds, "
    "schedule_overrides, schedules, appointment_types, lottery_draws, queue_checkpoints, audit_log, "
    "booking_attempts, appointments, slots, sites, events"
)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SURGEGATE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SURGEGATE_TEST_REDIS_URL")
    if url:
        # Our own database index, so flushing it never touches anyone else's keys.
        base = url.rstrip("/")
        yield base if base.rsplit("/", 1)[-1].isdigit() and base.count("/") > 2 else f"{base}/13"
        return
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), persist=False)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    con = await asyncpg.connect(database_url)
    try:
        await migrate(con)
    finally:
        await con.close()
    p = await create_pool(database_url, min_size=1, max_size=20)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def clean(pool: asyncpg.Pool, redis: Redis) -> None:
    await pool.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    await redis.flushdb()


@pytest.fixture
def settings(database_url: str, redis_url: str, clean: None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_keys=TEST_KEYS,
        admin_tokens=(ADMIN,),
        booking_wait_s=10.0,
        edge_tick_s=0.05,
        event_refresh_s=0.0,
        queue_name="surgegate:test-booking",
    )


@dataclass
class FakeClock:
    """An injected clock: time moves only when a test says so."""

    now: float = field(default_factory=lambda: 1_800_000_000.0)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(TEST_KEYS)


async def tick_for(clock: FakeClock, seconds: float, *rooms: Room, step: float = 0.125) -> None:
    """Let ``seconds`` of queue time pass in ``step``s, every room ticking at each step."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for room in rooms:
            await room.tick()


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[TestClient]:
    async with serve(create_api(settings)) as client:
        yield client


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_edge(settings, clock=clock, run_ticker=False)) as client:
        yield client


def make_worker(settings: Settings, metrics: Metrics | None = None, **overrides: Any) -> Worker:
    ctx: dict[str, Any] = {"serve_metrics": False, "metrics": metrics or Metrics()}
    # No cron in test workers: tests that need the re-queue job call it directly, deterministically.
    options: dict[str, Any] = {"handle_signals": False, "poll_delay": 0.01, "cron_jobs": [], **overrides}
    return build_worker(settings, ctx=ctx, **options)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Worker]:
    """A worker polling in the background for the duration of the block."""

    worker = make_worker(settings, metrics)
    task = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def run_burst(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Run every queued job, then return (arq burst mode)."""
    worker = make_worker(settings, metrics, burst=True, poll_delay=0)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def seed_site_and_slot(
    pool: asyncpg.Pool,
    *,
    capacity: int = 20,
    site_id: str = "site-a",
    timezone: str = "Europe/Berlin",
    event_id: str = "ev",
    site_ids: list[str] | None = None,
) -> str:
    """An event, a site and one slot tomorrow; returns the slot id."""
    slot_id = uuid.uuid4()
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    async with pool.acquire() as con, con.transaction():
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s, site_ids) VALUES ($1, $2, 1, 900, $3)"
            " ON CONFLICT DO NOTHING",
            event_id,
            "Test event",
            site_ids,
        )
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'Site', 'R', $2, 52.5, 13.4)"
            " ON CONFLICT DO NOTHING",
            site_id,
            timezone,
        )
        await con.execute(
            "INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity) VALUES ($1, $2, $3, $4, $5)",
            slot_id,
            site_id,
            starts,
            starts + timedelta(minutes=15),
            capacity,
        )
    return str(slot_id)


def admission_token(
    codec: TokenCodec,
    visitor: str | None = None,
    *,
    event_id: str = "ev",
    scope: list[str] | None = None,
    ttl: float = 900,
) -> str:
    return codec.sign_admission(
        event_id=event_id, visitor_id=visitor or uuid.uuid4().hex, scope=scope, expires_at=time.time() + ttl
    )


def person(i: int) -> dict[str, str]:
    return {
        "id_number": f"ID-{i:06d}",
        "name": f"Person Number{i}",
        "email": f"person{i}@example.org",
        "birth_date": "1970-01-01",
    }


def booking_headers(token: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key or uuid.uuid4().hex}


def assert_problem(resp_status: int, body: dict[str, Any], status: int, code: str) -> None:
    assert resp_status == status, body
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()


REPO = Path(__file__).resolve().parent.parent


async def seed_typed_slots(
    pool: asyncpg.Pool,
    *,
    count: int = 2,
    capacity: int = 2,
    site_id: str = "site-a",
    timezone: str = "Europe/Berlin",
    cancel_cutoff_minutes: int = 0,
    days_ahead: int = 2,
) -> list[str]:
    """An event, a site, appointment type ``group`` and ``count`` hourly slots of it; returns their ids."""
    starts = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days_ahead)
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as con, con.transaction():
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)"
            " ON CONFLICT DO NOTHING"
        )
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'Site', 'R', $2, 52.5, 13.4)"
            " ON CONFLICT DO NOTHING",
            site_id,
            timezone,
        )
        await con.execute(
            "INSERT INTO appointment_types (type_id, name, duration_minutes, seats_per_slot, cancel_cutoff_minutes)"
            " VALUES ('group', 'Group', 30, $1, $2) ON CONFLICT DO NOTHING",
            capacity,
            cancel_cutoff_minutes,
        )
        for i, slot_id in enumerate(ids):
            await con.execute(
                "INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity)"
                " VALUES ($1, $2, 'group', $3, $4, $5)",
                slot_id, site_id, starts + timedelta(hours=i), starts + timedelta(hours=i, minutes=30), capacity,
            )  # fmt: skip
    return [str(i) for i in ids]


async def book(api: TestClient, token: str, i: int, **target: str) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/appointments for person ``i`` with slot_id= or hold_id=; (status, body)."""
    resp = await api.post("/api/v1/appointments", json={**target, "person": person(i)}, headers=booking_headers(token))
    return resp.status, await resp.json()


async def seats_of(pool: asyncpg.Pool, slot_id: str) -> tuple[int, int]:
    """(booked, live holds) of a slot, from the primary."""
    row = await pool.fetchrow(
        "SELECT booked, (SELECT count(*) FROM holds h WHERE h.slot_id = s.slot_id AND h.status = 'active'"
        " AND (h.expires_at > now() OR h.pinned_attempt IS NOT NULL)) AS held FROM slots s WHERE slot_id = $1",
        uuid.UUID(slot_id),
    )
    return row["booked"], row["held"]
