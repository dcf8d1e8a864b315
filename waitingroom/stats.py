"""Figures for operators that are computed, not counted: quantiles and the actual admission rate."""

from __future__ import annotations

from collections.abc import Sequence


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values, rounded to 0.1; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def actual_rate(history: Sequence[tuple[float, int]] | None, now: float, window_s: float = 60.0) -> float:
    """Admissions per second over the last ``window_s``, from (time, admitted so far) snapshots."""
    if not history:
        return 0.0
    then, admitted_then = next(((t, a) for t, a in history if now - t <= window_s), history[-1])
    latest_t, latest = history[-1]
    return round((latest - admitted_then) / (latest_t - then), 3) if latest_t > then else 0.0
