"""Per-client join limits: client identity behind proxies, IPv6 /64 grouping, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, assert_problem, metric_value, serve
from waitingroom.app import create_app
from waitingroom.keys import METRICS
from waitingroom.limits import client_key, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])


def test_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_key("203.0.113.7", None, PROXIES) == "ip:203.0.113.7"
    # an untrusted peer cannot claim to be someone else
    assert client_key("203.0.113.7", "198.51.100.1", PROXIES) == "ip:203.0.113.7"
    # behind our proxies: the right-most address that is not one of them
    assert client_key("10.0.0.5", "198.51.100.1, 10.1.1.1", PROXIES) == "ip:198.51.100.1"
    # what the client prepends itself is never believed
    assert client_key("10.0.0.5", "1.1.1.1, 198.51.100.1", PROXIES) == "ip:198.51.100.1"
    assert client_key("10.0.0.5", "garbage, 198.51.100.1", PROXIES) == "ip:198.51.100.1"
    assert client_key("10.0.0.5", "garbage", PROXIES) == "ip:10.0.0.5"
    assert client_key(None, None, PROXIES) == "ip:unknown"


def test_ipv6_clients_are_grouped_per_64() -> None:
    a = client_key("2001:db8:1:2::1", None, PROXIES)
    b = client_key("2001:db8:1:2:ffff::9", None, PROXIES)
    c = client_key("2001:db8:1:3::1", None, PROXIES)
    assert a == b == "ip:2001:db8:1:2::/64"
    assert c != a
    assert client_key("::ffff:203.0.113.7", None, PROXIES) == "ip:203.0.113.7"  # IPv4-mapped


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
