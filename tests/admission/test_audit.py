"""GET /admin/v1/audit: the auditor's view of the audit log, filtered and paginated."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared import audit, queries
from shared.persons import PersonVault, person_key_of
from shared.settings import Settings
from shared.staff import STAFF, Actor, Role, StaffDirectory
from shared.tokens import TokenCodec
from tests.helpers import (
    admin_headers,
    admission_token,
    assert_problem,
    book,
    person,
    running_worker,
    seed_typed_slots,
    serve,
)

OPERATOR_KEY = "operator-key-without-auditor-role"


class WithAnOperator(StaffDirectory):
    """The owner token, plus one staff key holding only the operator role."""

    async def authenticate(self, credential: str) -> Actor | None:
        if credential == OPERATOR_KEY:
            return Actor("op", frozenset({Role.OPERATOR}))
        return await super().authenticate(credential)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[TestClient]:
    app = create_app(settings)
    app[STAFF] = WithAnOperator(settings.admin_tokens)
    async with serve(app) as client:
        yield client


async def write(pool: asyncpg.Pool) -> None:
    for i in range(7):
        event = "ev-a" if i % 2 == 0 else "ev-b"
        action = "booked" if i < 5 else "cancelled"
        await pool.execute(queries.INSERT_AUDIT, action, event, None, None, None, f"tok{i}", {"i": i})


async def test_pages_through_everything_once(api: TestClient, pool: asyncpg.Pool) -> None:
    await write(pool)
    async with pool.acquire() as con, con.transaction():
        await audit.seal(con, margin_s=0)
    await pool.execute(queries.INSERT_AUDIT, "late", None, None, None, None, "tok", {})  # not sealed yet
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        resp = await api.get("/admin/v1/audit", params=params, headers=admin_headers())
        assert resp.status == 200
        body = await resp.json()
        assert len(body["entries"]) <= 3
        seen += [e["audit_id"] for e in body["entries"]]
        cursor = body["next"]
        if cursor is None:
            break
    ids = [r["audit_id"] for r in await pool.fetch("SELECT audit_id FROM audit_log ORDER BY audit_id")]
    assert seen == ids and len(ids) == 8
    first = body["entries"][-1]
    assert (first["action"], first["actor"], first["sealed"]) == ("late", "tok", False)


async def test_filters(api: TestClient, pool: asyncpg.Pool) -> None:
    await write(pool)
    resp = await api.get("/admin/v1/audit", params={"event_id": "ev-a", "action": "booked"}, headers=admin_headers())
    entries = (await resp.json())["entries"]
    assert [e["detail"]["i"] for e in entries] == [0, 2, 4]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    resp = await api.get("/admin/v1/audit", params={"since": future}, headers=admin_headers())
    assert (await resp.json()) == {"entries": [], "next": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
        {"since": "yesterday"},
        {"cursor": "bm9wZQ"},
        {"cursor": "YTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
        {"cursor": "%%%"},
    ],
)
async def test_bad_queries_are_400(api: TestClient, params: dict[str, str]) -> None:
    resp = await api.get("/admin/v1/audit", params=params, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 400, "validation_error")


async def test_only_auditors_read_it(api: TestClient) -> None:
    resp = await api.get("/admin/v1/audit")
    assert_problem(resp.status, await resp.json(), 401, "unauthorized")
    resp = await api.get("/admin/v1/audit", headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    assert_problem(resp.status, await resp.json(), 403, "forbidden")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_change_a_visitor_makes_is_audited_by_admission(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    """Holds placed, replaced and released, waitlist joins and leaves, offers made and claimed: each
    has its audit row, naming the admission token's id (``system`` for offers), never the person."""
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    starts = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    day = str(starts.astimezone(ZoneInfo("Europe/Berlin")).date())
    a, owner, c, d = (admission_token(codec) for _ in range(4))
    tid = {t: codec.verify_admission(t).token_id for t in (a, owner, c, d)}

    first = await (await api.post("/api/v1/holds", json={"slot_id": slot}, headers=auth(a))).json()
    second = await (await api.post("/api/v1/holds", json={"slot_id": slot}, headers=auth(a))).json()
    assert (await api.delete(f"/api/v1/holds/{second['hold_id']}", headers=auth(a))).status == 200
    assert (await api.delete(f"/api/v1/holds/{second['hold_id']}", headers=auth(a))).status == 200  # no change
    async with running_worker(settings):
        _, booked = await book(api, owner, 1, slot_id=slot)
        for token, i in ((c, 2), (d, 3)):
            wait = {"site_id": "site-a", "type_id": "group", "day": day, "person": person(i)}
            resp = await api.post("/api/v1/waitlist", json=wait, headers=auth(token))
            assert resp.status == 201
        entry = (await resp.json())["entry_id"]
        for _ in range(2):  # leaving twice changes nothing the second time
            assert (await api.delete(f"/api/v1/waitlist/{entry}", headers=auth(d))).status == 200
        assert (await api.delete(f"/api/v1/appointments/{booked['appointment_id']}", headers=auth(owner))).status == 200
        vault = PersonVault(person_key_of(settings))
        (offer,) = [vault.open(bytes(r["sealed"])) for r in await pool.fetch(
            "SELECT sealed FROM notifications WHERE kind = 'waitlist_offer'")]  # fmt: skip
        resp = await api.post("/api/v1/waitlist/claims", json={"claim": offer["claim_token"]})
        assert resp.status == 201
        claimant = codec.verify_admission((await resp.json())["admission_token"]).token_id

    rows = await pool.fetch("SELECT action, actor, event_id, detail FROM audit_log ORDER BY audit_id")
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("hold_placed", tid[a]),
        ("hold_replaced", tid[a]),
        ("hold_placed", tid[a]),
        ("hold_released", tid[a]),
        ("booked", tid[owner]),
        ("waitlist_joined", tid[c]),
        ("waitlist_joined", tid[d]),
        ("waitlist_left", tid[d]),
        ("cancelled", tid[owner]),
        ("offer_made", "system"),
        ("offer_claimed", claimant),
    ]
    assert rows[1]["detail"] == {"hold_id": first["hold_id"], "by": second["hold_id"]}
    assert all(r["event_id"] == "ev" for r in rows)
    # nothing of a person's identity in the audit
    text = json.dumps([dict(r) for r in rows], default=str)
    for i in (1, 2, 3):
        assert not any(value in text for value in person(i).values())
    async with pool.acquire() as con, con.transaction():
        assert (await audit.seal(con, margin_s=0)) == audit.Sealed(len(rows), len(rows))
    async with pool.acquire() as con:
        assert (await audit.verify(con, audit.AuditKeys(None, {}))).intact
