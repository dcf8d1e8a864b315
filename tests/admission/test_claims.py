"""A waitlist claim books only for the person who joined the waitlist (issue 14, item 6).

Whoever presents a claim link gets its admission and hold, but the booking transaction refuses any
other person 403 ``claim_person_mismatch`` (from the seat's hold and from any free seat alike), and
the refused attempt leaves the hold for the right person. The negative control removes that check
and the same test books the offered seat for a stranger.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared import attempts
from shared.persons import PersonVault, person_key_of
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import (
    admission_token,
    assert_problem,
    book,
    booking_headers,
    person,
    running_worker,
    seats_of,
    seed_typed_slots,
)

WAITING, STRANGER = 2, 3  # person numbers: the one on the waitlist, and someone the link was given to


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def join_waitlist(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool, slot_id: str, i: int) -> int:
    starts = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot_id))
    day = str(starts.astimezone(ZoneInfo("Europe/Berlin")).date())
    body = {"site_id": "site-a", "type_id": "group", "day": day, "person": person(i)}
    return (await api.post("/api/v1/waitlist", json=body, headers=auth(admission_token(codec)))).status


async def offered_claim(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> dict[str, Any]:
    """Two one-seat slots of one day, both booked; person 2 waits; the first seat frees and person 2's
    claim link is claimed (by whoever holds it). Returns the claim's answer, with both slots and the
    second slot's admission (to free it later)."""
    first, second = await seed_typed_slots(pool, count=2, capacity=1)
    owners = [admission_token(codec), admission_token(codec)]
    booked = [await book(api, owners[0], 1, slot_id=first), await book(api, owners[1], 4, slot_id=second)]
    assert [status for status, _ in booked] == [201, 201]
    assert await join_waitlist(api, codec, pool, first, WAITING) == 201
    resp = await api.delete(f"/api/v1/appointments/{booked[0][1]['appointment_id']}", headers=auth(owners[0]))
    assert resp.status == 200
    vault = PersonVault(person_key_of(settings))
    (sealed,) = await pool.fetch("SELECT sealed FROM notifications WHERE kind = 'waitlist_offer'")
    resp = await api.post("/api/v1/waitlist/claims", json={"claim": vault.open(bytes(sealed["sealed"]))["claim_token"]})
    claimed = await resp.json()
    assert resp.status == 201, claimed
    return {**claimed, "first": first, "second": second,
            "second_owner": owners[1], "second_appointment": booked[1][1]["appointment_id"]}  # fmt: skip


async def book_for(api: TestClient, token: str, who: dict[str, str], **target: str) -> tuple[int, dict[str, Any]]:
    resp = await api.post("/api/v1/appointments", json={**target, "person": who}, headers=booking_headers(token))
    return resp.status, await resp.json()


async def test_a_claim_books_only_for_the_person_who_waited(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    async with running_worker(settings):
        offer = await offered_claim(api, settings, codec, pool)
        token, hold = offer["admission_token"], offer["hold_id"]
        # the link was passed on: the stranger's booking from the claim's hold is refused...
        status, body = await book_for(api, token, person(STRANGER), hold_id=hold)
        assert_problem(status, body, 403, "claim_person_mismatch")
        assert person(STRANGER)["id_number"] not in str(body) and person(STRANGER)["name"] not in str(body)
        # ...and the hold stays for the right person
        assert await seats_of(pool, offer["first"]) == (0, 1)
        # a free seat elsewhere at the site, booked with the claim's admission: refused too
        resp = await api.delete(f"/api/v1/appointments/{offer['second_appointment']}",
                                headers=auth(offer["second_owner"]))  # fmt: skip
        assert resp.status == 200
        status, body = await book_for(api, token, person(STRANGER), slot_id=offer["second"])
        assert_problem(status, body, 403, "claim_person_mismatch")
        assert await seats_of(pool, offer["second"]) == (0, 0)
        # the person who waited books it, with the id number however written
        waited = {**person(WAITING), "id_number": person(WAITING)["id_number"].lower().replace("-", " ")}
        status, body = await book_for(api, token, waited, hold_id=hold)
        assert status == 201, body
    assert await seats_of(pool, offer["first"]) == (1, 0)
    refused = await pool.fetchval("SELECT count(*) FROM booking_attempts WHERE code = 'claim_person_mismatch'")
    assert (refused, await pool.fetchval("SELECT count(*) FROM appointments WHERE status = 'confirmed'")) == (2, 1)


async def test_negative_control_without_the_check_a_stranger_books_the_offered_seat(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = attempts._refusal_before_seat

    def unchecked(job: Any, slot: Any, now: datetime) -> Any:
        return real(job, None if slot is None else {**dict(slot), "claimed_for_another_person": False}, now)

    monkeypatch.setattr(attempts, "_refusal_before_seat", unchecked)
    async with running_worker(settings):
        offer = await offered_claim(api, settings, codec, pool)
        status, body = await book_for(api, offer["admission_token"], person(STRANGER), hold_id=offer["hold_id"])
    assert status == 201, body
    assert await seats_of(pool, offer["first"]) == (1, 0)
