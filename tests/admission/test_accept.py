"""A booking is answered 202 only once it was accepted: a failure before that is a 503 to retry."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared.locks import LOCK_TIMEOUT_MS
from shared.tokens import TokenCodec
from tests.helpers import admission_token, assert_problem, booking_headers, person, seed_site_and_slot


@pytest.mark.slow  # waits out lock_timeout (5 s)
async def test_a_database_failure_during_accept_is_503_and_nothing_is_pending(
    api: TestClient, pool: asyncpg.Pool, codec: TokenCodec, database_url: str
) -> None:
    slot_id = await seed_site_and_slot(pool)
    headers = booking_headers(admission_token(codec))
    body = {"slot_id": slot_id, "person": person(1)}
    blocker = await asyncpg.connect(database_url)
    try:
        # Reads of attempts go on; inserting one waits for the lock until lock_timeout gives up.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE booking_attempts IN EXCLUSIVE MODE")
        resp = await asyncio.wait_for(
            api.post("/api/v1/appointments", json=body, headers=headers), LOCK_TIMEOUT_MS / 1000 + 10
        )
        assert_problem(resp.status, await resp.json(), 503, "overloaded")
        assert "Retry-After" in resp.headers
        await tx.rollback()
    finally:
        await blocker.close()
    assert await pool.fetchval("SELECT count(*) FROM booking_attempts") == 0
    # The same request again, once the database answers: accepted and followed to its outcome.
    resp = await api.post("/api/v1/appointments", json=body, headers=headers)
    assert resp.status in (201, 202), await resp.json()
    attempt = await pool.fetchrow("SELECT attempt_id, status FROM booking_attempts")
    assert attempt is not None
    status = await api.get(
        f"/api/v1/attempts/{attempt['attempt_id']}", headers={"Authorization": headers["Authorization"]}
    )
    assert status.status == 200
