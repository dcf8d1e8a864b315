"""Frozen bookings: an operator's PUT freezes an event; its admissions stop and the booking API refuses
new bookings 503 bookings_frozen (Retry-After) within CACHE_S; lifting it lets both resume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app as create_api
from admission.freeze import CACHE_S, Freezes
from admission.keys import FREEZES, METRICS
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
    running_worker,
    seed_site_and_slot,
    serve,
    tick_for,
)
from waitingroom.app import create_app as create_edge
from waitingroom.keys import ROOM


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
async def api(settings: Settings, monotonic: Monotonic) -> AsyncIterator[TestClient]:
    app = create_api(settings)
    app[FREEZES] = Freezes(clock=monotonic)  # the cache's time moves when the test says so
    async with serve(app) as client:
        yield client


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_edge(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        yield client


async def put(edge: TestClient, body: dict[str, object]) -> dict[str, object]:
    resp = await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())
    answer: dict[str, object] = await resp.json()
    assert resp.status == 200, answer
    return answer


async def test_a_freeze_refuses_new_bookings_until_lifted(
    api: TestClient, edge: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, monotonic: Monotonic
) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=5)
    frozen = await put(edge, {"bookings_frozen": True, "freeze_reason": "rules changed at 21:00"})
    assert (frozen["bookings_frozen"], frozen["freeze_reason"]) == (True, "rules changed at 21:00")
    async with running_worker(settings):
        token = admission_token(codec)
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k1"))  # fmt: skip
        body = await resp.json()
        assert_problem(resp.status, body, 503, "bookings_frozen")
        assert resp.headers["Retry-After"] == "30"
        assert "21:00" not in body["detail"]  # the operator's reason is not the public's business
        assert await pool.fetchval("SELECT count(*) FROM booking_attempts") == 0  # nothing accepted
        assert metric_value(api.app[METRICS], "surgegate_booking_requests_total",
                            event="ev", outcome="bookings_frozen") == 1  # fmt: skip

        lifted = await put(edge, {"bookings_frozen": False})
        assert (lifted["bookings_frozen"], lifted["freeze_reason"]) == (False, None)
        # Within CACHE_S the API may still answer from what it read; after it, never.
        monotonic.now += CACHE_S / 2
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k1"))  # fmt: skip
        assert resp.status == 503
        monotonic.now += CACHE_S / 2
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k1"))  # fmt: skip
        assert resp.status == 201, await resp.json()

        # Frozen again: a repeat of the accepted request still answers its outcome; a new one is refused.
        await put(edge, {"bookings_frozen": True})
        monotonic.now += CACHE_S
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token, "k1"))  # fmt: skip
        assert resp.status == 201
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(2)},
                              headers=booking_headers(admission_token(codec), "k2"))  # fmt: skip
        assert_problem(resp.status, await resp.json(), 503, "bookings_frozen")
    actions = await pool.fetch("SELECT action, detail FROM audit_log WHERE action LIKE 'event%' ORDER BY audit_id")
    assert [dict(r["detail"]) for r in actions[-3:]] == [
        {"bookings_frozen": True, "freeze_reason": "rules changed at 21:00"},
        {"bookings_frozen": False},
        {"bookings_frozen": True},
    ]


async def test_a_frozen_event_admits_nobody(edge: TestClient, clock: FakeClock) -> None:
    room = edge.app[ROOM]
    await put(edge, {"name": "E", "rate_per_s": 2})
    for _ in range(10):
        await room.join("ev", None)
    await tick_for(clock, 1.0, room)
    admitted = room.snapshot("ev").admitted
    assert admitted == 2
    await put(edge, {"bookings_frozen": True})
    await tick_for(clock, 3.0, room)
    assert room.snapshot("ev").admitted == admitted  # frozen: the queue stands still
    stats = (await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json())["stats"]
    assert stats["rate_per_s"]["configured"] == 0.0
    await put(edge, {"bookings_frozen": False})
    await tick_for(clock, 1.0, room)
    assert room.snapshot("ev").admitted == admitted + 2  # lifted: admissions resume at the rate


async def test_freeze_fields_are_validated(edge: TestClient) -> None:
    await put(edge, {"name": "E", "rate_per_s": 1})
    for body in ({"bookings_frozen": None}, {"bookings_frozen": "maybe"}, {"freeze_reason": ""},
                 {"freeze_reason": "x" * 501}):  # fmt: skip
        resp = await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
