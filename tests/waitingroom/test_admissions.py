"""Admission moments survive Redis losing its data: an admission that expired is never issued again,
and one still running keeps an expiry no later than before (waitingroom/admissions.py). Tickets die
with their event and at their maximum age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared import keys
from shared.http import BACKEND_UNAVAILABLE
from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, admin_headers, assert_problem, serve, tick_for
from waitingroom.app import create_app
from waitingroom.events import EventUpdate
from waitingroom.room import Room, Status

TTL = 60
Loss = Literal["flushdb", "admission_keys", "pins"]


def make_room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    return Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip


@pytest.fixture
async def room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    r = make_room(settings, pool, redis, clock)
    await r.put_event(
        "ev", EventUpdate(name="E", rate_per_s=10.0, admission_ttl_s=TTL, abandon_after_s=None), actor=OWNER
    )
    return r


def expiry(status: Status) -> float:
    assert status.admission_expires_at is not None
    return datetime.fromisoformat(status.admission_expires_at).timestamp()


async def statuses(room: Room, tickets: list[str]) -> list[Status]:
    return [await room.status("ev", t) for t in tickets]


async def expired_and_running(room: Room, clock: FakeClock) -> tuple[list[str], list[str], dict[str, float]]:
    """50 visitors admitted and expired, then 20 admitted and still running; (expired, running,
    the running ones' expiries as given to them)."""
    old = [(await room.join("ev", None))[0] for _ in range(50)]
    await tick_for(clock, 5, room)  # 10/s: all 50 admitted
    assert [s.state for s in await statuses(room, old)] == ["admitted"] * 50
    await tick_for(clock, TTL + 1, room, step=0.5)
    assert {(s.state, s.admission_token) for s in await statuses(room, old)} == {("expired", None)}
    running = [(await room.join("ev", None))[0] for _ in range(20)]
    await tick_for(clock, 2, room)
    given = {t: expiry(s) for t, s in zip(running, await statuses(room, running), strict=True)}
    await tick_for(clock, 3, room)  # a little later: Redis goes
    return old, running, given


async def lose(redis: Redis, room: Room, loss: Loss, tickets: list[str]) -> None:
    if loss == "flushdb":
        await redis.flushdb()
        return
    pins = [keys.admitted_at_key("ev", room.codec.read_ticket(t).visitor_id) for t in tickets]
    assert await redis.delete(*pins) == len(tickets)
    if loss == "admission_keys":  # every key that knows an admission's moment, nothing else
        assert await redis.delete(keys.admission_runs_key("ev")) == 1


@pytest.mark.parametrize("loss", ["flushdb", "admission_keys", "pins"])
async def test_an_expired_admission_is_never_issued_again(
    room: Room, clock: FakeClock, redis: Redis, settings: Settings, pool: asyncpg.Pool, loss: Loss
) -> None:
    old, running, given = await expired_and_running(room, clock)
    await lose(redis, room, loss, [*old, *running])
    clock.advance(0.125)
    await room.tick()  # after a FLUSHDB the queue resumes from its restore point here
    snapshot = room.snapshot("ev")
    assert snapshot is not None and snapshot.restored == (loss == "flushdb")

    after = await statuses(room, old)
    assert [(s.state, s.admission_token) for s in after] == [("expired", None)] * 50  # none admitted again
    now_running = await statuses(room, running)
    assert [s.state for s in now_running] == ["admitted"] * 20
    for ticket, status in zip(running, now_running, strict=True):
        # never later than before; earlier by at most one checkpoint interval (and a tick) of marks
        assert given[ticket] - settings.checkpoint_interval_s - 0.125 <= expiry(status) <= given[ticket]
        if loss == "pins":  # the runs still in Redis give the moment exactly
            assert expiry(status) == given[ticket]
        claims = TokenCodec(settings.secret_keys, clock=clock).verify_admission(status.admission_token or "")
        assert claims.expires_at <= int(given[ticket])

    # Every edge, a new one included, gives the same answers from here on; and they expire in turn.
    other = make_room(settings, pool, redis, clock)
    await other.refresh_events()
    assert [expiry(s) for s in await statuses(other, running)] == [expiry(s) for s in now_running]
    assert {s.state for s in await statuses(other, old)} == {"expired"}
    await tick_for(clock, TTL, room, step=0.5)
    assert {s.state for s in await statuses(room, [*old, *running])} == {"expired"}


@pytest.mark.parametrize("loss", ["flushdb", "admission_keys"])
async def test_negative_control_the_old_lookup_readmits_every_expired_visitor(
    room: Room, clock: FakeClock, redis: Redis, monkeypatch: pytest.MonkeyPatch, loss: Loss
) -> None:
    """What the edge did before: a moment Redis does not know starts now. 50 of 50 come back."""

    async def starts_now(event_id: str, rank: int) -> float:
        return clock()

    old, running, _ = await expired_and_running(room, clock)
    monkeypatch.setattr(room.admissions, "earliest", starts_now)
    await lose(redis, room, loss, [*old, *running])
    clock.advance(0.125)
    await room.tick()
    after = await statuses(room, old)
    assert sum(1 for s in after if s.state == "admitted" and s.admission_token) == 50
    assert min(expiry(s) for s in after) == clock() + TTL  # a fresh expiry for each


async def test_the_admission_counts_from_the_turn_not_the_first_poll(room: Room, clock: FakeClock) -> None:
    (ticket,) = [(await room.join("ev", None))[0]]
    await tick_for(clock, 0.25, room)  # reached at the first tick
    turn = clock()
    await tick_for(clock, 40, room, step=0.5)  # away for a while: the window runs meanwhile
    status = await room.status("ev", ticket)
    assert status.state == "admitted" and turn - 0.125 <= expiry(status) - TTL <= turn
    await tick_for(clock, TTL - 40, room, step=0.5)
    assert (await room.status("ev", ticket)).state == "expired"


async def test_a_loss_with_postgresql_away_issues_nothing(
    settings: Settings, clock: FakeClock, redis: Redis, pool: asyncpg.Pool
) -> None:
    """Neither Redis nor PostgreSQL can say when the admission began: the status fails (503 over
    HTTP) rather than issue one with a made-up expiry. An edge that reaches the database answers."""
    from shared.db import create_pool

    assert settings.database_url
    cut_off = await create_pool(settings.database_url, min_size=1, max_size=2)
    room = make_room(settings, cut_off, redis, clock)
    await room.put_event("ev", EventUpdate(name="E", rate_per_s=10.0, admission_ttl_s=TTL), actor=OWNER)
    tickets = [(await room.join("ev", None))[0] for _ in range(5)]
    await tick_for(clock, 2, room)
    given = [expiry(s) for s in await statuses(room, tickets)]
    await cut_off.close()
    await redis.flushdb()
    for ticket in tickets:
        with pytest.raises(BACKEND_UNAVAILABLE):
            await room.status("ev", ticket)
    other = make_room(settings, pool, redis, clock)
    await other.refresh_events()
    after = [expiry(s) for s in await statuses(other, tickets)]
    assert all(g - settings.checkpoint_interval_s - 0.125 <= a <= g for a, g in zip(after, given, strict=True))


# --- tickets die with their event and at their maximum age ------------------------------------


@pytest.fixture
async def short_lived(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    app = create_app(replace(settings, ticket_max_age_s=3600), clock=clock, run_ticker=False)
    async with serve(app) as client:
        yield client


async def test_a_ticket_of_a_closed_event_is_refused(short_lived: TestClient, clock: FakeClock) -> None:
    closes = datetime.fromtimestamp(clock.now, UTC) + timedelta(minutes=10)
    body = {"name": "E", "rate_per_s": 1, "closes_at": closes.isoformat()}
    assert (await short_lived.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    resp = await short_lived.post("/api/v1/events/ev/join")
    assert resp.status == 201
    clock.advance(600)
    resp = await short_lived.get("/api/v1/events/ev/status")
    assert_problem(resp.status, await resp.json(), 410, "event_closed")
    page = await short_lived.get("/e/ev")  # the page says why, instead of failing
    assert page.status == 200 and "This event is closed" in await page.text()


async def test_a_ticket_past_its_maximum_age_is_expired(short_lived: TestClient, clock: FakeClock) -> None:
    body = {"name": "E", "rate_per_s": 1, "paused": True}  # an event that never closes
    assert (await short_lived.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    first = await (await short_lived.post("/api/v1/events/ev/join")).json()
    assert first["state"] == "waiting"
    assert (await short_lived.post("/api/v1/events/ev/join")).cookies["sg_ticket_ev"]["max-age"] == "3600"
    clock.advance(3600)
    assert (await (await short_lived.get("/api/v1/events/ev/status")).json())["state"] == "waiting"
    clock.advance(1)
    assert (await (await short_lived.get("/api/v1/events/ev/status")).json())["state"] == "expired"
    again = await (await short_lived.post("/api/v1/events/ev/join")).json()  # a new place at the back
    assert again["ticket"] != first["ticket"] and again["state"] == "waiting" and again["position"] == 2
