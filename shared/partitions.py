"""The audit log's partitions: created ahead as ids are used, detached for archive once exported.

``audit_log`` is partitioned by RANGE on ``audit_id`` (migration 0029; README "Partitioning"), with
a DEFAULT partition that catches rows beyond every range so an audit insert never fails a booking.
:func:`ensure_ahead` keeps a whole partition of free ids ahead of the last id handed out; the sealer
(:func:`shared.audit.seal`) calls it on every run, so the default partition stays empty.

:func:`archive_oldest` detaches the oldest range partition after an operator exported it
(``surgegate audit export``): it refuses unless every row in it is sealed and its rows are exactly
the start of what is left of the chain (the next ``seq`` values after what was archived before),
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


async def archive_oldest(con: asyncpg.Connection) -> Archived:
    """Detach the oldest range partition of audit_log, in the caller's transaction, under the chain's
    lock (the sealer waits meanwhile). Raises :class:`CannotArchive` when it is still being filled,
    holds unsealed rows, or its rows are not the chain's next ``seq`` values."""
    await xact_lock(con, LockNamespace.AUDIT_CHAIN, "chain")
    parts = await con.fetch(queries.AUDIT_PARTITIONS)
    if len(parts) < 2:
        raise CannotArchive("audit_log has only one range partition: it is the one being filled")
    oldest = parts[0]
    name = oldest["name"]
    last_id = await con.fetchval(queries.AUDIT_LAST_ID)
    if last_id < oldest["upper_id"] - 1:
        raise CannotArchive(f"{name} is still being filled (ids up to {oldest['upper_id'] - 1}, last id {last_id})")
    span = await con.fetchrow(queries.AUDIT_PARTITION_SPAN.format(partition=_ident(name)))
    if span["unsealed"]:
        raise CannotArchive(f"{name} holds {span['unsealed']} unsealed rows: wait for the sealer, then export")
    head = await con.fetchrow(queries.AUDIT_ARCHIVED_HEAD)
    after = head["seq"] if head else 0
    if span["rows"] and (span["first_seq"] != after + 1 or span["last_seq"] - span["first_seq"] + 1 != span["rows"]):
        # A row that committed late got a later seq than rows of the next partition: archive the two
        # together (the next one once it is full) rather than cut the chain in the middle.
        raise CannotArchive(
            f"{name}'s rows are not the chain's next run (seq {span['first_seq']}..{span['last_seq']} for "
            f"{span['rows']} rows after seq {after}): archive it with the next partition"
        )
    await con.execute(
        queries.AUDIT_INSERT_ARCHIVE,
        name, oldest["lower_id"], oldest["upper_id"], span["rows"], span["first_seq"], span["last_seq"],
        span["last_audit_id"], span["last_row_hash"],
    )  # fmt: skip
    await con.execute(queries.AUDIT_DETACH_PARTITION.format(partition=_ident(name)))
    return Archived(name, span["rows"], span["first_seq"], span["last_seq"])


def _ident(name: str) -> str:
    # Names come from the catalogue (audit_log_ + digits); quoted anyway, as PostgreSQL's quote_ident.
    return '"' + name.replace('"', '""') + '"'
