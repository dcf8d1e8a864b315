"""Slots from schedules across both DST transitions in America/New_York, Europe/Berlin and
Australia/Sydney, in zones without DST, minimum notice and maximum advance across those changes,
overrides near local midnight, and regeneration that reports instead of dropping booked slots."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from shared.errors import Code
from shared.schedules import generate, regenerate
from shared.seats import window_problem

OUTSIDE_WINDOW = Code.OUTSIDE_BOOKING_WINDOW

EVERY_DAY = {d: [(0, 1440)] for d in range(1, 8)}
NINE_TO_NOON = {d: [(9 * 60, 12 * 60)] for d in range(1, 8)}


def local_times(zone: str, day: date, weekly: dict[int, list[tuple[int, int]]], minutes: int) -> list[str]:
    z = ZoneInfo(zone)
    return [s.astimezone(z).strftime("%H:%M%z") for s, _ in generate(day, day, z, weekly, {}, minutes)]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # spring forward: 02:00-03:00 does not exist, the night is an hour shorter
        ("America/New_York", date(2026, 3, 8), ["00:00-0500", "01:00-0500", "03:00-0400"]),
        ("Europe/Berlin", date(2026, 3, 29), ["00:00+0100", "01:00+0100", "03:00+0200"]),
        ("Australia/Sydney", date(2026, 10, 4), ["00:00+1000", "01:00+1000", "03:00+1100"]),
        # fall back: one hour happens twice, the night is an hour longer
        ("America/New_York", date(2026, 11, 1), ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500", "03:00-0500"]),
        ("Europe/Berlin", date(2026, 10, 25), ["00:00+0200", "01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]),
        ("Australia/Sydney", date(2026, 4, 5), ["00:00+1100", "01:00+1100", "02:00+1100", "02:00+1000", "03:00+1000"]),
        # no DST at all
        ("Asia/Kolkata", date(2026, 3, 8), ["00:00+0530", "01:00+0530", "02:00+0530", "03:00+0530"]),
        ("Asia/Tokyo", date(2026, 11, 1), ["00:00+0900", "01:00+0900", "02:00+0900", "03:00+0900"]),
    ],
)  # fmt: skip
def test_a_night_across_a_clock_change_has_its_real_length(zone: str, day: date, expected: list[str]) -> None:
    weekly = {d: [(0, 4 * 60)] for d in range(1, 8)}
    assert local_times(zone, day, weekly, 60) == expected


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        ("America/New_York", date(2026, 3, 8)),
        ("America/New_York", date(2026, 11, 1)),
        ("Europe/Berlin", date(2026, 3, 29)),
        ("Europe/Berlin", date(2026, 10, 25)),
        ("Australia/Sydney", date(2026, 4, 5)),
        ("Australia/Sydney", date(2026, 10, 4)),
        ("Asia/Kolkata", date(2026, 3, 29)),
    ],
)
def test_daytime_slots_keep_their_wall_time_across_the_change(zone: str, transition: date) -> None:
    """The classic one-hour shift: 09:00 stays 09:00 at the site, while its UTC instant moves."""
    z = ZoneInfo(zone)
    utc_hours = set()
    for offset in (-1, 0, 1):
        day = transition + timedelta(days=offset)
        slots = list(generate(day, day, z, NINE_TO_NOON, {}, 30))
        assert [s.astimezone(z).strftime("%H:%M") for s, _ in slots] == [
            "09:00", "09:30", "10:00", "10:30", "11:00", "11:30"
        ]  # fmt: skip
        assert all(s.astimezone(z).date() == day for s, _ in slots)  # the local date, not the UTC one
        assert all(e - s == timedelta(minutes=30) for s, e in slots)
        utc_hours.add(slots[0][0].astimezone(UTC).strftime("%H:%M"))
    assert len(utc_hours) == (1 if zone == "Asia/Kolkata" else 2)


def test_sydney_morning_slots_fall_on_the_previous_utc_date() -> None:
    z = ZoneInfo("Australia/Sydney")
    (starts, _), *_ = generate(date(2026, 7, 1), date(2026, 7, 1), z, NINE_TO_NOON, {}, 30)
    assert starts.astimezone(UTC) == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def test_a_bound_inside_the_spring_gap_moves_forward() -> None:
    z = ZoneInfo("America/New_York")
    weekly = {7: [(2 * 60 + 30, 5 * 60)]}  # Sunday 02:30-05:00; 02:30 does not exist on 2026-03-08
    got = [
        s.astimezone(z).strftime("%H:%M") for s, _ in generate(date(2026, 3, 8), date(2026, 3, 8), z, weekly, {}, 30)
    ]
    assert got == ["03:30", "04:00", "04:30"]


def test_buffer_between_appointments() -> None:
    z = ZoneInfo("Europe/Berlin")
    got = [s.astimezone(z).strftime("%H:%M") for s, _ in generate(date(2026, 5, 4), date(2026, 5, 4), z,
                                                                  NINE_TO_NOON, {}, 20, 10)]  # fmt: skip
    assert got == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


def test_override_closes_exactly_the_local_day() -> None:
    """Berlin's local midnight is 22:00 or 23:00 UTC the day before: a UTC date would close the wrong hours."""
    z = ZoneInfo("Europe/Berlin")
    closed = date(2026, 3, 29)  # also the spring-forward day
    slots = list(generate(closed - timedelta(days=1), closed + timedelta(days=1), z, EVERY_DAY, {closed: []}, 60))
    local = [s.astimezone(z) for s, _ in slots]
    assert all(t.date() != closed for t in local)
    assert local[23].strftime("%Y-%m-%d %H:%M") == "2026-03-28 23:00"  # the hour before midnight stays
    assert local[24].strftime("%Y-%m-%d %H:%M") == "2026-03-30 00:00"  # and the first hour after it
    special = list(generate(closed, closed, z, EVERY_DAY, {closed: [(23 * 60, 1440)]}, 30))
    assert [s.astimezone(z).strftime("%d %H:%M") for s, _ in special] == ["29 23:00", "29 23:30"]


