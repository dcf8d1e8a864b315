"""The audit log's partitions: created ahead as ids are used, detached for archive once exported.

``audit_log`` is partitioned by RANGE on ``audit_id`` (migration 0029; README "Partitioning"), with
a DEFAULT partition that catches rows beyond every range so an audit insert never fails a booking.
:func:`ensure_ahead` keeps a whole partition of free ids ahead of the last id handed out; the sealer
(:func:`shared.audit.seal`) calls it on every run, so the default partition stays empty.

:func:`archive_oldest` detaches the oldest range partition after an operator exported it
(``surgegate audit export``): it refuses unless every row in it is sealed and its rows are exactly
the start of what is left of the chain (the next ``seq`` values after what was archived before;
when a row that committed late breaks that, the fewest oldest partitions that together are go at once),
records where the chain stood in ``audit_archives`` (append-only), and detaches the partition.
The detached table stays in the database, out of ``audit_log``, for the operator to ``pg_dump`` and
drop. :func:`shared.audit.verify` then starts the chain from the recorded head instead of reporting
the archived rows as removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from shared import queries
from shared.locks import LockNamespace, xact_lock

# Ids per audit_log partition: at a national program's ~5 audit rows per booking and a million
# bookings a day, about twenty days of rows, small enough to vacuum and to archive one at a time.
PARTITION_IDS = 100_000_000


class CannotArchive(Exception):
    """The oldest partition cannot be archived yet (the message says why)."""


@dataclass(frozen=True)
class Archived:
    partition: str
    rows: int
    first_seq: int | None
    last_seq: int | None


async def ensure_ahead(con: asyncpg.Connection, width: int = PARTITION_IDS) -> int:
    """Create range partitions of ``width`` ids until at least ``width`` ids past the last one handed
    out have a partition; returns how many were created (usually 0). Safe to repeat and to run while
    rows are being inserted (ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on audit_log)."""
    made: int = await con.fetchval(queries.AUDIT_PARTITIONS_AHEAD, width)
    return made


async def archive_oldest(con: asyncpg.Connection) -> list[Archived]:
    """Detach the oldest range partitions of audit_log, in the caller's transaction, under the chain's
    lock (a sealer skips its turn meanwhile): the oldest one, or the fewest oldest ones whose rows together
    are the chain's next ``seq`` values (a row that committed late was sealed after rows of the next
    partition). Raises :class:`CannotArchive` when a partition needed is still being filled or holds
    unsealed rows. Each detached partition is recorded in ``audit_archives``."""
    await xact_lock(con, LockNamespace.AUDIT_CHAIN, "chain")
    parts = await con.fetch(queries.AUDIT_PARTITIONS)
    last_id = await con.fetchval(queries.AUDIT_LAST_ID)
    head = await con.fetchrow(queries.AUDIT_ARCHIVED_HEAD)
    after = head["seq"] if head else 0
    taken: list[tuple[asyncpg.Record, asyncpg.Record]] = []
    rows = 0
    last_seq = after
    for part in parts[:-1]:  # the newest range partition is the one ahead: never archived
        name = part["name"]
        if last_id < part["upper_id"] - 1:
            raise CannotArchive(f"{name} is still being filled (ids up to {part['upper_id'] - 1}, last id {last_id})")
        span = await con.fetchrow(queries.AUDIT_PARTITION_SPAN.format(partition=_ident(name)))
        if span["unsealed"]:
            raise CannotArchive(f"{name} holds {span['unsealed']} unsealed rows: wait for the sealer, then export")
        if span["rows"] and span["first_seq"] <= after:
            raise CannotArchive(f"{name} holds seq {span['first_seq']}, at or before the archived head {after}")
        taken.append((part, span))
        rows += span["rows"]
        last_seq = max(last_seq, span["last_seq"] or 0)
        if last_seq - after == rows:  # seqs are unique: these rows are exactly after+1 .. last_seq
            return [await _detach(con, p, s) for p, s in taken]
    if not taken:
        raise CannotArchive("audit_log has only one range partition: it is the one being filled")
    raise CannotArchive(
        f"the rows of {taken[0][0]['name']}..{taken[-1][0]['name']} are not the chain's next run after seq {after} "
        "(a row committed late): archive again once the next partition is full"
    )


async def _detach(con: asyncpg.Connection, part: asyncpg.Record, span: asyncpg.Record) -> Archived:
    await con.execute(
        queries.AUDIT_INSERT_ARCHIVE,
        part["name"], part["lower_id"], part["upper_id"], span["rows"], span["first_seq"], span["last_seq"],
        span["last_audit_id"], span["last_row_hash"],
    )  # fmt: skip
    await con.execute(queries.AUDIT_DETACH_PARTITION.format(partition=_ident(part["name"])))
    return Archived(part["name"], span["rows"], span["first_seq"], span["last_seq"])


def _ident(name: str) -> str:
    # Names come from the catalogue (audit_log_ + digits); quoted anyway, as PostgreSQL's quote_ident.
    return '"' + name.replace('"', '""') + '"'
