"""The booking API over HTTP: token checks, search, booking outcomes, cancel, bad input, overload."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared.settings import Settings
from shared.tokens import Ticket, TokenCodec
from surgegate.embedded import EmbeddedValkey
from tests.helpers import (
    TEST_KEYS,
    admin_headers,
    admission_token,
    assert_problem,
    booking_headers,
    metric_value,
    person,
    run_burst,
    running_worker,
    seed_site_and_slot,
    serve,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def verify_count(api: TestClient, event: str, result: str) -> float:
    from admission.keys import METRICS

    return metric_value(api.app[METRICS], "surgegate_token_verify_total", event=event, result=result)


async def test_token_failures_get_the_right_codes_and_reasons(api: TestClient, codec: TokenCodec) -> None:
    good = admission_token(codec)
    assert (await api.get("/api/v1/sites", headers=bearer(good))).status == 200
    assert verify_count(api, "ev", "ok") == 1
    cases = [
        ({}, 401, "token_invalid", "missing"),
        (bearer(good[:-3] + "abc"), 401, "token_invalid", "signature"),
        (
            bearer(admission_token(TokenCodec([("k1", "some-other-secret-xyz")]))),
            401,
            "token_invalid",
            "signature",
        ),
        (
            bearer(admission_token(TokenCodec([("k9", "some-other-secret-xyz")]))),
            401,
            "token_invalid",
            "unknown_kid",
        ),
        (bearer(admission_token(codec, ttl=-60)), 401, "token_expired", "expired"),
        (bearer(codec.sign_ticket(Ticket("ev", "v", 1, 0))), 401, "token_invalid", "type"),
    ]
    for headers, status, code, reason in cases:
        resp = await api.get("/api/v1/sites", headers=headers)
        assert_problem(resp.status, await resp.json(), status, code)
        event = "ev" if reason == "expired" else "-"  # an expired token's signature held: its event is ours
        assert verify_count(api, event, reason) >= 1, reason


async def test_rotated_keys_old_token_still_verifies(settings: Settings, codec: TokenCodec) -> None:
    from dataclasses import replace

    rotated = replace(settings, secret_keys=(*TEST_KEYS, ("k2", "the-next-secret-key-0002")))
    old_token = admission_token(codec)
    new_token = admission_token(TokenCodec(rotated.secret_keys))
    assert new_token.startswith("k2.")
    async with serve(create_app(rotated)) as client:
        for token in (old_token, new_token):
            assert (await client.get("/api/v1/sites", headers=bearer(token))).status == 200


async def test_scope_limits_sites_slots_and_bookings(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_in = await seed_site_and_slot(pool, site_id="inside")
    slot_out = await seed_site_and_slot(pool, site_id="outside")
    token = admission_token(codec, scope=["inside"])
    sites = await (await api.get("/api/v1/sites", headers=bearer(token))).json()
    assert [s["site_id"] for s in sites["sites"]] == ["inside"]
    resp = await api.get("/api/v1/slots", params={"site_id": "outside"}, headers=bearer(token))
    assert_problem(resp.status, await resp.json(), 403, "token_scope")
    assert verify_count(api, "ev", "scope") == 1  # counted as a verification failure
    slots = await (await api.get("/api/v1/slots", params={"site_id": "inside"}, headers=bearer(token))).json()
    assert [s["slot_id"] for s in slots["slots"]] == [slot_in]
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_out, "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        assert_problem(resp.status, await resp.json(), 403, "token_scope")
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_in, "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        assert resp.status == 201


async def test_sites_by_distance_and_slot_times(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    await seed_site_and_slot(pool, site_id="ny", timezone="America/New_York")
    await pool.execute("UPDATE sites SET lat = 40.75, lng = -73.98 WHERE site_id = 'ny'")
    await seed_site_and_slot(pool, site_id="berlin", timezone="Europe/Berlin")
    token = admission_token(codec)
    near = await (await api.get("/api/v1/sites", params={"lat": "52.5", "lng": "13.4", "radius_km": "100"},
                                headers=bearer(token))).json()  # fmt: skip
    assert [s["site_id"] for s in near["sites"]] == ["berlin"] and near["sites"][0]["distance_km"] < 1
    both = await (await api.get("/api/v1/sites", params={"lat": "52.5", "lng": "13.4"}, headers=bearer(token))).json()
    assert [s["site_id"] for s in both["sites"]] == ["berlin", "ny"]
    slot = (await (await api.get("/api/v1/slots", params={"site_id": "ny"}, headers=bearer(token))).json())["slots"][0]
    assert slot["starts_at"].endswith("Z") and slot["timezone"] == "America/New_York"
    assert slot["local_starts_at"][-6:] in ("-05:00", "-04:00")
    assert slot["remaining"] == slot["capacity"] == 20


async def test_book_read_cancel_and_seat_returns(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=1)
    token, other = admission_token(codec), admission_token(codec)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        booked = await resp.json()
        assert resp.status == 201 and booked["status"] == "confirmed"
        full = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(2)},
                              headers=booking_headers(other))  # fmt: skip
        assert_problem(full.status, await full.json(), 409, "slot_full")
        again = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(3)},
                               headers=booking_headers(token))  # fmt: skip
        assert_problem(again.status, await again.json(), 409, "admission_used")
        assert verify_count(api, "ev", "replay") == 1  # a used admission presented again
    appt_id = booked["appointment_id"]
    got = await (await api.get(f"/api/v1/appointments/{appt_id}", headers=bearer(token))).json()
    assert got["status"] == "confirmed" and got["slot_id"] == slot_id
    resp = await api.get(f"/api/v1/appointments/{appt_id}", headers=bearer(other))
    assert_problem(resp.status, await resp.json(), 404, "not_found")  # only for the token that made it
    resp = await api.delete(f"/api/v1/appointments/{appt_id}", headers=bearer(token))
    assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
    resp = await api.delete(f"/api/v1/appointments/{appt_id}", headers=bearer(token))  # twice is harmless
    assert resp.status == 200
    slot = await (await api.get(f"/admin/v1/slots/{slot_id}", headers=admin_headers())).json()
    assert (slot["booked"], slot["remaining"]) == (0, 1)
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY audit_id")]
    assert actions.count("cancelled") == 1 and actions[0] == "booked"


async def test_idempotency_conflict_and_attempt_status(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool)
    token = admission_token(codec)
    headers = booking_headers(token, "k-1")
    # no worker running: the API answers 202 pending after its wait budget
    from dataclasses import replace

    async with serve(create_app(replace(settings, booking_wait_s=0.2))) as quick:
        resp = await quick.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)}, headers=headers)
        pending = await resp.json()
        assert resp.status == 202 and pending["status"] == "pending"
        status = await (await quick.get(pending["status_url"], headers=bearer(token))).json()
        assert status == {
            "attempt_id": pending["attempt_id"],
            "status": "pending",
            "appointment_id": None,
            "code": None,
        }
        resp = await quick.get(pending["status_url"], headers=bearer(admission_token(codec)))
        assert resp.status == 404  # someone else's attempt
        # the same key and body while the first is still in flight: 409 in progress, nothing new queued
        resp = await quick.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)}, headers=headers)
        assert_problem(resp.status, await resp.json(), 409, "idempotency_in_progress")
        assert resp.headers["Retry-After"] == "1"
    await run_burst(settings)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)}, headers=headers)
        assert resp.status == 201
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(2)}, headers=headers)
        assert_problem(resp.status, await resp.json(), 409, "idempotency_conflict")
    done = await (await api.get(pending["status_url"], headers=bearer(token))).json()
    assert done["status"] == "confirmed" and done["appointment_id"]
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 1


@pytest.mark.parametrize(
    ("body", "headers_extra", "status", "code"),
    [
        (b"{oops", {}, 400, "validation_error"),
        (b'{"slot_id": 5, "person": {}}', {}, 400, "validation_error"),
        (b'{"slot_id": "not-a-uuid", "person": {"id_number": "1", "name": "a", "email": "a@b.c",'
         b' "birth_date": "1990-01-01"}}', {}, 400, "validation_error"),
        (b'{"slot_id": "00000000-0000-0000-0000-000000000000", "person": {"id_number": "1", "name": "a",'
         b' "email": "nope", "birth_date": "1990-01-01"}}', {}, 400, "validation_error"),
        (b'{"slot_id": "00000000-0000-0000-0000-000000000000", "person": {"id_number": "1", "name": "a",'
         b' "email": "a@b.c", "birth_date": "2990-01-01"}}', {}, 400, "validation_error"),
        (b"[]", {}, 400, "validation_error"),
        (b'{"a": "' + b"x" * 100_000 + b'"}', {}, 413, "payload_too_large"),
        (b"{}", {"Idempotency-Key": ""}, 400, "validation_error"),
    ],
)  # fmt: skip
async def test_bad_booking_input(
    api: TestClient, codec: TokenCodec, body: bytes, headers_extra: dict[str, str], status: int, code: str
) -> None:
    headers = {**booking_headers(admission_token(codec)), "Content-Type": "application/json", **headers_extra}
    resp = await api.post("/api/v1/appointments", data=body, headers=headers)
    problem = await resp.json()
    assert_problem(resp.status, problem, status, code)
    assert "ID-" not in str(problem) and "1990" not in str(problem)  # never echo the input


async def test_missing_idempotency_key_and_unknown_ids(api: TestClient, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    token = admission_token(codec)
    resp = await api.post("/api/v1/appointments", json={}, headers=bearer(token))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    for path in (
        f"/api/v1/appointments/{uuid.uuid4()}",
        "/api/v1/appointments/xyz",
        f"/api/v1/attempts/{uuid.uuid4()}",
    ):
        resp = await api.get(path, headers=bearer(token))
        assert_problem(resp.status, await resp.json(), 404, "not_found")
    resp = await api.get("/api/v1/slots", params={"site_id": "nope"}, headers=bearer(token))
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    resp = await api.get("/api/v1/slots", params={"site_id": "x", "from": "yesterday"}, headers=bearer(token))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.get("/api/v1/sites", params={"lat": "north"}, headers=bearer(token))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.get(f"/admin/v1/slots/{uuid.uuid4()}", headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")


async def test_admin_sites_and_slots(api: TestClient) -> None:
    site = {"site_id": "s1", "name": "S", "region": "R", "timezone": "Europe/Berlin", "lat": 1, "lng": 2}
    assert (await api.post("/admin/v1/sites", json=site, headers=admin_headers())).status == 201
    assert (await api.post("/admin/v1/sites", json=site, headers=admin_headers())).status == 201  # idempotent
    bad = await api.post("/admin/v1/sites", json={**site, "timezone": "Mars/Base"}, headers=admin_headers())
    assert_problem(bad.status, await bad.json(), 400, "validation_error")
    spec = {
        "site_id": "s1",
        "starts_at": "2027-03-28T01:00:00",
        "duration_minutes": 30,
        "capacity": 3,
        "count": 4,
        "every_minutes": 30,
    }  # fmt: skip  (local wall time, across Berlin's DST change)
    resp = await api.post("/admin/v1/slots", json=spec, headers=admin_headers())
    ids = (await resp.json())["slot_ids"]
    assert resp.status == 201 and len(ids) == 4
    first = await (await api.get(f"/admin/v1/slots/{ids[0]}", headers=admin_headers())).json()
    assert first["starts_at"] == "2027-03-28T00:00:00Z" and first["local_starts_at"].endswith("+01:00")
    last = await (await api.get(f"/admin/v1/slots/{ids[3]}", headers=admin_headers())).json()
    assert last["local_starts_at"] == "2027-03-28T03:30:00+02:00"
    assert (first["capacity"], first["booked"], first["remaining"]) == (3, 0, 3)
    resp = await api.post("/admin/v1/slots", json=spec)
    assert_problem(resp.status, await resp.json(), 401, "unauthorized")
    resp = await api.post("/admin/v1/slots", json={**spec, "site_id": "nope"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 400, "validation_error")


async def test_cors_preflight_from_the_queue_page(api: TestClient, settings: Settings) -> None:
    origin = settings.edge_url
    resp = await api.options("/api/v1/appointments", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"})  # fmt: skip
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == origin
    assert "Idempotency-Key" in resp.headers["Access-Control-Allow-Headers"]
    resp = await api.options("/api/v1/appointments", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


@pytest.fixture
async def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("vk"), persist=False)
    server.start()
    yield server
    server.stop()


async def test_redis_down_is_503_overloaded_and_queue_limit_sheds(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, own_valkey: EmbeddedValkey
) -> None:
    from dataclasses import replace

    slot_id = await seed_site_and_slot(pool)
    body = {"slot_id": slot_id, "person": person(1)}
    async with serve(create_app(replace(settings, redis_url=own_valkey.url, max_queue_depth=0))) as client:
        resp = await client.post("/api/v1/appointments", json=body, headers=booking_headers(admission_token(codec)))
        assert_problem(resp.status, await resp.json(), 503, "overloaded")
        assert int(resp.headers["Retry-After"]) > 0
    accepted_headers = booking_headers(admission_token(codec))
    async with serve(create_app(replace(settings, redis_url=own_valkey.url, booking_wait_s=0.1))) as client:
        resp = await client.post("/api/v1/appointments", json=body, headers=accepted_headers)
        assert resp.status == 202  # accepted (no worker on this Redis), durable in PostgreSQL
        own_valkey.stop()
        resp = await client.post("/api/v1/appointments", json=body, headers=booking_headers(admission_token(codec)))
        assert_problem(resp.status, await resp.json(), 503, "overloaded")
        assert "Retry-After" in resp.headers
        # the accepted one is still pending (in progress), not refused, while Redis is down
        resp = await client.post("/api/v1/appointments", json=body, headers=accepted_headers)
        assert_problem(resp.status, await resp.json(), 409, "idempotency_in_progress")
        assert (await client.get("/readyz")).status == 503
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 0
    assert await pool.fetchval("SELECT count(*) FROM booking_attempts WHERE status = 'pending'") == 1
