"""Staff and roles (shared/staff.py): named keys, revocation, the audit's actor, and the whole matrix of
roles by admin endpoints, generated from the route tables of both apps."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admission.app import create_app as create_api
from shared.settings import Settings
from shared.staff import OWNER, Role, add_staff, list_staff, required_role, requires, revoke_staff
from tests.helpers import ADMIN, FakeClock, serve
from waitingroom.app import create_app as create_edge

PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
# Every path parameter gets a value its handler's own checks accept as well-formed (a UUID is also a
# valid event, site and type id), so an own-role request reaches the handler, which answers 4xx.
SAMPLE = {"day": "2031-01-06"}
ANY_ID = "0f0e0d0c-0b0a-4908-8706-050403020100"


def admin_routes(app: web.Application) -> list[tuple[str, str, object]]:
    """(method, a concrete path, handler) of every route under /admin (HEAD comes with GET)."""
    found = []
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if not canonical.startswith("/admin/") or route.method == "HEAD":  # /admin: the console's data-free page
            continue
        path = PLACEHOLDER.sub(lambda m: SAMPLE.get(m.group(1), ANY_ID), canonical)
        found.append((route.method, path, route.handler))
    return found


def unguarded(app: web.Application) -> list[str]:
    return [f"{method} {path}" for method, path, handler in admin_routes(app) if required_role(handler) is None]


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
async def apps(settings: Settings, clock: FakeClock) -> AsyncIterator[dict[str, TestClient]]:
    async with serve(create_api(settings)) as api, serve(create_edge(settings, clock=clock, run_ticker=False)) as edge:
        yield {"api": api, "edge": edge}


@pytest.fixture
async def keys(pool: asyncpg.Pool, settings: Settings) -> dict[Role, str]:
    """One staff member per role, holding only that role."""
    async with pool.acquire() as con, con.transaction():
        return {role: await add_staff(con, f"only-{role}", [role], actor=OWNER) for role in Role}


async def test_every_admin_route_declares_its_role(apps: dict[str, TestClient]) -> None:
    routes = {name: admin_routes(client.app) for name, client in apps.items()}
    assert len(routes["api"]) >= 10 and len(routes["edge"]) >= 3  # the walk found the admin routes
    assert unguarded(apps["api"].app) == [] and unguarded(apps["edge"].app) == []


def test_a_route_registered_without_requires_is_caught() -> None:
    """Negative control of the walk: an admin handler without @requires is reported by name."""

    async def forgotten(request: web.Request) -> web.Response:
        return web.Response()

    @requires(Role.SUPPLY)
    async def declared(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/admin/v1/forgotten/{thing_id}", forgotten)
    app.router.add_get("/admin/v1/declared", declared)
    app.router.add_get("/api/v1/public", forgotten)  # not an admin route: no role needed
    assert unguarded(app) == [f"POST /admin/v1/forgotten/{ANY_ID}"]


async def test_the_matrix_of_roles_and_admin_endpoints(apps: dict[str, TestClient], keys: dict[Role, str]) -> None:
    checked = 0
    for client in apps.values():
        for method, path, handler in admin_routes(client.app):
            own = required_role(handler)
            assert own is not None, f"{method} {path} declares no role"
            resp = await client.request(method, path)
            assert resp.status == 401, f"{method} {path} without a credential: {resp.status}"
            for role, key in keys.items():
                resp = await client.request(method, path, headers=bearer(key))
                body = {} if resp.content_type == "text/event-stream" else await resp.json()
                resp.close()  # a live stream (the console's) never ends by itself
                if role == own:
                    assert resp.status != 403 and resp.status < 500, f"{role} on its own {method} {path}: {body}"
                else:
                    assert (resp.status, body["code"]) == (403, "forbidden"), f"{role} on {own}'s {method} {path}"
                checked += 1
            resp = await client.request(method, path, headers=bearer(ADMIN))
            resp.close()
            assert resp.status not in (401, 403) and resp.status < 500, f"owner on {method} {path}: {resp.status}"
    assert checked >= 13 * len(Role)


async def test_a_staff_key_acts_in_its_name_until_revoked(
    apps: dict[str, TestClient], pool: asyncpg.Pool, settings: Settings
) -> None:
    async with pool.acquire() as con, con.transaction():
        key = await add_staff(con, "sam", [Role.SUPPLY, Role.OPERATOR], actor=OWNER)
    assert key.startswith("sg_") and len(key) >= 40
    site = {"site_id": "s1", "name": "One", "region": "R", "timezone": "Europe/Berlin", "lat": 52.5, "lng": 13.4}
    resp = await apps["api"].post("/admin/v1/sites", json=site, headers=bearer(key))
    assert resp.status == 201
    resp = await apps["edge"].put("/admin/v1/events/ev1", json={"name": "E", "rate_per_s": 1}, headers=bearer(key))
    assert resp.status == 200
    actors = {r["action"]: r["actor"] for r in await pool.fetch("SELECT action, actor FROM audit_log")}
    assert actors == {"staff_added": "owner", "site_saved": "staff:sam", "event_created": "staff:sam"}

    # Only the hash is kept: the key itself is nowhere in the table.
    row = await pool.fetchrow("SELECT * FROM staff WHERE name = 'sam'")
    assert row["key_hash"] == hashlib.sha256(key.encode()).digest()
    assert key not in repr(dict(row)) and all(key not in repr(m) for m in await list_staff(pool))

    # A second API process (its own pool) stops accepting the key at its next request as well.
    async with serve(create_api(settings)) as other:
        assert (await other.get("/admin/v1/appointment-types", headers=bearer(key))).status == 200
        async with pool.acquire() as con, con.transaction():
            assert await revoke_staff(con, "sam", actor=OWNER)
        for client in (apps["api"], other):
            resp = await client.get("/admin/v1/appointment-types", headers=bearer(key))
            assert resp.status == 401
    resp = await apps["edge"].get("/admin/v1/events/ev1", headers=bearer(key))
    assert resp.status == 401
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'staff_revoked'") == "owner"
    async with pool.acquire() as con, con.transaction():
        assert not await revoke_staff(con, "sam", actor=OWNER)  # already revoked: nothing to do, no audit row
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'staff_revoked'") == 1


async def test_unknown_or_malformed_keys_are_unauthorized(apps: dict[str, TestClient], keys: dict[Role, str]) -> None:
    for credential in ("sg_" + "A" * 43, keys[Role.SUPPLY] + "x", "sg_", "a.b.c", ADMIN[:-1]):
        resp = await apps["api"].get("/admin/v1/appointment-types", headers=bearer(credential))
        assert resp.status == 401, credential


async def test_admin_changes_are_audited_with_their_actor(
    apps: dict[str, TestClient], pool: asyncpg.Pool, keys: dict[Role, str]
) -> None:
    """Each supply change writes one audit row naming who made it (and owner as "owner")."""
    api, key = apps["api"], bearer(keys[Role.SUPPLY])
    site = {"site_id": "s1", "name": "One", "region": "R", "timezone": "Europe/Berlin", "lat": 52.5, "lng": 13.4}
    calls = [
        ("POST", "/admin/v1/sites", site, None, "site_saved"),
        ("PUT", "/admin/v1/appointment-types/shot", {"name": "Shot", "duration_minutes": 30}, None,
         "appointment_type_saved"),
        ("PUT", "/admin/v1/sites/s1/schedules/shot", {"weekly": {"mon": [["09:00", "10:00"]]}}, None, "schedule_set"),
        ("PUT", "/admin/v1/sites/s1/overrides/2031-01-06", {"hours": []}, None, "override_set"),
        ("DELETE", "/admin/v1/sites/s1/overrides/2031-01-06", None, None, "override_deleted"),
        ("POST", "/admin/v1/sites/s1/generate", {}, None, "slots_generated"),
        ("POST", "/admin/v1/slots", {"site_id": "s1", "starts_at": "2031-01-07T09:00:00+01:00",
                                     "duration_minutes": 10, "capacity": 1}, None, "slots_created"),
        ("POST", "/admin/v1/import/sites", None, b"site_id,name,region,timezone,lat,lng\ns2,Two,R,UTC,1,2\n",
         "sites_imported"),
        ("POST", "/admin/v1/import/schedules", None, b"site_id,type_id,weekday,start,end\ns2,shot,tue,09:00,10:00\n",
         "schedules_imported"),
        ("POST", "/admin/v1/sites/s1/closures", {"day": "2031-01-13", "reason": "storm"}, None, "day_closed"),
    ]  # fmt: skip
    for method, path, body, csv, action in calls:
        before = await pool.fetchval("SELECT coalesce(max(audit_id), 0) FROM audit_log")
        resp = await api.request(method, path, json=body, data=csv, headers=key)
        assert resp.status < 300, (path, await resp.text())
        rows = await pool.fetch("SELECT action, actor FROM audit_log WHERE audit_id > $1", before)
        assert [(r["action"], r["actor"]) for r in rows] == [(action, "staff:only-supply")], path
    resp = await api.put("/admin/v1/appointment-types/shot", json={"name": "S", "duration_minutes": 5},
                         headers=bearer(ADMIN))  # fmt: skip
    assert resp.status == 200
    assert await pool.fetchval("SELECT actor FROM audit_log ORDER BY audit_id DESC LIMIT 1") == "owner"


async def test_a_refused_change_leaves_no_audit_row(apps: dict[str, TestClient], pool: asyncpg.Pool) -> None:
    """The audit row is written in the change's transaction: a change that fails writes none."""
    before = await pool.fetchval("SELECT count(*) FROM audit_log")
    slots = {"site_id": "nowhere", "starts_at": "2031-01-07T09:00:00+01:00", "duration_minutes": 10, "capacity": 1}
    resp = await apps["api"].post("/admin/v1/slots", headers=bearer(ADMIN), json=slots)
    assert resp.status == 400
    resp = await apps["edge"].put("/admin/v1/events/ev", headers=bearer(ADMIN), json={"rate_per_s": -1})
    assert resp.status == 400
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == before


async def test_the_openapi_documents_name_each_admin_role(apps: dict[str, TestClient]) -> None:
    """Each app's document says, per admin operation, the role the handler requires, and its 403."""
    for client in apps.values():
        document = await (await client.get("/openapi.json")).json()
        for route in client.app.router.routes():
            canonical = route.resource.canonical if route.resource else ""
            if not canonical.startswith("/admin/") or route.method == "HEAD":  # /admin: the console's data-free page
                continue
            operation = document["paths"][canonical][route.method.lower()]
            assert operation["x-required-role"] == required_role(route.handler), f"{route.method} {canonical}"
            assert "403" in operation["responses"]
