"""Failure policy: Redis dies mid-queue and comes back empty.

No admissions while the state is unknown (joins fail closed: 503 + Retry-After), waiting visitors
keep their place, and the queue resumes from where it stood: no arrival number is issued twice,
nobody is admitted twice, and the order holds across the loss.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedValkey
from tests.helpers import FakeClock, admin_headers, assert_problem, metric_value, serve, tick_for
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.room import Room

pytestmark = pytest.mark.slow  # fault injection: kills and restarts its own Valkey


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "first", persist=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock, valkey: EmbeddedValkey) -> AsyncIterator[TestClient]:
    many_joins_from_one_address = replace(settings, redis_url=valkey.url, join_limit_per_min=0)
    async with serve(create_app(many_joins_from_one_address, clock=clock, run_ticker=False)) as client:
        resp = await client.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 2}, headers=admin_headers())
        assert resp.status == 200
        yield client


async def join(edge: TestClient) -> str:
    edge.session.cookie_jar.clear()
    resp = await edge.post("/api/v1/events/ev/join")
    assert resp.status == 201
    ticket: str = (await resp.json())["ticket"]
    return ticket


async def states(room: Room, tickets: list[str]) -> list[str]:
    return [(await room.status("ev", t)).state for t in tickets]


async def test_redis_killed_mid_queue_resumes_fairly(
    edge: TestClient, clock: FakeClock, valkey: EmbeddedValkey, tmp_path: Path, settings: Settings
) -> None:
    room = edge.app[ROOM]
    tickets = [await join(edge) for _ in range(40)]
    await tick_for(clock, 5, room)
    before = await states(room, tickets)
    assert before == ["admitted"] * 10 + ["waiting"] * 30
    positions = [(await room.status("ev", t)).position for t in tickets[10:]]

    assert valkey.proc is not None
    valkey.proc.send_signal(signal.SIGKILL)
    valkey.proc.wait()
    # While Redis is gone: joins fail closed, admissions stop, waiting visitors keep their place.
    resp = await edge.post("/api/v1/events/ev/join")  # holding a live ticket: same place, no Redis needed
    assert resp.status == 201 and (await resp.json())["ticket"] == tickets[-1]
    edge.session.cookie_jar.clear()
    resp = await edge.post("/api/v1/events/ev/join")  # a new visitor cannot get a place now
    assert_problem(resp.status, await resp.json(), 503, "overloaded")
    assert int(resp.headers["Retry-After"]) > 0
    clock.advance(0.125)
    with pytest.raises(Exception):  # noqa: B017  (the tick reports the outage and is retried)
        await room.tick()
    assert [(await room.status("ev", t)).position for t in tickets[10:]] == positions

    clock.advance(30)  # a long outage: nobody could join or be admitted meanwhile
    again = EmbeddedValkey(tmp_path / "second", port=valkey.port, persist=False)
    again.start()
    try:
        await room.tick()
        assert metric_value(room.metrics, "surgegate_queue_restored_total", event="ev") == 1
        # nobody admitted twice (nobody admitted before is waiting again), nobody jumped the line:
        # the restore resumes at most a couple of places ahead (its safety margin), in order
        after = await states(room, tickets)
        admitted_now = after.count("admitted")
        assert after == ["admitted"] * admitted_now + ["waiting"] * (40 - admitted_now)
        assert 10 <= admitted_now <= 12
        newcomer = await join(edge)
        codec = TokenCodec(settings.secret_keys)
        assert codec.read_ticket(newcomer).seq > max(codec.read_ticket(t).seq for t in tickets)
        # the old queue drains in order, each once, and only then the newcomer
        order: list[int] = []
        everyone = [*tickets, newcomer]
        for _ in range(200):
            clock.advance(0.125)
            await room.tick()
            now_admitted = [i for i, s in enumerate(await states(room, everyone)) if s == "admitted"]
            assert now_admitted == list(range(len(now_admitted)))  # FIFO across the restore
            order = now_admitted
            if len(order) == len(everyone):
                break
        assert order == list(range(len(everyone)))
    finally:
        again.stop()


async def test_a_fresh_edge_resumes_from_the_database_checkpoint(
    edge: TestClient, clock: FakeClock, settings: Settings, valkey: EmbeddedValkey
) -> None:
    room = edge.app[ROOM]
    tickets = [await join(edge) for _ in range(30)]
    await tick_for(clock, 4, room)  # 8 admitted, checkpoints saved each second
    redis = Redis.from_url(valkey.url)
    try:
        await redis.flushdb()
        # A new edge process: no snapshot of its own, only PostgreSQL's checkpoint.
        fresh = Room(settings=room.settings, pool=room.pool, redis=redis, codec=room.codec, metrics=room.metrics,
                     clock=clock)  # fmt: skip
        await fresh.refresh_events()
        clock.advance(0.125)
        await fresh.tick()
        stats = await fresh.stats("ev")
        assert stats["joined"] >= 30
        assert 8 <= stats["admitted"] <= 9  # resumed where it stood, at most a moment's admissions ahead
        assert (await fresh.status("ev", tickets[7])).state == "admitted"
        assert (await fresh.status("ev", tickets[9])).state == "waiting"
    finally:
        await redis.aclose()


async def test_negative_control_without_a_restore_point_numbers_repeat(
    edge: TestClient, clock: FakeClock, settings: Settings, valkey: EmbeddedValkey
) -> None:
    room = edge.app[ROOM]
    tickets = [await join(edge) for _ in range(5)]
    redis = Redis.from_url(valkey.url)
    try:
        await redis.flushdb()
        # What a queue with no checkpoint would do: start numbering again from 1.
        _, seq, _ = await room.queue.join("ev", clock(), room.event("ev").queue_config, visitor="someone-new")
    finally:
        await redis.aclose()
    assert seq == TokenCodec(settings.secret_keys).read_ticket(tickets[0]).seq == 1


async def test_postgres_away_admissions_go_on(settings: Settings, clock: FakeClock, redis: Redis) -> None:
    """The edge's database pool goes away (closed): joins, statuses and admissions carry on from
    Redis and the cached event; checkpoints and event reloads are retried, not fatal."""
    from shared.db import create_pool
    from shared.metrics import Metrics
    from waitingroom.events import EventUpdate

    assert settings.database_url
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    room = Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip
    await room.put_event("ev", EventUpdate(name="E", rate_per_s=2.0), actor=OWNER)
    tickets = [(await room.join("ev", None))[0] for _ in range(10)]
    await pool.close()  # PostgreSQL unreachable from here on
    late = (await room.join("ev", None))[0]
    await tick_for(clock, 3, room)
    assert await states(room, [*tickets, late]) == ["admitted"] * 6 + ["waiting"] * 5
