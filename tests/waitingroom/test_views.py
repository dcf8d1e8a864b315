"""The waiting room over HTTP: join, status, cookies, admin, and bad input as problem+json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import FakeClock, admin_headers, assert_problem
from waitingroom.keys import ROOM


async def put_event(edge: TestClient, event_id: str = "ev", **fields: object) -> dict[str, object]:
    body = {"name": "Cohort 4", "rate_per_s": 4, **fields}
    resp = await edge.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    data: dict[str, object] = await resp.json()
    return data


async def test_join_then_status_by_cookie_and_bearer(edge: TestClient, clock: FakeClock) -> None:
    await put_event(edge)
    resp = await edge.post("/api/v1/events/ev/join")
    assert resp.status == 201
    body = await resp.json()
    assert body["state"] == "waiting" and body["position"] == 1 and body["poll_after_ms"] >= 1000
    cookie = resp.cookies["sg_ticket_ev"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert resp.headers["Cache-Control"] == "no-store"

    clock.advance(1)
    await edge.app[ROOM].tick()
    by_cookie = await edge.get("/api/v1/events/ev/status")  # the client's cookie jar sends it
    assert by_cookie.headers["Cache-Control"] == "no-store"
    status = await by_cookie.json()
    assert status["state"] == "admitted" and status["position"] == 0
    assert status["admission_token"] and status["booking_url"].endswith("/api/v1")
    by_bearer = await edge.get(
        "/api/v1/events/ev/status", headers={"Authorization": f"Bearer {body['ticket']}"}, cookies={}
    )
    assert (await by_bearer.json())["admission_token"] == status["admission_token"]


async def test_rejoining_with_a_live_ticket_keeps_the_place(edge: TestClient) -> None:
    await put_event(edge, rate_per_s=0.01)
    first = await (await edge.post("/api/v1/events/ev/join")).json()
    again = await (await edge.post("/api/v1/events/ev/join")).json()
    assert again["ticket"] == first["ticket"] and again["position"] == 1


async def test_unknown_closed_and_unopened_events(edge: TestClient, clock: FakeClock) -> None:
    now = datetime.fromtimestamp(clock.now, UTC)
    resp = await edge.post("/api/v1/events/nope/join")
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    await put_event(edge, "gone", opens_at=(now - timedelta(hours=2)).isoformat(),
                    closes_at=(now - timedelta(hours=1)).isoformat())  # fmt: skip
    resp = await edge.post("/api/v1/events/gone/join")
    assert_problem(resp.status, await resp.json(), 410, "event_closed")
    await put_event(edge, "soon", opens_at=(now + timedelta(hours=2)).isoformat(),
                    prequeue_opens_at=(now + timedelta(hours=1)).isoformat())  # fmt: skip
    resp = await edge.post("/api/v1/events/soon/join")
    assert_problem(resp.status, await resp.json(), 409, "event_not_open")
    clock.advance(3600 + 1)
    early = await (await edge.post("/api/v1/events/soon/join")).json()
    # in the pre-queue nobody has a position until the lottery at opens_at; the page counts down
    assert (early["state"], early["position"], early["eta_seconds"]) == ("prequeue", None, None)
    assert early["opens_at"] == (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Bearer k1.abc.def"},
        {"Authorization": "Basic x"},
    ],
)
async def test_status_without_a_valid_ticket_is_401(edge: TestClient, headers: dict[str, str]) -> None:
    await put_event(edge)
    edge.session.cookie_jar.clear()
    resp = await edge.get("/api/v1/events/ev/status", headers=headers)
    assert_problem(resp.status, await resp.json(), 401, "ticket_invalid")
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_ticket_of_another_event_is_rejected(edge: TestClient) -> None:
    await put_event(edge, "a")
    await put_event(edge, "b")
    ticket = (await (await edge.post("/api/v1/events/a/join")).json())["ticket"]
    resp = await edge.get("/api/v1/events/b/status", headers={"Authorization": f"Bearer {ticket}"})
    assert_problem(resp.status, await resp.json(), 401, "ticket_invalid")


async def test_admin_get_has_live_stats_and_needs_the_token(edge: TestClient, clock: FakeClock) -> None:
    await put_event(edge, rate_per_s=2)
    for _ in range(5):
        edge.session.cookie_jar.clear()
        await edge.post("/api/v1/events/ev/join")
    clock.advance(1)
    resp = await edge.get("/admin/v1/events/ev", headers=admin_headers())
    body = await resp.json()
    counters = {k: body["stats"][k] for k in ("joined", "admitted", "waiting", "abandoned", "active")}
    assert counters == {"joined": 5, "admitted": 2, "waiting": 3, "abandoned": 0, "active": 2}
    assert body["stats"]["tail_eta_s"] == 1.5  # 3 waiting at 2 per second
    assert body["rate_per_s"] == 2 and body["paused"] is False
    resp = await edge.get("/admin/v1/events/ev", headers={"Authorization": "Bearer wrong"})
    assert_problem(resp.status, await resp.json(), 401, "unauthorized")
    resp = await edge.put("/admin/v1/events/ev", json={"paused": True})
    assert_problem(resp.status, await resp.json(), 401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        (None, b"{not json"),
        (None, b"\xff\xfe"),
        ([1, 2], None),
        ({"name": "x"}, None),  # new event without a rate
        ({"name": "x", "rate_per_s": "fast"}, None),
        ({"name": "x", "rate_per_s": -1}, None),
        ({"name": "x", "rate_per_s": 1, "opens_at": "tomorrow"}, None),
        ({"name": "x", "rate_per_s": 1, "opens_at": "2026-01-01T00:00:00"}, None),  # no offset
        ({"name": "x", "rate_per_s": 1, "site_ids": "all"}, None),
        ({"name": "x", "rate_per_s": 1, "unknown": 1}, None),
        ({"name": None, "rate_per_s": 1}, None),
    ],
)
async def test_bad_admin_input_is_a_400_problem(edge: TestClient, body: object, raw: bytes | None) -> None:
    headers = {**admin_headers(), "Content-Type": "application/json"}
    resp = await edge.put("/admin/v1/events/ev", data=raw, json=body, headers=headers) if raw is None else \
        await edge.put("/admin/v1/events/ev", data=raw, headers=headers)  # fmt: skip
    assert_problem(resp.status, await resp.json(), 400, "validation_error")


async def test_bad_requests_never_500(edge: TestClient) -> None:
    await put_event(edge)
    huge = b'{"x": "' + b"a" * 200_000 + b'"}'
    resp = await edge.post("/api/v1/events/ev/join", data=huge, headers={"Content-Type": "application/json"})
    assert_problem(resp.status, await resp.json(), 413, "payload_too_large")
    resp = await edge.post("/api/v1/events/ev/join", data=b"[[[", headers={"Content-Type": "application/json"})
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await edge.put("/admin/v1/events/BAD%20ID", json={"name": "x", "rate_per_s": 1}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await edge.delete("/api/v1/events/ev/join")
    assert_problem(resp.status, await resp.json(), 405, "method_not_allowed")
    resp = await edge.get("/no/such/path")
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    # what was accepted before is still there
    stats = await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    assert stats["name"] == "Cohort 4"


async def test_pages_probes_and_metrics(edge: TestClient) -> None:
    await put_event(edge)
    page = await edge.get("/e/ev")
    assert page.status == 200 and "Cohort 4" in await page.text()
    index = await edge.get("/", allow_redirects=False)
    assert index.status == 302 and index.headers["Location"] == "/e/ev"
    assert (await edge.get("/healthz")).status == 200
    assert (await edge.get("/readyz")).status == 200
    await edge.post("/api/v1/events/ev/join")
    text = await (await edge.get("/metrics")).text()
    assert 'surgegate_queue_joined_total{event="ev"} 1.0' in text
