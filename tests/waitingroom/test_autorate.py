"""rate_mode auto: the admission rate follows the booking side, within the operator's bounds."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest
from redis.asyncio import Redis

from shared.keys import booking_latency_key
from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, metric_value, tick_for
from waitingroom.autorate import next_rate
from waitingroom.events import Event, EventUpdate
from waitingroom.room import Room

AUTO = Event("ev", "E", 10.0, None, None, None, False, 900, None, rate_mode="auto", rate_min=1.0, rate_max=20.0,
             target_queue_depth=50, target_latency_s=2.0)  # fmt: skip


@pytest.mark.parametrize(
    ("depth", "latency", "expected"),
    [
        (100, None, 7.0),  # backlog: back off fast
        (10, 5.0, 7.0),  # slow attempts: back off fast
        (10, 0.5, 11.0),  # calm: probe upwards gently
        (40, 1.5, 10.0),  # near the targets: hold
    ],
)
def test_decisions(depth: int, latency: float | None, expected: float) -> None:
    assert next_rate(AUTO, 10.0, depth, latency) == expected


def test_bounds_always_hold() -> None:
    assert next_rate(AUTO, 1.2, 1000, 9.0) == 1.0
    assert next_rate(AUTO, 19.5, 0, None) == 20.0
    assert next_rate(replace(AUTO, rate_min=0.0), 0.0, 0, None) == 0.1  # can start from zero


def make_room(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> Room:
    return Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip


def live_rate(room: Room, event_id: str) -> float:
    """The rate this edge admits at now (its latest queue snapshot)."""
    state = room.snapshot(event_id)
    assert state is not None
    return state.rate_per_s


async def test_backlog_brings_the_rate_down_and_calm_brings_it_up(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock
) -> None:
    a, b = make_room(settings, pool, redis, clock), make_room(settings, pool, redis, clock)
    update = EventUpdate(name="E", rate_per_s=10, rate_mode="auto", rate_min=1, rate_max=20,
                         target_queue_depth=50, target_latency_s=2)  # fmt: skip
    await a.put_event("ev", update, actor=OWNER)
    await a.put_event("fixed", EventUpdate(name="F", rate_per_s=3), actor=OWNER)
    await b.refresh_events()
    # the booking side falls behind: 100 attempts waiting in the arq queue, slow attempts reported
    await redis.zadd(settings.queue_name, {f"job-{i}": i for i in range(100)})
    await redis.lpush(booking_latency_key("ev"), *["4.0"] * 20)
    await tick_for(clock, 20, a, b, step=0.5)
    assert a.lottery("ev") is not None  # sanity: both edges are live on the event
    for room in (a, b):  # every edge applies the controller's rate
        assert live_rate(room, "ev") == 1.0
        assert live_rate(room, "fixed") == 3.0  # fixed mode is never touched
    downs = [
        metric_value(room.metrics, "surgegate_rate_changes_total", event="ev", direction="down") for room in (a, b)
    ]
    assert sorted(downs) == [0, 7]  # one edge steers (10 -> 7 -> 4.9 -> ... -> 1), the other does not
    assert metric_value(a.metrics, "surgegate_admission_rate_per_s", event="ev") == 1.0

    # the backlog clears and attempts are quick again: the rate climbs back, never past rate_max
    await redis.delete(settings.queue_name, booking_latency_key("ev"))
    await redis.lpush(booking_latency_key("ev"), *["0.2"] * 20)
    await tick_for(clock, 120, a, b, step=0.5)
    assert live_rate(a, "ev") == 20.0
    stats = await a.stats("ev")
    assert stats["rate_per_s"]["configured"] == 20.0

    # an operator edit of another field keeps the rate the controller found
    await a.put_event("ev", EventUpdate(name="Renamed"), actor=OWNER)
    assert live_rate(a, "ev") == 20.0


async def test_auto_needs_bounds(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> None:
    from shared.errors import ValidationFailed

    room = make_room(settings, pool, redis, clock)
    with pytest.raises(ValidationFailed):
        await room.put_event(
            "ev", EventUpdate(name="E", rate_per_s=5, rate_mode="auto", rate_min=10, rate_max=2), actor=OWNER
        )
