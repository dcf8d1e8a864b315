"""Where to resume a queue whose Redis state was lost (see README, "When Redis or PostgreSQL fails").

Pure arithmetic, kept apart so the reasoning can be read and tested on its own: from what each
source knew (this edge's snapshot, the shared PostgreSQL checkpoint) and how old that knowledge is,
bound what can have happened since, and resume at or beyond it. Overshooting is the safe side for
both numbers: a few unused arrival numbers are passed over, a few visitors are admitted early; nobody
gets a number twice, nobody is admitted twice, nobody is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Extra arrival numbers skipped on a restore, beyond the estimate of joins we may not have seen.
RESTORE_SLACK = 10


@dataclass(frozen=True)
class Known:
    """What one source knew about the queue, and how long before the loss."""

    joined: int
    served: float
    age_s: float


def restore_point(
    known: list[Known], *, join_rate: float, admit_rate: float, horizon_s: float
) -> tuple[int, float] | None:
    """(arrival numbers to continue above, serving position to resume from), or None if nothing is known.

    ``join_rate`` is the recent joins per second (doubled here: bursts), ``admit_rate`` the highest
    admission rate that can have applied, ``horizon_s`` how stale any source can be at most while
    edges run (they checkpoint every second and snapshot every tick).
    """
    if not known:
        return None
    joined = max(k.joined + math.ceil(2 * join_rate * _age(k, horizon_s)) + RESTORE_SLACK for k in known)
    # +1: clock arithmetic on epoch timestamps is inexact in the last bits, and landing a hair behind
    # the true position would admit someone twice; one admission early is the safe side.
    served = max(k.served + admit_rate * _age(k, horizon_s) for k in known) + 1.0
    return joined, min(served, float(joined))


def _age(known: Known, horizon_s: float) -> float:
    return min(horizon_s, max(0.0, known.age_s))
