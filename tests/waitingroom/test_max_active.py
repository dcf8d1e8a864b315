"""max_active: never more admissions out and unused at once than the cap; a booking (committed by
the real worker) frees its slot, and so does an admission that expires unused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app as create_api
from shared.settings import Settings
from tests.helpers import (
    FakeClock,
    admin_headers,
    booking_headers,
    person,
    running_worker,
    seed_site_and_slot,
    serve,
    tick_for,
)
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.room import Room


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        yield client


async def setup(edge: TestClient, max_active: int | None) -> tuple[Room, list[str]]:
    body = {"name": "E", "rate_per_s": 10, "max_active": max_active, "abandon_after_s": None, "admission_ttl_s": 60}
    assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    room: Room = edge.app[ROOM]
    return room, [(await room.join("ev", None))[0] for _ in range(20)]


async def admitted(room: Room, tickets: list[str]) -> list[str]:
    return [t for t in tickets if (await room.status("ev", t)).state == "admitted"]


async def test_the_cap_holds_and_bookings_and_expiry_free_slots(
    edge: TestClient, clock: FakeClock, settings: Settings, pool: asyncpg.Pool
) -> None:
    room, tickets = await setup(edge, max_active=3)
    await tick_for(clock, 2, room)  # the rate alone would admit 20
    first = await admitted(room, tickets)
    assert first == tickets[:3] and (await room.stats("ev"))["active"] == 3

    slot_id = await seed_site_and_slot(pool, event_id="ev")
    token = (await room.status("ev", first[0])).admission_token
    assert token is not None
    async with serve(create_api(settings)) as api, running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        assert resp.status == 201
    await tick_for(clock, 1, room)
    assert await admitted(room, tickets) == tickets[:4]  # the booking freed exactly one slot
    assert (await room.stats("ev"))["active"] == 3

    await tick_for(clock, 60 + 30 + 1, room)  # the unused admissions lapse (ttl + grace)
    let_through = [t for t in tickets if (await room.status("ev", t)).state != "waiting"]
    assert let_through == tickets[:7]  # three lapsed, three more let in, in order
    assert (await room.stats("ev"))["active"] == 3


async def test_negative_control_without_a_cap_the_rate_alone_decides(edge: TestClient, clock: FakeClock) -> None:
    room, tickets = await setup(edge, max_active=None)
    await tick_for(clock, 1, room)
    assert len(await admitted(room, tickets)) == 10
