"""The schema itself guards the invariants, whatever code runs against it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.db import migrate, migration_files
from tests.helpers import seed_site_and_slot


async def test_migrate_is_idempotent(pool: asyncpg.Pool, clean: None) -> None:
    async with pool.acquire() as con:
        assert await migrate(con) == []
        versions = [r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")]
    assert versions == [version for version, _ in migration_files()]
    assert versions[0] == "0001_initial"


async def test_booked_can_never_exceed_capacity(pool: asyncpg.Pool, clean: None) -> None:
    slot_id = uuid.UUID(await seed_site_and_slot(pool, capacity=2))
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE slots SET booked = 3 WHERE slot_id = $1", slot_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE slots SET booked = -1 WHERE slot_id = $1", slot_id)


async def test_one_active_appointment_per_person_and_one_per_token(pool: asyncpg.Pool, clean: None) -> None:
    slot_id = uuid.UUID(await seed_site_and_slot(pool, capacity=5))
    insert = ("INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed,"
              " status) VALUES ($1, 'ev', $2, $3, $4, 'x', $5)")  # fmt: skip
    await pool.execute(insert, uuid.uuid4(), slot_id, "t1", b"p1", "confirmed")
    with pytest.raises(asyncpg.UniqueViolationError) as person:
        await pool.execute(insert, uuid.uuid4(), slot_id, "t2", b"p1", "confirmed")
    assert person.value.constraint_name == "appointments_person_active"
    with pytest.raises(asyncpg.UniqueViolationError) as token:
        await pool.execute(insert, uuid.uuid4(), slot_id, "t1", b"p2", "confirmed")
    assert token.value.constraint_name == "appointments_token_once"
    await pool.execute("UPDATE appointments SET status = 'cancelled'")
    await pool.execute(insert, uuid.uuid4(), slot_id, "t3", b"p1", "confirmed")  # cancelled frees the person


async def test_audit_log_is_append_only(pool: asyncpg.Pool, clean: None) -> None:
    await pool.execute("INSERT INTO audit_log (action, actor) VALUES ('booked', 't')")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE audit_log SET action = 'x'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_log")
