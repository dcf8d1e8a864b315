"""Operator stats: used, expired unused, actual vs configured rate, time in queue, tail ETA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from booking_worker.booking import book
from shared.booking import BookingJob, attempt_id_for
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.redis import create_arq_pool
from shared.settings import Settings
from tests.helpers import FakeClock, accepted, admin_headers, metric_value, seed_site_and_slot, serve
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.room import Room


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        body = {"name": "E", "rate_per_s": 2, "admission_ttl_s": 60, "abandon_after_s": None}
        assert (await client.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
        yield client


async def stats(edge: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    return dict(body["stats"])


async def test_the_funnel_in_one_place(
    edge: TestClient, clock: FakeClock, settings: Settings, pool: asyncpg.Pool
) -> None:
    room: Room = edge.app[ROOM]
    tickets = [(await room.join("ev", None))[0] for _ in range(40)]
    for step in range(1, 81):  # 10 s at 2/s: 20 admitted, each polling every tick
        clock.advance(0.125)
        await room.tick()
        for t in tickets[: step // 4 + 1]:
            await room.status("ev", t)
    now = await stats(edge)
    assert (now["joined"], now["admitted"], now["waiting"], now["active"]) == (40, 20, 20, 20)
    assert now["rate_per_s"] == {"configured": 2.0, "actual_last_60s": 2.0}
    assert now["tail_eta_s"] == 10.0
    waits = now["time_in_queue_s"]
    assert waits["sample"] == 20
    assert 4.0 <= waits["median"] <= 6.0 and 8.0 <= waits["p90"] <= 10.0  # the n-th waited about n/2 s
    wait_histogram = metric_value(room.metrics, "surgegate_queue_wait_seconds_count", event="ev")
    assert wait_histogram == 20  # once per admitted visitor, however often they poll
    assert metric_value(room.metrics, "surgegate_admissions_active", event="ev") == 20

    # one admission is used: the booking worker frees it
    slot_id = await seed_site_and_slot(pool, event_id="ev")
    status = await room.status("ev", tickets[0])
    assert status.admission_token is not None
    admission = room.codec.verify_admission(status.admission_token)
    vault = PersonVault(b"k" * 32)
    job = BookingJob(attempt_id=str(attempt_id_for(admission.token_id, "k")), token_id=admission.token_id,
                     event_id="ev", scope=None, slot_id=slot_id, request_hash="00" * 32,
                     person_ref=vault.ref("P-1").hex(), person_sealed=vault.seal({}).decode(),
                     rank=admission.rank)  # fmt: skip
    assert settings.redis_url
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    try:
        payload = await accepted(pool, job)
        assert (await book({"pool": pool, "metrics": Metrics(), "redis": arq}, payload))["status"] == "confirmed"
    finally:
        await arq.aclose()
    after = await stats(edge)
    assert (after["used"], after["active"]) == (1, 19)

    # the rest lapse unused once the ttl (+ 30 s grace) has passed; meanwhile 2/s more are admitted
    clock.advance(91)
    await room.tick()
    lapsed = await stats(edge)
    assert lapsed["expired_unused"] == 19
    assert metric_value(room.metrics, "surgegate_admissions_lapsed_total", event="ev") == 19
    assert lapsed["used"] == 1
