"""Abandonment: people who stop polling no longer hold up the line.

Half of a 600-visitor queue walks away at once. Once their grace has run out, the live half must be
admitted at the configured rate (±5 %); with abandonment switched off (the negative control) the
live half gets only about half the rate, because every other admission goes to someone who left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, metric_value, serve
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.room import Room

pytestmark = pytest.mark.slow  # 600 visitors over a minute of ticks, twice

RATE = 4.0
WINDOW = (30.0, 60.0)  # everyone who left is past their grace by t = 30 s


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        yield client


async def walk_away_scenario(edge: TestClient, clock: FakeClock, abandon_after_s: int | None) -> dict[str, object]:
    body = {"name": "E", "rate_per_s": RATE, "abandon_after_s": abandon_after_s}
    assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    room: Room = edge.app[ROOM]
    start = clock.now
    tickets = [(await room.join("ev", None))[0] for _ in range(600)]
    live, gone = tickets[0::2], tickets[1::2]
    admitted_at: dict[str, float] = {}
    for tick in range(int(WINDOW[1] / 0.125)):
        clock.advance(0.125)
        await room.tick()
        if tick % 8 == 7:  # the live half polls every second; the other half never again
            for t in live:
                if t not in admitted_at and (await room.status("ev", t)).state == "admitted":
                    admitted_at[t] = clock.now - start
    in_window = sum(1 for t in live if WINDOW[0] < admitted_at.get(t, -1) <= WINDOW[1])
    return {"rate": in_window / (WINDOW[1] - WINDOW[0]), "room": room, "gone": gone}


async def test_the_live_half_is_admitted_at_the_configured_rate(edge: TestClient, clock: FakeClock) -> None:
    result = await walk_away_scenario(edge, clock, abandon_after_s=10)
    assert abs(float(result["rate"]) - RATE) <= 0.05 * RATE  # type: ignore[arg-type]
    room: Room = result["room"]  # type: ignore[assignment]
    stats = await room.stats("ev")
    assert stats["abandoned"] > 0
    assert metric_value(room.metrics, "surgegate_abandoned_total", event="ev") == stats["abandoned"]
    # someone who left and comes back learns that their place is gone, and may join again
    gone: list[str] = result["gone"]  # type: ignore[assignment]
    returning = gone[len(gone) // 4]
    assert (await room.status("ev", returning)).state == "expired"
    new_ticket, status = await room.join("ev", returning)
    assert new_ticket != returning and status.state == "waiting"


async def test_negative_control_without_abandonment_the_line_stalls(edge: TestClient, clock: FakeClock) -> None:
    result = await walk_away_scenario(edge, clock, abandon_after_s=None)
    assert float(result["rate"]) < 0.6 * RATE  # type: ignore[arg-type]
