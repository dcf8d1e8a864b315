"""Search: slots by type and time of day, next available near a point, live holds counted, the
cache dropping a site's entry on a change in this process and serving a spike from memory."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp.test_utils import TestClient

from admission.app import create_app
from admission.keys import AVAILABILITY
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, assert_problem, seed_typed_slots, serve


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def slots(api: TestClient, token: str, **query: str) -> list[dict[str, object]]:
    resp = await api.get("/api/v1/slots", params={"site_id": "site-a", **query}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    found: list[dict[str, object]] = (await resp.json())["slots"]
    return found


async def test_filters_by_type_and_local_time_of_day(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    ids = await seed_typed_slots(pool, count=6, capacity=2)
    token = admission_token(codec)
    everything = await slots(api, token, to="2100-01-01T00:00:00Z")
    assert [s["slot_id"] for s in everything] == ids
    first_local = (await pool.fetchval("SELECT min(starts_at) FROM slots")).astimezone(ZoneInfo("Europe/Berlin"))
    start = first_local.strftime("%H:%M")
    two_later = first_local.replace(hour=(first_local.hour + 2) % 24).strftime("%H:%M")
    if two_later > start:  # the window does not wrap past midnight
        narrowed = await slots(api, token, time_from=start, time_to=two_later, to="2100-01-01T00:00:00Z")
        assert [s["slot_id"] for s in narrowed] == ids[:2]
    assert await slots(api, token, type_id="other", to="2100-01-01T00:00:00Z") == []
    assert {s["type_id"] for s in everything} == {"group"}
    assert all(s["local_starts_at"].endswith(("+01:00", "+02:00")) for s in everything)  # type: ignore[union-attr]
    resp = await api.get("/api/v1/slots", params={"site_id": "site-a", "time_from": "9am"}, headers=auth(token))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")


async def test_holds_count_and_a_change_here_is_visible_at_once(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    # a long cache age: only the invalidation can make the change visible
    async with serve(create_app(replace(settings, search_cache_s=3600))) as api:
        token = admission_token(codec)
        assert [s["remaining"] for s in await slots(api, token)] == [1]
        assert [s["remaining"] for s in await slots(api, token, available="true")] == [1]
        resp = await api.post("/api/v1/holds", json={"slot_id": slot}, headers=auth(token))
        assert resp.status == 201
        assert [s["remaining"] for s in await slots(api, token)] == [0]
        assert await slots(api, token, available="true") == []
        # a change made elsewhere (here: straight in the database) waits for the entry to age out
        await pool.execute("UPDATE holds SET status = 'released'")
        assert [s["remaining"] for s in await slots(api, token)] == [0]
        api.app[AVAILABILITY].changed("site-a")
        assert [s["remaining"] for s in await slots(api, token)] == [1]


async def test_a_spike_of_searches_costs_one_query_per_site(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    await seed_typed_slots(pool, count=3)
    async with serve(create_app(replace(settings, search_cache_s=60))) as api:
        cache = api.app[AVAILABILITY].cache
        token = admission_token(codec)
        results = await asyncio.gather(*(slots(api, token) for _ in range(50)))
        assert all(r == results[0] for r in results)
        # one load of the site list and one of the site's slots; every other request shared them
        assert cache.misses == 2 and cache.hits == 98


async def test_next_available_near_me(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    berlin = await seed_typed_slots(pool, count=2, capacity=1, days_ahead=3)
    (potsdam,) = await seed_typed_slots(pool, count=1, capacity=1, site_id="site-b", days_ahead=2)
    await pool.execute("UPDATE sites SET lat = 52.39, lng = 13.06 WHERE site_id = 'site-b'")
    await pool.execute("UPDATE slots SET booked = 1 WHERE slot_id = $1", uuid.UUID(berlin[0]))
    token = admission_token(codec)
    resp = await api.get("/api/v1/slots/next", params={"lat": "52.52", "lng": "13.40", "radius_km": "50"},
                         headers=auth(token))  # fmt: skip
    found = (await resp.json())["slots"]
    assert [(s["site"]["site_id"], s["slot_id"]) for s in found] == [("site-b", potsdam), ("site-a", berlin[1])]
    assert found[0]["site"]["distance_km"] > 20
    resp = await api.get("/api/v1/slots/next", params={"lat": "52.52", "lng": "13.40", "radius_km": "5"},
                         headers=auth(token))  # fmt: skip
    assert [s["site"]["site_id"] for s in (await resp.json())["slots"]] == ["site-a"]
    scoped = admission_token(codec, scope=["site-a"])
    resp = await api.get("/api/v1/slots/next", params={"lat": "52.52", "lng": "13.40"}, headers=auth(scoped))
    assert [s["site"]["site_id"] for s in (await resp.json())["slots"]] == ["site-a"]
    resp = await api.get("/api/v1/slots/next", params={"lat": "x", "lng": "13.40"}, headers=auth(token))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
