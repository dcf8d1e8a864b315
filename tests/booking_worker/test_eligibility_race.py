"""A publish during a burst of 500 concurrent bookings: every appointment records the version that
was published when it committed, none one published after it.

Commit order is read from the audit log: each booking writes its ``booked`` row (naming its rule
version) as its last statement, the publish writes ``rules_published`` once it holds the pointer's
lock alone, and ``audit_id`` comes from a sequence, so a row's place among them follows the locks.
With the pointer's lock shared by the booking before it reads the pointer, a booking that read version 1 holds
the publish back until it commits (its row comes before the publish's); one that starts later waits
for the publish and reads version 2 (its row comes after). The negative control reads the pointer
without sharing the lock: bookings that read version 1 commit after the publish, and the check catches them.

To make the interleaving certain rather than likely, the slot's row is held locked by another
transaction while the burst starts: bookings read the pointer and queue on the seat; then the
publish starts, and the slot is released once the publish either waits (locked read) or has
committed (unlocked read).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from shared import attempts, eligibility, locks, rule_versions
from shared.booking import BookingJob
from shared.db import create_pool
from shared.eligibility import Inputs, RuleBook
from shared.persons import PersonVault
from shared.rules import RuleSetSpec
from shared.settings import Settings
from tests.shared.test_rules import rule_set

pytestmark = pytest.mark.slow

EVENT = "ev"
BOOKINGS = 500
LONG_WAITS = "SET LOCAL lock_timeout = '120s'"


@pytest.fixture
async def wide_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.require_database(), min_size=2, max_size=30)
    yield pool
    await pool.close()


async def prepare(pool: asyncpg.Pool, vault: PersonVault) -> tuple[uuid.UUID, list[str]]:
    """The event with version 1 published and version 2 ready (both admit everyone here), a slot
    with room for all, and BOOKINGS accepted attempts, each with its person's decision."""
    slot_id = uuid.uuid4()
    starts = datetime.now(UTC) + timedelta(days=1)
    v2 = rule_set(examples=[])
    v2["rules"].append({"id": "adult", "expr": "age >= 18", "reason": "minor", "text": {"en": "18+", "es": "18+"}})
    async with pool.acquire() as con, con.transaction():
        await con.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ($1, 'E', 1, 900)",
                          EVENT)  # fmt: skip
        await con.execute("INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('s', 'S', 'R',"
                          " 'Europe/Madrid', 40.4, -3.7)")  # fmt: skip
        await con.execute("INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity) VALUES ($1, 's', $2,"
                          " $3, $4)", slot_id, starts, starts + timedelta(minutes=10), BOOKINGS)  # fmt: skip
        for body in (rule_set(), v2):
            await rule_versions.create_version(con, EVENT, RuleSetSpec.model_validate(body), actor="test",
                                             today=date.today())  # fmt: skip
        await rule_versions.publish(con, EVENT, 1, actor="test", reason=None)
    current = await RuleBook(0).current(pool, EVENT)
    ids: list[str] = []
    async with pool.acquire() as con, con.transaction():
        for i in range(BOOKINGS):
            id_number = f"ID{i:06d}"
            decision = await eligibility.decide(
                con, vault, current, EVENT, id_number=id_number,
                inputs=Inputs(date(1950, 1, 1), {"region": "A", "occupations": []}), credential=f"v{i}",
                now=datetime.now(UTC), ttl_s=3600,
            )  # fmt: skip
            assert decision.evaluation.eligible
            job = BookingJob(
                attempt_id=str(uuid.uuid4()), token_id=uuid.uuid4().hex, event_id=EVENT, scope=None,
                slot_id=str(slot_id), request_hash="00" * 32, person_ref=vault.ref(id_number).hex(),
                person_sealed=vault.seal({"name": "N", "email": "e@example.org"}).decode(),
                decision_id=str(decision.decision_id),
            )  # fmt: skip
            assert await attempts.accept(con, job, datetime.now(UTC)) is not None
            ids.append(job.attempt_id)
    return slot_id, ids


