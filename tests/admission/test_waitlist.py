"""Waitlist: join when full, an offer when a seat frees, the claim race (two claimants, one seat),
offers passing on when they lapse, and a site closing a day (bulk cancel with first claim)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp.test_utils import TestClient

from booking_worker.periodic import tidy_holds
from shared.metrics import Metrics
from shared.persons import PersonVault, person_key_of
from shared.settings import Settings
from shared.tokens import TokenCodec
from shared.waitlist import Waitlist, WaitlistPolicy
from tests.helpers import (
    admin_headers,
    admission_token,
    assert_problem,
    book,
    person,
    running_worker,
    seats_of,
    seed_typed_slots,
)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def slot_day(pool: asyncpg.Pool, slot_id: str) -> str:
    starts = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot_id))
    return str(starts.astimezone(ZoneInfo("Europe/Berlin")).date())


async def join(api: TestClient, token: str, day: str, i: int) -> tuple[int, dict[str, Any]]:
    resp = await api.post(
        "/api/v1/waitlist", json={"site_id": "site-a", "type_id": "group", "day": day, "person": person(i)},
        headers=auth(token),
    )  # fmt: skip
    return resp.status, await resp.json()


async def notes(pool: asyncpg.Pool, settings: Settings, kind: str) -> list[dict[str, Any]]:
    vault = PersonVault(person_key_of(settings))
    rows = await pool.fetch("SELECT sealed FROM notifications WHERE kind = $1 ORDER BY notification_id", kind)
    return [vault.open(bytes(r["sealed"])) for r in rows]


async def claim(api: TestClient, token: str) -> tuple[int, dict[str, Any]]:
    resp = await api.post("/api/v1/waitlist/claims", json={"claim": token})
    return resp.status, await resp.json()


async def test_waitlist_offer_and_the_claim_race(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    day = await slot_day(pool, slot)
    status, body = await join(api, admission_token(codec), day, 9)
    assert_problem(status, body, 409, "seats_available")  # not full yet: book instead
    owner = admission_token(codec)
    async with running_worker(settings):
        _, booked = await book(api, owner, 1, slot_id=slot)
        first, second = await join(api, admission_token(codec), day, 2), await join(api, admission_token(codec), day, 3)
        assert (first[0], first[1]["position"], second[1]["position"]) == (201, 1, 2)
        # the seat frees: it is offered to both, and held for them (nobody else can take it)
        resp = await api.delete(f"/api/v1/appointments/{booked['appointment_id']}", headers=auth(owner))
        assert resp.status == 200
        assert await seats_of(pool, slot) == (0, 1)
        status, body = await book(api, admission_token(codec), 4, slot_id=slot)
        assert_problem(status, body, 409, "slot_full")
        offers = await notes(pool, settings, "waitlist_offer")
        assert [o["email"] for o in offers] == [person(2)["email"], person(3)["email"]]
        assert all(o["claim_endpoint"].endswith("/api/v1/waitlist/claims") and o["claim_token"] for o in offers)
        # both claim at once: exactly one gets the seat, the other hears it is taken
        (s1, c1), (s2, c2) = await asyncio.gather(*(claim(api, o["claim_token"]) for o in offers))
        assert sorted([s1, s2]) == [201, 409]
        winner = c1 if s1 == 201 else c2
        assert (c2 if s1 == 201 else c1)["code"] == "offer_taken"
        again = await claim(api, offers[0 if s1 == 201 else 1]["claim_token"])
        assert again[0] == 201 and again[1]["hold_id"] == winner["hold_id"]  # a repeat click is harmless
        # the winner books through the normal path with the claim's admission and hold
        status, body = await book(api, winner["admission_token"], 2 if s1 == 201 else 3, hold_id=winner["hold_id"])
        assert status == 201, body
    assert await seats_of(pool, slot) == (1, 0)
    assert len(await notes(pool, settings, "waitlist_offer_taken")) == 1
    assert (await claim(api, "k1.forged"))[0] == 401


async def test_an_unclaimed_offer_passes_on(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    day = await slot_day(pool, slot)
    owner = admission_token(codec)
    async with running_worker(settings):
        _, booked = await book(api, owner, 1, slot_id=slot)
    for i in range(2, 7):  # five people wait; offers go to three at a time
        assert (await join(api, admission_token(codec), day, i))[0] == 201
    await api.delete(f"/api/v1/appointments/{booked['appointment_id']}", headers=auth(owner))
    first_round = await notes(pool, settings, "waitlist_offer")
    assert [o["email"] for o in first_round] == [person(i)["email"] for i in (2, 3, 4)]
    ctx = {
        "pool": pool,
        "metrics": Metrics(),
        "waitlist": Waitlist(codec, PersonVault(person_key_of(settings)), WaitlistPolicy()),
    }
    # before the window ends nothing moves; after it, the offer lapses and goes to the next ones
    assert (await tidy_holds(ctx, datetime.now(UTC) + timedelta(hours=1)))["offers"] == 0
    assert (await tidy_holds(ctx, datetime.now(UTC) + timedelta(hours=2, minutes=1)))["offers"] == 1
    second_round = (await notes(pool, settings, "waitlist_offer"))[3:]
    assert [o["email"] for o in second_round] == [person(i)["email"] for i in (5, 6)]
    status, body = await claim(api, first_round[0]["claim_token"])
    assert status in (401, 410) and body["code"] in ("offer_expired", "token_expired")


async def test_a_site_closing_a_day_cancels_and_gives_first_claim(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    closing = await seed_typed_slots(pool, count=2, capacity=2, days_ahead=2)
    (other_day,) = await seed_typed_slots(pool, count=1, capacity=1, days_ahead=4)
    day = await slot_day(pool, closing[0])
    tokens = [admission_token(codec) for _ in range(3)]
    async with running_worker(settings):
        for i, (token, slot) in enumerate(zip(tokens, [closing[0], closing[0], closing[1]], strict=True)):
            assert (await book(api, token, i, slot_id=slot))[0] == 201
    resp = await api.post("/admin/v1/sites/site-a/closures", json={"day": day, "reason": "power outage"},
                          headers=admin_headers())  # fmt: skip
    report = await resp.json()
    assert resp.status == 200, report
    assert (report["cancelled"], report["waitlisted"], report["slots_withdrawn"]) == (3, 3, 2)
    assert report["offers_made"] == 1  # the free seat on another day goes to the first of them at once
    statuses = await pool.fetch("SELECT status, cancel_reason, cancelled_by FROM appointments")
    assert {tuple(r) for r in statuses} == {("cancelled", "power outage", "site")}
    told = await notes(pool, settings, "cancelled_by_site")
    assert sorted(t["email"] for t in told) == sorted(person(i)["email"] for i in range(3))
    assert all(t["reason"] == "power outage" for t in told)
    entries = await pool.fetch("SELECT priority, day FROM waitlist_entries")
    assert {(e["priority"], e["day"]) for e in entries} == {(0, None)}
    offer = (await notes(pool, settings, "waitlist_offer"))[0]
    other_starts = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(other_day))
    assert offer["starts_at"] == other_starts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    status, claimed = await claim(api, offer["claim_token"])
    assert status == 201 and claimed["slot_id"] == other_day
    # the day is closed: regeneration keeps it closed, search shows nothing there
    assert await pool.fetchval("SELECT count(*) FROM slots WHERE withdrawn_at IS NULL AND slot_id = ANY($1::uuid[])",
                               [uuid.UUID(s) for s in closing]) == 0  # fmt: skip
    audit = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'cancelled_by_site'")
    assert audit == 3


async def test_waitlist_bad_input(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    await seed_typed_slots(pool, count=1)
    token = admission_token(codec)
    for body in ({}, {"site_id": "site-a", "type_id": "group", "day": "tomorrow", "person": person(1)}):
        resp = await api.post("/api/v1/waitlist", json=body, headers=auth(token))
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.post("/api/v1/waitlist", json={"site_id": "nope", "type_id": "group", "day": "2030-01-01",
                                                    "person": person(1)}, headers=auth(token))  # fmt: skip
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    for bad in ({}, {"claim": ""}, {"claim": "x" * 5000}):
        resp = await api.post("/api/v1/waitlist/claims", json=bad)
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
