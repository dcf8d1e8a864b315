"""The lottery permutation: a bijection, uniform, unrelated to arrival order, reproducible."""

from __future__ import annotations

import random
import secrets
from collections import Counter

import pytest

from waitingroom.lottery import Lottery


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, pytest.param(4097, marks=pytest.mark.slow)])
def test_every_pre_queue_visitor_gets_exactly_one_distinct_rank(size: int) -> None:
    lottery = Lottery(size, secrets.token_hex(16))
    assert sorted(lottery.rank(n) for n in range(1, size + 1)) == list(range(1, size + 1))
    assert lottery.rank(size + 1) == size + 1 and lottery.rank(size + 50) == size + 50  # later joiners: FIFO


def test_the_same_seed_gives_the_same_order_anywhere() -> None:
    seed = secrets.token_hex(16)
    assert [Lottery(500, seed).rank(n) for n in range(1, 501)] == [Lottery(500, seed).rank(n) for n in range(1, 501)]
    assert Lottery(500, seed).order() != Lottery(500, secrets.token_hex(16)).order()


def test_arriving_early_buys_nothing() -> None:
    size = 10_000
    lottery = Lottery(size, secrets.token_hex(16))
    earliest = [lottery.rank(n) for n in range(1, 1001)]  # the first 10 % to arrive
    mean = sum(earliest) / len(earliest)
    # uniform ranks have mean 5000.5 and a standard error of ~91 for 1000 of them
    assert abs(mean - (size + 1) / 2) < 5 * 91


def chi_square_of_first_arrival(size: int, draws: int) -> float:
    """Where arrival number 1 lands over many draws (seeds from a fixed sequence: reproducible)."""
    rng = random.Random(20261121)
    counts = Counter(Lottery(size, rng.randbytes(16).hex()).rank(1) for _ in range(draws))
    expected = draws / size
    return sum((counts[r] - expected) ** 2 / expected for r in range(1, size + 1))


# chi-square limits at p = 0.0001 for size - 1 degrees of freedom
@pytest.mark.slow  # 20,000 draws per size
@pytest.mark.parametrize(("size", "limit"), [(3, 18.4), (6, 25.7), (10, 33.7), (37, 80.0)])
def test_ranks_are_uniform_over_many_draws(size: int, limit: float) -> None:
    assert chi_square_of_first_arrival(size, 20000) < limit


@pytest.mark.slow  # 20,000 draws
def test_negative_control_too_few_rounds_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uniformity check bites: the 4-round version it replaced fails it."""
    import waitingroom.lottery as lottery

    monkeypatch.setattr(lottery, "ROUNDS", 4)
    assert chi_square_of_first_arrival(10, 20000) > 33.7


def test_negative_control_a_non_random_order_fails_the_early_arrival_check() -> None:
    """The check above bites: arrival order itself gives the earliest 10 % the best ranks."""
    earliest = list(range(1, 1001))
    assert abs(sum(earliest) / len(earliest) - 5000.5) > 5 * 91