async def waiting_on_locks(watcher: asyncpg.Connection, pid: int | None = None) -> int:
    return int(
        await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND ($1::int IS NULL OR pid = $1)",
            pid,
        )
    )


async def until(check: Callable[[], Awaitable[bool]], deadline_s: float = 60.0) -> None:
    """Poll ``check()`` until it holds: a bounded wait for a state, not a timing."""
    deadline = time.monotonic() + deadline_s
    while not await check():
        assert time.monotonic() < deadline, "the expected state was never reached"
        await asyncio.sleep(0.01)


async def burst_with_a_publish(pool: asyncpg.Pool, vault: PersonVault, slot_id: uuid.UUID, ids: list[str]) -> None:
    # Own connections for the slot's holder, the publisher and the watcher: the burst takes the pool's.
    dsn_con = [await pool.acquire() for _ in range(3)]
    holder, publisher, watcher = dsn_con

    # Waits here are made long on purpose (the slot is held until the publish is in place); a slow
    # machine must not turn them into lock_timeout failures.
    async def book(attempt_id: str) -> None:
        async with pool.acquire() as con, con.transaction():
            await con.execute(LONG_WAITS)
            await attempts.execute(con, attempt_id, vault=vault)

    async def publish() -> None:
        async with publisher.transaction():
            await publisher.execute(LONG_WAITS)
            await rule_versions.publish(publisher, EVENT, 2, actor="test", reason="during the burst")

    async def queued_on_the_seat() -> bool:
        return await waiting_on_locks(watcher) >= 10

    async def published_or_waiting() -> bool:
        return publishing.done() or await waiting_on_locks(watcher, publisher.get_server_pid()) > 0

    blocker = holder.transaction()
    await blocker.start()
    await holder.execute("SELECT 1 FROM slots WHERE slot_id = $1 FOR UPDATE", slot_id)
    bookings = [asyncio.create_task(book(a)) for a in ids]
    await until(queued_on_the_seat)  # bookings have read the pointer and queue on the seat
    publishing = asyncio.create_task(publish())
    await until(published_or_waiting)
    await blocker.commit()
    await asyncio.gather(*bookings)
    await publishing
    for con in dsn_con:
        await pool.release(con)


async def misrecorded(pool: asyncpg.Pool) -> list[int]:
    """audit_ids of bookings whose version is not the one published at their place in commit order."""
    rows = await pool.fetch(
        "SELECT audit_id, action, detail FROM audit_log WHERE action IN ('booked', 'rules_published') ORDER BY audit_id"
    )
    published, wrong = 0, []
    for row in rows:
        if row["action"] == "rules_published":
            published = row["detail"]["rule_version"]
        elif row["detail"].get("rule_version") != published:
            wrong.append(row["audit_id"])
    return wrong


async def test_a_publish_during_500_bookings_is_seen_by_each_at_its_commit(
    settings: Settings, wide_pool: asyncpg.Pool
) -> None:
    vault = PersonVault.from_settings(settings)
    slot_id, ids = await prepare(wide_pool, vault)
    await burst_with_a_publish(wide_pool, vault, slot_id, ids)
    versions = await wide_pool.fetch("SELECT rule_version, count(*) FROM appointments GROUP BY 1 ORDER BY 1")
    assert sum(r["count"] for r in versions) == BOOKINGS
    assert [r["rule_version"] for r in versions] == [1, 2]  # the publish landed inside the burst
    assert await misrecorded(wide_pool) == []


async def test_negative_control_an_unlocked_read_records_a_version_already_replaced(
    settings: Settings, wide_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_lock(con: asyncpg.Connection, namespace: locks.LockNamespace, key: str) -> None:
        return None

    monkeypatch.setattr(locks, "xact_lock_shared", no_lock)
    vault = PersonVault.from_settings(settings)
    slot_id, ids = await prepare(wide_pool, vault)
    await burst_with_a_publish(wide_pool, vault, slot_id, ids)
    assert await misrecorded(wide_pool) != []
