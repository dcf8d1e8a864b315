"""Migration 0012 on a database that already has bookings: appointments join their event's program,
and a person already booked through two events stops the upgrade with a count (never silently).

The migrations run in a scratch schema of the test database, so the real schema is not touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import migration_files

SCRATCH = "upgrade_scratch"


@pytest.fixture
async def before_0012(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose schema holds migrations 0001..0011, two events, and one person booked
    through both (plus another person booked once)."""
    con = await asyncpg.connect(database_url)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE; CREATE SCHEMA {SCRATCH}")
        await con.execute(f"SET search_path = {SCRATCH}")
        for version, sql in migration_files():
            if version < "0012":
                await con.execute(sql)
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('e1', 'E1', 1, 900),"
            " ('e2', 'E2', 1, 900);"
            " INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('s', 'S', 'R', 'UTC', 0, 0);"
            " INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity, booked)"
            " VALUES ('00000000-0000-0000-0000-000000000001', 's', now() + interval '1 day',"
            " now() + interval '1 day 15 minutes', 5, 3)"
        )
        for event_id, person in (("e1", b"p"), ("e2", b"p"), ("e1", b"q")):
            await con.execute(
                "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed,"
                " status) VALUES ($1, $2, '00000000-0000-0000-0000-000000000001', $3, $4, 'x', 'confirmed')",
                uuid.uuid4(), event_id, uuid.uuid4().hex, person,
            )  # fmt: skip
        yield con
    finally:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        await con.close()


def migration_0012() -> str:
    (sql,) = [sql for version, sql in migration_files() if version.startswith("0012")]
    return sql


async def test_a_person_booked_through_two_events_stops_the_upgrade(before_0012: asyncpg.Connection) -> None:
    con = before_0012
    with pytest.raises(asyncpg.RaiseError) as stopped:
        async with con.transaction():
            await con.execute(migration_0012())
    assert "1 people hold confirmed appointments in more than one event" in str(stopped.value)
    assert "cancel the extra appointments" in (stopped.value.hint or "")
    # nothing of it stayed; once the extra appointment is cancelled the upgrade goes through
    added = "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'program_id'"
    assert await con.fetchval(added, SCRATCH) == 0
    await con.execute("UPDATE appointments SET status = 'cancelled' WHERE event_id = 'e2'")
    async with con.transaction():
        await con.execute(migration_0012())
    programs = await con.fetch("SELECT DISTINCT program_id FROM appointments")
    assert [r["program_id"] for r in programs] == ["default"]