# --- booking window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "slot_local", "ok_now_utc"),
    [
        # 24 h of notice for 09:00 the day after spring forward: 23 h of wall-clock difference is not enough
        ("Europe/Berlin", datetime(2026, 3, 29, 9, 0), datetime(2026, 3, 28, 7, 0, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 8, 9, 0), datetime(2026, 3, 7, 13, 0, tzinfo=UTC)),
        ("Australia/Sydney", datetime(2026, 10, 4, 9, 0), datetime(2026, 10, 2, 22, 0, tzinfo=UTC)),
        # and the day after fall back: 25 h of wall clock
        ("Europe/Berlin", datetime(2026, 10, 25, 9, 0), datetime(2026, 10, 24, 8, 0, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 1, 9, 0), datetime(2026, 10, 31, 14, 0, tzinfo=UTC)),
        ("Australia/Sydney", datetime(2026, 4, 5, 9, 0), datetime(2026, 4, 3, 23, 0, tzinfo=UTC)),
        ("Asia/Kolkata", datetime(2026, 3, 29, 9, 0), datetime(2026, 3, 28, 3, 30, tzinfo=UTC)),
    ],
)
def test_minimum_notice_is_absolute_time_across_dst(zone: str, slot_local: datetime, ok_now_utc: datetime) -> None:
    starts = slot_local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert starts - ok_now_utc == timedelta(hours=24)
    assert window_problem(starts, zone, 24 * 60, None, ok_now_utc) is None  # exactly 24 h ahead: allowed
    late = ok_now_utc + timedelta(minutes=1)
    assert window_problem(starts, zone, 24 * 60, None, late) == OUTSIDE_WINDOW
    # "the same wall time one day earlier" is not 24 h before across a change (except without DST)
    wall_day_before = (slot_local - timedelta(days=1)).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert (wall_day_before == ok_now_utc) == (zone == "Asia/Kolkata")


def test_maximum_advance_counts_the_sites_calendar_days() -> None:
    zone = "Australia/Sydney"
    now = datetime(2026, 6, 30, 20, 0, tzinfo=UTC)  # 06:00 on 1 July in Sydney, still 30 June in UTC
    z = ZoneInfo(zone)
    day_after = datetime(2026, 7, 2, 9, 0, tzinfo=z).astimezone(UTC)
    two_after = datetime(2026, 7, 3, 9, 0, tzinfo=z).astimezone(UTC)
    assert window_problem(day_after, zone, 0, 1, now) is None
    assert window_problem(two_after, zone, 0, 1, now) == OUTSIDE_WINDOW
    assert window_problem(now - timedelta(minutes=1), zone, 0, None, now) == OUTSIDE_WINDOW  # the past


# --- regeneration in the database -------------------------------------------------------------------


async def seed_supply(pool: asyncpg.Pool, zone: str = "Europe/Berlin") -> None:
    async with pool.acquire() as con, con.transaction():
        await con.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('s1', 'S', 'R', $1, 52.5, 13.4)",
            zone,
        )
        await con.execute(
            "INSERT INTO appointment_types (type_id, name, duration_minutes, seats_per_slot, max_advance_days)"
            " VALUES ('shot', 'Shot', 30, 2, 14)"
        )
        await con.executemany(
            "INSERT INTO schedules (site_id, type_id, weekday, intervals) VALUES ('s1', 'shot', $1, $2)",
            [(d, [[540, 720]]) for d in range(1, 8)],
        )


