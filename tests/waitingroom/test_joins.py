"""Joins coalesced per event (waitingroom/joins.py): a batch is one script call and keeps arrival order
(across batches too, with its negative control), one place per person and the per-client join limit
inside a batch, and a failed call fails every join of its batch alike with nothing written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import keys
from shared.errors import RateLimited
from shared.limits import Limit
from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, admin_headers, assert_problem, serve
from waitingroom.app import create_app
from waitingroom.events import EventUpdate
from waitingroom.joins import JoinBatcher, _Lane
from waitingroom.keys import ROOM
from waitingroom.queue import Arrival, QueueConfig, QueueState, QueueStore, Seat
from waitingroom.room import Room
from waitingroom.views import set_ticket_cookie

CONFIG = QueueConfig(rate_per_s=0.0, paused=True, opens_at=0.0)
LIMIT = Limit(per_minute=6, burst=3)


def make_room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    return Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip


@pytest.fixture
async def room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    r = make_room(replace(settings, join_batch_max=1000), pool, redis, clock)
    await r.put_event("ev", EventUpdate(name="E", rate_per_s=0.01), actor=OWNER)
    await r.put_event("once", EventUpdate(name="O", rate_per_s=0.01, one_place_per_person=True), actor=OWNER)
    return r


def seq_of(room: Room, ticket: str) -> int:
    return room.codec.read_ticket(ticket).seq


async def test_concurrent_joins_take_one_call_and_arrival_order(room: Room) -> None:
    before = room.joins.batches
    # Tasks start in the order they are created, and a join reaches the batcher without awaiting anything.
    results = await asyncio.gather(*(room.join("ev", None) for _ in range(50)))
    assert [seq_of(room, ticket) for ticket, _ in results] == list(range(1, 51))
    assert [status.position for _, status in results] == list(range(1, 51))
    assert room.joins.batches - before == 1  # fifty joins, one round trip
    assert (await room.stats("ev"))["joined"] == 50


async def test_one_place_per_person_inside_a_batch(room: Room) -> None:
    people = ["AB-1", "CD-2", "AB-1", "EF-3", "ab1", "CD-2"]  # "ab1" is AB-1 typed differently
    before = room.joins.batches
    results = await asyncio.gather(*(room.join("once", None, person_id=p) for p in people))
    assert room.joins.batches - before == 1
    tickets = [room.codec.read_ticket(ticket) for ticket, _ in results]
    assert [t.seq for t in tickets] == [1, 2, 1, 3, 1, 2]
    assert tickets[0].visitor_id == tickets[2].visitor_id == tickets[4].visitor_id
    assert (await room.stats("once"))["joined"] == 3
    # Negative control: the same people on an event without one place per person get a place each.
    results = await asyncio.gather(*(room.join("ev", None, person_id=p) for p in people))
    assert sorted(seq_of(room, ticket) for ticket, _ in results) == list(range(1, 7))


async def test_the_join_limit_refuses_per_client_inside_a_batch(room: Room) -> None:
    a = (keys.join_bucket_key("ip:198.51.100.1"), LIMIT)
    b = (keys.join_bucket_key("ip:198.51.100.2"), LIMIT)
    order = [a, b, a, a, a, b, a]  # a: five joins (burst 3), b: two
    before = room.joins.batches
    results = await asyncio.gather(*(room.join("ev", None, charge=c) for c in order), return_exceptions=True)
    assert room.joins.batches - before == 1
    refused = [i for i, r in enumerate(results) if isinstance(r, RateLimited)]
    assert refused == [4, 6]  # a's fourth and fifth
    assert all(isinstance(results[i], RateLimited) and results[i].retry_after == 10 for i in refused)  # type: ignore[union-attr]
    # Refused joins took no number: the others are numbered 1..5 in arrival order.
    assert [seq_of(room, r[0]) for r in results if isinstance(r, tuple)] == [1, 2, 3, 4, 5]
    # Negative control: the same batch without the buckets lets everyone in.
    results = await asyncio.gather(*(room.join("ev", None) for _ in order), return_exceptions=True)
    assert all(isinstance(r, tuple) for r in results)


async def test_a_failed_batch_fails_each_join_and_writes_nothing(room: Room, redis: Redis) -> None:
    await room.join("ev", None)  # the queue exists
    # A real failure of the real script: the event's queue hash replaced by a string (WRONGTYPE).
    state = await redis.hgetall(keys.queue_key("ev"))  # type: ignore[misc]
    await redis.delete(keys.queue_key("ev"))
    await redis.set(keys.queue_key("ev"), "not a hash")
    charge = (keys.join_bucket_key("ip:198.51.100.7"), LIMIT)
    before = room.joins.batches
    results = await asyncio.gather(*(room.join("ev", None, charge=charge) for _ in range(10)), return_exceptions=True)
    assert room.joins.batches - before == 1
    assert all(isinstance(r, ResponseError) for r in results)
    assert not await redis.exists(charge[0])  # the bucket was not charged
    await redis.delete(keys.queue_key("ev"))
    await redis.hset(keys.queue_key("ev"), mapping=state)  # type: ignore[misc]
    # Nothing of the failed batch was kept: the next joins are numbered 2.., the client's burst is whole.
    results = await asyncio.gather(*(room.join("ev", None, charge=charge) for _ in range(4)), return_exceptions=True)
    assert [seq_of(room, r[0]) for r in results if isinstance(r, tuple)] == [2, 3, 4]
    assert isinstance(results[3], RateLimited)


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    limited = replace(settings, join_limit_per_min=6, join_limit_burst=3, trusted_proxies=("127.0.0.1/32",))
    async with serve(create_app(limited, clock=clock, run_ticker=False)) as client:
        resp = await client.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())
        assert resp.status == 200
        yield client


async def test_a_failed_batch_is_a_503_for_each_join(edge: TestClient, redis: Redis) -> None:
    state = await redis.hgetall(keys.queue_key("ev"))  # type: ignore[misc]
    await redis.delete(keys.queue_key("ev"))
    await redis.set(keys.queue_key("ev"), "not a hash")

    async def join(i: int) -> tuple[int, dict[str, object]]:
        resp = await edge.post("/api/v1/events/ev/join", headers={"X-Forwarded-For": f"198.51.100.{i}"})
        return resp.status, await resp.json()

    for status, body in await asyncio.gather(*(join(i) for i in range(1, 21))):
        assert_problem(status, body, 503, "overloaded")
        assert "ticket" not in body
    await redis.delete(keys.queue_key("ev"))
    await redis.hset(keys.queue_key("ev"), mapping=state)  # type: ignore[misc]
    edge.session.cookie_jar.clear()
    status, body = await join(1)
    assert status == 201 and body["position"] == 1  # the failed joins took no place
    assert edge.app[ROOM].joins.batches >= 2


class HeldFirstCall(QueueStore):
    """The real store, whose first batch waits (up to a bound) for a second batch to be decided
    first: what happens if an event's batches were ever in flight together."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.calls = 0
        self.second_done = asyncio.Event()

    async def join_many(
        self, event_id: str, now: float, config: QueueConfig, arrivals: Sequence[Arrival]
    ) -> tuple[QueueState, list[Seat]]:
        self.calls += 1
        if self.calls == 1:
            # Under the batcher's guard no second batch starts meanwhile, so this waits out the bound.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.second_done.wait(), 0.3)
            return await super().join_many(event_id, now, config, arrivals)
        try:
            return await super().join_many(event_id, now, config, arrivals)
        finally:
            self.second_done.set()


