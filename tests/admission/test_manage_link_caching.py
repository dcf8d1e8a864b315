"""Every API answer that carries a manage link carries a credential: none may be kept by a cache."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_manage import auth, credential_of
from tests.helpers import admission_token, booking_headers, person, running_worker, seed_typed_slots


async def test_answers_with_a_manage_link_say_no_store(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    first, second = await seed_typed_slots(pool, count=2)
    token = admission_token(codec)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": first, "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        booked = await resp.json()
    assert resp.status == 201 and "manage_url" in booked
    answers = [resp]
    own = f"/api/v1/appointments/{booked['appointment_id']}"
    credential = credential_of(booked["manage_url"])
    answers.append(await api.get(own, headers=auth(token)))
    answers.append(await api.get(own, headers=auth(credential)))
    attempt = await pool.fetchval("SELECT attempt_id FROM booking_attempts")
    answers.append(await api.get(f"/api/v1/attempts/{attempt}", headers=auth(token)))
    answers.append(await api.post(f"{own}/reschedule", json={"slot_id": second}, headers=auth(credential)))
    for answer in answers:
        assert "manage_url" in await answer.json(), answer.url
        assert answer.headers.get("Cache-Control") == "no-store", (answer.method, answer.url.path)
