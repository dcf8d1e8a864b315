"""Admission rate as measured from the admissions themselves, with several edges sharing one event.

    python -m loadtests.rate [--rates 1 10 100 1000 2000] [--seconds 60] [--edges 2]

Starts ``--edges`` ``surgegate edge`` processes against one PostgreSQL and one Redis (embedded ones in
a temp dir unless SURGEGATE_DATABASE_URL / SURGEGATE_REDIS_URL are set; a fresh event id per rate
then). Per rate R, a new event is created through the first edge with rate 0, given a backlog of
``R * seconds * 1.2 + 100`` waiters through the edge's own join script in pipelined batches
(:func:`loadtests.waiters.fill`, as in the memory figure), set to rate R through one of the edges (they
take turns), left alone for ``seconds``, and stopped (rate 0) through the next edge. All edges tick
meanwhile; each advance that reaches new ranks is done by whichever edge's tick (or join) gets there.

What is measured is server-side: every admission is a member of the event's active-admissions set
(``keys.active_admissions_key``, score = its moment + the admission's lifetime), and every advance
that admitted someone left one member in the event's runs (``keys.admission_runs_key``: the last
rank it reached, and the queue-clock moment it did). From the runs that fall between the rate change
and the stop: achieved rate = (last rank of the last run - last rank of the first run) / (moment of
the last run - moment of the first run). Both ends are moments of real advances, so a tick's
granularity enters only as the lag of one advance behind the ideal moment (at most one tick, about
0.1 s by default, at each end); the count of admissions in the window divided by the wall-clock
window (``admitted / window``) is printed beside it and carries ±1 admission of quantisation and the
latency of the two admin calls. Also printed, as a cross-check: the admissions each edge counted
itself (its ``surgegate_admitted_total``), which sum to the set's size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from loadtests.bench import ADMIN, KEYS, backing_services, describe_machine, spawn
from loadtests.waiters import fill
from shared import keys
from shared.db import connect, migrate
from surgegate.embedded import free_port
from waitingroom.queue import ACTIVE_GRACE_S, QueueStore

TTL_S = 3600  # the events' admission_ttl_s: no admission lapses during a run


@dataclass(frozen=True)
class Run:
    """One advance that admitted someone: ranks ``first..last`` reached at queue-clock ``at``."""

    first: int
    last: int
    at: float


@dataclass(frozen=True)
class Figures:
    event_id: str
    rate: float  # configured
    window_s: float  # wall clock between the rate change and the stop
    admitted: int  # admissions whose moment falls in the window (the active set)
    runs: int  # advances that admitted someone in the window
    span_s: float  # moment of the last run - moment of the first
    span_ranks: int  # ranks admitted after the first run up to the last
    per_edge: tuple[int, ...]  # each edge's own admitted counter for the event

    @property
    def achieved(self) -> float:
        return self.span_ranks / self.span_s if self.span_s > 0 else 0.0

    @property
    def error_pct(self) -> float:
        return (self.achieved - self.rate) / self.rate * 100

    @property
    def naive(self) -> float:
        return self.admitted / self.window_s


def parse_run(member: bytes | str, score: float) -> Run:
    text = member.decode() if isinstance(member, bytes) else member
    first, at = text.split(":", 1)
    return Run(int(first), int(score), float(at))


def span(runs: list[Run]) -> tuple[int, float]:
    """(ranks admitted after the first run up to the last, seconds between their moments)."""
    if len(runs) < 2:
        return 0, 0.0
    ordered = sorted(runs, key=lambda r: r.at)
    return ordered[-1].last - ordered[0].last, ordered[-1].at - ordered[0].at


async def admissions(redis: Redis, event_id: str, start: float, end: float) -> tuple[list[float], list[Run]]:
    """The moments of the event's admissions, and its runs, between ``start`` and ``end`` (queue clock)."""
    members = await redis.zrange(keys.active_admissions_key(event_id), 0, -1, withscores=True)
    lifetime = TTL_S + ACTIVE_GRACE_S
    moments = [score - lifetime for _, score in members]
    runs = [parse_run(m, s) for m, s in await redis.zrange(keys.admission_runs_key(event_id), 0, -1, withscores=True)]
    # A small margin for the float arithmetic of score - lifetime (moments are epoch seconds).
    inside = [m for m in moments if start - 1e-6 < m <= end + 1e-6]
    return inside, [r for r in runs if start < r.at <= end]


