"""Slots from weekly schedules and date overrides, in the site's zone, and their regeneration.

Opening hours are wall time at the site. Each interval's bounds are resolved to instants once, then
slots step through it in absolute time (duration + buffer), so a slot always lasts its duration, and
an interval spanning a clock change is as long as it really is. A bound that does not exist (inside
a spring-forward gap) moves forward past the gap, as RFC 5545 does; an ambiguous bound (in the
repeated fall-back hour) starts at its first occurrence and ends at its second.

Regeneration makes the future generated slots of a site and type what the schedule says: new slots
are created, slots the schedule no longer has are withdrawn when nobody booked or holds them, and
every slot that has bookings or holds and no longer fits is kept and *reported*, never dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.booking import local_iso, utc_iso
from shared.queries import LOCK_SLOTS, SLOT_STATE

SLOT_NAMESPACE = uuid.UUID("8a3f3f4e-0c1b-4d38-9d0e-51c0f4b7a9e2")
Interval = tuple[int, int]  # minutes of the local day, 0..1440


def wall_instant(day: date, minute: int, zone: ZoneInfo, *, end: bool = False) -> datetime:
    """The instant of local wall time ``minute`` on ``day`` (1440 = the next midnight), in UTC."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = naive.replace(tzinfo=zone, fold=0)
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive
    # fold=0 maps a time in a gap with the offset from before the gap, i.e. forward past it.
    chosen = naive.replace(tzinfo=zone, fold=1) if end and exists else first
    return chosen.astimezone(UTC)


def intervals_for(
    day: date, weekly: Mapping[int, Sequence[Interval]], overrides: Mapping[date, Sequence[Interval]]
) -> Sequence[Interval]:
    if day in overrides:
        return overrides[day]
    return weekly.get(day.isoweekday(), ())


def generate(
    first_day: date,
    last_day: date,
    zone: ZoneInfo,
    weekly: Mapping[int, Sequence[Interval]],
    overrides: Mapping[date, Sequence[Interval]],
    duration_minutes: int,
    buffer_minutes: int = 0,
) -> Iterator[tuple[datetime, datetime]]:
    """(starts_at, ends_at) in UTC of every slot on the local days first_day..last_day (inclusive)."""
    duration = timedelta(minutes=duration_minutes)
    step = duration + timedelta(minutes=buffer_minutes)
    day = first_day
    while day <= last_day:
        for start_minute, end_minute in intervals_for(day, weekly, overrides):
            at = wall_instant(day, start_minute, zone)
            end = wall_instant(day, end_minute, zone, end=True)
            while at + duration <= end:
                yield at, at + duration
                at += step
        day += timedelta(days=1)


def slot_id_for(site_id: str, type_id: str, starts_at: datetime, ends_at: datetime) -> uuid.UUID:
    """Deterministic: the same schedule generates the same ids, so regeneration is idempotent."""
    return uuid.uuid5(SLOT_NAMESPACE, f"{site_id}/{type_id}/{utc_iso(starts_at)}/{utc_iso(ends_at)}")


def parse_intervals(raw: Any) -> list[Interval]:
    return [(int(a), int(b)) for a, b in raw]


async def load_schedule(
    con: asyncpg.Connection, site_id: str, type_id: str
) -> tuple[dict[int, list[Interval]], dict[date, list[Interval]]]:
    weekly = {
        r["weekday"]: parse_intervals(r["intervals"])
        for r in await con.fetch("SELECT weekday, intervals FROM schedules WHERE site_id = $1 AND type_id = $2",
                                 site_id, type_id)
    }  # fmt: skip
    overrides: dict[date, list[Interval]] = {}
    # A type's own override wins over the site-wide one ('' sorts first, so it is overwritten).
    for r in await con.fetch(
        "SELECT day, type_id, intervals FROM schedule_overrides WHERE site_id = $1 AND type_id IN ('', $2)"
        " ORDER BY day, type_id",
        site_id,
        type_id,
    ):
        overrides[r["day"]] = parse_intervals(r["intervals"])
    return weekly, overrides


@dataclass
class RegenerationReport:
    site_id: str
    type_id: str
    first_day: date
    last_day: date
    created: int = 0
    unchanged: int = 0
    restored: int = 0
    withdrawn: int = 0
    capacity_changed: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "type_id": self.type_id,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "created": self.created,
            "unchanged": self.unchanged,
            "restored": self.restored,
            "withdrawn": self.withdrawn,
            "capacity_changed": self.capacity_changed,
            "kept_with_bookings": self.kept,
        }


INSERT_GENERATED = """
INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity, generated)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[]),
       (VALUES (true)) AS g(generated)
ON CONFLICT (slot_id) DO NOTHING
"""

EXISTING_GENERATED = """
SELECT slot_id FROM slots
WHERE site_id = $1 AND type_id = $2 AND generated AND starts_at >= $3 AND starts_at < $4 AND starts_at > $5
"""


