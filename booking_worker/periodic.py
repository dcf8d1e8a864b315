"""The worker's periodic jobs (arq cron). Each is safe to run late, twice, or on several workers.

* ``tidy_holds``: mark lapsed holds expired (availability never counted them: tidying only), and
  pass waitlist offers on: lapsed offers end, and free seats someone waits for are offered.
* ``mark_no_shows``: confirmed appointments whose slot ended longer ago than the type's grace period.
* ``purge_idempotency_keys``: keys older than 24 h.
* ``extend_schedules``: regenerate every schedule so the bookable horizon rolls forward day by day.
* ``erase_person_details``: destroy the ciphertext of person details kept past the retention period.
* ``reseal_person_details``: re-seal person details under the current seal key (after a rotation).
* ``seal_audit``: extend the audit's hash chain by the rows written since, and sign its head at
  intervals (``shared.audit``); several workers take turns through an advisory try-lock.

While PostgreSQL is unreachable each run is skipped (returns None), not failed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import asyncpg

from booking_worker import queries
from booking_worker.outages import skipped_while_database_down
from shared import audit, retention, seats
from shared import queries as shared_queries
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.schedules import regenerate
from shared.settings import Settings
from shared.waitlist import Waitlist

log = logging.getLogger("surgegate.booking_worker")

SEAL_BATCHES_PER_RUN = 20


@skipped_while_database_down
async def tidy_holds(ctx: dict[str, Any], now: datetime | None = None) -> dict[str, int] | None:
    pool: asyncpg.Pool = ctx["pool"]
    waitlist: Waitlist = ctx["waitlist"]
    now = now or seats.utcnow()
    async with pool.acquire() as con, con.transaction():
        expired = await seats.expire_holds(con, now)
        offers = await waitlist.pass_on(con, now)
    if offers:
        ctx["metrics"].waitlist.labels("offered").inc(offers)
    return {"expired_holds": len(expired), "offers": offers}


@skipped_while_database_down
async def mark_no_shows(ctx: dict[str, Any], now: datetime | None = None) -> int | None:
    pool: asyncpg.Pool = ctx["pool"]
    metrics: Metrics = ctx["metrics"]
    async with pool.acquire() as con, con.transaction():
        rows = await con.fetch(queries.NO_SHOWS, now or seats.utcnow())
        for row in rows:
            await con.execute(
                shared_queries.INSERT_AUDIT, "no_show", row["event_id"], row["slot_id"], row["appointment_id"], None,
                "system", {},
            )  # fmt: skip
    if rows:
        metrics.appointment_status.labels("no_show").inc(len(rows))
    return len(rows)


@skipped_while_database_down
async def purge_idempotency_keys(ctx: dict[str, Any]) -> int | None:
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as con:
        status = await con.execute(shared_queries.PURGE_IDEMPOTENCY_KEYS, shared_queries.IDEMPOTENCY_KEPT_HOURS)
    return int(status.split()[-1])


@skipped_while_database_down
async def extend_schedules(ctx: dict[str, Any], now: datetime | None = None) -> int | None:
    """Regenerate every (site, type) schedule through its maximum advance; returns slots created."""
    pool: asyncpg.Pool = ctx["pool"]
    now = now or seats.utcnow()
    created = 0
    async with pool.acquire() as con:
        pairs = await con.fetch(queries.SCHEDULED_PAIRS)
        for pair in pairs:
            async with con.transaction():
                report = await regenerate(con, pair["site_id"], pair["type_id"], now=now)
            created += report.created
            if report.kept:
                log.warning(
                    "schedule of %s/%s: %d slots with bookings no longer fit",
                    pair["site_id"],
                    pair["type_id"],
                    len(report.kept),
                )
    return created


@skipped_while_database_down
async def erase_person_details(ctx: dict[str, Any], now: datetime | None = None) -> int | None:
    """Erase what is due under SURGEGATE_RETENTION_DAYS (shared/retention.py); returns rows erased."""
    settings: Settings = ctx["settings"]
    erased = await retention.erase_due(ctx["pool"], now or seats.utcnow(), settings.retention_days)
    if erased.total:
        log.info(
            "erased person details: %d appointments, %d waitlist entries, %d messages",
            erased.appointments,
            erased.waitlist_entries,
            erased.notifications,
        )
    return erased.total


@skipped_while_database_down
async def reseal_person_details(ctx: dict[str, Any]) -> int | None:
    """Re-seal ciphertexts under the current seal key; returns how many were rewritten."""
    vault: PersonVault = ctx["vault"]
    done = await retention.reseal_all(ctx["pool"], vault)
    if done.unreadable:
        log.warning("%d sealed person records open under none of the configured seal keys", done.unreadable)
    return done.resealed


@skipped_while_database_down
async def seal_audit(ctx: dict[str, Any], now: datetime | None = None) -> dict[str, int] | None:
    """Seal the audit rows written since the last run (older than the margin) and sign the head when a
    checkpoint is due. Returns rows sealed and the checkpoint made (0: none)."""
    pool: asyncpg.Pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    keys: audit.AuditKeys = ctx["audit_keys"]
    total = 0
    async with pool.acquire() as con:
        # Batches in short transactions, so a backlog (after an outage) never holds one long one;
        # bounded, so one run never outlasts the next by much.
        for _ in range(SEAL_BATCHES_PER_RUN):
            async with con.transaction():
                sealed = await audit.seal(con, margin_s=settings.audit_seal_margin_s)
                if sealed is None:  # another worker is sealing right now
                    return {"sealed": total, "checkpoint": 0}
                total += sealed.rows
                made = await audit.checkpoint_if_due(
                    con, keys, every_s=settings.audit_checkpoint_interval_s, now=now or seats.utcnow()
                )
            if sealed.rows < audit.SEAL_BATCH:
                break
    return {"sealed": total, "checkpoint": made["checkpoint_id"] if made else 0}
