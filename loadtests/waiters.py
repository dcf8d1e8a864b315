"""Redis memory per waiting visitor: N joins of one event through the real join script.

    python -m loadtests.waiters [--waiters 1000000] [--batch 2000]

Starts an embedded Valkey (no persistence) unless SURGEGATE_REDIS_URL is set (then a fresh event id
is used on it, and other traffic on that server would disturb the figure). The joins are the edge's
own script call (``QueueStore.script_call``, mode ``join``), sent with EVALSHA in pipelined batches
rather than through HTTP: the figure is Redis's, not the edge's. Paused, so nobody is admitted and
everyone stays waiting. Three shapes of waiter, each measured as ``used_memory`` after minus before:

* ``anonymous``: an event without identity (no person_ref): a join only takes a number;
* ``person``: an event that keeps one place per person: one hash per person (``sg:pp:{event}:<ref>``);
* ``person+alive``: the same, and every waiter polled once with abandonment on (one deadline per rank
  in the event's ``alive`` sorted set, as the edge's ``note_alive`` writes it).

Prints a Markdown table and, per shape, ``MEMORY USAGE`` of one of its per-waiter keys.

``--edge``: the edge's memory against queue length instead. An edge process (embedded PostgreSQL and
Valkey unless SURGEGATE_DATABASE_URL / SURGEGATE_REDIS_URL are set) serves one event admitting nobody;
200 visitors join over HTTP and poll; its RSS is read; then ``--waiters`` more join through the
script as above (the edge is not told), 200 more join over HTTP (their positions show the queue's
length) and all 400 poll; its RSS is read again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from redis.asyncio import Redis

from shared import keys
from surgegate.embedded import EmbeddedValkey
from waitingroom.queue import QueueConfig, QueueStore

SHAPES = ("anonymous", "person", "person+alive")
EDGE_EVENT = "memory"


async def used_memory(redis: Redis) -> int:
    info: dict[str, Any] = await redis.info("memory")
    return int(info["used_memory"])


async def fill(store: QueueStore, event_id: str, shape: str, waiters: int, batch: int) -> float:
    """Join ``waiters`` visitors to ``event_id``; returns the seconds it took."""
    config = QueueConfig(rate_per_s=1.0, paused=True, opens_at=0.0, abandonment=shape == "person+alive")
    started = time.perf_counter()
    now = time.time()
    for first in range(0, waiters, batch):
        pipe = store.redis.pipeline(transaction=False)
        alive: dict[str, float] = {}
        for i in range(first, min(waiters, first + batch)):
            person_ref = keys.person_ref_text(secrets.token_bytes(32)) if shape != "anonymous" else ""  # as the edge
            script_keys, args = store.script_call(
                "join", event_id, now, config, person_ref=person_ref, visitor=secrets.token_urlsafe(16)
            )
            pipe.evalsha(store.script_sha, len(script_keys), *script_keys, *args)
            if shape == "person+alive":
                alive[str(i + 1)] = now + 30.0
        if alive:
            await store.note_alive({event_id: {int(r): d for r, d in alive.items()}})
        await pipe.execute()
    return time.perf_counter() - started


async def measure(redis: Redis, shape: str, waiters: int, batch: int) -> dict[str, Any]:
    store = QueueStore(redis)
    event_id = f"bench-{shape.replace('+', '-')}-{secrets.token_hex(3)}"
    await store.configure(event_id, time.time(), QueueConfig(rate_per_s=1.0, paused=True, opens_at=0.0))
    await redis.script_load(store._script.script)
    before = await used_memory(redis)
    seconds = await fill(store, event_id, shape, waiters, batch)
    after = await used_memory(redis)
    sample = None
    if shape != "anonymous":
        async for key in redis.scan_iter(match=keys.person_place_key(event_id, "*"), count=100):
            sample = await redis.memory_usage(key)
            break
    alive_bytes = await redis.memory_usage(keys.alive_key(event_id)) if shape == "person+alive" else None
    joined = int(await redis.hget(keys.queue_key(event_id), "joined") or 0)  # type: ignore[misc]
    return {
        "shape": shape,
        "waiters": joined,
        "delta": after - before,
        "per_waiter": (after - before) / max(1, joined),
        "seconds": seconds,
        "pp_key_bytes": sample,
        "alive_bytes": alive_bytes,
    }


async def main(args: argparse.Namespace) -> None:
    url = os.environ.get("SURGEGATE_REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if not url:
            server = EmbeddedValkey(Path(tmp) / "valkey", persist=False)
            url = server.start()
        redis = Redis.from_url(url)
        try:
            info = await redis.info("server")
            rows = [await measure(redis, shape, args.waiters, args.batch) for shape in args.shapes]
        finally:
            await redis.aclose()
            if server is not None:
                server.stop()
    server_version = (
        f"valkey {info['valkey_version']}" if "valkey_version" in info else f"redis {info['redis_version']}"
    )
    python = f"Python {platform.python_version()}"
    print(f"machine: {platform.platform()}, {psutil.cpu_count()} CPUs, {python}, {server_version}")
    print(f"command: python -m loadtests.waiters --waiters {args.waiters} --batch {args.batch}\n")
    print("| waiter | waiters | used_memory delta | bytes/waiter | one person's hash | alive zset | joins/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        alive = "-" if r["alive_bytes"] is None else f"{r['alive_bytes'] / 1e6:.1f} MB"
        print(
            f"| {r['shape']} | {r['waiters']:,} | {r['delta'] / 1e6:.1f} MB | {r['per_waiter']:.1f} | "
            f"{r['pp_key_bytes'] or '-'} | {alive} | "
            f"{r['waiters'] / r['seconds']:,.0f} |"
        )


async def _poll_all(session: aiohttp.ClientSession, base: str, tickets: list[str], rounds: int) -> list[int]:
    positions = []
    for _ in range(rounds):
        for ticket in tickets:
            async with session.get(
                f"{base}/api/v1/events/{EDGE_EVENT}/status", headers={"Authorization": f"Bearer {ticket}"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                positions.append(int((await resp.json())["position"] or 0))
    return positions


async def _join_http(session: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    tickets = []
    for _ in range(n):
        session.cookie_jar.clear()
        async with session.post(f"{base}/api/v1/events/{EDGE_EVENT}/join") as resp:
            assert resp.status == 201, await resp.text()
            tickets.append(str((await resp.json())["ticket"]))
    return tickets


async def edge_memory(args: argparse.Namespace) -> None:
    """The edge's RSS with 200 waiting and with ``args.waiters`` + 400 waiting (module docstring)."""
    from loadtests.bench import ADMIN, KEYS, backing_services, rss_mb, spawn, stop
    from shared.db import connect, migrate
    from surgegate.embedded import free_port

    with tempfile.TemporaryDirectory() as tmp, backing_services(Path(tmp)) as (dsn, url):
        con = await connect(dsn)
        try:
            await migrate(con)
        finally:
            await con.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
        env.update(
            SURGEGATE_DATABASE_URL=dsn, SURGEGATE_REDIS_URL=url, SURGEGATE_SECRET_KEYS=KEYS,
            SURGEGATE_ADMIN_TOKEN=ADMIN, SURGEGATE_JOIN_LIMIT_PER_MIN="0",
        )  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        edge = spawn(["surgegate", "edge", "--port", str(port)], env, f"{base}/healthz")
        redis = Redis.from_url(url)
        try:
            async with aiohttp.ClientSession() as session:
                put = {"name": "Edge memory", "rate_per_s": 0}
                async with session.put(
                    f"{base}/admin/v1/events/{EDGE_EVENT}", json=put, headers={"Authorization": f"Bearer {ADMIN}"}
                ) as resp:
                    assert resp.status in (200, 201), await resp.text()
                first = await _join_http(session, base, 200)
                await _poll_all(session, base, first, 5)
                small = rss_mb(edge)
                store = QueueStore(redis)
                await redis.script_load(store._script.script)
                seconds = await fill(store, EDGE_EVENT, "anonymous", args.waiters, args.batch)
                last = await _join_http(session, base, 200)
                positions = await _poll_all(session, base, first + last, 5)
                large = rss_mb(edge)
        finally:
            await redis.aclose()
            stop(edge)
    print(f"command: python -m loadtests.waiters --edge --waiters {args.waiters}")
    print(f"filled {args.waiters:,} waiters through the script in {seconds:.0f} s")
    print("| waiting | edge RSS after the polls |")
    print("|---|---|")
    print(f"| 200 | {small:.1f} MB |")
    print(f"| {max(positions):,} (the last position a poll answered) | {large:.1f} MB |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--waiters", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    p.add_argument("--edge", action="store_true", help="measure the edge's RSS against queue length instead")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    asyncio.run(edge_memory(arguments) if arguments.edge else main(arguments))
