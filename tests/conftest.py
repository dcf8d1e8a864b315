"""Fixtures: real PostgreSQL and Redis, never fakes.

``SURGEGATE_TEST_DATABASE_URL`` / ``SURGEGATE_TEST_REDIS_URL`` point at existing servers when set;
otherwise an embedded PostgreSQL and Valkey are started once per session (as asyncpg's _testbase
does). Every test that touches them starts from empty tables and an empty Redis database.
"""

from __future__ import annotations

import graphlib
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from admission.app import create_app as create_api
from shared.db import create_pool, migrate
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey
from tests.helpers import ADMIN, TEST_KEYS, FakeClock, serve
from waitingroom.app import create_app as create_edge

# Every table of the schema and the tables its foreign keys point at (the migrations' own table kept).
TABLES = """
SELECT c.relname AS name, array_remove(array_agg(DISTINCT p.relname::text), NULL) AS referenced
FROM pg_class c
LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f' AND k.confrelid <> c.oid
LEFT JOIN pg_class p ON p.oid = k.confrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname <> 'schema_migrations'
GROUP BY c.relname
"""
APPEND_ONLY = (
    "audit_log",
    "audit_checkpoints",
    "audit_archives",
)  # triggers refuse DELETE; TRUNCATE fires no row trigger


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


@pytest.fixture(scope="session")
async def emptying(pool: asyncpg.Pool) -> str:
    """One statement that empties every table, referencing tables before those they reference.

    DELETE, not TRUNCATE: on a test's handful of rows it takes well under a millisecond, where a
    TRUNCATE of the whole schema takes tens (new files for every table and index, fsynced).
    """
    graph = {row["name"]: set(row["referenced"]) for row in await pool.fetch(TABLES)}
    referenced_first = list(graphlib.TopologicalSorter(graph).static_order())
    deletes = [f"DELETE FROM {name}" for name in reversed(referenced_first) if name not in APPEND_ONLY]
    return "; ".join([*(f"TRUNCATE {name}" for name in APPEND_ONLY), *deletes])


@pytest.fixture
async def clean(pool: asyncpg.Pool, redis: Redis, emptying: str) -> None:
    await pool.execute(emptying)
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
        # Tests run whole flows at machine speed, hundreds of visitors from one address: the booking
        # API's limits stay on (every request takes from its buckets) but only throttle tests reach them.
        api_token_read_limit_per_min=10_000,
        api_token_read_limit_burst=10_000,
        api_token_write_limit_per_min=10_000,
        api_token_write_limit_burst=10_000,
        api_client_read_limit_per_min=10_000,
        api_client_read_limit_burst=10_000,
        api_client_write_limit_per_min=10_000,
        api_client_write_limit_burst=10_000,
        manage_link_limit_per_min=10_000,
        manage_link_limit_burst=10_000,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(TEST_KEYS)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[TestClient]:
    async with serve(create_api(settings)) as client:
        yield client


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_edge(settings, clock=clock, run_ticker=False)) as client:
        yield client
