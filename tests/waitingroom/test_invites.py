"""Invite links: issued by an operator, each redeemed once for an admission that skips the queue,
refused when used, revoked, expired, tampered or another event's; counted, audited and metered.

The race: 10 parallel redemptions of one invite give exactly one admission. Its negative control
swaps the conditional UPDATE for a read-then-write and shows the same test catching two or more.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from admission.app import create_app as create_api
from shared import keys
from shared.settings import Settings
from tests.helpers import (
    FakeClock,
    admin_headers,
    assert_problem,
    booking_headers,
    metric_value,
    person,
    running_worker,
    seed_site_and_slot,
    serve,
    tick_for,
)
from waitingroom import invites
from waitingroom.keys import METRICS, ROOM


def at(clock: FakeClock, seconds: float) -> str:
    return datetime.fromtimestamp(clock.now + seconds, UTC).isoformat()


async def make_event(edge: TestClient, event_id: str = "ev", **extra: Any) -> None:
    body = {"name": "E", "rate_per_s": 0.001, "admission_ttl_s": 600, **extra}
    resp = await edge.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())
    assert resp.status == 200, await resp.text()


async def issue(
    edge: TestClient, clock: FakeClock, count: int, event_id: str = "ev", ttl: float = 3600
) -> dict[str, Any]:
    resp = await edge.post(f"/admin/v1/events/{event_id}/invites", headers=admin_headers(),
                           json={"count": count, "expires_at": at(clock, ttl), "label": "cohort A"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def token_of(link: str) -> str:
    return link.partition("#")[2]


async def redeem(edge: TestClient, token: str, event_id: str = "ev") -> tuple[int, dict[str, Any]]:
    resp = await edge.post(f"/api/v1/events/{event_id}/invites:redeem", json={"invite": token})
    return resp.status, await resp.json()


async def counts(edge: TestClient, event_id: str = "ev") -> list[dict[str, Any]]:
    resp = await edge.get(f"/admin/v1/events/{event_id}/invites", headers=admin_headers())
    assert resp.status == 200
    batches: list[dict[str, Any]] = (await resp.json())["batches"]
    return batches


async def test_issue_redeem_once_and_book(
    edge: TestClient, clock: FakeClock, settings: Settings, pool: asyncpg.Pool, redis: Redis
) -> None:
    await make_event(edge)
    issued = await issue(edge, clock, 3)
    links = issued["links"]
    assert len(links) == 3 and len(set(links)) == 3
    assert all(link.startswith(f"{settings.edge_url}/e/ev/invite#") for link in links)
    # Only hashes are stored: no link's token is anywhere in the database.
    stored = await pool.fetch("SELECT token_hash FROM invites")
    assert len(stored) == 3 and all(token_of(link).encode() not in r["token_hash"] for link in links for r in stored)

    status, body = await redeem(edge, token_of(links[0]))
    assert status == 201, body
    assert body["state"] == "admitted" and body["booking_url"].endswith("/api/v1")
    # Counted in the event's admissions out (max_active), under a member no queue rank takes.
    members = await redis.zrange(keys.active_admissions_key("ev"), 0, -1)
    assert len(members) == 1 and int(members[0]) < 0

    status, again = await redeem(edge, token_of(links[0]))
    assert_problem(status, again, 409, "invite_used")

    # The admission is a real one: the booking API books with it, and the booking frees its place.
    slot_id = await seed_site_and_slot(pool, event_id="ev")
    async with serve(create_api(settings)) as api, running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                              headers=booking_headers(body["admission_token"]))  # fmt: skip
        assert resp.status == 201, await resp.text()
    assert await redis.zcard(keys.active_admissions_key("ev")) == 0

    [batch] = await counts(edge)
    assert batch["batch"] == issued["batch"] and batch["label"] == "cohort A"
    assert {k: batch[k] for k in ("issued", "used", "revoked", "expired", "open")} == {
        "issued": 3, "used": 1, "revoked": 0, "expired": 0, "open": 2
    }  # fmt: skip
    metrics = edge.app[METRICS]
    assert metric_value(metrics, "surgegate_invites_total", event="ev", result="issued") == 3
    assert metric_value(metrics, "surgegate_invites_total", event="ev", result="redeemed") == 1
    assert metric_value(metrics, "surgegate_invites_total", event="ev", result="invite_used") == 1
    audit = await pool.fetch(
        "SELECT action, actor, detail FROM audit_log WHERE action LIKE 'invite%' ORDER BY audit_id"
    )
    assert [r["action"] for r in audit] == ["invites_issued", "invite_used"]
    assert audit[0]["actor"] == "owner" and audit[0]["detail"]["count"] == 3
    assert audit[1]["actor"].startswith("invite-")


async def test_revoked_expired_tampered_and_other_events_refused(
    edge: TestClient, clock: FakeClock, pool: asyncpg.Pool
) -> None:
    await make_event(edge)
    await make_event(edge, "other")
    batch = await issue(edge, clock, 3)
    tokens = [token_of(link) for link in batch["links"]]

    # Another event's invite, even for an event that exists.
    assert_problem(*await redeem(edge, tokens[0], "other"), 403, "invite_invalid")
    # Tampered: one character of the signature changed.
    tampered = tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B")
    assert_problem(*await redeem(edge, tampered), 403, "invite_invalid")
    # An admission-shaped token or garbage is no invite.
    assert_problem(*await redeem(edge, "k1.garbage"), 403, "invite_invalid")
    status, body = await redeem(edge, "")
    assert_problem(status, body, 400, "validation_error")

    # Revoke one invite, then the whole batch: the used one stays used, the others stop working.
    invite_id = await pool.fetchval("SELECT invite_id FROM invites WHERE token_hash = $1",
                                    invites.token_hash(tokens[1]))  # fmt: skip
    assert (await redeem(edge, tokens[2]))[0] == 201
    resp = await edge.delete(f"/admin/v1/events/ev/invites/{invite_id}", headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["revoked"] == 1
    assert_problem(*await redeem(edge, tokens[1]), 410, "invite_revoked")
    resp = await edge.delete(f"/admin/v1/events/ev/invites/{batch['batch']}", headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["revoked"] == 1  # tokens[0]; [2] was used
    assert_problem(*await redeem(edge, tokens[0]), 410, "invite_revoked")
    assert_problem(*await redeem(edge, tokens[2]), 409, "invite_used")
    # Revoking through another event, or an unknown id, finds nothing.
    resp = await edge.delete(f"/admin/v1/events/other/invites/{batch['batch']}", headers=admin_headers())
    assert resp.status == 404
    resp = await edge.delete("/admin/v1/events/ev/invites/not-a-uuid", headers=admin_headers())
    assert resp.status == 400

    # Expiry: the link's own expiry, by the edge's clock.
    short = await issue(edge, clock, 2, ttl=60)
    clock.advance(61 + 5)  # past the expiry and the clock-skew leeway
    assert_problem(*await redeem(edge, token_of(short["links"][0])), 410, "invite_expired")

    rows = {r["batch"]: r for r in await counts(edge)}
    first, second = rows[batch["batch"]], rows[short["batch"]]
    assert (first["issued"], first["used"], first["revoked"], first["expired"]) == (3, 1, 2, 0)
    assert (second["issued"], second["used"], second["revoked"], second["expired"]) == (2, 0, 0, 2)
    actions = Counter(await pool.fetchval("SELECT array_agg(action) FROM audit_log WHERE action LIKE 'invite%'"))
    assert actions == Counter({"invites_issued": 2, "invites_revoked": 2, "invite_used": 1})


async def test_bad_issue_requests_are_refused(edge: TestClient, clock: FakeClock) -> None:
    await make_event(edge)
    for body in (
        {"count": 0, "expires_at": at(clock, 60)},
        {"count": 1, "expires_at": at(clock, -60)},  # in the past
        {"count": 1, "expires_at": "2030-01-01T00:00:00"},  # no time zone
        {"count": 1},
        {"count": 1, "expires_at": at(clock, 60), "unknown": 1},
    ):
        resp = await edge.post("/admin/v1/events/ev/invites", json=body, headers=admin_headers())
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await edge.post("/admin/v1/events/nope/invites", json={"expires_at": at(clock, 60)}, headers=admin_headers())
    assert resp.status == 404
    resp = await edge.post("/admin/v1/events/ev/invites", json={"expires_at": at(clock, 60)})
    assert resp.status == 401


async def test_closed_and_not_yet_open_events_refuse_redemption(edge: TestClient, clock: FakeClock) -> None:
    await make_event(edge, opens_at=at(clock, 120))
    token = token_of((await issue(edge, clock, 1))["links"][0])
    assert_problem(*await redeem(edge, token), 409, "event_not_open")
    clock.advance(121)
    tokens = [token_of(link) for link in (await issue(edge, clock, 2))["links"]]
    assert (await redeem(edge, token))[0] == 201
    assert (await redeem(edge, tokens[0]))[0] == 201
    await make_event(edge, closes_at=at(clock, 1))
    clock.advance(2)
    assert_problem(*await redeem(edge, tokens[1]), 410, "event_closed")


async def fire(edge: TestClient, token: str, n: int = 10) -> Counter[int]:
    results = await asyncio.gather(*(redeem(edge, token) for _ in range(n)))
    return Counter(status for status, _ in results)


async def test_ten_parallel_redemptions_give_exactly_one_admission(
    edge: TestClient, clock: FakeClock, redis: Redis
) -> None:
    await make_event(edge)
    token = token_of((await issue(edge, clock, 1))["links"][0])
    assert await fire(edge, token) == Counter({201: 1, 409: 9})
    assert await redis.zcard(keys.active_admissions_key("ev")) == 1


def read_then_write() -> Any:
    """The classic bug: check that the invite is unused, then mark it, in two statements. Each call
    waits (up to 10 s) until a second redemption has also read before it writes: the interleaving two
    statements allow, forced so that the control does not depend on the scheduler's luck."""
    read = 0
    both_read = asyncio.Condition()

    async def mark(con: asyncpg.Connection, digest: bytes, event_id: str, when: datetime) -> Any:
        nonlocal read
        row = await con.fetchrow(
            "SELECT i.invite_id, i.serial, i.batch_id FROM invites i JOIN invite_batches b USING (batch_id)"
            " WHERE i.token_hash = $1 AND b.event_id = $2 AND i.used_at IS NULL AND i.revoked_at IS NULL",
            digest,
            event_id,
        )
        if row is None:
            return None
        async with both_read:
            read += 1
            both_read.notify_all()
            await asyncio.wait_for(both_read.wait_for(lambda: read >= 2), 10)
        await con.execute("UPDATE invites SET used_at = $2 WHERE invite_id = $1", row["invite_id"], when)
        return row

    return mark


