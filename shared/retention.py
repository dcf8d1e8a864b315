"""Keeping less: person details erased once kept long enough, and re-sealed when the seal key changes.

A person's name, email and birth date exist only as ciphertext (``shared.persons``): in
``appointments.person_sealed``, ``waitlist_entries.person_sealed``, ``notifications.sealed``,
``eligibility_decisions.inputs_sealed`` (the answers given to the eligibility questions) and the
stored job of an attempt not yet executed. Erasing them is destroying that ciphertext (the column
set to NULL, ``erased_at`` set); the rows stay, so counts, reports, the audit's references and
``person_ref`` (a keyed hash: who booked twice, never who someone is) go on working.

* :func:`erase_due` erases what is due: an appointment ``retention_days`` after its slot ended
  (whatever became of it), a waitlist entry as long after its day or after it ended, a message as
  long after it was queued, an eligibility decision's inputs as long after it was made (but not
  before the details of an appointment booked with it). Final attempts keep no job
  (``booking_attempts_final_has_no_job``); an accepted attempt keeps its job until the worker
  executes it, which it always does.
* :func:`reseal_all` rewrites every ciphertext not sealed under the current seal key under it
  (``MultiFernet.rotate``), so the old key can be retired.

Both are safe to run late, twice or on several workers at once: each batch is one transaction that
locks the rows it changes; erasure skips rows another transaction holds (a later run takes them),
re-sealing waits for them and then finds them current. Each batch that changed anything writes one
audit row with counts only.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from cryptography.fernet import InvalidToken

from shared import queries
from shared.persons import PersonVault

BATCH = 500
ACTOR = "system"


@dataclasses.dataclass(frozen=True)
class Erased:
    """How many rows had their details destroyed, per table, and in how many audited batches."""

    appointments: int = 0
    waitlist_entries: int = 0
    notifications: int = 0
    batches: int = 0
    eligibility_decisions: int = 0

    @property
    def total(self) -> int:
        return self.appointments + self.waitlist_entries + self.notifications + self.eligibility_decisions


def _count(status: str) -> int:
    return int(status.split()[-1])  # "UPDATE n"


async def erase_due(pool: asyncpg.Pool, now: datetime, retention_days: int, *, batch: int = BATCH) -> Erased:
    """Erase the details of every row kept ``retention_days`` past its moment (see the module doc),
    ``batch`` rows per table per transaction, until a batch finds fewer than ``batch`` due."""
    cutoff = now - timedelta(days=retention_days)
    done = Erased()
    while True:
        async with pool.acquire() as con, con.transaction():
            counts = {
                "appointments": _count(await con.execute(queries.ERASE_APPOINTMENTS, cutoff, batch, now)),
                "waitlist_entries": _count(await con.execute(queries.ERASE_WAITLIST_ENTRIES, cutoff, batch, now)),
                "notifications": _count(await con.execute(queries.ERASE_NOTIFICATIONS, cutoff, batch, now)),
                "eligibility_decisions": _count(await con.execute(queries.ERASE_DECISION_INPUTS, cutoff, batch, now)),
            }
            if any(counts.values()):
                detail = {**counts, "retention_days": retention_days, "before": cutoff.isoformat()}
                await con.execute(queries.INSERT_AUDIT, "person_details_erased", None, None, None, None, ACTOR, detail)
        done = Erased(
            appointments=done.appointments + counts["appointments"],
            waitlist_entries=done.waitlist_entries + counts["waitlist_entries"],
            notifications=done.notifications + counts["notifications"],
            batches=done.batches + (1 if any(counts.values()) else 0),
            eligibility_decisions=done.eligibility_decisions + counts["eligibility_decisions"],
        )
        if all(n < batch for n in counts.values()):
            return done


@dataclasses.dataclass(frozen=True)
class Resealed:
    """Ciphertexts rewritten under the current key, and those no configured key opens (left as
    they are: either sealed under a key already removed, or not ours)."""

    resealed: int = 0
    unreadable: int = 0


# (what the audit calls it, select a locked batch, write it back)
_SEALED = (
    ("appointments", queries.SEALED_APPOINTMENTS, queries.RESEAL_APPOINTMENTS),
    ("waitlist_entries", queries.SEALED_WAITLIST_ENTRIES, queries.RESEAL_WAITLIST_ENTRIES),
    ("notifications", queries.SEALED_NOTIFICATIONS, queries.RESEAL_NOTIFICATIONS),
    ("eligibility_decisions", queries.SEALED_DECISION_INPUTS, queries.RESEAL_DECISION_INPUTS),
    ("pending_attempts", queries.SEALED_PENDING_JOBS, queries.RESEAL_PENDING_JOBS),
)


async def reseal_all(pool: asyncpg.Pool, vault: PersonVault, *, batch: int = BATCH) -> Resealed:
    """Seal every stored ciphertext under ``vault``'s current key (those already under it are only
    read). Returns the counts; the ids of unreadable rows are not logged (they are not secret, but
    nothing needs them: ``unreadable`` > 0 means a key was removed too early)."""
    resealed = unreadable = 0
    for table, select, update in _SEALED:
        last: Any = None
        while True:
            for attempt in range(_TRIES):
                try:
                    done, unread, last_id = await _reseal_batch(pool, vault, table, select, update, last, batch)
                    break
                except _CONTENDED:
                    if attempt == _TRIES - 1:
                        raise
            resealed, unreadable = resealed + done, unreadable + unread
            if last_id is None:
                break
            last = last_id
    return Resealed(resealed=resealed, unreadable=unreadable)


# A batch waits for rows a booking holds (a short transaction); one stuck past lock_timeout, or a
# deadlock with a transaction locking the same rows in another order, rolls the batch back: tried again.
_CONTENDED = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
_TRIES = 5


async def _reseal_batch(
    pool: asyncpg.Pool, vault: PersonVault, table: str, select: str, update: str, last: Any, batch: int
) -> tuple[int, int, Any]:
    """One locked batch after ``last`` → (rewritten, unreadable, the batch's last id or None if empty)."""
    async with pool.acquire() as con, con.transaction():
        rows = await con.fetch(select, last, batch)
        if not rows:
            return 0, 0, None
        ids: list[Any] = []
        sealed: list[bytes] = []
        unreadable = 0
        for row in rows:
            try:
                new = vault.reseal(bytes(row["sealed"]))
            except InvalidToken:
                unreadable += 1
                continue
            if new is not None:
                ids.append(row["id"])
                sealed.append(new)
        if ids:
            await con.execute(update, ids, sealed)
            await con.execute(
                queries.INSERT_AUDIT, "person_details_resealed", None, None, None, None, ACTOR,
                {"table": table, "resealed": len(ids)},
            )  # fmt: skip
        return len(ids), unreadable, rows[-1]["id"]
