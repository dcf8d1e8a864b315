"""GET /admin/v1/audit: the auditor's view of the audit log, filtered and paginated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared import audit, queries
from shared.settings import Settings
from shared.staff import STAFF, Actor, Role, StaffDirectory
from tests.helpers import admin_headers, assert_problem, serve

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
