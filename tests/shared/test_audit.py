"""The audit's hash chain and signed checkpoints (shared/audit.py).

Tampering is done as a superuser would: in one transaction, the table's triggers disabled
(``ALTER TABLE ... DISABLE TRIGGER USER``), rows changed, removed, inserted or reordered, the triggers
enabled again. ``verify`` must name the first bad row each time; each case has a negative control
showing what catches it (the chain, or the checkpoints) is what made the difference.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import audit, queries
from shared.seats import utcnow

SEED = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
KEYS = audit.AuditKeys.from_seeds([SEED])
ROWS = 8
TARGET = 5  # the seq tampered with; checkpoints are signed at seq 3 and at seq 8


async def write(pool: asyncpg.Pool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await pool.execute(queries.INSERT_AUDIT, f"action_{i}", "ev", None, None, None, f"tok{i}", {"i": i, "x": [i]})


async def seal(pool: asyncpg.Pool, *, sign: bool = False) -> audit.Sealed:
    async with pool.acquire() as con, con.transaction():
        sealed = await audit.seal(con, margin_s=0)
        assert sealed is not None
        if sign:
            assert await audit.checkpoint_if_due(con, KEYS, every_s=3600, now=utcnow(), force=True) is not None
    return sealed


async def verify(pool: asyncpg.Pool, keys: audit.AuditKeys = KEYS) -> audit.Report:
    async with pool.acquire() as con:
        return await audit.verify(con, keys)


async def walk(pool: asyncpg.Pool, *, chain: bool, checkpoints_before: int | None = None) -> audit.Problem | None:
    """verify's walk with parts left out: without the chain check, or only older checkpoints."""
    async with pool.acquire() as con, con.transaction():
        cps = [dict(r) for r in await con.fetch(queries.AUDIT_CHECKPOINTS)]
        if checkpoints_before is not None:
            cps = [cp for cp in cps if cp["seq"] < checkpoints_before]
        _, _, problem = await audit.walk(con.cursor(queries.AUDIT_CHAIN).__aiter__(), cps, KEYS, chain=chain)
    return problem


@pytest.fixture
async def chain(pool: asyncpg.Pool, clean: None) -> dict[int, int]:
    """Eight sealed rows, checkpoints at seq 3 and 8; returns audit_id by seq."""
    await write(pool, 3)
    await seal(pool, sign=True)
    await write(pool, ROWS - 3, start=3)
    await seal(pool, sign=True)
    return {r["seq"]: r["audit_id"] for r in await pool.fetch("SELECT seq, audit_id FROM audit_log")}


async def as_superuser(pool: asyncpg.Pool, *statements: tuple[Any, ...]) -> None:
    async with pool.acquire() as con, con.transaction():
        await con.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for sql, *args in statements:
            await con.execute(sql, *args)
        await con.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def test_an_untouched_log_verifies(pool: asyncpg.Pool, chain: dict[int, int]) -> None:
    await write(pool, 2)  # not sealed yet: reported, not vouched for, not a failure
    report = await verify(pool)
    assert report.intact, report.problem
    assert (report.rows, report.checkpoints, report.unsealed) == (ROWS, 2, 2)
    await seal(pool, sign=True)
    assert (await verify(pool)).intact


async def test_triggers_allow_sealing_only(pool: asyncpg.Pool, chain: dict[int, int]) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # a sealed row cannot be sealed again
        await pool.execute("UPDATE audit_log SET row_hash = prev_hash WHERE seq = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_checkpoints")
    # a writer cannot place a row into the chain: it arrives unsealed whatever it says
    await pool.execute(
        "INSERT INTO audit_log (action, actor, seq, prev_hash, row_hash) VALUES ('x', 'y', 99, '\\x00', '\\x00')"
    )
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE seq = 99") == 0


async def test_a_row_committed_late_is_sealed_later_and_chains(pool: asyncpg.Pool, clean: None) -> None:
    """bigserial ids commit out of order: the lower id, committed after a higher one was sealed, gets
    the next seq; nothing already sealed moves."""
    await write(pool, 2)
    async with pool.acquire() as slow:
        tx = slow.transaction()
        await tx.start()
        await slow.execute(queries.INSERT_AUDIT, "late", None, None, None, None, "tok-late", {})
        await write(pool, 1)
        assert (await seal(pool)).rows == 3  # the late row is not visible yet
        await tx.commit()
    await seal(pool, sign=True)
    rows = await pool.fetch("SELECT audit_id, seq, action FROM audit_log ORDER BY seq")
    assert [r["action"] for r in rows][-1] == "late"
    assert rows[-1]["audit_id"] < rows[-2]["audit_id"]
    assert (await verify(pool)).intact


