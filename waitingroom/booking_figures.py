"""The booking side's figures for the operator console, computed by the edge from PostgreSQL and
Redis: confirmed appointments, refusals by code (``ineligible`` stays 0 until eligibility rules refuse
anyone), booking latency p50/p99 of the attempts that became final in the last 5 minutes (accepted ->
final, ``created_at`` -> ``finished_at``), the booking queue's depth (ZCARD of ``Settings.queue_name``)
the event's invites, and its admission-token failures by reason over the last 15 minutes, which
every booking API process adds to Redis (:mod:`shared.token_failures`; read once a second for all
events, failures that named no trustworthy event under ``UNKNOWN_EVENT``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.errors import Code
from shared.token_failures import TokenFailures, read_window
from waitingroom.queries import (
    CONSOLE_BOOKED,
    CONSOLE_INVITES,
    CONSOLE_LATENCY,
    CONSOLE_NOTIFICATION_BACKLOG,
    CONSOLE_REFUSALS,
)
from waitingroom.room import Room

BOOKING_FIGURES_TTL_S = 1.0  # each event's figures are computed at most this often
LATENCY_WINDOW_S = 300  # booking latency: attempts that became final in the last 5 minutes


class BookingFigures:
    """The booking side's figures of one event, as the edge reads them from PostgreSQL and Redis, cached
    for BOOKING_FIGURES_TTL_S per event (however many consoles watch). One query per figure group."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._failures: tuple[float, TokenFailures] | None = None
        self._backlog: tuple[float, dict[str, Any]] | None = None

    async def of(self, room: Room, event_id: str) -> dict[str, Any]:
        now = self._clock()
        hit = self._cache.get(event_id)
        if hit is not None and now - hit[0] < BOOKING_FIGURES_TTL_S:
            return hit[1]
        value = await self._compute(room, event_id)
        self._cache[event_id] = (now, value)
        return value

    async def token_failures(self, room: Room) -> TokenFailures:
        """The last 15 minutes of token failures of every event, read at most once a TTL."""
        now = self._clock()
        if self._failures is not None and now - self._failures[0] < BOOKING_FIGURES_TTL_S:
            return self._failures[1]
        value = await read_window(room.queue_redis)  # where the booking APIs write them (their limits Redis)
        self._failures = (now, value)
        return value

    async def notification_backlog(self, room: Room) -> dict[str, Any]:
        """Notifications queued and due, and how long the oldest of them has been due (seconds;
        ``None`` when none is), for all events at once, read at most once a TTL."""
        now = self._clock()
        if self._backlog is not None and now - self._backlog[0] < BOOKING_FIGURES_TTL_S:
            return self._backlog[1]
        async with room.pool.acquire() as con:
            row = await con.fetchrow(CONSOLE_NOTIFICATION_BACKLOG)
        value = {"due": row["due"], "oldest_due_age_s": _round(row["oldest_due_age_s"])}
        self._backlog = (now, value)
        return value

    def forget_others(self, event_ids: set[str]) -> None:
        for event_id in set(self._cache) - event_ids:
            del self._cache[event_id]

    async def _compute(self, room: Room, event_id: str) -> dict[str, Any]:
        async with room.pool.acquire() as con:
            booked = await con.fetchval(CONSOLE_BOOKED, event_id)
            refusals = {r["code"]: r["n"] for r in await con.fetch(CONSOLE_REFUSALS, event_id)}
            latency = await con.fetchrow(CONSOLE_LATENCY, event_id, LATENCY_WINDOW_S)
            invites = await con.fetchrow(CONSOLE_INVITES, event_id, datetime.fromtimestamp(room.clock(), UTC))
        depth = await room.queue_redis.zcard(room.settings.queue_name)
        return {
            "booked": booked,
            "slot_full": refusals.get(Code.SLOT_FULL, 0),
            "ineligible": refusals.get(Code.INELIGIBLE, 0),
            "refusals": dict(sorted(refusals.items())),
            "latency_s": {
                "p50": _round(latency["p50"]),
                "p99": _round(latency["p99"]),
                "finished": latency["n"],
                "window_s": LATENCY_WINDOW_S,
            },
            "queue_depth": depth,
            "invites": {"issued": invites["issued"], "used": invites["used"], "open": invites["open"]},
            "token_failures": (await self.token_failures(room)).of(event_id),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
