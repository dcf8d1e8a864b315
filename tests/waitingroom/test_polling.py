"""Poll shaping: the head polls every second, and all waiters together stay under the budget."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import asyncpg
import pytest
from redis.asyncio import Redis

from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock
from waitingroom.events import EventUpdate
from waitingroom.polling import JITTER, harmonic, poll_after_ms, poll_interval_s
from waitingroom.room import Room


def total_poll_rate(waiting: int, budget: float, rate_per_s: float | None) -> float:
    """Polls per second the whole queue sends, at the shortest intervals it can be given."""
    return math.fsum(
        1.0 / poll_interval_s(p, waiting, budget, None if rate_per_s is None else p / rate_per_s)
        for p in range(1, waiting + 1)
    )


@pytest.mark.slow  # sums a million intervals
def test_a_million_waiters_stay_under_the_budget() -> None:
    total = total_poll_rate(1_000_000, budget=2000, rate_per_s=50)
    print(f"1,000,000 waiters, budget 2000/s, admitting 50/s: {total:,.1f} polls/s")
    assert total <= 2000
    # without shaping (every waiter once a second) it would be 500 times the budget
    assert total > 0.5 * 2000  # and the budget is actually used, not wasted


@pytest.mark.parametrize("waiting", [1, 10, 1_000, 100_000])
@pytest.mark.parametrize("rate", [None, 1.0, 1000.0])
def test_under_budget_for_any_queue_length_and_rate(waiting: int, rate: float | None) -> None:
    assert total_poll_rate(waiting, budget=500, rate_per_s=rate) <= 500 + 1e-9


def test_the_head_polls_every_second_and_the_tail_less_often() -> None:
    rng = random.Random(7)
    head = [poll_after_ms(1, 1_000_000, 2000, 0.02, rng) for _ in range(100)]
    assert all(1000 <= ms <= 1000 * (1 + JITTER) for ms in head)
    assert len(set(head)) > 50  # jittered, so joins that came together do not poll together
    assert poll_after_ms(900_000, 1_000_000, 2000, 18_000, rng) > 60_000


def test_harmonic_numbers() -> None:
    assert harmonic(1) == 1
    assert harmonic(3) == pytest.approx(1 + 1 / 2 + 1 / 3)
    assert harmonic(10_000) == pytest.approx(math.fsum(1 / k for k in range(1, 10_001)), rel=1e-12)


async def test_events_share_the_budget(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: FakeClock) -> None:
    """Two events with people waiting each get half of the budget, so together they stay under it."""
    small_budget = replace(settings, poll_budget_per_s=100)  # so that the budget, not the ETA, decides
    room = Room(settings=small_budget, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys),
                metrics=Metrics(), clock=clock)  # fmt: skip
    await room.put_event("a", EventUpdate(name="A", rate_per_s=0.001), actor=OWNER)
    alone = [(await room.join("a", None))[1].poll_after_ms for _ in range(1000)][-1]
    await room.put_event("b", EventUpdate(name="B", rate_per_s=0.001), actor=OWNER)
    await room.join("b", None)
    shared = (await room.join("a", None))[1].poll_after_ms
    assert alone > 60_000  # position 1000 of 1000 at 100 polls/s: about 75 s (x1.0-1.2 jitter)
    assert shared > 1.6 * alone  # with a second event waiting, queue a gets half the budget
