"""The worker's audit sealer (booking_worker/periodic.py ``seal_audit``): a cron job seals the chain
and signs its head, with no one calling it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import replace
from typing import Any

import asyncpg

from booking_worker.periodic import seal_audit
from booking_worker.worker import WorkerSettings, startup
from shared import audit, queries
from shared.settings import Settings
from tests.helpers import make_worker

SEED = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()


async def test_seal_audit_seals_and_signs_when_due(settings: Settings, pool: asyncpg.Pool) -> None:
    ctx: dict[str, Any] = {
        "settings": replace(settings, audit_signing_keys=(SEED,), audit_seal_margin_s=0),
        "pool": pool,
    }
    await startup(ctx)
    for i in range(3):
        await pool.execute(queries.INSERT_AUDIT, "booked", "ev", None, None, None, f"tok{i}", {})
    first = await seal_audit(ctx)
    assert first is not None and first["sealed"] == 3 and first["checkpoint"] > 0
    await pool.execute(queries.INSERT_AUDIT, "cancelled", "ev", None, None, None, "tok0", {})
    assert await seal_audit(ctx) == {"sealed": 1, "checkpoint": 0}  # the next checkpoint is not due yet
    async with pool.acquire() as con:
        report = await audit.verify(con, ctx["audit_keys"])
    assert report.intact and (report.rows, report.checkpoints, report.unsealed) == (4, 1, 0)


async def test_a_running_worker_seals_by_itself(settings: Settings, pool: asyncpg.Pool) -> None:
    """The worker's own cron schedule (test workers run none unless given) seals and signs."""
    (job,) = [j for j in WorkerSettings.cron_jobs if j.coroutine is seal_audit]
    await pool.execute(queries.INSERT_AUDIT, "booked", "ev", None, None, None, "tok", {})
    worker = make_worker(replace(settings, audit_signing_keys=(SEED,), audit_seal_margin_s=0), cron_jobs=[job])
    task = asyncio.create_task(worker.main())
    try:
        async with asyncio.timeout(60):
            while not await pool.fetchval("SELECT count(*) FROM audit_checkpoints"):  # noqa: ASYNC110 (polls the database: no event to await)
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()
    assert await pool.fetchval(queries.AUDIT_UNSEALED_COUNT) == 0
