"""PostgreSQL locks: the one registry of advisory-lock namespaces, and how long anyone waits.

Advisory locks are keyed ``(namespace, key)``: the key is hashed into 64 bits with the namespace as
the hash seed (``hashtextextended(key, namespace)``), so two concepts can never collide by choosing
the same key. Every namespace is listed here, once; pick the next free number for a new one.

Waiting: every pooled connection runs with ``lock_timeout`` = :data:`LOCK_TIMEOUT_MS` (set by
:func:`shared.db.create_pool`), so a transaction that waits on a row lock or an advisory lock gives
up with :class:`asyncpg.LockNotAvailableError` instead of hanging behind a stuck holder. The HTTP
services answer that 503 ``overloaded`` (retry); the booking worker retries the job.
"""

from __future__ import annotations

from enum import IntEnum

import asyncpg

from shared import queries

# How long a statement waits for any lock before it fails (pretix's locking.py habit). Seat rows are
# held for one short transaction; waiting longer than this means something is stuck, not busy.
LOCK_TIMEOUT_MS = 5000


class LockNamespace(IntEnum):
    """Advisory-lock namespaces. Never renumber one in use: processes of two versions may overlap."""

    # One live hold per admission: concurrent hold requests of one admission queue up (transaction lock).
    ADMISSION_HOLD = 7
    # One in-flight run per (admission, Idempotency-Key) of a synchronous POST (try-lock, transaction).
    IDEMPOTENCY_KEY = 11
    # Concurrent `surgegate migrate` runs wait for each other (session lock, key "migrations").
    MIGRATIONS = 13
    # New Idempotency-Keys of one admission are counted against its cap one at a time (transaction lock).
    ADMISSION_KEYS = 17
    # One audit sealer at a time extends the hash chain and signs its head (try-lock, transaction, key "chain").
    # The trigger audit_log_seq_unique (migration 0029) takes the same lock in SQL, hashtextextended('chain', 19).
    AUDIT_CHAIN = 19
    # Changes of one event (create, update, close) one at a time, so each is checked against the one
    # before it, also when the event does not exist yet (transaction lock, key the event id).
    EVENT_CHANGE = 23
    # An event's published rule version (shared/eligibility.py): booking transactions share it, a
    # publish, shadow or rollback takes it alone (transaction lock, key the event id).
    RULES_POINTER = 43


async def xact_lock(con: asyncpg.Connection, namespace: LockNamespace, key: str) -> None:
    """Wait (at most ``lock_timeout``) for the advisory lock until the transaction ends."""
    await con.execute(queries.ADVISORY_XACT_LOCK, key, int(namespace))


async def xact_lock_shared(con: asyncpg.Connection, namespace: LockNamespace, key: str) -> None:
    """Wait (at most ``lock_timeout``) for the advisory lock in shared mode until the transaction ends:
    shared holders do not wait for each other, an exclusive one waits for them all and they for it.
    PostgreSQL's lock manager queues a new shared request behind a waiting exclusive one, so a
    stream of sharers cannot starve it (a row's FOR SHARE gives no such promise)."""
    await con.execute(queries.ADVISORY_XACT_LOCK_SHARED, key, int(namespace))


async def try_xact_lock(con: asyncpg.Connection, namespace: LockNamespace, key: str) -> bool:
    """Take the advisory lock until the transaction ends, if free; never waits."""
    return bool(await con.fetchval(queries.ADVISORY_TRY_XACT_LOCK, key, int(namespace)))


async def session_lock(con: asyncpg.Connection, namespace: LockNamespace, key: str) -> None:
    """Wait for the advisory lock until :func:`session_unlock` (or the connection closes)."""
    await con.execute(queries.ADVISORY_LOCK, key, int(namespace))


async def session_unlock(con: asyncpg.Connection, namespace: LockNamespace, key: str) -> None:
    await con.execute(queries.ADVISORY_UNLOCK, key, int(namespace))
