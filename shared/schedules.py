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

from shared import queries
from shared.booking import local_iso, utc_iso

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
        for r in await con.fetch(queries.SCHEDULE_WEEKLY, site_id, type_id)
    }
    overrides: dict[date, list[Interval]] = {}
    # A type's own override wins over the site-wide one (it comes later, so it overwrites).
    for r in await con.fetch(queries.SCHEDULE_OVERRIDES, site_id, type_id):
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


@dataclass
class _Plan:
    """What regeneration will write: slots to create, withdraw, restore, and give the new capacity."""

    new: list[tuple[uuid.UUID, datetime, datetime]] = field(default_factory=list)
    withdraw: list[uuid.UUID] = field(default_factory=list)
    restore: list[uuid.UUID] = field(default_factory=list)
    resize: list[uuid.UUID] = field(default_factory=list)


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
    timezone, kind = await _site_zone_and_type(con, site_id, type_id)
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    first_day = max(first_day or today, today)
    last_day = last_day or today + timedelta(days=kind["max_advance_days"])
    report = RegenerationReport(site_id, type_id, first_day, last_day)
    if last_day < first_day:
        return report
    weekly, overrides = await load_schedule(con, site_id, type_id)
    slots = generate(first_day, last_day, zone, weekly, overrides, kind["duration_minutes"], kind["buffer_minutes"])
    wanted = {slot_id_for(site_id, type_id, s, e): (s, e) for s, e in slots if s > now}
    lower = wall_instant(first_day, 0, zone)
    upper = wall_instant(last_day, 1440, zone, end=True)
    existing = await con.fetch(queries.SCHEDULE_EXISTING_SLOTS, site_id, type_id, lower, upper, now)
    existing_ids = [r["slot_id"] for r in existing]
    touched = sorted(set(existing_ids) | set(wanted))
    await con.execute(queries.LOCK_SLOTS, touched)  # no booking or hold can slip in while we decide
    states = {r["slot_id"]: r for r in await con.fetch(queries.SLOT_STATE, touched, now)}
    plan = _plan(existing_ids, wanted, states, kind["seats_per_slot"], timezone, report)
    await _apply(con, plan, site_id, type_id, kind["seats_per_slot"], now)
    report.created, report.withdrawn, report.restored = len(plan.new), len(plan.withdraw), len(plan.restore)
    report.capacity_changed = len(plan.resize)
    return report


async def _site_zone_and_type(con: asyncpg.Connection, site_id: str, type_id: str) -> tuple[str, asyncpg.Record]:
    """The site's IANA zone and the appointment type's row; LookupError if either does not exist."""
    timezone = await con.fetchval(queries.SCHEDULE_SITE_ZONE, site_id)
    kind = await con.fetchrow(queries.SCHEDULE_TYPE, type_id)
    if timezone is None or kind is None:
        raise LookupError("no such site or appointment type")
    return timezone, kind


def _plan(
    existing_ids: Sequence[uuid.UUID],
    wanted: Mapping[uuid.UUID, tuple[datetime, datetime]],
    states: Mapping[uuid.UUID, Any],
    seats: int,
    timezone: str,
    report: RegenerationReport,
) -> _Plan:
    """Decide, from the locked slots' states, what to write; count unchanged slots and list the kept
    ones (bookings or holds that no longer fit) in ``report``. Writes nothing."""
    plan = _Plan()
    for slot_id in existing_ids:
        row = states[slot_id]
        if slot_id in wanted or row["withdrawn_at"] is not None:
            continue
        if row["booked"] == 0 and row["held"] == 0:
            plan.withdraw.append(slot_id)
        else:
            report.kept.append(_kept(row, timezone, "no longer in the schedule"))
    for slot_id, (starts, ends) in wanted.items():
        row = states.get(slot_id)
        if row is None:
            plan.new.append((slot_id, starts, ends))
            continue
        if row["withdrawn_at"] is not None:
            plan.restore.append(slot_id)
        if row["capacity"] != seats:
            if row["booked"] + row["held"] <= seats:
                plan.resize.append(slot_id)
            else:
                report.kept.append(_kept(row, timezone, f"more seats taken than the new {seats}"))
        elif row["withdrawn_at"] is None:
            report.unchanged += 1
    return plan


async def _apply(con: asyncpg.Connection, plan: _Plan, site_id: str, type_id: str, seats: int, now: datetime) -> None:
    """Write the plan, one statement per kind of change."""
    if plan.resize:
        await con.execute(queries.SCHEDULE_SET_CAPACITY, plan.resize, seats)
    if plan.withdraw:
        await con.execute(queries.SCHEDULE_WITHDRAW_SLOTS, plan.withdraw, now)
    if plan.restore:
        await con.execute(queries.SCHEDULE_RESTORE_SLOTS, plan.restore)
    if plan.new:
        count = len(plan.new)
        await con.execute(
            queries.SCHEDULE_INSERT_SLOTS,
            [slot_id for slot_id, _, _ in plan.new],
            [site_id] * count,
            [type_id] * count,
            [starts for _, starts, _ in plan.new],
            [ends for _, _, ends in plan.new],
            [seats] * count,
        )


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
    types = [r["type_id"] for r in await con.fetch(queries.SCHEDULE_TYPES_OF_SITE, site_id)]
    return [await regenerate(con, site_id, t, first_day, last_day, now=now) for t in sorted(types)]
