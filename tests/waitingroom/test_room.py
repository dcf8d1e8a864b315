"""Admission: FIFO order and rate accuracy with an injected clock, pause and rate changes at
runtime, an empty queue banking no credit, and two edge processes agreeing on positions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, metric_value, tick_for
from waitingroom.events import EventUpdate
from waitingroom.room import Room


def make_room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    return Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip


@pytest.fixture
async def room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> AsyncIterator[Room]:
    r = make_room(settings, pool, redis, clock)
    await r.put_event("ev", EventUpdate(name="Cohort", rate_per_s=5.0, admission_ttl_s=600), actor=OWNER)
    return r


async def join_many(room: Room, n: int) -> list[str]:
    return [(await room.join("ev", None))[0] for _ in range(n)]


async def test_rate_is_exact_over_a_minute(room: Room, clock: FakeClock) -> None:
    await join_many(room, 400)
    await room.tick()
    await tick_for(clock, 60, room, step=0.37)  # uneven tick spacing must not matter
    stats = await room.stats("ev")
    assert abs(stats["admitted"] - 60 * 5) <= 1
    assert stats["waiting"] == 400 - stats["admitted"]


async def test_admission_is_fifo(room: Room, clock: FakeClock) -> None:
    tickets = await join_many(room, 30)
    admitted_order: list[int] = []
    for _ in range(80):
        clock.advance(0.125)
        await room.tick()
        for i, t in enumerate(tickets):
            if i not in admitted_order and (await room.status("ev", t)).state == "admitted":
                admitted_order.append(i)
        # whoever is admitted, everyone who joined before them is admitted too
        assert admitted_order == list(range(len(admitted_order)))
    assert len(admitted_order) == 30


async def test_positions_count_down_and_eta_follows_rate(room: Room, clock: FakeClock) -> None:
    tickets = await join_many(room, 10)
    status = await room.status("ev", tickets[9])
    assert (status.state, status.position, status.eta_seconds) == ("waiting", 10, 2.0)
    await tick_for(clock, 1.0, room)
    status = await room.status("ev", tickets[9])
    assert (status.position, status.eta_seconds) == (5, 1.0)


async def test_empty_queue_banks_no_credit(room: Room, clock: FakeClock) -> None:
    await tick_for(clock, 30, room)  # nobody waiting for 30 s
    await join_many(room, 100)
    await tick_for(clock, 1.0, room)
    assert (await room.stats("ev"))["admitted"] == 5


async def test_pause_and_rate_change_apply_at_once(room: Room, clock: FakeClock) -> None:
    await join_many(room, 200)
    await tick_for(clock, 2, room)
    assert (await room.stats("ev"))["admitted"] == 10
    await room.put_event("ev", EventUpdate(paused=True), actor=OWNER)
    await tick_for(clock, 5, room)
    assert (await room.stats("ev"))["admitted"] == 10  # paused: nobody admitted, everybody kept
    paused_status = await room.status("ev", (await join_many(room, 1))[0])
    assert paused_status.eta_seconds is None
    await room.put_event("ev", EventUpdate(paused=False, rate_per_s=20.0), actor=OWNER)
    await tick_for(clock, 2, room)
    assert (await room.stats("ev"))["admitted"] == 50


async def test_two_edges_agree_and_a_change_on_one_reaches_the_other(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock
) -> None:
    a = make_room(settings, pool, redis, clock)
    b = make_room(settings, pool, redis, clock)
    await a.put_event("ev", EventUpdate(name="Cohort", rate_per_s=2.0), actor=OWNER)
    await b.refresh_events()
    tickets = [(await (a if i % 2 else b).join("ev", None))[0] for i in range(40)]
    for _ in range(30):
        clock.advance(0.125)
        await a.tick()
        await b.tick()
        for t in tickets:
            assert (await a.status("ev", t)).position == (await b.status("ev", t)).position
    await b.put_event("ev", EventUpdate(rate_per_s=10.0), actor=OWNER)  # changed through edge b
    before = (await a.stats("ev"))["admitted"]
    clock.advance(1.0)
    await a.tick()  # edge a applies it on its next tick, without reloading anything
    assert (await a.stats("ev"))["admitted"] - before == 10


async def test_admitted_visitor_gets_a_scoped_token_with_fixed_expiry(
    room: Room, clock: FakeClock, settings: Settings
) -> None:
    for site_id in ("s1", "s2"):
        await room.pool.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'S', 'R', 'UTC', 0, 0)", site_id
        )
    await room.put_event("ev", EventUpdate(site_ids=["s1", "s2"]), actor=OWNER)
    (ticket,) = await join_many(room, 1)
    await tick_for(clock, 1, room)
    first = await room.status("ev", ticket)
    assert first.state == "admitted" and first.admission_token
    clock.advance(30)
    again = await room.status("ev", ticket)
    assert again.admission_expires_at == first.admission_expires_at  # polling does not extend it
    claims = TokenCodec(settings.secret_keys, clock=clock).verify_admission(again.admission_token or "")
    assert claims.scope == ("s1", "s2") and claims.event_id == "ev"
    clock.advance(600)
    assert (await room.status("ev", ticket)).state == "expired"
    # an expired visitor may join again and gets a new place at the back
    new_ticket, status = await room.join("ev", ticket)
    assert new_ticket != ticket and status.state == "waiting"


async def test_metrics_follow_the_funnel(room: Room, clock: FakeClock) -> None:
    await join_many(room, 20)
    await tick_for(clock, 2, room)
    assert metric_value(room.metrics, "surgegate_queue_joined_total", event="ev") == 20
    assert metric_value(room.metrics, "surgegate_admitted_total", event="ev") == 10
    assert metric_value(room.metrics, "surgegate_queue_waiting", event="ev") == 10


WAITING_ON_CHECKPOINTS = (  # in this database only: other databases' waits are no sign
    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'queue_checkpoints'::regclass"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "negative-control"])
async def test_a_reload_that_began_before_a_change_never_undoes_it(
    room: Room, pool: asyncpg.Pool, guarded: bool
) -> None:
    """A pause made while a reload is between reading the events and storing them: the reload's
    older read must not revert it (else the next tick admits again, and the console and the CLI's
    before/after show the old values). The control forgets the write and sees the pause undone."""
    await room.refresh_events()
    async with pool.acquire() as blocker, blocker.transaction():
        # the reload reads the events, then waits on the checkpoints table
        await blocker.execute("LOCK TABLE queue_checkpoints IN ACCESS EXCLUSIVE MODE")
        reload = asyncio.create_task(room.refresh_events())
        async with asyncio.timeout(30):  # until the reload has read the events and waits here
            while not reload.done() and not await pool.fetchval(WAITING_ON_CHECKPOINTS):  # noqa: ASYNC110 (polls the database)
                await asyncio.sleep(0.01)
        await room.put_event("ev", EventUpdate(paused=True), actor=OWNER)
        if not guarded:
            room._written.clear()
    await reload
    assert room.event("ev").paused is guarded
    await room.refresh_events()  # the next reload reads the change either way
    assert room.event("ev").paused is True
