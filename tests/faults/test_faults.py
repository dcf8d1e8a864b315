"""The fault suite: each fault injected during a booking load, then the books reconciled.

Every fault runs on its own PostgreSQL, Valkey and ``surgegate api`` / ``surgegate worker``
processes (``harness.py``), under a load of 200 admissions booking 24 slots of 3 seats with clients
that retry as real ones do (``load.py``); ``scenarios.py`` has the timeline and the faults,
``reconcile.py`` the rules checked after each. The figures (among them the time from the fault's end
to the last client told its outcome) are printed at the end of the run and kept in docs/faults.md;
no test asserts on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

import asyncpg
import pytest

from tests.faults.load import Booker
from tests.faults.reconcile import reconcile
from tests.faults.scenarios import BASELINE, FAULTS, FIGURES, SETTLE_S, Fault, Report

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SETTLE_S + 300)]


@pytest.mark.parametrize("fault", [pytest.param(f, id=f.name) for f in FAULTS])
def test_fault(fault: Fault, runs: dict[str, Future[Report]], request: pytest.FixtureRequest) -> None:
    report = runs[fault.name].result()
    figures = report.figures()
    request.config.stash.setdefault(FIGURES, []).append(figures)
    print("\n".join(f"{k}: {v}" for k, v in figures.items()))
    assert report.problems == [], "\n".join(report.problems)


# --- negative controls: a breach planted in the baseline's reconciled database must be reported ----
# Each runs in a transaction rolled back afterwards; the schema's own guards (unique indexes, the
# capacity CHECK) are dropped inside it, so what catches the breach is the reconciliation itself.

Plant = Callable[[asyncpg.Connection, list[Booker]], Awaitable[None]]


def _told(bookers: list[Booker], told: str) -> Booker:
    return next(b for b in bookers if b.told == told)


async def _drop_guards(con: asyncpg.Connection) -> None:
    await con.execute("ALTER TABLE appointments DROP CONSTRAINT appointments_token_once")
    await con.execute("DROP INDEX appointments_person_active")
    await con.execute("ALTER TABLE slots DROP CONSTRAINT slots_booked_within_capacity")


async def duplicate_booking(con: asyncpg.Connection, bookers: list[Booker]) -> None:
    """A second appointment for a confirmed booking (same token, person and slot), booked counted."""
    await _drop_guards(con)
    slot_id = await con.fetchval(
        "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
        " SELECT $1, event_id, slot_id, token_id, person_ref, person_sealed, status FROM appointments"
        " WHERE appointment_id = $2 RETURNING slot_id",
        uuid.uuid4(),
        uuid.UUID(_told(bookers, "confirmed").appointment_id),
    )
    await con.execute("UPDATE slots SET booked = booked + 1 WHERE slot_id = $1", slot_id)


async def booked_bumped(con: asyncpg.Connection, bookers: list[Booker]) -> None:
    """One seat counted as booked that no appointment holds."""
    await _drop_guards(con)
    await con.execute("UPDATE slots SET booked = booked + 1 WHERE slot_id = (SELECT slot_id FROM slots LIMIT 1)")


async def refusal_booked(con: asyncpg.Connection, bookers: list[Booker]) -> None:
    """An appointment, booked counted, for a client that was told it was refused."""
    await _drop_guards(con)
    refused = _told(bookers, "rejected")
    slot_id = await con.fetchval(
        "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
        " SELECT $1, 'ev', slot_id, $2, '\\x00'::bytea, '\\x00'::bytea, 'confirmed' FROM slots ORDER BY slot_id LIMIT 1"
        " RETURNING slot_id",
        uuid.uuid4(),
        refused.token_id,
    )
    await con.execute("UPDATE slots SET booked = booked + 1 WHERE slot_id = $1", slot_id)


async def left_pending(con: asyncpg.Connection, bookers: list[Booker]) -> None:
    """A refused attempt put back to pending, as if it had never run."""
    await con.execute(
        "UPDATE booking_attempts SET status = 'pending', code = NULL, finished_at = NULL WHERE token_id = $1",
        _told(bookers, "rejected").token_id,
    )


@pytest.mark.parametrize(
    ("plant", "caught"),
    [
        pytest.param(duplicate_booking, "was told confirmed and has 2 appointments", id="duplicate"),
        pytest.param(booked_bumped, "confirmed appointments =", id="booked-bumped"),
        pytest.param(refusal_booked, "and has 1 appointments", id="refusal-booked"),
        pytest.param(left_pending, "1 attempts are still pending", id="left-pending"),
    ],
)
async def test_negative_control_reconciliation_catches(
    plant: Plant, caught: str, runs: dict[str, Future[Report]]
) -> None:
    baseline = runs[BASELINE.name].result()
    assert baseline.problems == [], "the baseline must reconcile clean for the control to mean anything"
    con = await asyncpg.connect(baseline.dsn)
    try:
        transaction = con.transaction()
        await transaction.start()
        try:
            await plant(con, baseline.bookers)
            problems = await reconcile(con, baseline.bookers)
        finally:
            await transaction.rollback()
        assert await reconcile(con, baseline.bookers) == []  # the plant is gone again
    finally:
        await con.close()
    assert any(caught in problem for problem in problems), problems
