"""Every request of the edge and the API is counted by route template and status, and timed
(shared/http.py's ``http_metrics_middleware``); refused joins count in ``join_rejected`` by reason."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admission import keys as api_keys
from admission.app import create_app as create_api
from shared.errors import NotFound
from shared.http import http_metrics_middleware, problem_middleware
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import (
    FakeClock,
    admin_headers,
    admission_token,
    assert_problem,
    booking_headers,
    metric_value,
    person,
    seed_site_and_slot,
    serve,
)
from waitingroom.app import create_app as create_edge
from waitingroom.keys import METRICS

STATUS_ROUTE = "/api/v1/events/{event_id}/status"
JOIN_ROUTE = "/api/v1/events/{event_id}/join"


def requests(metrics: Metrics, service: str, route: str, method: str, status: int) -> float:
    return metric_value(
        metrics, "surgegate_http_requests_total", service=service, route=route, method=method, status=str(status)
    )


def timed(metrics: Metrics, service: str, route: str, method: str) -> float:
    return metric_value(metrics, "surgegate_http_request_seconds_count", service=service, route=route, method=method)


def rejected(metrics: Metrics, event: str, reason: str) -> float:
    return metric_value(metrics, "surgegate_join_rejected_total", event=event, reason=reason)


@pytest.fixture
async def edge_with_event(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    limited = replace(settings, join_limit_per_min=6, join_limit_burst=2)
    async with serve(create_edge(limited, clock=clock, run_ticker=False)) as client:
        resp = await client.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())
        assert resp.status == 200
        yield client


async def test_a_status_poll_is_counted_by_its_route_template_and_timed(edge_with_event: TestClient) -> None:
    edge, metrics = edge_with_event, edge_with_event.app[METRICS]
    joined = await edge.post("/api/v1/events/ev/join")
    assert joined.status == 201
    ticket = (await joined.json())["ticket"]
    for _ in range(3):
        resp = await edge.get("/api/v1/events/ev/status", headers={"Authorization": f"Bearer {ticket}"})
        assert resp.status == 200
    assert requests(metrics, "edge", STATUS_ROUTE, "GET", 200) == 3
    assert timed(metrics, "edge", STATUS_ROUTE, "GET") == 3  # the histogram saw each of them
    assert requests(metrics, "edge", JOIN_ROUTE, "POST", 201) == 1
    assert timed(metrics, "edge", JOIN_ROUTE, "POST") == 1
    assert requests(metrics, "edge", "/admin/v1/events/{event_id}", "PUT", 200) == 1
    exposed = metrics.render().decode()
    assert ticket not in exposed and "/api/v1/events/ev/" not in exposed  # templates, never URLs


async def test_refused_joins_move_join_rejected_by_reason(edge_with_event: TestClient) -> None:
    edge, metrics = edge_with_event, edge_with_event.app[METRICS]
    resp = await edge.post("/api/v1/events/ev/join", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await edge.post("/api/v1/events/ev/join", json={"device_key_hash": "not hex"})
    assert resp.status == 400
    assert rejected(metrics, "ev", "malformed") == 2
    resp = await edge.post("/api/v1/events/no-such-event/join")
    assert resp.status == 404
    assert rejected(metrics, "(unknown)", "unknown_event") == 1
    assert "no-such-event" not in metrics.render().decode()  # a client-chosen id never becomes a label
    # the burst is 2 joins: the third is rate limited (each from a fresh browser, without a ticket)
    statuses = []
    for _ in range(3):
        edge.session.cookie_jar.clear()
        statuses.append((await edge.post("/api/v1/events/ev/join")).status)
    assert statuses == [201, 201, 429]
    assert rejected(metrics, "ev", "rate_limited") == 1
    assert requests(metrics, "edge", JOIN_ROUTE, "POST", 400) == 2
    assert requests(metrics, "edge", JOIN_ROUTE, "POST", 404) == 1
    assert requests(metrics, "edge", JOIN_ROUTE, "POST", 429) == 1
    assert requests(metrics, "edge", JOIN_ROUTE, "POST", 201) == 2


async def test_a_malformed_form_join_on_the_page_counts_too(edge_with_event: TestClient) -> None:
    edge, metrics = edge_with_event, edge_with_event.app[METRICS]
    resp = await edge.post("/e/ev/join", data=b"x", headers={"Content-Type": "multipart/form-data"})  # no boundary
    assert resp.status == 400
    assert rejected(metrics, "ev", "malformed") == 1
    assert (await edge.post("/e/nope/join", data={"person_id": ""})).status == 404
    assert rejected(metrics, "(unknown)", "unknown_event") == 1


async def test_an_api_409_is_counted_with_its_status(settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    slot_id = await seed_site_and_slot(pool)
    headers = booking_headers(admission_token(codec))
    async with serve(create_api(replace(settings, booking_wait_s=0.1))) as api:  # no worker: the first stays 202
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)}, headers=headers)
        assert resp.status == 202
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(2)}, headers=headers)
        assert resp.status == 409, await resp.text()
        metrics = api.app[api_keys.METRICS]
        assert requests(metrics, "api", "/api/v1/appointments", "POST", 202) == 1
        assert requests(metrics, "api", "/api/v1/appointments", "POST", 409) == 1
        assert timed(metrics, "api", "/api/v1/appointments", "POST") == 2
        attempt = await api.get("/api/v1/attempts/" + "0" * 8, headers=headers)
        assert attempt.status == 404
        assert requests(metrics, "api", "/api/v1/attempts/{attempt_id}", "GET", 404) == 1


async def test_a_thousand_random_urls_make_a_handful_of_series(edge: TestClient) -> None:
    rng = random.Random(12)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"]  # the last two: "other"
    for _ in range(1000):
        path = "/".join("".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 12))) for _ in
                        range(rng.randint(1, 4)))  # fmt: skip
        prefix = rng.choice(["", "api/v1/events/", "e/", "admin/v1/events/", "static/"])
        await edge.request(rng.choice(methods), f"/{prefix}{path}?q={rng.random()}")
    series = {
        tuple(sorted(sample.labels.items()))
        for family in edge.app[METRICS].registry.collect()
        if family.name == "surgegate_http_requests"
        for sample in family.samples
        if sample.name == "surgegate_http_requests_total"
    }
    assert 0 < len(series) <= 40, sorted(series)
    routes = {dict(labels)["route"] for labels in series}
    methods_seen = {dict(labels)["method"] for labels in series}
    assert "unmatched" in routes and "other" in methods_seen
    assert all(r == "unmatched" or (r.startswith("/") and "{" in r) or r in ("/static", "/") for r in routes), routes


async def test_the_middlewares_cached_series_count_each_route_and_status_apart() -> None:
    """The middleware takes each (route, method, status)'s series once and keeps it: repeated requests
    still count one by one, a new status or a new route (added after the first requests) gets its own
    series, and none counts for another."""
    metrics = Metrics()
    app = web.Application(middlewares=[http_metrics_middleware(metrics, "edge"), problem_middleware])

    async def item(request: web.Request) -> web.Response:
        if request.match_info["item_id"] == "missing":
            raise NotFound("no such item")
        return web.Response(text="ok")

    async def other(request: web.Request) -> web.Response:
        return web.Response(text="other")

    app.router.add_get("/items/{item_id}", item)
    app.router.add_post("/items/{item_id}", item)
    app.router.add_get("/late", other)
    async with serve(app) as client:
        for _ in range(3):
            assert (await client.get("/items/a")).status == 200
        assert requests(metrics, "edge", "/items/{item_id}", "GET", 200) == 3
        assert (await client.get("/items/missing")).status == 404
        assert (await client.post("/items/b")).status == 200
        assert (await client.get("/items/c")).status == 200
        assert requests(metrics, "edge", "/items/{item_id}", "GET", 200) == 4
        assert requests(metrics, "edge", "/items/{item_id}", "GET", 404) == 1
        assert requests(metrics, "edge", "/items/{item_id}", "POST", 200) == 1
        assert timed(metrics, "edge", "/items/{item_id}", "GET") == 5  # both statuses share one histogram
        assert requests(metrics, "edge", "/late", "GET", 200) == 0
        for _ in range(2):
            assert (await client.get("/late")).status == 200
        assert requests(metrics, "edge", "/late", "GET", 200) == 2
        assert timed(metrics, "edge", "/late", "GET") == 2
        assert requests(metrics, "edge", "/items/{item_id}", "GET", 200) == 4
