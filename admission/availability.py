"""The read model behind search: per-site availability, cached in the API process for a second.

Under a spike every admitted visitor searches at once, mostly for the same sites; each API process
asks PostgreSQL at most once per site per ``search_cache_s`` (concurrent misses share one query), and
drops a site's entry at once when it changes a seat there itself (hold, cancel, reschedule). Bookings
made by the worker show up when the entry ages out, so search lags the truth by at most
``search_cache_s`` (1 s by default). Search never decides anything: the booking transaction re-checks
every seat under the slot's row lock.

Hand-written (a dict and futures) because no cache library gives single-flight loading on asyncio
with per-key invalidation in a few lines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from admission import queries
from shared.booking import local_iso, utc_iso
from shared.seats import SlotState, window_problem

HORIZON = timedelta(days=35)  # the part of the future that search serves from the cache


class Cache:
    """Values by key, at most ``max_age_s`` old; one load at a time per key."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._loading: dict[Hashable, asyncio.Future[Any]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and now - cached[0] < self.max_age_s:
            self.hits += 1
            return cached[1]
        pending = self._loading.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._loading.pop(key, None)
        if self.max_age_s > 0:
            self._values[key] = (now, value)
        future.set_result(value)
        return value

    def invalidate(self, *keys: Hashable) -> None:
        for key in keys:
            self._values.pop(key, None)


class Availability:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def site_slots(self, pool: asyncpg.Pool, site_id: str, now: datetime) -> list[dict[str, Any]]:
        """The site's offered future slots within the cache horizon, with live holds counted."""

        async def load() -> list[dict[str, Any]]:
            async with pool.acquire() as con:
                rows = await con.fetch(queries.SITE_SLOTS, site_id, now, now + HORIZON)
            return [prepared(dict(r)) for r in rows]

        rows: list[dict[str, Any]] = await self.cache.get(("slots", site_id), load)
        return rows

    async def slots_between(
        self, pool: asyncpg.Pool, site_id: str, start: datetime, end: datetime, now: datetime
    ) -> list[dict[str, Any]]:
        if end <= now + HORIZON:
            return [r for r in await self.site_slots(pool, site_id, now) if start <= r["starts_at"] < end]
        async with pool.acquire() as con:  # beyond the cached horizon: rare, read directly
            return [prepared(dict(r)) for r in await con.fetch(queries.SITE_SLOTS, site_id, max(start, now), end)]

    def changed(self, *site_ids: str) -> None:
        """A seat changed at these sites (in this process): drop their entries now."""
        self.cache.invalidate(*(("slots", s) for s in site_ids))


def slot_place_and_time(row: Any) -> dict[str, Any]:
    """Where and when, in UTC and the site's zone, from a row with slot and site columns."""
    return {
        "slot_id": str(row["slot_id"]),
        "site_id": row["site_id"],
        "starts_at": utc_iso(row["starts_at"]),
        "ends_at": utc_iso(row["ends_at"]),
        "local_starts_at": local_iso(row["starts_at"], row["timezone"]),
        "timezone": row["timezone"],
    }


def state_place(slot: SlotState) -> dict[str, Any]:
    """Where and when of a locked slot's state."""
    return slot_place_and_time(
        {"slot_id": slot.slot_id, "site_id": slot.site_id, "starts_at": slot.starts_at, "ends_at": slot.ends_at,
         "timezone": slot.timezone}
    )  # fmt: skip


def slot_json(row: Any) -> dict[str, Any]:
    held = row.get("held") or 0
    return {
        **slot_place_and_time(row),
        "type_id": row.get("type_id"),
        "capacity": row["capacity"],
        "remaining": max(0, row["capacity"] - row["booked"] - held),
    }


def prepared(row: dict[str, Any]) -> dict[str, Any]:
    """Work done once per load instead of once per request: the local time of day and the JSON view."""
    row["local_time"] = row["starts_at"].astimezone(ZoneInfo(row["timezone"])).time()
    row["json"] = slot_json(row)
    return row


def bookable(row: dict[str, Any], now: datetime) -> bool:
    return (
        window_problem(row["starts_at"], row["timezone"], row["min_notice_minutes"] or 0, row["max_advance_days"], now)
        is None
    )


def remaining(row: dict[str, Any]) -> int:
    return max(0, int(row["capacity"]) - int(row["booked"]) - int(row["held"]))
