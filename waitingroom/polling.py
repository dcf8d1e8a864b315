"""How often a waiting visitor should poll: fast at the head, and a hard cap on the total.

A visitor at position ``p`` in a queue of ``n`` waiters is asked to wait

    interval(p) = max(1 s, p * H(n) / budget, min(eta / 10, 60 s))      (then x1.0-1.2 jitter)

where ``H(n) = 1 + 1/2 + ... + 1/n``. Since ``sum(1 / (p * H(n) / budget) for p in 1..n) == budget``
and the other terms and the jitter only lengthen intervals, the polls per second that all ``n``
waiters send together stay at or under ``budget`` however long the queue, while the head of the
queue polls every second. The ``eta / 10`` term saves polls nobody needs (about ten per wait) without
ever making a visitor far back wait more than a minute for news; the jitter spreads polls so a
burst of joins does not come back as a burst of polls.
"""

from __future__ import annotations

import math
import random

MIN_INTERVAL_S = 1.0
MAX_ETA_INTERVAL_S = 60.0
JITTER = 0.2
_EULER_GAMMA = 0.5772156649015329


def harmonic(n: int) -> float:
    """H(n), exact for small n, asymptotic (error < 1e-9) beyond."""
    if n <= 0:
        return 0.0
    if n < 64:
        return math.fsum(1.0 / k for k in range(1, n + 1))
    return math.log(n) + _EULER_GAMMA + 1 / (2 * n) - 1 / (12 * n * n)


def poll_interval_s(position: int, waiting: int, budget_per_s: float, eta_s: float | None) -> float:
    """The interval before jitter (the shortest one the visitor may be given)."""
    budget_term = position * harmonic(max(waiting, position)) / budget_per_s
    eta_term = MIN_INTERVAL_S if eta_s is None else min(eta_s / 10, MAX_ETA_INTERVAL_S)
    return max(MIN_INTERVAL_S, budget_term, eta_term)


def poll_after_ms(
    position: int, waiting: int, budget_per_s: float, eta_s: float | None, rng: random.Random | None = None
) -> int:
    jitter = 1.0 + (rng or random).random() * JITTER
    return int(poll_interval_s(position, waiting, budget_per_s, eta_s) * jitter * 1000)
