"""Holds through the booking API: placing, replacing, releasing, booking from a hold, expiry at the
exact boundary (with an injected clock), the idempotency of POST /api/v1/holds, and the cap on the
holds one admission places in all."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared import queries as shared_queries
from shared import seats
from shared.attempts import execute as run_attempt
from shared.booking import BookingJob
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, assert_problem, book, running_worker, seats_of, seed_typed_slots, serve


def auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def hold(api: TestClient, token: str, slot_id: str, key: str | None = None) -> tuple[int, dict[str, object]]:
    resp = await api.post("/api/v1/holds", json={"slot_id": slot_id}, headers=auth(token, key))
    return resp.status, await resp.json()


async def test_a_held_seat_is_unavailable_to_others_and_one_hold_per_admission(
    api: TestClient, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b = await seed_typed_slots(pool, capacity=1)
    mine, other = admission_token(codec), admission_token(codec)
    status, first = await hold(api, mine, a)
    assert status == 201 and first["slot_id"] == a and first["expires_at"]
    assert await seats_of(pool, a) == (0, 1)
    status, body = await hold(api, other, a)
    assert_problem(status, body, 409, "slot_full")
    # a new hold replaces the old one atomically: slot a is free again, b is held
    status, second = await hold(api, mine, b)
    assert status == 201
    assert await seats_of(pool, a) == (0, 0) and await seats_of(pool, b) == (0, 1)
    resp = await api.get(f"/api/v1/holds/{first['hold_id']}", headers=auth(mine))
    assert (await resp.json())["status"] == "replaced"
    assert (await hold(api, other, a))[0] == 201
    # released: the seat returns at once; releasing again is harmless; someone else's hold is not found
    resp = await api.delete(f"/api/v1/holds/{second['hold_id']}", headers=auth(other))
    assert resp.status == 404
    for _ in range(2):
        resp = await api.delete(f"/api/v1/holds/{second['hold_id']}", headers=auth(mine))
        assert resp.status == 200
    assert await seats_of(pool, b) == (0, 0)


async def test_booking_from_a_hold_consumes_it_and_a_gone_hold_is_hold_expired(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    token = admission_token(codec)
    _, held = await hold(api, token, slot)
    async with running_worker(settings):
        # nobody else can book the held seat, by slot id either
        status, body = await book(api, admission_token(codec), 2, slot_id=slot)
        assert_problem(status, body, 409, "slot_full")
        status, body = await book(api, token, 1, hold_id=str(held["hold_id"]))
        assert status == 201 and body["slot_id"] == slot
        assert await seats_of(pool, slot) == (1, 0)
        # the hold is consumed: using it again (another admission, or after release) is hold_expired
        other = admission_token(codec)
        status, body = await book(api, other, 3, hold_id=str(held["hold_id"]))
        assert_problem(status, body, 409, "hold_expired")
    assert await pool.fetchval("SELECT status FROM holds WHERE hold_id = $1", uuid.UUID(str(held["hold_id"]))) == (
        "consumed"
    )


async def test_hold_expiry_at_the_exact_boundary(pool: asyncpg.Pool, clean: None) -> None:
    """Live while now < expires_at. One microsecond before: held (others see it full) and bookable
    from the hold; at expires_at: its seat is free for others and the hold cannot be pinned."""
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    slot_id = uuid.UUID(slot)
    t0 = datetime.now(UTC).replace(microsecond=0)
    expires = t0 + timedelta(minutes=5)
    async with pool.acquire() as con, con.transaction():
        placed = await seats.place_hold(con, token_id="holder", event_id="ev", slot_id=slot_id, expires_at=expires,
                                        now=t0)  # fmt: skip
    just_before, at = expires - timedelta(microseconds=1), expires

    async with pool.acquire() as con:
        tx = con.transaction()
        await tx.start()
        assert not await seats.take_seat(con, slot_id, just_before)  # still held
        assert await seats.take_seat(con, slot_id, at)  # expired to the microsecond: free
        await tx.rollback()
        assert await seats.pin_hold(con, placed.hold_id, "holder", uuid.uuid4(), at) is None
        attempt = uuid.uuid4()
        job = BookingJob(
            str(attempt), "holder", "ev", None, slot, "00", "11" * 32, "sealed", hold_id=str(placed.hold_id)
        )
        async with con.transaction():
            assert await seats.pin_hold(con, placed.hold_id, "holder", attempt, just_before) == slot_id
            await con.execute(shared_queries.ACCEPT_ATTEMPT, attempt, "holder", "ev", slot, b"\0", job.to_dict())
    # pinned just in time: it books even though the worker runs long after expiry
    async with pool.acquire() as con, con.transaction():
        outcome, executed, _ = await run_attempt(con, job.attempt_id, at + timedelta(hours=1))
    assert executed and outcome.status == "confirmed"


async def test_the_tidy_job_is_not_needed_for_an_expired_hold_to_free_its_seat(
    api: TestClient, codec: TokenCodec, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    status, _ = await hold(api, admission_token(codec), slot)
    assert status == 201
    later = datetime.now(UTC) + timedelta(minutes=6)  # past the default 5-minute TTL
    monkeypatch.setattr(seats, "utcnow", lambda: later)
    status, body = await hold(api, admission_token(codec), slot)
    assert status == 201, body
    # still 'active' in its row (no sweeper ran), yet it no longer counts
    assert await pool.fetchval("SELECT count(*) FROM holds WHERE status = 'active'") == 2


async def test_hold_idempotency_stored_response_conflict_and_in_progress(
    api: TestClient, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b = await seed_typed_slots(pool, capacity=5)
    token = admission_token(codec)
    first = await hold(api, token, a, key="h-1")
    again = await hold(api, token, a, key="h-1")
    assert first == again and first[0] == 201  # the stored response, not a second hold
    assert await pool.fetchval("SELECT count(*) FROM holds") == 1
    status, body = await hold(api, token, b, key="h-1")
    assert_problem(status, body, 409, "idempotency_conflict")
    # the same key while the first is in flight: hold the advisory lock the way a running request does
    async with pool.acquire() as con, con.transaction():
        token_id = codec.verify_admission(token).token_id
        await con.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 11))", f"{token_id}\nh-2")
        resp = await api.post("/api/v1/holds", json={"slot_id": b}, headers=auth(token, "h-2"))
        assert_problem(resp.status, await resp.json(), 409, "idempotency_in_progress")
        assert resp.headers["Retry-After"] == "1"
    status, _ = await hold(api, token, b, key="h-2")
    assert status == 201
    # a refusal is stored too: the same request gets the same answer
    status, body = await hold(api, token, str(uuid.uuid4()), key="h-3")
    assert_problem(status, body, 404, "not_found")
    assert (await hold(api, token, str(uuid.uuid4()), key="h-3"))[1]["code"] == "idempotency_conflict"


async def test_concurrent_holds_on_the_last_seats(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=3)
    results = await asyncio.gather(*(hold(api, admission_token(codec), slot) for _ in range(30)))
    assert sorted(s for s, _ in results).count(201) == 3
    assert await seats_of(pool, slot) == (0, 3)


async def test_bad_hold_input(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    token = admission_token(codec)
    for body in ({}, {"slot_id": "nope"}, {"slot_id": str(uuid.uuid4()), "x": 1}):
        resp = await api.post("/api/v1/holds", json=body, headers=auth(token))
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.get("/api/v1/holds/not-a-uuid", headers=auth(token))
    assert_problem(resp.status, await resp.json(), 404, "not_found")


@pytest.mark.parametrize("cap", [3, 0])
async def test_an_admission_places_at_most_its_cap_of_holds_in_all(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, cap: int
) -> None:
    """Each hold replaces the last one, and the replaced rows stay: past the cap a new hold is refused
    too_many_holds, even when the requests race. Cap 0 (no cap) is the negative control: all placed."""
    a, b = await seed_typed_slots(pool, capacity=5)
    token = admission_token(codec)
    token_id = codec.verify_admission(token).token_id
    async with serve(create_app(replace(settings, max_holds_per_admission=cap))) as api:
        results = await asyncio.gather(*(hold(api, token, (a, b)[i % 2]) for i in range(10)))
        assert Counter(status for status, _ in results) == ({201: 3, 409: 7} if cap else {201: 10})
        for status, body in results:
            if status == 409:
                assert_problem(status, body, 409, "too_many_holds")
        rows = await pool.fetch("SELECT status FROM holds WHERE token_id = $1", token_id)
        assert Counter(row["status"] for row in rows) == {"active": 1, "replaced": (cap or 10) - 1}
        assert (await hold(api, admission_token(codec), a))[0] == 201  # another admission is unaffected
