"""Cancel (policy, late flag, seat returns) and reschedule (atomic, by slot or hold, racing a
concurrent fill of the target slot)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared import queries as shared_queries
from shared import seats
from shared.appointments import cancel_is_late
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, assert_problem, book, running_worker, seats_of, seed_typed_slots


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_cancel_is_late_after_the_cutoff() -> None:
    starts = datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert not cancel_is_late(starts, 24 * 60, starts - timedelta(hours=24))
    assert cancel_is_late(starts, 24 * 60, starts - timedelta(hours=24) + timedelta(seconds=1))
    assert not cancel_is_late(starts, 0, starts - timedelta(seconds=1))


async def test_cancel_returns_the_seat_and_flags_late_cancellations(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=2, cancel_cutoff_minutes=3 * 24 * 60)
    early_token, late_token = admission_token(codec), admission_token(codec)
    async with running_worker(settings):
        _, first = await book(api, early_token, 1, slot_id=slot)
        _, second = await book(api, late_token, 2, slot_id=slot)
    assert await seats_of(pool, slot) == (2, 0)
    resp = await api.delete(f"/api/v1/appointments/{first['appointment_id']}", headers=auth(early_token))
    body = await resp.json()
    # the slot is two days away and the cut-off three days: late, but accepted
    assert resp.status == 200 and body == {
        "appointment_id": first["appointment_id"],
        "status": "cancelled",
        "late": True,
    }
    assert await seats_of(pool, slot) == (1, 0)
    got = await (await api.get(f"/api/v1/appointments/{first['appointment_id']}", headers=auth(early_token))).json()
    assert got["status"] == "cancelled" and got["cancel_late"] is True
    await pool.execute("UPDATE appointment_types SET cancel_cutoff_minutes = 60")
    resp = await api.delete(f"/api/v1/appointments/{second['appointment_id']}", headers=auth(late_token))
    assert (await resp.json())["late"] is False
    audit = await pool.fetch("SELECT detail FROM audit_log WHERE action = 'cancelled' ORDER BY audit_id")
    assert [a["detail"]["late"] for a in audit] == [True, False]


async def test_reschedule_moves_the_seat_atomically(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b, c = await seed_typed_slots(pool, count=3, capacity=1)
    token = admission_token(codec)
    async with running_worker(settings):
        _, mine = await book(api, token, 1, slot_id=a)
        await book(api, admission_token(codec), 2, slot_id=c)  # c is now full
    url = f"/api/v1/appointments/{mine['appointment_id']}/reschedule"
    resp = await api.post(url, json={"slot_id": b}, headers=auth(token))
    body = await resp.json()
    assert resp.status == 200 and body["slot_id"] == b and body["from_slot_id"] == a
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((0, 0), (1, 0))
    # into a full slot: nothing changes
    resp = await api.post(url, json={"slot_id": c}, headers=auth(token))
    assert_problem(resp.status, await resp.json(), 409, "slot_full")
    assert (await seats_of(pool, b), await seats_of(pool, c)) == ((1, 0), (1, 0))
    # with a hold: the held seat is consumed, the old one freed
    resp = await api.post("/api/v1/holds", json={"slot_id": a}, headers=auth(token))
    held = await resp.json()
    resp = await api.post(url, json={"hold_id": held["hold_id"]}, headers=auth(token))
    assert resp.status == 200 and (await resp.json())["slot_id"] == a
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((1, 0), (0, 0))
    resp = await api.post(url, json={"hold_id": held["hold_id"]}, headers=auth(token))
    assert_problem(resp.status, await resp.json(), 409, "hold_expired")
    # someone else's appointment is not found; bad bodies are 400
    resp = await api.post(url, json={"slot_id": b}, headers=auth(admission_token(codec)))
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    for bad in ({}, {"slot_id": b, "hold_id": held["hold_id"]}, {"slot_id": "x"}):
        resp = await api.post(url, json=bad, headers=auth(token))
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    moves = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'rescheduled'")
    assert moves == 2
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 2


async def test_reschedule_into_a_slot_that_fills_concurrently(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    """Ten appointments try to move into a one-seat slot while ten new bookings try to take it."""
    sources = await seed_typed_slots(pool, count=3, capacity=5)
    (target,) = await seed_typed_slots(pool, count=1, capacity=1, days_ahead=3)
    movers = []
    async with running_worker(settings):
        for i in range(10):
            token = admission_token(codec)
            status, body = await book(api, token, i, slot_id=sources[i % 3])
            assert status == 201, body
            movers.append((token, body["appointment_id"]))

        async def move(token: str, appointment_id: str) -> int:
            resp = await api.post(f"/api/v1/appointments/{appointment_id}/reschedule", json={"slot_id": target},
                                  headers=auth(token))  # fmt: skip
            return resp.status

        async def newcomer(i: int) -> int:
            return (await book(api, admission_token(codec), 100 + i, slot_id=target))[0]

        outcomes = await asyncio.gather(*(move(t, a) for t, a in movers), *(newcomer(i) for i in range(10)))
    assert outcomes.count(200) + outcomes.count(201) == 1
    assert set(outcomes) <= {200, 201, 409}
    assert await seats_of(pool, target) == (1, 0)
    # every loser still holds exactly its old seat: 10 or 9 seats stay booked across the sources
    booked_sources = sum([(await seats_of(pool, s))[0] for s in sources])
    assert booked_sources == 10 - outcomes[:10].count(200)
    per_slot = await pool.fetch(
        "SELECT s.slot_id, s.booked, count(a.*) FILTER (WHERE a.status = 'confirmed') AS n FROM slots s"
        " LEFT JOIN appointments a ON a.slot_id = s.slot_id GROUP BY s.slot_id, s.booked"
    )
    assert all(r["booked"] == r["n"] for r in per_slot)


async def test_negative_control_reschedule_without_the_capacity_guard_overfills(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race with a reschedule that trusts its earlier read (no conditional take): overfilled."""
    sources = await seed_typed_slots(pool, count=2, capacity=5)
    (target,) = await seed_typed_slots(pool, count=1, capacity=1, days_ahead=3)
    movers = []
    async with running_worker(settings):
        for i in range(8):
            token = admission_token(codec)
            _, body = await book(api, token, i, slot_id=sources[i % 2])
            movers.append((token, body["appointment_id"]))

    async def trusting_take_seat(con: asyncpg.Connection, slot_id: uuid.UUID, now: datetime) -> bool:
        row = await con.fetchrow("SELECT booked, capacity FROM slots WHERE slot_id = $1", slot_id)
        await asyncio.sleep(0.3)  # the gap between check and write that a lock would have closed
        if row["booked"] >= row["capacity"]:
            return False
        await con.execute("UPDATE slots SET booked = $2 WHERE slot_id = $1", slot_id, row["booked"] + 1)
        return True

    monkeypatch.setattr(seats, "take_seat", trusting_take_seat)
    monkeypatch.setattr(shared_queries, "LOCK_SLOTS", "SELECT $1::uuid[]")  # and no row locks

    async def move(token: str, appointment_id: str) -> int:
        resp = await api.post(f"/api/v1/appointments/{appointment_id}/reschedule", json={"slot_id": target},
                              headers=auth(token))  # fmt: skip
        return resp.status

    outcomes = await asyncio.gather(*(move(t, a) for t, a in movers))
    moved = await pool.fetchval("SELECT count(*) FROM appointments WHERE slot_id = $1", uuid.UUID(target))
    assert outcomes.count(200) > 1 and moved > 1  # more people in the slot than its one seat