class Unguarded(JoinBatcher):
    """The batcher without its guard: every batch of the lane sent at once (negative control)."""

    async def _drain(self, event_id: str, lane: _Lane) -> None:
        await asyncio.sleep(0)
        sends = []
        while lane.waiting:
            sends.append(self._send(event_id, lane.waiting[: self._max_batch]))
            del lane.waiting[: self._max_batch]
        del self._lanes[event_id]
        await asyncio.gather(*sends)


@pytest.mark.parametrize("batcher", [JoinBatcher, Unguarded])
async def test_batches_of_one_event_keep_arrival_order(
    batcher: type[JoinBatcher], redis: Redis, clock: FakeClock, settings: Settings
) -> None:
    store = HeldFirstCall(redis)
    joins = batcher(store, lambda _: (clock(), CONFIG), lambda *_: None, window_s=0, max_batch=3)
    outcomes = await asyncio.gather(*(joins.join("ev", Arrival(f"v{i}")) for i in range(7)))
    assert joins.batches == 3
    seqs = [seat.seq for _, seat, _ in outcomes]
    assert sorted(seqs) == list(range(1, 8))  # everyone got a number, once
    if batcher is JoinBatcher:
        assert seqs == list(range(1, 8))
    else:
        assert seqs != list(range(1, 8))  # the later batches overtook the first


@pytest.mark.parametrize("edge_url", ["http://127.0.0.1:8080", "https://queue.example"])
@pytest.mark.parametrize("ticket", ["k1.eyJlIjoiZXYifQ.abc-_DEF", "needs quoting: a space"])
def test_the_ticket_cookie_is_the_header_aiohttp_writes(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock, edge_url: str, ticket: str
) -> None:
    room = make_room(replace(settings, public_edge_url=edge_url), pool, redis, clock)
    ours, theirs = web.Response(), web.Response()
    set_ticket_cookie(ours, room, "ev-1", ticket)
    theirs.set_cookie(
        "sg_ticket_ev-1", ticket, max_age=settings.ticket_max_age_s, path="/", httponly=True, samesite="Lax",
        secure=edge_url.startswith("https://"),
    )  # fmt: skip
    written = ours.headers.getall("Set-Cookie", []) + [m.OutputString() for m in ours.cookies.values()]
    assert written == [m.OutputString() for m in theirs.cookies.values()]
