"""Closing a site for a local day: a service of the booking domain, in the caller's transaction.

Every confirmed appointment of the day is cancelled with the reason, the day's slots are withdrawn
(a slot still holding a booking in flight is kept and reported), each affected person goes to the head
of the site's waitlist (any day) and is told, and free seats on other days are offered at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import asyncpg

from shared import appointments, queries, seats
from shared.errors import NotFound
from shared.schedules import wall_instant
from shared.waitlist import Waitlist


@dataclass(frozen=True)
class DayClosed:
    cancelled: int
    waitlisted: int
    slots_withdrawn: int
    slots_kept: list[uuid.UUID]
    offers_made: int


async def close_day(
    con: asyncpg.Connection,
    *,
    site_id: str,
    day: date,
    reason: str,
    type_id: str | None,
    waitlist: Waitlist,
    now: datetime,
    actor: str,
) -> DayClosed:
    """Close ``site_id`` on its local ``day`` (only ``type_id``'s slots when given). Safe to repeat:
    a second run finds nothing left to cancel or withdraw. not_found for an unknown site."""
    timezone = await con.fetchval(queries.SITE_TIMEZONE, site_id)
    if timezone is None:
        raise NotFound(f"no site {site_id!r}")
    zone = ZoneInfo(timezone)
    lower, upper = wall_instant(day, 0, zone), wall_instant(day, 1440, zone, end=True)
    await con.execute(queries.CLOSE_DAY_OVERRIDE, site_id, day, type_id or "", reason)
    slot_ids = [r["slot_id"] for r in await con.fetch(queries.DAY_SLOTS, site_id, lower, upper, type_id)]
    await seats.lock_slots(con, slot_ids, now)
    await con.execute(queries.LAPSE_SLOT_OFFERS, slot_ids)
    await con.execute(queries.RELEASE_SLOT_HOLDS, slot_ids, now)
    cancelled = waitlisted = 0
    for row in await con.fetch(queries.DAY_APPOINTMENTS, site_id, lower, upper, type_id):
        await appointments.cancel(
            con, row["appointment_id"], now=now, waitlist=waitlist, actor=actor, reason=reason, by_site=True
        )
        cancelled += 1
        waitlisted += await _rebook_first(con, row, site_id, reason, waitlist, now)
    withdrawn = {r["slot_id"] for r in await con.fetch(queries.WITHDRAW_EMPTY_SLOTS, slot_ids, now)}
    await con.execute(
        queries.INSERT_AUDIT, "day_closed", None, None, None, None, actor,
        {"site_id": site_id, "day": day.isoformat(), "reason": reason, "cancelled": cancelled},
    )  # fmt: skip
    offers = await waitlist.pass_on(con, now)
    return DayClosed(
        cancelled=cancelled,
        waitlisted=waitlisted,
        slots_withdrawn=len(withdrawn),
        slots_kept=sorted(set(slot_ids) - withdrawn),
        offers_made=offers,
    )


async def _rebook_first(
    con: asyncpg.Connection, row: asyncpg.Record, site_id: str, reason: str, waitlist: Waitlist, now: datetime
) -> int:
    """Put the person of a cancelled appointment first on the site's waitlist (any day) and tell them.
    Returns 1 if they were waitlisted (an appointment of a typed slot), else 0."""
    waitlisted = 0
    if row["person_sealed"] is None:  # details erased (shared/retention.py): nobody to rebook or tell
        return 0
    if row["type_id"] is not None:
        await waitlist.join(
            con, event_id=row["event_id"], site_id=site_id, type_id=row["type_id"], day=None,
            person_ref=bytes(row["person_ref"]), person_sealed=bytes(row["person_sealed"]), token_id=None,
            now=now, priority=0, require_full=False,
        )  # fmt: skip
        waitlisted = 1
    await waitlist.notify(
        con, "cancelled_by_site", bytes(row["person_sealed"]),
        {"reason": reason, "site_id": site_id, "starts_at": row["starts_at"].isoformat(),
         "rebooking": "you are first on this site's waitlist; an offer with a claim link follows"},
        appointment_id=row["appointment_id"],
    )  # fmt: skip
    return waitlisted
