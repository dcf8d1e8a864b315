"""Poll shaping: the head polls every second, and all waiters together stay under the budget."""

from __future__ import annotations

import math
import random

import pytest

from waitingroom.polling import JITTER, harmonic, poll_after_ms, poll_interval_s


def total_poll_rate(waiting: int, budget: float, rate_per_s: float | None) -> float:
    """Polls per second the whole queue sends, at the shortest intervals it can be given."""
    return math.fsum(
        1.0 / poll_interval_s(p, waiting, budget, None if rate_per_s is None else p / rate_per_s)
        for p in range(1, waiting + 1)
    )


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
