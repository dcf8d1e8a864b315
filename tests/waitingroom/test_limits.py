"""The edge's per-client join limit (waitingroom/views.py over shared/limits.py): 429 with Retry-After,
other clients unaffected, refills, and unknown events spend nothing. Client identity: tests/shared/test_limits.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, assert_problem, metric_value, serve
from waitingroom.app import create_app
from waitingroom.keys import METRICS


@pytest.fixture
async def limited_edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    limited = replace(settings, join_limit_per_min=6, join_limit_burst=3, trusted_proxies=("127.0.0.1/32",))
    async with serve(create_app(limited, clock=clock, run_ticker=False)) as client:
        resp = await client.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())
        assert resp.status == 200
        yield client


async def join_from(edge: TestClient, address: str) -> tuple[int, dict[str, object], dict[str, str]]:
    edge.session.cookie_jar.clear()  # a fresh browser each time: no ticket to return to
    resp = await edge.post("/api/v1/events/ev/join", headers={"X-Forwarded-For": address})
    return resp.status, await resp.json(), dict(resp.headers)


async def test_a_client_over_its_limit_gets_429_and_others_do_not(limited_edge: TestClient, clock: FakeClock) -> None:
    for _ in range(3):
        assert (await join_from(limited_edge, "198.51.100.1"))[0] == 201
    status, body, headers = await join_from(limited_edge, "198.51.100.1")
    assert_problem(status, body, 429, "rate_limited")
    assert headers["Retry-After"] == "10"  # one join per 10 s at 6 per minute
    assert (await join_from(limited_edge, "198.51.100.2"))[0] == 201  # another client is unaffected
    assert (await join_from(limited_edge, "2001:db8::1"))[0] == 201
    clock.advance(10)
    assert (await join_from(limited_edge, "198.51.100.1"))[0] == 201  # refilled
    assert (await join_from(limited_edge, "198.51.100.1"))[0] == 429
    assert (
        metric_value(limited_edge.app[METRICS], "surgegate_join_rejected_total", event="ev", reason="rate_limited") == 2
    )
    # refused joins took no place in the queue
    stats = await (await limited_edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    assert stats["stats"]["joined"] == 6


async def test_unknown_events_spend_no_allowance(limited_edge: TestClient) -> None:
    for _ in range(5):
        resp = await limited_edge.post("/api/v1/events/nope/join", headers={"X-Forwarded-For": "198.51.100.9"})
        assert resp.status == 404
    assert (await join_from(limited_edge, "198.51.100.9"))[0] == 201
