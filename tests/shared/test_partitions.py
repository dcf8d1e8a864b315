"""Partitioned tables (migration 0029, shared/partitions.py): the layout the README documents,
partitions created ahead, exactly-once accepts across hash partitions, the audit chain verified
across partition boundaries, and archiving the oldest audit partition.

Audit tests inject a partition width of 10 ids (production: shared.partitions.PARTITION_IDS) so a
handful of rows crosses boundaries; the fixture puts the default layout back afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared import audit, partitions, queries

WIDTH = 10
SEED_KEYS = audit.AuditKeys(None, {})


async def _reset_layout(pool: asyncpg.Pool, width: int) -> None:
    """Empty audit_log, drop every range partition (attached or detached) and start ids at 1 with
    partitions of ``width`` ids."""
    async with pool.acquire() as con, con.transaction():
        await con.execute("TRUNCATE audit_log, audit_archives")
        names = await con.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^audit_log_[0-9]{19}$'"
        )
        for row in names:
            await con.execute(f'DROP TABLE "{row["relname"]}"')
        await con.execute("SELECT setval('audit_log_audit_id_seq', 1, false)")
        await partitions.ensure_ahead(con, width)


@pytest.fixture
async def small(pool: asyncpg.Pool, clean: None) -> AsyncIterator[None]:
    await _reset_layout(pool, WIDTH)
    yield
    await _reset_layout(pool, partitions.PARTITION_IDS)


async def write(pool: asyncpg.Pool, n: int) -> None:
    for i in range(n):
        await pool.execute(queries.INSERT_AUDIT, f"action_{i}", "ev", None, None, None, f"tok{i}", {"i": i})


async def seal(pool: asyncpg.Pool) -> audit.Sealed:
    async with pool.acquire() as con, con.transaction():
        sealed = await audit.seal(con, margin_s=0, partition_ids=WIDTH)
    assert sealed is not None
    return sealed


async def where(pool: asyncpg.Pool) -> dict[int, str]:
    """audit_id -> the partition holding it."""
    return {
        r["audit_id"]: r["p"] for r in await pool.fetch("SELECT audit_id, tableoid::regclass::text AS p FROM audit_log")
    }


async def test_tables_are_partitioned_as_documented(pool: asyncpg.Pool) -> None:
    layout = {
        r["table"]: (r["strategy"], r["key"])
        for r in await pool.fetch(
            """
            SELECT c.relname AS table, p.partstrat::text AS strategy, pg_get_partkeydef(c.oid) AS key
            FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
            WHERE c.relnamespace = current_schema()::regnamespace
            """
        )
    }
    assert layout == {"audit_log": ("r", "RANGE (audit_id)"), "booking_attempts": ("h", "HASH (attempt_id)")}
    children = await pool.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'booking_attempts'::regclass"
    )
    assert len(children) == 16
    assert all("modulus 16," in r["bound"] for r in children)
    audit_children = {
        r["bound"]
        for r in await pool.fetch(
            "SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_log'::regclass"
        )
    }
    assert "DEFAULT" in audit_children
    # The primary keys the exactly-once and the chain rely on are still the whole key.
    keys = {
        r["t"]: r["def"]
        for r in await pool.fetch(
            "SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE contype = 'p' AND conrelid IN ('audit_log'::regclass, 'booking_attempts'::regclass)"
        )
    }
    assert keys == {"audit_log": "PRIMARY KEY (audit_id)", "booking_attempts": "PRIMARY KEY (attempt_id)"}


async def test_a_partition_is_created_ahead_when_the_range_fills(pool: asyncpg.Pool, small: None) -> None:
    tops = [r["upper_id"] for r in await pool.fetch(queries.AUDIT_PARTITIONS)]
    assert tops == [10, 20]
    await write(pool, 15)  # ids 1..15: the second partition is being filled, none is ahead of it
    await seal(pool)
    parts = await pool.fetch(queries.AUDIT_PARTITIONS)
    assert [(r["lower_id"], r["upper_id"]) for r in parts] == [(0, 10), (10, 20), (20, 30)]
    placed = await where(pool)
    assert placed[9] == "audit_log_0000000000000000000" and placed[10] == "audit_log_0000000000000000010"

    # Negative control: rows written past every range while nothing extends them (no sealer ran) fall
    # into the default partition; the next partition then starts above them and the chain still holds.
    await write(pool, 15)  # ids 16..30: 30 is beyond the last range
    assert (await where(pool))[30] == "audit_log_default"
    await seal(pool)
    assert (await pool.fetch(queries.AUDIT_PARTITIONS))[-1]["lower_id"] == 31
    await write(pool, 1)
    assert (await where(pool))[31] == "audit_log_0000000000000000031"
    await seal(pool)
    async with pool.acquire() as con:
        report = await audit.verify(con, SEED_KEYS)
    assert report.intact and report.rows == 31


async def test_seq_stays_unique_across_partitions(pool: asyncpg.Pool, small: None) -> None:
    await write(pool, 12)
    await seal(pool)
    await write(pool, 1)
    row = await pool.fetchrow("SELECT * FROM audit_log WHERE seq IS NULL")
    assert row["audit_id"] == 13
    # Sealing a row of the second partition with a seq a row of the first partition holds is refused
    # by the database, as the unique index on seq did before partitioning.
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(queries.AUDIT_SEAL, [13], [3], [b"\x00"], [b"\x01"])
    # Negative control: the next seq is accepted.
    await pool.execute(queries.AUDIT_SEAL, [13], [13], [b"\x00"], [b"\x01"])


ACCEPT_JOB = {"person_ref": "ab" * 16}


async def _accept(pool: asyncpg.Pool, table_sql: str, attempt_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval(table_sql, attempt_id, "tok", "ev", "slot", b"\x00", ACCEPT_JOB))


async def test_a_duplicate_accept_inserts_once_across_hash_partitions(pool: asyncpg.Pool, clean: None) -> None:
    ids = [uuid.uuid4() for _ in range(8)]
    # Every attempt accepted 10 times at once: one insert each, whichever partition it hashes to.
    results = await asyncio.gather(*(_accept(pool, queries.ACCEPT_ATTEMPT, a) for a in ids for _ in range(10)))
    assert sum(results) == len(ids)
    counts = await pool.fetch("SELECT attempt_id, count(*) AS n FROM booking_attempts GROUP BY attempt_id")
    assert {r["attempt_id"]: r["n"] for r in counts} == dict.fromkeys(ids, 1)
    assert len({r["p"] for r in await pool.fetch("SELECT tableoid AS p FROM booking_attempts")}) > 1
    # the worker's claim still finds and locks the one row
    async with pool.acquire() as con, con.transaction():
        assert (await con.fetchrow(queries.LOCK_ATTEMPT, ids[0]))["status"] == "pending"


async def test_negative_control_a_time_partitioned_copy_accepts_twice(pool: asyncpg.Pool, clean: None) -> None:
    """Why not RANGE on created_at: the key must then include created_at, and ON CONFLICT on
    (attempt_id, created_at) no longer stops a second accept of the same attempt."""
    async with pool.acquire() as con:
        await con.execute(
            """
            CREATE TEMP TABLE attempts_by_time (
                attempt_id uuid, token_id text, event_id text, slot_id text, request_hash bytea, status text,
                job jsonb, person_ref bytea, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (attempt_id, created_at)
            ) PARTITION BY RANGE (created_at);
            CREATE TEMP TABLE attempts_by_time_all PARTITION OF attempts_by_time DEFAULT;
            """
        )
        try:
            insert = queries.ACCEPT_ATTEMPT.replace("booking_attempts", "attempts_by_time").replace(
                "(attempt_id) DO NOTHING", "(attempt_id, created_at) DO NOTHING"
            )
            attempt = uuid.uuid4()
            accepted = [
                bool(await con.fetchval(insert, attempt, "tok", "ev", "slot", b"\x00", ACCEPT_JOB)) for _ in range(3)
            ]
            assert accepted == [True, True, True]
        finally:
            await con.execute("DROP TABLE attempts_by_time")


# --- verify across a partition boundary ----------------------------------------------------------


async def _change(pool: asyncpg.Pool) -> int:
    await _as_superuser(pool, "UPDATE audit_log SET actor = 'someone-else' WHERE audit_id = 10")
    return 10


async def _remove(pool: asyncpg.Pool) -> int:
    await _as_superuser(pool, "DELETE FROM audit_log WHERE audit_id = 10")
    return 11  # the row whose link points at nothing


async def _insert(pool: asyncpg.Pool) -> int:
    """A row forged between audit_id 9 (first partition) and 10 (second), its hash correct, stored in
    a third (the default: its id is beyond every range); the rows after it moved one seq up."""
    prev = await pool.fetchrow("SELECT * FROM audit_log WHERE audit_id = 9")
    forged = dict(prev) | {"audit_id": 1_000, "action": "forged", "seq": 10}
    digest = audit.row_hash(bytes(prev["row_hash"]), forged, 10)
    async with pool.acquire() as con, con.transaction():
        await con.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await con.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 10")
        await con.execute("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
        await con.execute(
            "INSERT INTO audit_log (audit_id, at, action, event_id, actor, detail, seq, prev_hash, row_hash)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            1_000, forged["at"], "forged", "ev", forged["actor"], forged["detail"], 10, prev["row_hash"], digest,
        )  # fmt: skip
        await con.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    assert (await where(pool))[1_000] == "audit_log_default"
    return 1_000


async def _as_superuser(pool: asyncpg.Pool, *statements: str) -> None:
    async with pool.acquire() as con, con.transaction():
        await con.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for sql in statements:
            await con.execute(sql)
        await con.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def run_cli(*argv: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")} | variables
    return subprocess.run(
        [sys.executable, "-m", "surgegate", "audit", *argv], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("tamper", [_change, _remove, _insert], ids=["changed", "removed", "inserted"])
async def test_cli_verify_detects_tampering_at_a_partition_boundary(
    pool: asyncpg.Pool, small: None, database_url: str, tamper: object
) -> None:
    await write(pool, 25)  # seq n is audit_id n: rows 1..9, 10..19, 20..25 in three partitions
    await seal(pool)
    placed = await where(pool)
    assert placed[9] != placed[10]
    env = {"SURGEGATE_DATABASE_URL": database_url}
    ok = await asyncio.to_thread(run_cli, "verify", **env)
    assert ok.returncode == 0, ok.stderr  # negative control: intact before the tampering
    named = await tamper(pool)  # type: ignore[operator]
    bad = await asyncio.to_thread(run_cli, "verify", **env)
    assert bad.returncode == 1, bad.stdout
    assert f"audit_id {named}:" in bad.stderr


# --- archiving -----------------------------------------------------------------------------------


async def test_the_oldest_partition_is_archived_and_the_rest_still_verifies(pool: asyncpg.Pool, small: None) -> None:
    await write(pool, 5)
    async with pool.acquire() as con, con.transaction():
        with pytest.raises(partitions.CannotArchive, match="still being filled"):
            await partitions.archive_oldest(con)
    await write(pool, 20)  # ids up to 25: the first partition (0..9) is full, all of it unsealed
    async with pool.acquire() as con, con.transaction():
        with pytest.raises(partitions.CannotArchive, match="unsealed"):
            await partitions.archive_oldest(con)
    await seal(pool)
    async with pool.acquire() as con, con.transaction():
        done = await partitions.archive_oldest(con)
    assert [(d.partition, d.rows, d.first_seq, d.last_seq) for d in done] == [
        ("audit_log_0000000000000000000", 9, 1, 9)
    ]
    # Out of audit_log, still in the database for pg_dump.
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE audit_id < 10") == 0
    assert await pool.fetchval('SELECT count(*) FROM "audit_log_0000000000000000000"') == 9

    async with pool.acquire() as con:
        report = await audit.verify(con, SEED_KEYS)
    assert report.intact and report.rows == 16
    await write(pool, 3)
    await seal(pool)
    async with pool.acquire() as con:
        assert (await audit.verify(con, SEED_KEYS)).intact
    # Removing the first row left in audit_log is still caught (the archive pins where the chain resumes).
    await _as_superuser(pool, "DELETE FROM audit_log WHERE audit_id = 10")
    async with pool.acquire() as con:
        report = await audit.verify(con, SEED_KEYS)
    assert report.problem is not None and report.problem.audit_id == 11


async def test_a_row_committed_late_archives_with_the_partitions_it_was_sealed_among(
    pool: asyncpg.Pool, small: None, database_url: str
) -> None:
    await write(pool, 5)  # ids 1..5
    async with pool.acquire() as late:
        tx = late.transaction()
        await tx.start()
        await late.execute(queries.INSERT_AUDIT, "late", "ev", None, None, None, "tok", {})  # id 6, uncommitted
        await write(pool, 9)  # ids 7..15
        await seal(pool)  # seq 1..5 for ids 1..5, 6..14 for ids 7..15
        await write(pool, 5)  # ids 16..20
        await seal(pool)  # seq 15..19
        await tx.commit()
    await seal(pool)  # id 6 (first partition) gets seq 20, after rows of the second and third partitions
    assert await pool.fetchval("SELECT seq FROM audit_log WHERE audit_id = 6") == 20
    await write(pool, 5)  # ids 21..25
    await seal(pool)
    # The first partition alone is not the chain's start (seq 1..8 and 20), nor with the second (1..18,
    # 20); with the third it is, and the third is still being filled.
    async with pool.acquire() as con, con.transaction():
        with pytest.raises(partitions.CannotArchive, match="audit_log_0000000000000000020 is still being filled"):
            await partitions.archive_oldest(con)
    await write(pool, 5)  # ids 26..30
    await seal(pool)
    env = {"SURGEGATE_DATABASE_URL": database_url}
    done = await asyncio.to_thread(run_cli, "archive", **env)
    assert done.returncode == 0, done.stderr
    detached = [line.split()[1] for line in done.stdout.splitlines()]
    assert detached == [f"audit_log_{lo:019d}" for lo in (0, 10, 20)]
    assert await pool.fetchval("SELECT min(seq) FROM audit_log") == 30
    ok = await asyncio.to_thread(run_cli, "verify", **env)
    assert ok.returncode == 0, ok.stderr
    assert "1 sealed rows" in ok.stdout
