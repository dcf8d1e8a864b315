"""Frozen bookings: an operator's emergency stop of an event's new bookings (issue 12).

The edge's ``PUT /admin/v1/events/{id}`` sets ``bookings_frozen`` in PostgreSQL; this API reads it
per event at most once a second per process (:data:`CACHE_S`), so a freeze (and its lifting) holds
on every API process within a second, at one indexed read per event per second. While frozen,
``POST /api/v1/appointments`` accepts nothing new: 503 ``bookings_frozen`` with Retry-After. A
repeat of a request already accepted still answers its stored outcome (the caller learns what
happened to it); searching and holding are untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from admission import queries
from shared.errors import Code, Refused

CACHE_S = 1.0
RETRY_AFTER_S = 30  # a freeze lasts minutes: polling faster would only add load


class Freezes:
    """Per-event frozen flags, each read from PostgreSQL at most every ``CACHE_S`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[float, bool]] = {}

    async def check(self, pool: asyncpg.Pool, event_id: str) -> None:
        """Raise Refused ``bookings_frozen`` if the event's bookings are frozen (cached ≤ CACHE_S)."""
        now = self._clock()
        seen = self._seen.get(event_id)
        if seen is None or now - seen[0] >= CACHE_S:
            async with pool.acquire() as con:
                row = await con.fetchrow(queries.EVENT_FREEZE, event_id)
            seen = (now, bool(row is not None and row["bookings_frozen"]))
            self._seen[event_id] = seen
        if seen[1]:
            # The operator's reason stays in the audit log: it may name things not meant for the public.
            raise Refused(Code.BOOKINGS_FROZEN, retry_after=RETRY_AFTER_S)
