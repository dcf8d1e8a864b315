"""The operator endpoints' rules: merged cross-field checks, known sites only, list, close."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from shared.locks import LockNamespace, xact_lock
from tests.helpers import FakeClock, admin_headers, assert_problem
from waitingroom.keys import ROOM


async def put(edge: TestClient, event_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await edge.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())
    answer: dict[str, Any] = await resp.json()
    return resp.status, answer


async def add_site(edge: TestClient, site_id: str) -> None:
    await edge.app[ROOM].pool.execute(
        "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'S', 'R', 'UTC', 0, 0)", site_id
    )


async def test_a_partial_update_is_checked_merged_with_the_stored_event(edge: TestClient) -> None:
    assert (await put(edge, "ev", {"name": "E", "rate_per_s": 1}))[0] == 200
    assert (await put(edge, "ev", {"opens_at": "2030-01-01T09:00:00Z"}))[0] == 200
    status, body = await put(edge, "ev", {"closes_at": "2029-01-01T09:00:00Z"})  # alone it looks fine
    assert_problem(status, body, 400, "validation_error")
    assert "closes_at" in body["detail"] and "opens_at" in body["detail"]
    status, body = await put(edge, "ev", {"prequeue_opens_at": "2030-06-01T09:00:00Z"})
    assert_problem(status, body, 400, "validation_error")
    assert (await put(edge, "ev", {"rate_min": 5}))[0] == 200
    status, body = await put(edge, "ev", {"rate_max": 2})
    assert_problem(status, body, 400, "validation_error")
    assert "rate_min" in body["detail"]
    # nothing refused was stored
    shown = await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    assert (shown["closes_at"], shown["prequeue_opens_at"], shown["rate_max"]) == (None, None, None)
    # both in one body still refused, and a consistent change still accepted
    status, body = await put(edge, "ev", {"opens_at": "2031-01-01T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"})
    assert_problem(status, body, 400, "validation_error")
    assert (await put(edge, "ev", {"closes_at": "2030-01-02T00:00:00Z", "rate_max": 9}))[0] == 200


async def test_unknown_sites_are_refused_by_name(edge: TestClient) -> None:
    await add_site(edge, "site-a")
    status, body = await put(edge, "ev", {"name": "E", "rate_per_s": 1, "site_ids": ["site-a", "nosuchsite", "zz"]})
    assert_problem(status, body, 400, "validation_error")
    assert "nosuchsite, zz" in body["detail"] and "site-a" not in body["detail"]
    assert (await edge.get("/admin/v1/events/ev", headers=admin_headers())).status == 404  # nothing created
    status, body = await put(edge, "ev", {"name": "E", "rate_per_s": 1, "site_ids": ["site-a"]})
    assert status == 200 and body["site_ids"] == ["site-a"]


async def test_list_shows_every_event_with_its_phase(edge: TestClient, clock: FakeClock) -> None:
    assert (await (await edge.get("/admin/v1/events", headers=admin_headers())).json()) == {"events": []}
    await put(edge, "b", {"name": "B", "rate_per_s": 1, "opens_at": "2099-01-01T00:00:00Z"})
    await put(edge, "a", {"name": "A", "rate_per_s": 2})
    await edge.post("/api/v1/events/a/join")
    resp = await edge.get("/admin/v1/events", headers=admin_headers())
    listed = (await resp.json())["events"]
    assert [(e["event_id"], e["phase"]) for e in listed] == [("a", "open"), ("b", "prequeue")]
    assert listed[0]["stats"]["joined"] == 1 and listed[0]["name"] == "A"
    assert (await edge.get("/admin/v1/events")).status == 401


async def test_close_ends_the_queue_for_everyone_and_is_audited(edge: TestClient, clock: FakeClock) -> None:
    await put(edge, "ev", {"name": "E", "rate_per_s": 0, "opens_at": "2020-01-01T00:00:00Z"})
    assert (await edge.post("/api/v1/events/ev/join")).status == 201  # holds a ticket (the cookie)
    resp = await edge.delete("/admin/v1/events/ev", headers=admin_headers())
    closed = await resp.json()
    assert resp.status == 200 and closed["closes_at"] is not None
    status = await edge.get("/api/v1/events/ev/status")
    assert_problem(status.status, await status.json(), 410, "event_closed")
    join = await edge.post("/api/v1/events/ev/join")
    assert_problem(join.status, await join.json(), 410, "event_closed")
    clock.advance(60)
    again = await (await edge.delete("/admin/v1/events/ev", headers=admin_headers())).json()
    assert again["closes_at"] == closed["closes_at"]  # repeating keeps the closing time
    actions = await edge.app[ROOM].pool.fetch(
        "SELECT action, actor FROM audit_log WHERE event_id = 'ev' AND action = 'event_closed'"
    )
    assert len(actions) == 2 and all(a["actor"] for a in actions)
    missing = await edge.delete("/admin/v1/events/nope", headers=admin_headers())
    assert_problem(missing.status, await missing.json(), 404, "not_found")
    assert (await edge.delete("/admin/v1/events/ev")).status == 401


async def test_closing_an_event_not_yet_open_closes_it_consistently(edge: TestClient) -> None:
    await put(edge, "ev", {"name": "E", "rate_per_s": 1, "prequeue_opens_at": "2098-01-01T00:00:00Z",
                           "opens_at": "2099-01-01T00:00:00Z"})  # fmt: skip
    resp = await edge.delete("/admin/v1/events/ev", headers=admin_headers())
    closed = await resp.json()
    assert resp.status == 200
    assert closed["closes_at"] is not None and (closed["opens_at"], closed["prequeue_opens_at"]) == (None, None)
    listed = (await (await edge.get("/admin/v1/events", headers=admin_headers())).json())["events"]
    assert listed[0]["phase"] == "closed"


async def test_if_match_updates_only_and_if_none_match_creates_only(edge: TestClient) -> None:
    body = {"name": "E", "rate_per_s": 1}
    resp = await edge.put("/admin/v1/events/typo", json=body, headers={**admin_headers(), "If-Match": "*"})
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    assert (await edge.get("/admin/v1/events/typo", headers=admin_headers())).status == 404  # nothing created
    resp = await edge.put("/admin/v1/events/ev", json=body, headers={**admin_headers(), "If-None-Match": "*"})
    assert resp.status == 200
    resp = await edge.put("/admin/v1/events/ev", json={"name": "X"}, headers={**admin_headers(), "If-None-Match": "*"})
    answer = await resp.json()
    assert_problem(resp.status, answer, 409, "conflict")
    assert "already exists" in answer["detail"]
    resp = await edge.put("/admin/v1/events/ev", json={"rate_per_s": 3}, headers={**admin_headers(), "If-Match": "*"})
    assert resp.status == 200 and (await resp.json())["name"] == "E"
    resp = await edge.put(
        "/admin/v1/events/ev", json={"rate_per_s": 3}, headers={**admin_headers(), "If-Match": '"v1"'}
    )
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    # without a header PUT still creates or updates, as the contract says
    assert (await put(edge, "other", body))[0] == 200


async def test_concurrent_partial_updates_are_checked_one_after_the_other(edge: TestClient) -> None:
    """Two partial updates that are each fine alone but not together: one must be refused. Both are
    made to arrive while the event is being changed (the test holds the event's lock and its row), so
    without the lock both would read the same stored event, pass, and the later write would silently
    undo the earlier one (negative control: drop the xact_lock in Room._change and this fails)."""
    await put(edge, "ev", {"name": "E", "rate_per_s": 1})
    pool = edge.app[ROOM].pool
    async with pool.acquire() as con, con.transaction():
        await xact_lock(con, LockNamespace.EVENT_CHANGE, "ev")
        # and the row: without the event lock, both requests read the event, then queue up here to write
        await con.execute("SELECT 1 FROM events WHERE event_id = 'ev' FOR UPDATE")
        both = asyncio.gather(
            put(edge, "ev", {"opens_at": "2030-01-01T00:00:00Z"}),
            put(edge, "ev", {"closes_at": "2029-01-01T00:00:00Z"}),
        )
        async with asyncio.timeout(30):
            while not both.done() and await con.fetchval(WAITING_ON_LOCKS) < 2:  # noqa: ASYNC110 (polls the database)
                await asyncio.sleep(0.01)
    statuses = sorted(status for status, _ in await both)
    assert statuses == [200, 400]
    shown = await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    assert (shown["opens_at"] is None) != (shown["closes_at"] is None)  # exactly one of them stored


WAITING_ON_LOCKS = "SELECT count(*) FROM pg_locks WHERE NOT granted"


async def test_a_prequeue_needs_an_opening_time(edge: TestClient) -> None:
    """Without opens_at the event is open from the start: a pre-queue time would be silently ignored."""
    assert (await put(edge, "ev", {"name": "E", "rate_per_s": 1}))[0] == 200
    status, body = await put(edge, "ev", {"prequeue_opens_at": "2030-01-01T00:00:00Z"})
    assert_problem(status, body, 400, "validation_error")
    assert "prequeue_opens_at needs opens_at" in body["detail"]
    status, body = await put(edge, "new", {"name": "N", "rate_per_s": 1, "prequeue_opens_at": "2030-01-01T00:00:00Z"})
    assert_problem(status, body, 400, "validation_error")
    both = {"prequeue_opens_at": "2030-01-01T00:00:00Z", "opens_at": "2030-01-02T00:00:00Z"}
    assert (await put(edge, "ev", both))[0] == 200
    status, body = await put(edge, "ev", {"opens_at": None})  # dropping the opening alone leaves it dangling
    assert_problem(status, body, 400, "validation_error")
    assert (await put(edge, "ev", {"opens_at": None, "prequeue_opens_at": None}))[0] == 200


async def test_closing_during_the_prequeue_drops_the_opening_and_its_prequeue(edge: TestClient) -> None:
    await put(edge, "ev", {"name": "E", "rate_per_s": 1, "prequeue_opens_at": "2020-01-01T00:00:00Z",
                           "opens_at": "2099-01-01T00:00:00Z"})  # fmt: skip
    assert (await edge.post("/api/v1/events/ev/join")).status == 201  # in the pre-queue now
    resp = await edge.delete("/admin/v1/events/ev", headers=admin_headers())
    closed = await resp.json()
    assert resp.status == 200, closed
    assert closed["closes_at"] is not None and (closed["opens_at"], closed["prequeue_opens_at"]) == (None, None)