async def test_sealers_take_turns(pool: asyncpg.Pool, clean: None) -> None:
    await write(pool, 50)
    async with pool.acquire() as a, pool.acquire() as b, a.transaction(), b.transaction():
        first = await audit.seal(a, margin_s=0)
        second = await audit.seal(b, margin_s=0)  # the chain is taken: no second head
    assert first is not None and first.rows == 50 and second is None
    assert (await verify(pool)).intact


async def _forge_insert(pool: asyncpg.Pool, seqs: dict[int, int]) -> int:
    """Insert a row at seq TARGET with a correctly computed hash, the rows after it moved up by one."""
    prev = await pool.fetchrow("SELECT * FROM audit_log WHERE seq = $1", TARGET - 1)
    forged = dict(prev) | {"audit_id": 1_000_000, "action": "forged", "seq": TARGET}
    digest = audit.row_hash(bytes(prev["row_hash"]), forged, TARGET)
    await as_superuser(
        pool,
        ("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= $1", TARGET),
        ("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",),
        ("INSERT INTO audit_log (audit_id, at, action, event_id, actor, detail, seq, prev_hash, row_hash)"
         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
         1_000_000, forged["at"], "forged", "ev", forged["actor"], forged["detail"], TARGET, prev["row_hash"], digest),
    )  # fmt: skip
    return 1_000_000


