"""The admission rate across several edges (issue 13: within 1 % from 1/s to 2,000/s over 60 s).

With the injected clock: two edges sharing one event tick at uneven moments, in either order, each
reading its clock a little before its call lands (so one edge's call often arrives with a moment older
than the other's last one); the admissions over a minute of queue time are exactly ``rate * T`` (±1)
at 1/s and at 2,000/s, and the estimator of ``loadtests.rate`` (from the runs the script records)
lands within a tick's share of the configured rate. Then the harness itself against real edge
processes (small sizes): its figures are the ones Redis and the edges' own counters hold."""

from __future__ import annotations

import math
import random

import asyncpg
import pytest
from redis.asyncio import Redis

from loadtests.rate import Run, admissions, measure, span
from shared import keys
from shared.metrics import Metrics
from shared.settings import Settings
from shared.staff import OWNER
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, metric_value
from waitingroom.events import EventUpdate
from waitingroom.room import Room

START = 1_800_000_000.0


def test_span_reads_ranks_and_moments_from_the_first_to_the_last_run() -> None:
    runs = [Run(11, 20, START + 2.0), Run(1, 10, START + 1.0), Run(21, 23, START + 2.5)]
    assert span(runs) == (13, 1.5)  # ranks 11..23 admitted after the first run, in 1.5 s
    assert span(runs[:1]) == (0, 0.0)


@pytest.mark.parametrize("rate", [1.0, 2000.0])
async def test_two_edges_admit_exactly_the_rate_whatever_the_order_of_their_ticks(
    settings: Settings, pool: asyncpg.Pool, redis: Redis, rate: float
) -> None:
    clocks = [FakeClock(START), FakeClock(START)]
    rooms = [
        Room(settings=settings, pool=pool, redis=redis, codec=TokenCodec(settings.secret_keys), metrics=Metrics(),
             clock=c)
        for c in clocks
    ]  # fmt: skip
    await rooms[0].put_event("ev", EventUpdate(name="Rate", rate_per_s=rate, admission_ttl_s=3600), actor=OWNER)
    await rooms[1].refresh_events()
    # A backlog of anonymous waiters is nothing but the arrival counter (loadtests.waiters: a join
    # without identity changes no other key), so it is set directly: more than a minute can admit.
    await redis.hset(keys.queue_key("ev"), "joined", str(int(rate * 60) + 1000))  # type: ignore[misc]
    shuffle = random.Random(13)
    now = START
    while now < START + 60:
        now = min(START + 60, now + shuffle.uniform(0.05, 0.15))
        order = [0, 1] if shuffle.random() < 0.5 else [1, 0]
        for i in order:  # each edge's reading of the clock lags its call by up to 50 ms
            clocks[i].now = now - shuffle.uniform(0.0, 0.05)
            await rooms[i].tick()
    for c in clocks:
        c.now = START + 60
    await rooms[0].tick()

    admitted = int(float(await redis.hget(keys.queue_key("ev"), "served")))  # type: ignore[misc]
    assert abs(admitted - rate * 60) <= 1
    assert await redis.zcard(keys.active_admissions_key("ev")) == admitted
    per_edge = [metric_value(r.metrics, "surgegate_admitted_total", event="ev") for r in rooms]
    assert sum(per_edge) == admitted
    assert all(n > 0 for n in per_edge)  # both edges did some of the admitting
    moments, runs = await admissions(redis, "ev", START, START + 60)
    assert len(moments) == admitted
    ranks, seconds = span(runs)
    # Each end of the span lags the ideal moment by at most one tick (≤ 0.15 s here) of 60 s.
    assert abs(ranks / seconds - rate) / rate < 0.15 / 59
    assert math.isclose(ranks / seconds, rate, rel_tol=0.01)


@pytest.mark.slow
async def test_the_harness_reports_what_redis_and_the_edges_hold(
    database_url: str, redis_url: str, redis: Redis, clean: None
) -> None:
    figures = await measure(database_url, redis_url, rates=[5.0, 200.0], seconds=1.5, edges=2)
    assert [f.rate for f in figures] == [5.0, 200.0]
    for f in figures:
        # every admission of the event fell in the window: its rate was 0 before and after
        served = float(await redis.hget(keys.queue_key(f.event_id), "served"))  # type: ignore[misc]
        assert f.admitted == int(served) == await redis.zcard(keys.active_admissions_key(f.event_id))
        assert f.admitted == sum(f.per_edge) > 0  # what the edges counted themselves
        runs = [
            Run(int(m.decode().split(":")[0]), int(s), float(m.decode().split(":")[1]))
            for m, s in await redis.zrange(keys.admission_runs_key(f.event_id), 0, -1, withscores=True)
        ]
        assert f.runs == len(runs)
        first, last = min(runs, key=lambda r: r.at), max(runs, key=lambda r: r.at)
        assert first.first == 1 and last.last == f.admitted
        assert f.span_ranks == last.last - first.last
        assert f.achieved == pytest.approx((last.last - first.last) / (last.at - first.at))
        assert f.error_pct == pytest.approx((f.achieved - f.rate) / f.rate * 100)
        assert f.naive == pytest.approx(f.admitted / f.window_s)