async def admitted_counter(session: aiohttp.ClientSession, base: str, event_id: str) -> int:
    async with session.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("surgegate_admitted_total{") and f'event="{event_id}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def put_rate(session: aiohttp.ClientSession, base: str, event_id: str, rate: float) -> None:
    body = {"name": f"Rate {event_id}", "rate_per_s": rate, "admission_ttl_s": TTL_S}
    async with session.put(
        f"{base}/admin/v1/events/{event_id}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as resp:
        assert resp.status in (200, 201), await resp.text()


async def one_rate(
    session: aiohttp.ClientSession, redis: Redis, bases: list[str], rate: float, seconds: float, turn: int
) -> Figures:
    event_id = f"rate-{rate:g}-{secrets.token_hex(3)}"
    await put_rate(session, bases[0], event_id, 0)
    await fill(QueueStore(redis), event_id, "anonymous", int(rate * seconds * 1.2) + 100, 2000)
    start = time.time()
    await put_rate(session, bases[turn % len(bases)], event_id, rate)
    await asyncio.sleep(seconds)
    await put_rate(session, bases[(turn + 1) % len(bases)], event_id, 0)
    end = time.time()
    moments, runs = await admissions(redis, event_id, start, end)
    ranks, span_s = span(runs)
    per_edge = tuple([await admitted_counter(session, base, event_id) for base in bases])
    return Figures(event_id, rate, end - start, len(moments), len(runs), span_s, ranks, per_edge)


async def measure(
    dsn: str, redis_url: str, *, rates: list[float], seconds: float, edges: int, tick_s: float | None = None
) -> list[Figures]:
    con = await connect(dsn)
    try:
        await migrate(con)
    finally:
        await con.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
    env.update(
        SURGEGATE_DATABASE_URL=dsn, SURGEGATE_REDIS_URL=redis_url, SURGEGATE_SECRET_KEYS=KEYS,
        SURGEGATE_ADMIN_TOKEN=ADMIN, SURGEGATE_LOG_LEVEL="WARNING",
    )  # fmt: skip
    if tick_s is not None:
        env["SURGEGATE_EDGE_TICK_S"] = repr(tick_s)
    procs, bases = [], []
    try:
        for _ in range(edges):
            port = free_port()
            bases.append(f"http://127.0.0.1:{port}")
            procs.append(spawn(["surgegate", "edge", "--port", str(port)], env, f"{bases[-1]}/healthz"))
        redis = Redis.from_url(redis_url)
        try:
            await redis.script_load(QueueStore(redis)._script.script)
            async with aiohttp.ClientSession() as session:
                return [await one_rate(session, redis, bases, r, seconds, i) for i, r in enumerate(rates)]
        finally:
            await redis.aclose()
    finally:
        stop_all(procs)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the processes (killed if one takes more than 20 s) and close the pipes spawn left open."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stderr is not None:
            p.stderr.close()


def table(rows: list[Figures]) -> list[str]:
    lines = [
        "| configured /s | achieved /s (runs) | error | admitted in window / window | admissions | "
        "advances | each edge's count |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for f in rows:
        lines.append(
            f"| {f.rate:g} | {f.achieved:,.3f} | {f.error_pct:+.3f} % | {f.admitted:,} / {f.window_s:.2f} s = "
            f"{f.naive:,.2f} | {f.admitted:,} | {f.runs:,} | {' + '.join(f'{n:,}' for n in f.per_edge)} |"
        )
    return lines


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, backing_services(Path(tmp)) as (dsn, url):
        rows = await measure(dsn, url, rates=args.rates, seconds=args.seconds, edges=args.edges, tick_s=args.tick)
    print(f"machine: {describe_machine()}")
    print(f"command: python -m loadtests.rate --rates {' '.join(f'{r:g}' for r in args.rates)} "
          f"--seconds {args.seconds:g} --edges {args.edges}\n")  # fmt: skip
    print("\n".join(table(rows)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", type=float, nargs="+", default=[1, 10, 100, 1000, 2000])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--edges", type=int, default=2)
    p.add_argument("--tick", type=float, default=None, help="SURGEGATE_EDGE_TICK_S for the edges (default theirs)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
