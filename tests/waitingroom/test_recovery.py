"""Restore points: always at or beyond where the queue can have stood when Redis lost it."""

from __future__ import annotations

import asyncpg
import pytest
from redis.asyncio import Redis

from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock
from waitingroom.events import EventUpdate
from waitingroom.recovery import RESTORE_SLACK, Known, restore_point
from waitingroom.room import Room
from waitingroom.stats import actual_rate, quantile


def test_restore_point_bounds_what_can_have_happened() -> None:
    point = restore_point([Known(100, 40.0, 0.5), Known(90, 38.0, 1.0)], join_rate=10, admit_rate=4, horizon_s=1.1)
    assert point == (100 + 10 + RESTORE_SLACK, 43.0)  # the freshest source wins: 40 + 4 * 0.5, + 1 margin
    assert restore_point([], join_rate=1, admit_rate=1, horizon_s=1) is None
    # knowledge older than the horizon cannot be trusted further than the horizon
    far = restore_point([Known(10, 5.0, 3600)], join_rate=1, admit_rate=2, horizon_s=1.1)
    assert far == (10 + 3 + RESTORE_SLACK, 8.2)


@pytest.mark.slow  # fault injection: Redis loses the queue state mid-run
async def test_auto_mode_restore_accounts_for_the_raised_rate(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock
) -> None:
    room = Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip
    await room.put_event(
        "ev", EventUpdate(name="E", rate_per_s=1, rate_mode="auto", rate_min=1, rate_max=50), actor=OWNER
    )
    for _ in range(200):
        await room.join("ev", None)
    event = room.event("ev")
    # the controller has raised the live rate to 50/s
    await room.queue.configure("ev", clock(), EventUpdate(rate_per_s=50).apply("ev", event).queue_config)
    clock.advance(1)
    await room.tick()
    at_loss = room.snapshot("ev")
    assert at_loss is not None
    before = at_loss.served
    await redis.flushdb()
    clock.advance(0.1)  # Redis died within a tick: up to 50 * 0.1 = 5 more were admitted meanwhile
    true_served_at_loss = before + 50 * 0.1
    await room.tick()
    after = room.snapshot("ev")
    assert after is not None and after.restored
    assert after.served >= true_served_at_loss  # nobody admitted twice
    # negative control: resuming with the database's starting rate would land behind
    behind = restore_point([Known(200, before, 0.1)], join_rate=0, admit_rate=1, horizon_s=1.1)
    assert behind is not None and behind[1] < true_served_at_loss


def test_quantiles_and_actual_rate() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 11)], 0.9) == 10.0
    history = [(0.0, 0), (30.0, 60), (90.0, 180)]
    assert actual_rate(history, now=90.0) == 2.0  # over the last 60 s
    assert actual_rate(None, now=1.0) == 0.0