async def _rewrite(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    """Change a row and recompute every hash after it: the chain agrees with itself again."""
    await as_superuser(pool, ("UPDATE audit_log SET actor = 'someone-else' WHERE seq = $1", TARGET))
    async with pool.acquire() as con, con.transaction():
        await con.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        prev = bytes(await con.fetchval("SELECT row_hash FROM audit_log WHERE seq = $1", TARGET - 1))
        for row in await con.fetch("SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq", TARGET):
            digest = audit.row_hash(prev, row, row["seq"])
            await con.execute(
                "UPDATE audit_log SET prev_hash = $2, row_hash = $3 WHERE audit_id = $1", row["audit_id"], prev, digest
            )
            prev = digest
        await con.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


Tamper = Callable[[asyncpg.Pool, dict[int, int]], Awaitable[Any]]


async def _update(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    await as_superuser(pool, ("UPDATE audit_log SET detail = '{\"i\": 99}' WHERE seq = $1", TARGET))


async def _delete(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    await as_superuser(pool, ("DELETE FROM audit_log WHERE seq = $1", TARGET))


async def _swap_content(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    a, b = seqs[TARGET], seqs[TARGET + 1]
    await as_superuser(
        pool,
        ("UPDATE audit_log x SET action = y.action, actor = y.actor, detail = y.detail FROM audit_log y"
         " WHERE (x.audit_id, y.audit_id) IN (($1, $2), ($2, $1))", a, b),
    )  # fmt: skip


async def _reorder(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    a, b = seqs[TARGET], seqs[TARGET + 1]
    await as_superuser(
        pool,
        ("UPDATE audit_log SET seq = -1 WHERE audit_id = $1", a),
        ("UPDATE audit_log SET seq = $2 WHERE audit_id = $1", b, TARGET),
        ("UPDATE audit_log SET seq = $2 WHERE audit_id = $1", a, TARGET + 1),
    )


async def _delete_tail(pool: asyncpg.Pool, seqs: dict[int, int]) -> None:
    await as_superuser(pool, ("DELETE FROM audit_log WHERE seq >= $1", TARGET))


# (tamper, which seq's audit_id verify must name (None: the forged row's), what the negative control leaves out)
CASES: dict[str, tuple[Tamper, int | None, str]] = {
    "update": (_update, TARGET, "chain"),
    "delete": (_delete, TARGET + 1, "chain"),
    "insert": (_forge_insert, None, "chain"),
    "swap content": (_swap_content, TARGET, "chain"),
    "reorder": (_reorder, TARGET + 1, "chain"),  # the row now first in chain order
    "rewrite with fresh hashes": (_rewrite, 4, "checkpoints"),  # the first row after the last good checkpoint
    "delete the tail": (_delete_tail, ROWS, "checkpoints"),  # the last row the checkpoint vouched for
}


@pytest.mark.parametrize("case", CASES)
async def test_verify_names_the_first_bad_row(pool: asyncpg.Pool, chain: dict[int, int], case: str) -> None:
    tamper, named_seq, control = CASES[case]
    assert (await verify(pool)).intact
    forged = await tamper(pool, chain)
    report = await verify(pool)
    assert report.problem is not None, case
    expected = forged if named_seq is None else chain[named_seq]
    assert report.problem.audit_id == expected, (case, str(report.problem))
    # Negative control: without the part that caught it, the same tampering passes unnoticed.
    if control == "chain":
        assert await walk(pool, chain=False, checkpoints_before=TARGET) is None
    else:
        assert await walk(pool, chain=True, checkpoints_before=TARGET) is None


async def test_a_forged_checkpoint_is_refused(pool: asyncpg.Pool, chain: dict[int, int]) -> None:
    other = audit.AuditKeys.from_seeds([base64.urlsafe_b64encode(bytes(32)).decode()])
    async with pool.acquire() as con, con.transaction():
        await audit.seal(con, margin_s=0)
        await write_one_and_seal(con)
        assert await audit.checkpoint_if_due(con, other, every_s=0, now=utcnow(), force=True) is not None
    report = await verify(pool)
    assert report.problem is not None and "unknown key" in report.problem.reason
    # verified with both public keys the signature holds: the key check is what refused it
    assert (await verify(pool, audit.AuditKeys(None, {**KEYS.public, **other.public}))).intact


async def write_one_and_seal(con: asyncpg.Connection) -> None:
    await con.execute(queries.INSERT_AUDIT, "one_more", None, None, None, None, "tok", {})
    await audit.seal(con, margin_s=0)


def run_cli(*argv: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")} | variables
    return subprocess.run(
        [sys.executable, "-m", "surgegate", "audit", *argv], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


async def test_cli_verify_and_export(
    pool: asyncpg.Pool, chain: dict[int, int], database_url: str, tmp_path: Path
) -> None:
    env = {"SURGEGATE_DATABASE_URL": database_url, "SURGEGATE_AUDIT_SIGNING_KEY": SEED}
    ok = await asyncio.to_thread(run_cli, "verify", **env)
    assert ok.returncode == 0, ok.stderr
    assert f"{ROWS} sealed rows, 2 signed checkpoints" in ok.stdout

    # An auditor verifies with the public key alone.
    printed = (await asyncio.to_thread(run_cli, "public-key", **env)).stdout.split()
    public_only = {"SURGEGATE_DATABASE_URL": database_url}
    assert (await asyncio.to_thread(run_cli, "verify", "--public-key", printed[1], **public_only)).returncode == 0

    out = tmp_path / "audit.jsonl"
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    exported = await asyncio.to_thread(run_cli, "export", "--since", since, "--out", str(out), **env)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [x for x in lines if x["kind"] == "row"]
    cps = [x for x in lines if x["kind"] == "checkpoint"]
    assert (len(rows), len(cps)) == (ROWS, 2)
    # Every hash recomputes from the export alone, and the last checkpoint signs the last row's hash.
    prev = audit.GENESIS
    for row in rows:
        fields = {k: v for k, v in row.items() if k not in ("kind", "prev_hash", "row_hash")}
        assert audit.row_hash(prev, fields, row["seq"]).hex() == row["row_hash"]
        prev = bytes.fromhex(row["row_hash"])
    assert cps[-1]["head_hash"] == rows[-1]["row_hash"]
    assert (await asyncio.to_thread(run_cli, "export", "--since", since, "--out", str(out), **env)).returncode != 0

    await _update(pool, chain)
    bad = await asyncio.to_thread(run_cli, "verify", **env)
    assert bad.returncode == 1
    assert f"audit_id {chain[TARGET]}:" in bad.stderr

    # Someone rewrites the chain with fresh hashes and deletes the checkpoints that would tell: the
    # database alone now looks intact (the negative control); the checkpoints kept in the export do not.
    await _rewrite(pool, chain)
    async with pool.acquire() as con, con.transaction():
        await con.execute("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER")
        await con.execute("DELETE FROM audit_checkpoints")
        await con.execute("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER")
    assert (await asyncio.to_thread(run_cli, "verify", **env)).returncode == 0
    kept = await asyncio.to_thread(run_cli, "verify", "--checkpoints", str(out), **env)
    assert kept.returncode == 1
    assert f"audit_id {chain[4]}: rewritten" in kept.stderr


def test_a_bad_signing_key_stops_the_cli_without_echoing_it() -> None:
    done = run_cli("verify", SURGEGATE_AUDIT_SIGNING_KEY="not-a-key-but-a-secret")
    assert done.returncode == 2
    assert done.stderr.startswith("surgegate: SURGEGATE_AUDIT_SIGNING_KEY must be comma-separated base64url")
    assert "not-a-key-but-a-secret" not in done.stderr
