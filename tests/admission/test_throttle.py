"""Limits per credential on the booking API (admission/throttle.py), with real concurrent requests.

One admission token spamming holds is refused 429 after its burst while another token's requests
succeed; many tokens from one address share the client's allowance (claims and the admin API too);
``0`` disables, and the same spam then all succeeds (the negative control). While Redis is down the
limits hold in each process's memory: neither an unbounded loop nor a 503 per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from admission.keys import METRICS
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedValkey
from tests.helpers import FakeClock, admin_headers, admission_token, assert_problem, metric_value, seed_typed_slots
from tests.helpers import serve as serve_app

API_LIMITS = [
    f"api_{who}_{kind}_limit_{part}"
    for who in ("token", "client")
    for kind in ("read", "write")
    for part in ("per_min", "burst")
]
SPAMMER_ADDRESS = "198.51.100.7"


@contextlib.asynccontextmanager
async def serve(settings: Settings, clock: FakeClock, **limits: float) -> AsyncIterator[TestClient]:
    """The API behind a trusted proxy (127.0.0.1) with every limit off but ``limits``."""
    limited = replace(settings, trusted_proxies=("127.0.0.1/32",), **{**dict.fromkeys(API_LIMITS, 0), **limits})
    async with serve_app(create_app(limited, clock=clock)) as client:
        yield client


def headers(token: str | None = None, *, key: bool = True, address: str = SPAMMER_ADDRESS) -> dict[str, str]:
    out = {"X-Forwarded-For": address}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    if key:
        out["Idempotency-Key"] = uuid.uuid4().hex
    return out


async def hold(api: TestClient, token: str, slot_id: str, **kwargs: Any) -> tuple[int, dict[str, Any], str | None]:
    resp = await api.post("/api/v1/holds", json={"slot_id": slot_id}, headers=headers(token, **kwargs))
    return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def spam_holds(api: TestClient, token: str, slot_id: str, n: int) -> list[tuple[int, dict[str, Any], str | None]]:
    """``n`` concurrent holds of one token, each with a fresh Idempotency-Key (the reported attack)."""
    return list(await asyncio.gather(*(hold(api, token, slot_id) for _ in range(n))))


async def rows_of(pool: asyncpg.Pool, token: str, codec: TokenCodec) -> tuple[int, int]:
    token_id = codec.verify_admission(token).token_id
    holds = await pool.fetchval("SELECT count(*) FROM holds WHERE token_id = $1", token_id)
    keys = await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE token_id = $1", token_id)
    return holds, keys


async def test_one_token_spamming_holds_is_refused_after_its_burst_and_another_token_is_not(
    settings: Settings, clock: FakeClock, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b = await seed_typed_slots(pool, capacity=100)
    limits = {"api_token_write_limit_per_min": 6, "api_token_write_limit_burst": 5,
              "api_token_read_limit_per_min": 60, "api_token_read_limit_burst": 3}  # fmt: skip
    async with serve(settings, clock, **limits) as api:
        spammer, other = admission_token(codec), admission_token(codec)
        spam, others = await asyncio.gather(
            spam_holds(api, spammer, a, 40),
            asyncio.gather(*(hold(api, other, b) for _ in range(5))),  # within its own burst
        )
        assert Counter(status for status, _, _ in spam) == {201: 5, 429: 35}
        for status, body, retry_after in spam:
            if status == 429:
                assert_problem(status, body, 429, "rate_limited")
                assert retry_after == "10"  # one write per 10 s at 6 per minute
        assert [status for status, _, _ in others] == [201] * 5
        # what the spam left behind: its burst, not 40 rows of each
        assert await rows_of(pool, spammer, codec) == (5, 5)
        metrics = api.app[METRICS]
        assert metric_value(metrics, "surgegate_api_throttled_total", scope="token", kind="write") == 35
        # reads have their own bucket: the spammer can still look at its hold (a poller is not starved)
        hold_id = next(body["hold_id"] for status, body, _ in spam if status == 201)
        resp = await api.get(f"/api/v1/holds/{hold_id}", headers=headers(spammer, key=False))
        assert resp.status == 200
        # refilled at its rate: ten seconds on, one more write, then refused again
        clock.advance(10)
        assert [(await hold(api, spammer, a))[0] for _ in range(2)] == [201, 429]


async def test_negative_control_with_the_limits_at_0_the_same_spam_all_succeeds(
    settings: Settings, clock: FakeClock, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (a,) = await seed_typed_slots(pool, count=1, capacity=100)
    async with serve(settings, clock) as api:  # every limit 0
        spammer = admission_token(codec)
        spam = await spam_holds(api, spammer, a, 40)
        assert Counter(status for status, _, _ in spam) == {201: 40}
        assert await rows_of(pool, spammer, codec) == (40, 40)
        assert metric_value(api.app[METRICS], "surgegate_api_throttled_total", scope="token", kind="write") == 0


async def test_many_tokens_from_one_address_share_its_allowance(
    settings: Settings, clock: FakeClock, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (a,) = await seed_typed_slots(pool, count=1, capacity=100)
    limits = {"api_client_write_limit_per_min": 6, "api_client_write_limit_burst": 4,
              "api_client_read_limit_per_min": 6, "api_client_read_limit_burst": 2}  # fmt: skip
    async with serve(settings, clock, **limits) as api:
        answers = await asyncio.gather(*(hold(api, admission_token(codec), a) for _ in range(12)))
        assert Counter(status for status, _, _ in answers) == {201: 4, 429: 8}
        refused = next(body for status, body, _ in answers if status == 429)
        assert_problem(429, refused, 429, "rate_limited")
        assert "network" in refused["detail"]
        # another address, and another /64, are not affected; one IPv6 /64 is one client
        assert (await hold(api, admission_token(codec), a, address="198.51.100.8"))[0] == 201
        v6 = [(await hold(api, admission_token(codec), a, address=f"2001:db8:7:7::{i}"))[0] for i in range(1, 7)]
        assert v6 == [201] * 4 + [429] * 2
        # the claim link and the admin API count against the client too (no admission token there)
        resp = await api.post("/api/v1/waitlist/claims", json={"claim": "x"}, headers=headers(key=False))
        assert_problem(resp.status, await resp.json(), 429, "rate_limited")
        admin = {**admin_headers(), "X-Forwarded-For": "203.0.113.50"}
        statuses = [(await api.get("/admin/v1/appointment-types", headers=admin)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        # requests outside the API are never limited
        assert (await api.get("/healthz", headers=headers(key=False))).status == 200
        metrics = api.app[METRICS]
        assert metric_value(metrics, "surgegate_api_throttled_total", scope="client", kind="write") == 11
        assert metric_value(metrics, "surgegate_api_throttled_total", scope="client", kind="read") == 1


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "vk", persist=False)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow  # stops and restarts its own Valkey
async def test_with_redis_down_each_process_limits_on_its_own(
    settings: Settings, clock: FakeClock, codec: TokenCodec, pool: asyncpg.Pool, own_valkey: EmbeddedValkey
) -> None:
    (a,) = await seed_typed_slots(pool, count=1, capacity=100)
    limits = {"api_token_write_limit_per_min": 6, "api_token_write_limit_burst": 3}
    async with serve(replace(settings, redis_url=own_valkey.url), clock, **limits) as api:
        metrics = api.app[METRICS]
        assert [s for s, _, _ in await spam_holds(api, admission_token(codec), a, 5)].count(201) == 3
        assert metric_value(metrics, "surgegate_api_throttle_local_total") == 0
        own_valkey.stop()
        # Holds need only PostgreSQL: they go on, held to the same limits in memory; no 503, no flood.
        spammer = admission_token(codec)
        spam = await spam_holds(api, spammer, a, 20)
        assert Counter(status for status, _, _ in spam) == {201: 3, 429: 17}
        assert await rows_of(pool, spammer, codec) == (3, 3)
        assert metric_value(metrics, "surgegate_api_throttle_local_total") >= 20
        # Redis back (empty): the limits are shared in it again, once the retry interval has passed.
        own_valkey.start()
        for _ in range(200):
            before = metric_value(metrics, "surgegate_api_throttle_local_total")
            await hold(api, admission_token(codec), a)
            if metric_value(metrics, "surgegate_api_throttle_local_total") == before:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the limits never went back to Redis")
        assert [s for s, _, _ in await spam_holds(api, admission_token(codec), a, 5)].count(201) == 3
