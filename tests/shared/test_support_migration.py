"""Migration 0017 on a database that already has attempts: a pending attempt takes its person's keyed
ref from its job, a booked one from its appointment, and one that ended refused keeps none (nothing
is left that links it to a person). In a scratch schema of the test database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import migration_files

SCRATCH = "upgrade_scratch_0017"
PENDING, BOOKED, REFUSED = (uuid.UUID(int=i) for i in (1, 2, 3))


@pytest.fixture
async def before_0017(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    con = await asyncpg.connect(database_url)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE; CREATE SCHEMA {SCRATCH}")
        await con.execute(f"SET search_path = {SCRATCH}")
        for version, sql in migration_files():
            if version < "0017":
                await con.execute(sql)
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('e1', 'E1', 1, 900);"
            " INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('s', 'S', 'R', 'UTC', 0, 0);"
            " INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity, booked)"
            " VALUES ('00000000-0000-0000-0000-0000000000aa', 's', now() + interval '1 day',"
            " now() + interval '1 day 15 minutes', 5, 1)"
        )
        appointment = uuid.uuid4()
        await con.execute(
            "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
            " VALUES ($1, 'e1', '00000000-0000-0000-0000-0000000000aa', 't-booked', '\\x70', 'x', 'confirmed')",
            appointment,
        )
        insert = (
            "INSERT INTO booking_attempts (attempt_id, token_id, event_id, slot_id, request_hash, status, code,"
            " appointment_id, job) VALUES ($1, $2, 'e1', 's', '\\x00', $3, $4, $5, $6::text::jsonb)"
        )
        await con.execute(insert, PENDING, "t-pending", "pending", None, None, json.dumps({"person_ref": "71"}))
        await con.execute(insert, BOOKED, "t-booked", "confirmed", None, appointment, None)
        await con.execute(insert, REFUSED, "t-refused", "rejected", "slot_full", None, None)
        yield con
    finally:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        await con.close()


async def test_existing_attempts_get_their_person_ref(before_0017: asyncpg.Connection) -> None:
    con = before_0017
    ((_, sql),) = [(v, s) for v, s in migration_files() if v.startswith("0017")]
    async with con.transaction():
        await con.execute(sql)
    refs = {
        r["attempt_id"]: r["person_ref"] for r in await con.fetch("SELECT attempt_id, person_ref FROM booking_attempts")
    }
    assert refs == {PENDING: b"q", BOOKED: b"p", REFUSED: None}