async def local_slots(pool: asyncpg.Pool, zone: str = "Europe/Berlin") -> list[str]:
    rows = await pool.fetch("SELECT starts_at FROM slots WHERE withdrawn_at IS NULL ORDER BY starts_at")
    return [r["starts_at"].astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M") for r in rows]


async def test_regeneration_withdraws_free_slots_and_reports_booked_ones(pool: asyncpg.Pool, clean: None) -> None:
    await seed_supply(pool)
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    async with pool.acquire() as con, con.transaction():
        report = await regenerate(con, "s1", "shot", date(2026, 3, 28), date(2026, 3, 30), now=now)
    assert report.created == 18
    got = await local_slots(pool)
    assert got[6:12] == ["03-29 09:00", "03-29 09:30", "03-29 10:00", "03-29 10:30", "03-29 11:00", "03-29 11:30"]
    async with pool.acquire() as con, con.transaction():
        again = await regenerate(con, "s1", "shot", date(2026, 3, 28), date(2026, 3, 30), now=now)
    assert (again.created, again.unchanged, again.withdrawn) == (0, 18, 0)  # idempotent

    # someone books 11:30 on the 29th; then the site shortens its hours to 09:00-11:00
    booked = await pool.fetchval(
        "UPDATE slots SET booked = 1 WHERE starts_at = $1 RETURNING slot_id",
        datetime(2026, 3, 29, 11, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    )
    await pool.execute("UPDATE schedules SET intervals = '[[540, 660]]'")
    async with pool.acquire() as con, con.transaction():
        changed = await regenerate(con, "s1", "shot", date(2026, 3, 28), date(2026, 3, 30), now=now)
    assert changed.withdrawn == 5 and changed.created == 0
    assert [k["slot_id"] for k in changed.kept] == [str(booked)]  # reported, not dropped
    assert changed.kept[0]["local_starts_at"].startswith("2026-03-29T11:30:00+02:00")
    assert "03-29 11:30" in await local_slots(pool)
    assert "03-29 11:00" not in await local_slots(pool)

    # back to the old hours: the withdrawn slots return (same ids), nothing doubles
    await pool.execute("UPDATE schedules SET intervals = '[[540, 720]]'")
    async with pool.acquire() as con, con.transaction():
        back = await regenerate(con, "s1", "shot", date(2026, 3, 28), date(2026, 3, 30), now=now)
    assert (back.restored, back.created, back.kept) == (5, 0, [])
    assert len(await local_slots(pool)) == 18


async def test_regeneration_respects_overrides_and_never_touches_the_past(pool: asyncpg.Pool, clean: None) -> None:
    await seed_supply(pool, "Australia/Sydney")
    await pool.execute(
        "INSERT INTO schedule_overrides (site_id, day, type_id, intervals) VALUES ('s1', '2026-04-05', '', '[]'),"
        " ('s1', '2026-04-06', 'shot', '[[1380, 1440]]')"
    )
    now = datetime(2026, 4, 3, 23, 15, tzinfo=UTC)  # 10:15 on 4 April in Sydney
    async with pool.acquire() as con, con.transaction():
        await regenerate(con, "s1", "shot", date(2026, 4, 4), date(2026, 4, 6), now=now)
    assert await local_slots(pool, "Australia/Sydney") == [
        "04-04 10:30", "04-04 11:00", "04-04 11:30", "04-06 23:00", "04-06 23:30"
    ]  # fmt: skip


async def test_capacity_change_applies_unless_more_seats_are_taken(pool: asyncpg.Pool, clean: None) -> None:
    await seed_supply(pool)
    now = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    async with pool.acquire() as con, con.transaction():
        await regenerate(con, "s1", "shot", date(2026, 5, 4), date(2026, 5, 4), now=now)
    first = await pool.fetchval("UPDATE slots SET booked = 2 WHERE starts_at = (SELECT min(starts_at) FROM slots)"
                                " RETURNING slot_id")  # fmt: skip
    await pool.execute("UPDATE appointment_types SET seats_per_slot = 1")
    async with pool.acquire() as con, con.transaction():
        report = await regenerate(con, "s1", "shot", date(2026, 5, 4), date(2026, 5, 4), now=now)
    assert report.capacity_changed == 5
    assert await pool.fetchval("SELECT count(*) FROM slots WHERE capacity = 1") == 5
    assert [k["slot_id"] for k in report.kept] == [str(first)]
    assert await pool.fetchval("SELECT capacity FROM slots WHERE slot_id = $1", first) == 2
    assert isinstance(first, uuid.UUID)
