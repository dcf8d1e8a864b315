"""``python -m loadtests.invariants``: what a load test checks after its run. A database the worker
could have written passes; one where a slot holds more confirmed appointments than seats (written
here past the worker, as an overbooking bug would) is reported and exits 1."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

from loadtests.invariants import broken_invariants, main
from tests.helpers import seed_site_and_slot


async def confirmed(pool: asyncpg.Pool, slot_id: str) -> None:
    await pool.execute(
        "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
        " VALUES ($1, 'ev', $2, $3, $4, '\\x00', 'confirmed')",
        uuid.uuid4(),
        uuid.UUID(slot_id),
        str(uuid.uuid4()),
        os.urandom(32),
    )


async def test_one_booking_per_seat_holds(pool: asyncpg.Pool, database_url: str, clean: None) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=2)
    await confirmed(pool, slot_id)
    await confirmed(pool, slot_id)
    assert await broken_invariants(database_url) == ([], 2)


async def test_an_overbooked_slot_is_reported(pool: asyncpg.Pool, database_url: str, clean: None) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=1)
    await confirmed(pool, slot_id)
    await confirmed(pool, slot_id)
    broken, count = await broken_invariants(database_url)
    assert broken == [f"slot {slot_id} overbooked: 2 confirmed for 1 seats"]
    assert count == 2


async def test_the_command_exits_1_on_a_broken_invariant_and_names_no_person(
    pool: asyncpg.Pool, database_url: str, clean: None, capsys: pytest.CaptureFixture[str]
) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=1)
    await confirmed(pool, slot_id)
    assert await asyncio.to_thread(main, [database_url]) == 0
    assert "invariants hold over 1 confirmed appointments" in capsys.readouterr().out
    await confirmed(pool, slot_id)
    assert await asyncio.to_thread(main, [database_url]) == 1
    assert f"INVARIANT BROKEN: slot {slot_id} overbooked" in capsys.readouterr().out
    assert main([]) == 2  # usage
