"""Migration 0029 on a database that already has audit rows (sealed and not) and booking attempts:
every row moves into the partitioned tables unchanged (seals included, so the chain still verifies),
and every index, constraint and trigger the old tables had is there again.

The migrations run in a scratch schema of the test database, so the real schema is not touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared import audit, queries
from shared.db import connect, migration_files

SCRATCH = "partition_scratch"
SHAPE = """
SELECT 'index ' || indexname AS what FROM pg_indexes WHERE schemaname = $1 AND tablename = $2
UNION ALL
SELECT 'constraint ' || conname FROM pg_constraint WHERE conrelid = ($1 || '.' || $2)::regclass
UNION ALL
SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = ($1 || '.' || $2)::regclass AND NOT tgisinternal
"""


async def shape_of(con: asyncpg.Connection, table: str) -> set[str]:
    return {r["what"] for r in await con.fetch(SHAPE, SCRATCH, table)}


async def seal_as_before(con: asyncpg.Connection) -> None:
    """What the sealer did before 0029 (it now also creates partitions ahead, which needs 0029)."""
    head = await con.fetchrow(queries.AUDIT_HEAD)
    seq, prev = (head["seq"], bytes(head["row_hash"])) if head else (0, audit.GENESIS)
    ids, seqs, prevs, hashes = [], [], [], []
    for row in await con.fetch(queries.AUDIT_UNSEALED, 0, 100):
        seq += 1
        digest = audit.row_hash(prev, row, seq)
        ids.append(row["audit_id"])
        seqs.append(seq)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    await con.execute(queries.AUDIT_SEAL, ids, seqs, prevs, hashes)


@pytest.fixture
async def before_0029(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose schema holds migrations up to 0029 (excluded), five sealed audit rows and
    two unsealed, and three booking attempts, one of them confirmed with its appointment."""
    con = await connect(database_url)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE; CREATE SCHEMA {SCRATCH}")
        await con.execute(f"SET search_path = {SCRATCH}")
        for version, sql in migration_files():
            if version < "0029":
                await con.execute(sql)
        for i in range(5):
            await con.execute(queries.INSERT_AUDIT, f"a{i}", "ev", None, None, None, "t", {"i": i})
        await seal_as_before(con)
        for i in range(2):
            await con.execute(queries.INSERT_AUDIT, f"b{i}", "ev", None, None, None, "t", {})
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('e1', 'E1', 1, 900);"
            " INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('s', 'S', 'R', 'UTC', 0, 0);"
            " INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity, booked)"
            " VALUES ('00000000-0000-0000-0000-000000000001', 's', now() + interval '1 day',"
            " now() + interval '1 day 15 minutes', 5, 1);"
            " INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
            " VALUES ('00000000-0000-0000-0000-0000000000a1', 'e1', '00000000-0000-0000-0000-000000000001', 'tok0',"
            " 'p', 'x', 'confirmed')"
        )
        for i in range(3):
            await con.execute(
                "INSERT INTO booking_attempts (attempt_id, token_id, event_id, slot_id, request_hash, status,"
                " appointment_id) VALUES ($1, $2, 'e1', 's', 'h', $3, $4)",
                uuid.UUID(int=i + 1), f"tok{i}", "confirmed" if i == 0 else "pending",
                uuid.UUID("00000000-0000-0000-0000-0000000000a1") if i == 0 else None,
            )  # fmt: skip
        yield con
    finally:
        await con.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE")
        await con.close()


def migration_0029() -> str:
    (sql,) = [sql for version, sql in migration_files() if version.startswith("0029")]
    return sql


async def test_existing_rows_move_into_the_partitions_with_everything_around_them(
    before_0029: asyncpg.Connection,
) -> None:
    con = before_0029
    audit_rows = [dict(r) for r in await con.fetch("SELECT * FROM audit_log ORDER BY audit_id")]
    attempts = [dict(r) for r in await con.fetch("SELECT * FROM booking_attempts ORDER BY attempt_id")]
    shape = {t: await shape_of(con, t) for t in ("audit_log", "booking_attempts")}
    async with con.transaction():
        await con.execute(migration_0029())

    assert [dict(r) for r in await con.fetch("SELECT * FROM audit_log ORDER BY audit_id")] == audit_rows
    assert [dict(r) for r in await con.fetch("SELECT * FROM booking_attempts ORDER BY attempt_id")] == attempts
    kinds = await con.fetch(
        "SELECT relname, relkind::text AS k FROM pg_class WHERE relnamespace = $1::regnamespace"
        " AND relname IN ('audit_log', 'booking_attempts', 'audit_log_unpartitioned',"
        " 'booking_attempts_unpartitioned')",
        SCRATCH,
    )
    assert {r["relname"]: r["k"] for r in kinds} == {"audit_log": "p", "booking_attempts": "p"}
    after = {t: await shape_of(con, t) for t in ("audit_log", "booking_attempts")}
    assert after["booking_attempts"] == shape["booking_attempts"]
    # audit_log gains the seq-uniqueness trigger in place of the unique index (same name, not unique).
    assert after["audit_log"] == shape["audit_log"] | {"trigger audit_log_seq_unique"}
    assert not await con.fetchval(
        f"SELECT indisunique FROM pg_index WHERE indexrelid = '{SCRATCH}.audit_log_seq'::regclass"
    )

    # The chain verifies, the sealer goes on from its head, the id sequence survived the old table.
    assert (report := await audit.verify(con, audit.AuditKeys(None, {}))).intact and report.rows == 5
    async with con.transaction():
        sealed = await audit.seal(con, margin_s=0)
    assert sealed is not None and sealed.head_seq == 7
    await con.execute(queries.INSERT_AUDIT, "c", "ev", None, None, None, "t", {})
    assert await con.fetchval("SELECT max(audit_id) FROM audit_log") == 8
    # The foreign key to appointments and exactly-once accepts hold on the new table.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await con.execute("UPDATE booking_attempts SET appointment_id = gen_random_uuid() WHERE attempt_id = $1",
                          uuid.UUID(int=2))  # fmt: skip
    job = {"person_ref": "00"}
    assert await con.fetchval(queries.ACCEPT_ATTEMPT, uuid.UUID(int=2), "tok1", "e1", "s", b"h", job) is None
