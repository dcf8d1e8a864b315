"""Proof of work on join: verified cheaply, single-use, counted by reason when refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, assert_problem, metric_value, serve
from waitingroom.app import create_app
from waitingroom.keys import METRICS
from waitingroom.pow import leading_zero_bits, solve, solves

DIFFICULTY = 12  # ~4,000 hashes: quick in a test, real work all the same


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        for event_id, difficulty in (("ev", DIFFICULTY), ("other", DIFFICULTY), ("free", None)):
            body = {"name": event_id, "rate_per_s": 1, "pow_difficulty": difficulty}
            assert (await client.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())).status == 200
        yield client


async def challenge(edge: TestClient, event_id: str = "ev") -> str:
    body = await (await edge.get(f"/api/v1/events/{event_id}/challenge")).json()
    assert body["difficulty"] == DIFFICULTY
    return str(body["challenge"])


async def join(edge: TestClient, proof: dict[str, str] | None, event_id: str = "ev") -> tuple[int, dict[str, object]]:
    edge.session.cookie_jar.clear()
    resp = await edge.post(f"/api/v1/events/{event_id}/join", json={} if proof is None else {"pow": proof})
    return resp.status, await resp.json()


def rejected(edge: TestClient, reason: str) -> float:
    return metric_value(edge.app[METRICS], "surgegate_join_rejected_total", event="ev", reason=f"pow_{reason}")


async def test_a_solved_challenge_buys_one_place(edge: TestClient) -> None:
    c = await challenge(edge)
    solution = solve(c, DIFFICULTY)
    status, body = await join(edge, {"challenge": c, "solution": solution})
    assert status == 201 and body["position"] == 1
    status, body = await join(edge, {"challenge": c, "solution": solution})  # the same proof again
    assert_problem(status, body, 403, "pow_invalid")
    assert rejected(edge, "replay") == 1


async def test_missing_wrong_expired_and_foreign_proofs_are_refused(edge: TestClient, clock: FakeClock) -> None:
    status, body = await join(edge, None)
    assert_problem(status, body, 403, "pow_invalid")
    c = await challenge(edge)
    wrong = next(str(n) for n in range(10_000) if not solves(c, str(n), DIFFICULTY))
    assert_problem(*(await join(edge, {"challenge": c, "solution": wrong})), 403, "pow_invalid")
    forged = c[:-4] + ("AAAA" if not c.endswith("AAAA") else "BBBB")
    assert_problem(*(await join(edge, {"challenge": forged, "solution": "1"})), 403, "pow_invalid")
    foreign = await challenge(edge, "other")
    assert_problem(
        *(await join(edge, {"challenge": foreign, "solution": solve(foreign, DIFFICULTY)})), 403, "pow_invalid"
    )
    old = await challenge(edge)
    clock.advance(121)
    assert_problem(*(await join(edge, {"challenge": old, "solution": solve(old, DIFFICULTY)})), 403, "pow_invalid")
    assert [rejected(edge, r) for r in ("missing", "work", "signature", "event", "expired")] == [1, 1, 1, 1, 1]


async def test_events_without_work_and_returning_visitors_need_none(edge: TestClient) -> None:
    assert (await join(edge, None, "free"))[0] == 201
    c = await challenge(edge)
    edge.session.cookie_jar.clear()
    first = await edge.post("/api/v1/events/ev/join", json={"pow": {"challenge": c, "solution": solve(c, DIFFICULTY)}})
    assert first.status == 201
    again = await edge.post("/api/v1/events/ev/join")  # holding a live ticket: same place, no new work
    assert again.status == 201 and (await again.json())["ticket"] == (await first.json())["ticket"]


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x00\x00\xff") == 16
    assert leading_zero_bits(b"\x00\x10") == 11
    assert leading_zero_bits(b"\x80") == 0