async def test_negative_control_read_then_write_admits_twice(
    edge: TestClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invites, "mark_used", read_then_write())
    await make_event(edge)
    token = token_of((await issue(edge, clock, 1))["links"][0])
    outcomes = await fire(edge, token)
    assert outcomes[201] >= 2


async def test_an_invite_is_no_admission_and_an_admission_no_invite(edge: TestClient, clock: FakeClock) -> None:
    """Salts keep the token kinds apart: an invite does not book, a queue ticket does not redeem."""
    await make_event(edge, rate_per_s=100)
    token = token_of((await issue(edge, clock, 1))["links"][0])
    room = edge.app[ROOM]
    ticket, _ = await room.join("ev", None)
    assert_problem(*await redeem(edge, ticket), 403, "invite_invalid")
    with pytest.raises(Exception) as refused:
        room.codec.verify_admission(token)
    assert getattr(refused.value, "code", None) == "token_invalid"


async def test_the_answers_match_the_openapi_document(edge: TestClient, clock: FakeClock) -> None:
    spec = await (await edge.get("/openapi.json")).json()

    def check(name: str, value: Any) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(value)

    await make_event(edge)
    issued = await issue(edge, clock, 2)
    check("InviteBatchIssued", issued)
    status, body = await redeem(edge, token_of(issued["links"][0]))
    assert status == 201
    check("InviteAdmission", body)
    check("InviteCounts", {"batches": await counts(edge)})
    # The link's page is the queue page, which redeems the fragment with its script.
    page = await edge.get("/e/ev/invite")
    assert page.status == 200 and "queue.js" in await page.text()


async def test_an_invite_admission_counts_in_max_active(edge: TestClient, clock: FakeClock) -> None:
    """With a cap of 2 and one invite redeemed, the queue lets in one visitor, not two."""
    await make_event(edge, rate_per_s=10, max_active=2, abandon_after_s=None)
    room = edge.app[ROOM]
    tickets = [(await room.join("ev", None))[0] for _ in range(5)]
    assert (await redeem(edge, token_of((await issue(edge, clock, 1))["links"][0])))[0] == 201
    await tick_for(clock, 2, room)  # the rate alone would admit all 5
    states = [(await room.status("ev", t)).state for t in tickets]
    assert states == ["admitted", "waiting", "waiting", "waiting", "waiting"]
    assert (await room.stats("ev"))["active"] == 2
