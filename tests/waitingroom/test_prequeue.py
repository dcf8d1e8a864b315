"""The pre-queue: early joiners wait for opens_at, are then admitted in a drawn random order that is
recorded and can be recomputed; everyone after opens_at is FIFO behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, admin_headers, serve
from waitingroom.app import create_app
from waitingroom.events import EventUpdate
from waitingroom.keys import ROOM
from waitingroom.lottery import Lottery
from waitingroom.room import Room


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    unlimited = replace(settings, join_limit_per_min=0)  # hundreds of joins from one test address
    async with serve(create_app(unlimited, clock=clock, run_ticker=False)) as client:
        # 4/s: at most one admission per 125 ms tick, so the observed admission order is exact
        body = {"name": "Cohort 4", "rate_per_s": 4, "opens_at": iso(clock.now + 60)}
        assert (await client.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
        yield client


async def join(room: Room) -> str:
    return (await room.join("ev", None))[0]


async def admit_all(room: Room, clock: FakeClock, tickets: list[str]) -> list[int]:
    """Tick until everyone is admitted; return ticket indexes in the order they were admitted."""
    order: list[int] = []
    for _ in range(10_000):
        clock.advance(0.125)
        await room.tick()
        for i, t in enumerate(tickets):
            if i not in order and (await room.status("ev", t)).state == "admitted":
                order.append(i)
        if len(order) == len(tickets):
            return order
    raise AssertionError("not everyone was admitted")


@pytest.mark.slow  # 130 visitors, each one's status read on every tick until all are admitted
async def test_lottery_at_opening_then_fifo(edge: TestClient, clock: FakeClock, pool: asyncpg.Pool) -> None:
    room = edge.app[ROOM]
    early = [await join(room) for _ in range(120)]
    status = await room.status("ev", early[0])
    assert (status.state, status.position, status.opens_at) == (
        "prequeue",
        None,
        iso(clock.now + 60).replace("+00:00", "Z"),
    )
    for _ in range(8):  # time passes in the pre-queue: nobody is admitted, nobody has a position
        clock.advance(5)
        await room.tick()
    assert {(await room.status("ev", t)).state for t in early} == {"prequeue"}

    clock.advance(20)  # opens_at: the draw (nobody admitted yet at this very instant)
    await room.tick()
    late = [await join(room) for _ in range(10)]
    positions = [(await room.status("ev", t)).position for t in early]
    assert sorted(positions) == list(range(1, 121))  # everyone got a distinct place
    assert positions != list(range(1, 121))  # and it is not the arrival order
    assert [(await room.status("ev", t)).position for t in late] == list(range(121, 131))

    order = await admit_all(room, clock, [*early, *late])
    # admitted exactly in the drawn order, then the late joiners in arrival order
    draw = await pool.fetchrow("SELECT size, seed, algorithm FROM lottery_draws WHERE event_id = 'ev'")
    assert draw["size"] == 120 and "feistel12" in draw["algorithm"]
    recomputed = Lottery(draw["size"], draw["seed"]).order()  # what an auditor does with the record
    assert order[:120] == [n - 1 for n in recomputed]
    assert order[120:] == list(range(120, 130))

    audit = await edge.get(
        "/admin/v1/events/ev/lottery", params={"offset": "10", "limit": "5"}, headers=admin_headers()
    )
    body = await audit.json()
    assert (body["size"], body["seed"], body["order"]) == (120, draw["seed"], recomputed[10:15])
    shown = await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    assert shown["lottery"]["seed"] == draw["seed"]


async def test_every_edge_sees_the_same_draw_and_it_survives_losing_redis(
    edge: TestClient, clock: FakeClock, settings: Settings, redis: Redis
) -> None:
    room = edge.app[ROOM]
    other = Room(settings=settings, pool=room.pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                 metrics=Metrics(), clock=clock)  # fmt: skip
    await other.refresh_events()
    early = [await join(room if i % 2 else other) for i in range(50)]
    clock.advance(60)  # opens_at: the draw
    await room.tick()
    await other.tick()
    mine = [(await room.status("ev", t)).position or 0 for t in early]
    assert mine == [(await other.status("ev", t)).position for t in early]
    assert sorted(mine) == list(range(1, 51))
    clock.advance(0.125)
    await room.tick()  # the draw is recorded with the checkpoint
    await redis.flushdb()
    fresh = Room(settings=settings, pool=room.pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                 metrics=Metrics(), clock=clock)  # fmt: skip
    await fresh.refresh_events()
    clock.advance(0.125)
    await fresh.tick()
    assert fresh.lottery("ev") is not None and fresh.lottery("ev").seed == room.lottery("ev").seed  # type: ignore[union-attr]
    after = [(await fresh.status("ev", t)).position or 0 for t in early]
    # the same draw after the loss: every waiting position moved up by the same number of admissions
    moved = {m - a for m, a in zip(mine, after, strict=True) if a > 0}
    assert len(moved) == 1
    (k,) = moved
    assert [i for i in range(50) if after[i] == 0] == [i for i in range(50) if mine[i] <= k]


async def test_setting_opens_at_on_a_running_queue_never_reshuffles_it(
    settings: Settings, clock: FakeClock, pool: asyncpg.Pool, redis: Redis
) -> None:
    room = Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip
    await room.put_event("fifo", EventUpdate(name="FIFO", rate_per_s=0.01), actor=OWNER)
    tickets = [(await room.join("fifo", None))[0] for _ in range(30)]
    await room.put_event("fifo", EventUpdate(opens_at=datetime.fromtimestamp(clock.now - 10, UTC)), actor=OWNER)
    clock.advance(1)
    await room.tick()
    assert [(await room.status("fifo", t)).position for t in tickets] == list(range(1, 31))
