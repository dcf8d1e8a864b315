"""The cap on what one admission stores under Idempotency-Keys (admission/idempotency.py): rows of
``idempotency_keys`` (holds, reschedules, waitlist joins) and, apart, booking attempts. Concurrent
requests with fresh keys cannot overshoot it; a key already stored still answers its repeats; cap 0
(no cap) is the negative control. (The keys' stored answers: test_holds.py and test_api.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, assert_problem, booking_headers, person, seed_typed_slots, serve


async def hold(api: TestClient, token: str, slot_id: str, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", **({"Idempotency-Key": key} if key else {})}
    resp = await api.post("/api/v1/holds", json={"slot_id": slot_id}, headers=headers)
    return resp.status, await resp.json()


async def book_gone_hold(api: TestClient, token: str, key: str) -> tuple[int, dict[str, Any]]:
    """A booking from a hold that does not exist: its attempt is stored (rejected) without a worker."""
    body = {"hold_id": "00000000-0000-4000-8000-000000000000", "person": person(1)}
    resp = await api.post("/api/v1/appointments", json=body, headers=booking_headers(token, key))
    return resp.status, await resp.json()


@pytest.mark.parametrize("cap", [4, 0])
async def test_an_admission_stores_at_most_its_cap_of_keys(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, cap: int
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=5)
    token = admission_token(codec)
    token_id = codec.verify_admission(token).token_id
    async with serve(create_app(replace(settings, max_keys_per_admission=cap))) as api:
        keys = [f"k-{i}" for i in range(10)]
        results = await asyncio.gather(*(hold(api, token, slot, key) for key in keys))
        assert Counter(status for status, _ in results) == ({201: 4, 409: 6} if cap else {201: 10})
        for status, body in results:
            if status == 409:
                assert_problem(status, body, 409, "too_many_keys")
        stored = await pool.fetch("SELECT key FROM idempotency_keys WHERE token_id = $1", token_id)
        assert len(stored) == (cap or 10)
        # a stored key still answers its repeat (the same hold); a request without a key still runs
        first_key = stored[0]["key"]
        first = next(body for (status, body), key in zip(results, keys, strict=True) if key == first_key)
        assert await hold(api, token, slot, first_key) == (201, first)
        assert (await hold(api, token, slot, None))[0] == 201
        # another admission has its own allowance
        assert (await hold(api, admission_token(codec), slot, "k-0"))[0] == 201


@pytest.mark.parametrize("cap", [2, 0])
async def test_an_admission_makes_at_most_its_cap_of_booking_attempts(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, cap: int
) -> None:
    token = admission_token(codec)
    token_id = codec.verify_admission(token).token_id
    async with serve(create_app(replace(settings, max_keys_per_admission=cap))) as api:
        results = await asyncio.gather(*(book_gone_hold(api, token, f"b-{i}") for i in range(6)))
        codes = Counter(body["code"] for _, body in results)
        assert codes == ({"hold_expired": 2, "too_many_keys": 4} if cap else {"hold_expired": 6})
        made = await pool.fetch("SELECT attempt_id FROM booking_attempts WHERE token_id = $1", token_id)
        assert len(made) == (cap or 6)
        # the keys that made an attempt still get its stored outcome
        answered = [f"b-{i}" for i, (_, body) in enumerate(results) if body["code"] == "hold_expired"]
        status, body = await book_gone_hold(api, token, answered[0])
        assert_problem(status, body, 409, "hold_expired")
        if cap:
            status, body = await book_gone_hold(api, token, uuid.uuid4().hex)
            assert_problem(status, body, 409, "too_many_keys")
