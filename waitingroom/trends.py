"""The console's sparklines: the last 15 minutes of each event's queue figures, kept by the edge."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from waitingroom.room import Room

TREND_STEP_S = 10.0  # one point per 10 s: 90 points for 15 minutes
TREND_SPAN_S = 15 * 60.0


class Trends:
    """The last 15 minutes of each event's queue figures, one point per :data:`TREND_STEP_S`, taken
    from the edge's own snapshots (no Redis or database call). In memory: a restarted edge starts
    empty, and the page fills the rest from the stream."""

    def __init__(self) -> None:
        self._points: dict[str, deque[dict[str, float]]] = {}

    def record(self, room: Room, now: float) -> None:
        for event in room.open_events():
            state = room.snapshot(event.event_id)
            if state is None:
                continue
            points = self._points.setdefault(event.event_id, deque())
            points.append({"at": now, "joined": state.joined, "admitted": state.admitted,
                           "waiting": state.waiting, "active": state.active})  # fmt: skip
            while points and now - points[0]["at"] > TREND_SPAN_S:
                points.popleft()

    def of(self, event_id: str) -> list[dict[str, float]]:
        return list(self._points.get(event_id, ()))
