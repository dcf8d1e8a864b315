"""Supply: appointment types, weekly schedules and date overrides, as services of the booking domain.

Each function runs in the caller's transaction. A change to a schedule or an override regenerates the
affected future slots at once (:mod:`shared.schedules`) and returns the regeneration reports: slots
created and withdrawn, and every slot with bookings or holds that no longer fits (kept, never dropped).
Intervals are minutes of the local day, ``[(start, end), ...]``, already validated by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import asyncpg

from shared import queries
from shared.errors import NotFound
from shared.schedules import RegenerationReport, regenerate, regenerate_site

Weekly = Mapping[int, list[tuple[int, int]]]  # ISO weekday (1 = Monday) → intervals


async def require_site(con: asyncpg.Connection, site_id: str) -> None:
    if await con.fetchval(queries.SITE_EXISTS, site_id) is None:
        raise NotFound(f"no site {site_id!r}")


async def require_type(con: asyncpg.Connection, type_id: str) -> None:
    if await con.fetchval(queries.TYPE_EXISTS, type_id) is None:
        raise NotFound(f"no appointment type {type_id!r}")


async def upsert_type(con: asyncpg.Connection, type_id: str, fields: Mapping[str, Any]) -> asyncpg.Record:
    """Create or change an appointment type (``fields`` in UPSERT_TYPE's column order). Existing slots
    keep their length until the schedule is regenerated."""
    row: asyncpg.Record = await con.fetchrow(queries.UPSERT_TYPE, type_id, *fields.values())
    return row


async def list_types(con: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(queries.LIST_TYPES)
    return rows


async def store_schedule(con: asyncpg.Connection, site_id: str, type_id: str, weekly: Weekly) -> None:
    """Replace the (site, type) weekly hours; does not regenerate (see :func:`set_schedule`)."""
    await con.execute(queries.DELETE_SCHEDULE, site_id, type_id)
    await con.executemany(
        queries.INSERT_SCHEDULE_DAY,
        [(site_id, type_id, day, [list(i) for i in hours]) for day, hours in sorted(weekly.items())],
    )


async def set_schedule(
    con: asyncpg.Connection, site_id: str, type_id: str, weekly: Weekly, now: datetime
) -> RegenerationReport:
    """Replace the weekly hours and regenerate the future; not_found for an unknown site or type."""
    await require_site(con, site_id)
    await require_type(con, type_id)
    await store_schedule(con, site_id, type_id, weekly)
    return await regenerate(con, site_id, type_id, now=now)


async def import_schedules(
    con: asyncpg.Connection, schedules: Mapping[tuple[str, str], Weekly], now: datetime
) -> list[RegenerationReport]:
    """Every (site, type) gets exactly its weekly hours, in one transaction: all or none."""
    return [
        await set_schedule(con, site_id, type_id, weekly, now)
        for (site_id, type_id), weekly in sorted(schedules.items())
    ]


async def weekly(con: asyncpg.Connection, site_id: str, type_id: str) -> dict[int, list[tuple[int, int]]]:
    rows = await con.fetch(queries.SCHEDULE_DAYS, site_id, type_id)
    return {r["weekday"]: [(a, b) for a, b in r["intervals"]] for r in rows}


async def overrides(con: asyncpg.Connection, site_id: str, type_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await con.fetch(queries.OVERRIDES_OF, site_id, type_id)
    return rows


async def _regenerate_day(
    con: asyncpg.Connection, site_id: str, type_id: str | None, day: date, now: datetime
) -> list[RegenerationReport]:
    if type_id is not None:
        return [await regenerate(con, site_id, type_id, day, day, now=now)]
    return await regenerate_site(con, site_id, day, day, now=now)


async def set_override(
    con: asyncpg.Connection,
    site_id: str,
    day: date,
    type_id: str | None,
    intervals: list[tuple[int, int]],
    note: str | None,
    now: datetime,
) -> list[RegenerationReport]:
    """Replace the hours of one local day (of one type, or of every type); ``[]`` closes it."""
    await require_site(con, site_id)
    if type_id is not None:
        await require_type(con, type_id)
    await con.execute(queries.UPSERT_OVERRIDE, site_id, day, type_id or "", [list(i) for i in intervals], note)
    return await _regenerate_day(con, site_id, type_id, day, now)


async def delete_override(
    con: asyncpg.Connection, site_id: str, day: date, type_id: str | None, now: datetime
) -> list[RegenerationReport]:
    """The day follows the weekly hours again; not_found when there was no such override."""
    if await con.fetchval(queries.DELETE_OVERRIDE, site_id, day, type_id or "") is None:
        raise NotFound("no such override")
    return await _regenerate_day(con, site_id, type_id, day, now)


async def generate(
    con: asyncpg.Connection, site_id: str, type_id: str | None, first: date | None, last: date | None, now: datetime
) -> list[RegenerationReport]:
    """Generate (or re-align) the site's slots for a range of local days; safe to repeat."""
    await require_site(con, site_id)
    if type_id is None:
        return await regenerate_site(con, site_id, first, last, now=now)
    await require_type(con, type_id)
    return [await regenerate(con, site_id, type_id, first, last, now=now)]