async def regenerate(
    con: asyncpg.Connection,
    site_id: str,
    type_id: str,
    first_day: date | None = None,
    last_day: date | None = None,
    *,
    now: datetime,
) -> RegenerationReport:
    """Bring the future generated slots of (site, type) on the local days first_day..last_day in line
    with the schedule; defaults: today at the site through the type's maximum advance. Safe to repeat."""
    site = await con.fetchrow("SELECT timezone FROM sites WHERE site_id = $1", site_id)
    kind = await con.fetchrow("SELECT * FROM appointment_types WHERE type_id = $1", type_id)
    if site is None or kind is None:
        raise LookupError("no such site or appointment type")
    zone = ZoneInfo(site["timezone"])
    today = now.astimezone(zone).date()
    first_day = max(first_day or today, today)
    last_day = last_day or today + timedelta(days=kind["max_advance_days"])
    report = RegenerationReport(site_id, type_id, first_day, last_day)
    if last_day < first_day:
        return report
    weekly, overrides = await load_schedule(con, site_id, type_id)
    seats = kind["seats_per_slot"]
    wanted: dict[uuid.UUID, tuple[datetime, datetime]] = {}
    for starts, ends in generate(
        first_day, last_day, zone, weekly, overrides, kind["duration_minutes"], kind["buffer_minutes"]
    ):
        if starts > now:
            wanted[slot_id_for(site_id, type_id, starts, ends)] = (starts, ends)

    lower = wall_instant(first_day, 0, zone)
    upper = wall_instant(last_day, 1440, zone, end=True)
    existing_ids = [r["slot_id"] for r in await con.fetch(EXISTING_GENERATED, site_id, type_id, lower, upper, now)]
    touched = sorted(set(existing_ids) | set(wanted))
    await con.execute(LOCK_SLOTS, touched)  # no booking or hold can slip in while we decide
    states = {r["slot_id"]: r for r in await con.fetch(SLOT_STATE, touched, now)}

    to_withdraw: list[uuid.UUID] = []
    to_restore: list[uuid.UUID] = []
    for slot_id in existing_ids:
        row = states[slot_id]
        if slot_id in wanted:
            continue
        if row["withdrawn_at"] is not None:
            continue
        if row["booked"] == 0 and row["held"] == 0:
            to_withdraw.append(slot_id)
        else:
            report.kept.append(_kept(row, site["timezone"], "no longer in the schedule"))
    new: list[tuple[uuid.UUID, datetime, datetime]] = []
    for slot_id, (starts, ends) in wanted.items():
        row = states.get(slot_id)
        if row is None:
            new.append((slot_id, starts, ends))
            continue
        if row["withdrawn_at"] is not None:
            to_restore.append(slot_id)
        if row["capacity"] != seats:
            if row["booked"] + row["held"] <= seats:
                await con.execute("UPDATE slots SET capacity = $2 WHERE slot_id = $1", slot_id, seats)
                report.capacity_changed += 1
            else:
                report.kept.append(_kept(row, site["timezone"], f"more seats taken than the new {seats}"))
        elif row["withdrawn_at"] is None:
            report.unchanged += 1
    if to_withdraw:
        await con.execute("UPDATE slots SET withdrawn_at = $2 WHERE slot_id = ANY($1::uuid[])", to_withdraw, now)
    if to_restore:
        await con.execute("UPDATE slots SET withdrawn_at = NULL WHERE slot_id = ANY($1::uuid[])", to_restore)
    if new:
        await con.execute(
            INSERT_GENERATED,
            [n[0] for n in new],
            [site_id] * len(new),
            [type_id] * len(new),
            [n[1] for n in new],
            [n[2] for n in new],
            [seats] * len(new),
        )
    report.created, report.withdrawn, report.restored = len(new), len(to_withdraw), len(to_restore)
    return report


def _kept(row: Any, timezone: str, reason: str) -> dict[str, Any]:
    return {
        "slot_id": str(row["slot_id"]),
        "starts_at": utc_iso(row["starts_at"]),
        "local_starts_at": local_iso(row["starts_at"], timezone),
        "booked": row["booked"],
        "held": row["held"],
        "reason": reason,
    }


async def regenerate_site(
    con: asyncpg.Connection, site_id: str, first_day: date | None = None, last_day: date | None = None, *, now: datetime
) -> list[RegenerationReport]:
    """Regenerate every appointment type the site has a schedule for."""
    types = [r["type_id"] for r in await con.fetch("SELECT DISTINCT type_id FROM schedules WHERE site_id = $1"
                                                    " UNION SELECT DISTINCT type_id FROM slots WHERE site_id = $1"
                                                    " AND generated AND type_id IS NOT NULL", site_id)]  # fmt: skip
    return [await regenerate(con, site_id, t, first_day, last_day, now=now) for t in sorted(types)]
