"""Scaling: 1, 2 and 4 processes of the edge and of the booking worker on this machine.

    python -m loadtests.scaling [--processes 1 2 4] [--seconds 10] [--concurrency 32] [--bookings 2000]

Servers as in ``loadtests.bench`` (embedded PostgreSQL and Valkey in a temp dir unless
SURGEGATE_DATABASE_URL / SURGEGATE_REDIS_URL are set), the load generator (``loadtests.loadgen``, one
process, this one) on the same machine. For each k:

* **edges**: k ``surgegate edge`` processes serve one event that admits nobody; ``--concurrency``
  keep-alive connections, spread evenly over the k ports, send status polls of 200 waiting visitors
  for ``--seconds``, then joins, each from its own client address through the trusted proxy (the
  per-client limiter runs on every join, unhit), as ``loadtests.bench`` does for one edge;
* **workers**: one ``surgegate api`` and k ``surgegate worker`` processes; ``--bookings`` bookings
  on 50 slots are sent on ``--concurrency`` connections; bookings/s = appointments committed /
  seconds until the last one committed.

Next to each figure: the CPU each part used during it (CPU-seconds per wall second, summed over the
part's processes, from ``/proc`` through psutil; 2.0 = both cores): the load generator, the processes
under test, Redis, PostgreSQL (the postmaster and its backends), and the whole machine (everyone's,
this machine is shared). Where the sum of the parts meets the machine's ceiling, adding processes
cannot help; where one part is at 1.0, it is that part's single thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from loadtests.bench import (
    ADMIN,
    KEYS,
    NO_LIMITS,
    backing_services,
    count_appointments,
    describe_machine,
    prepare_database,
    spawn,
)
from loadtests.loadgen import Result, request_bytes, run_load
from loadtests.rate import stop_all
from shared.tokens import TokenCodec
from surgegate.embedded import free_port

WAITING = 200
ADDRESSES = 128_000  # client addresses of the benchmarking range 198.18.0.0/15 used for joins


def client(i: int) -> str:
    """The i-th join's client address (198.18.0.1 ... 198.19.255.250, then again from the start)."""
    i %= ADDRESSES
    return f"198.{18 + i // 64_000}.{(i % 64_000) // 250}.{i % 250 + 1}"


@dataclass
class Figure:
    kind: str  # "status polls/s", "joins/s", "bookings/s"
    processes: int
    result: Result
    cpu: dict[str, float] = field(default_factory=dict)  # CPU-seconds per wall second by part


def listener(url: str) -> psutil.Process | None:
    """The process listening on the URL's port on this machine (None if it is elsewhere)."""
    port = urlsplit(url).port
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def with_children(proc: psutil.Process | None) -> list[psutil.Process]:
    if proc is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return [proc]


async def measured(
    parts: dict[str, Callable[[], list[psutil.Process]]], work: Callable[[], Awaitable[Result]]
) -> tuple[Result, dict[str, float]]:
    """Run ``work``; returns its result and each part's CPU-seconds per wall second meanwhile (a
    process that appears during the work counts from zero, one that ends is lost)."""
    before = {name: _cpu(get()) for name, get in parts.items()}
    machine = psutil.cpu_times()
    started = time.perf_counter()
    result = await work()
    wall = time.perf_counter() - started
    after_machine = psutil.cpu_times()
    cpu = {}
    for name, get in parts.items():
        now = _cpu(get())
        cpu[name] = sum(t - before[name].get(pid, 0.0) for pid, t in now.items()) / wall
    busy = sum(after_machine) - sum(machine) - (after_machine.idle - machine.idle)
    busy -= getattr(after_machine, "iowait", 0.0) - getattr(machine, "iowait", 0.0)
    cpu["machine"] = busy / wall
    return result, cpu


async def _ticket(port: int, i: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        request_bytes("POST", "/api/v1/events/bench/join", {"X-Forwarded-For": f"10.255.{i // 250}.{i % 250 + 1}"})
    )
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
    ticket = str(json.loads(await reader.readexactly(length))["ticket"])
    writer.close()
    return ticket


async def spread(ports: list[int], make: Callable[[int], bytes], concurrency: int, seconds: float) -> Result:
    """``concurrency`` connections spread evenly over ``ports``, for ``seconds``; one summed Result."""
    shares = [concurrency // len(ports) + (1 if i < concurrency % len(ports) else 0) for i in range(len(ports))]
    offset = [i * (ADDRESSES // len(ports)) for i in range(len(ports))]  # each port its own request indices

    def shifted(o: int) -> Callable[[int], bytes]:
        return lambda i: make(o + i)

    parts = await asyncio.gather(
        *(
            run_load(port, shifted(o), concurrency=share, seconds=seconds)
            for port, share, o in zip(ports, shares, offset, strict=True)
            if share
        )
    )
    total = Result(seconds=max(p.seconds for p in parts))
    for p in parts:
        total.requests += p.requests
        total.latencies += p.latencies
        for status, n in p.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + n
    return total


async def edge_figures(env: dict[str, str], redis_url: str, dsn: str, k: int, args: argparse.Namespace) -> list[Figure]:
    ports = [free_port() for _ in range(k)]
    procs = [spawn(["surgegate", "edge", "--port", str(p)], env, f"http://127.0.0.1:{p}/healthz") for p in ports]
    me = psutil.Process()
    parts = {
        "load generator": lambda: [me],
        "edges": lambda: [psutil.Process(p.pid) for p in procs],
        "redis": lambda: with_children(listener(redis_url)),
        "postgresql": lambda: with_children(listener(dsn)),
    }
    try:
        put = request_bytes(
            "PUT", "/admin/v1/events/bench", {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
            json.dumps({"name": "Bench", "rate_per_s": 0}).encode(),
        )  # fmt: skip
        await run_load(ports[0], lambda i: put, concurrency=1, total=1)
        await asyncio.sleep(0.5)
        tickets = [await _ticket(ports[i % k], i) for i in range(WAITING)]
        polls = [request_bytes("GET", "/api/v1/events/bench/status", {"Authorization": f"Bearer {t}"}) for t in tickets]
        status, status_cpu = await measured(
            parts, lambda: spread(ports, lambda i: polls[i % len(polls)], args.concurrency, args.seconds)
        )
        joins, join_cpu = await measured(
            parts,
            lambda: spread(
                ports,
                lambda i: request_bytes("POST", "/api/v1/events/bench/join", {"X-Forwarded-For": client(i)}),
                args.concurrency,
                args.seconds,
            ),
        )
    finally:
        stop_all(procs)
    return [Figure("status polls/s", k, status, status_cpu), Figure("joins/s", k, joins, join_cpu)]


def booking_requests(codec: TokenCodec, slots: list[uuid.UUID], n: int, prefix: str) -> list[bytes]:
    """``loadtests.bench.booking_requests`` with visitors, keys and people of their own per run (an
    admission that booked once is used up, and the API remembers idempotency keys)."""
    out = []
    for i in range(n):
        visitor = f"{prefix}v{i}"
        token = codec.sign_admission(event_id="bench", visitor_id=visitor, scope=None, expires_at=time.time() + 3600)
        person = {"id_number": f"{prefix}B{i:08d}", "name": f"Bench {i}", "email": f"b{i}@example.org",
                  "birth_date": "1980-01-01"}  # fmt: skip
        body = json.dumps({"slot_id": str(slots[i % len(slots)]), "person": person}).encode()
        out.append(request_bytes("POST", "/api/v1/appointments", {
            "Authorization": f"Bearer {token}", "Idempotency-Key": f"{prefix}k{i}", "Content-Type": "application/json",
            "X-Forwarded-For": client(i)}, body))  # fmt: skip
    return out


async def booking_figure(env: dict[str, str], redis_url: str, dsn: str, k: int, args: argparse.Namespace) -> Figure:
    slots = await prepare_database(dsn)
    codec = TokenCodec([tuple(KEYS.split(":", 1))])  # type: ignore[list-item]
    requests = booking_requests(codec, slots, args.bookings, prefix=f"k{k}-")
    api_port = free_port()
    procs = [spawn(["surgegate", "api", "--port", str(api_port)], env, f"http://127.0.0.1:{api_port}/healthz")]
    for _ in range(k):
        port = free_port()
        procs.append(spawn(["surgegate", "worker", "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz"))
    me = psutil.Process()
    parts = {
        "load generator": lambda: [me],
        "api": lambda: [psutil.Process(procs[0].pid)],
        "workers": lambda: [psutil.Process(p.pid) for p in procs[1:]],
        "redis": lambda: with_children(listener(redis_url)),
        "postgresql": lambda: with_children(listener(dsn)),
    }

    async def book() -> Result:
        started = time.perf_counter()
        path = await run_load(api_port, lambda i: requests[i], concurrency=args.concurrency, total=len(requests))
        while await count_appointments(dsn) < args.bookings and time.perf_counter() - started < 300:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # 202s still committing
        path.seconds = time.perf_counter() - started
        path.requests = await count_appointments(dsn)
        return path

    try:
        result, cpu = await measured(parts, book)
    finally:
        stop_all(procs)
    return Figure("bookings/s", k, result, cpu)


async def measure(dsn: str, redis_url: str, args: argparse.Namespace) -> list[Figure]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
    env.update(
        SURGEGATE_DATABASE_URL=dsn, SURGEGATE_REDIS_URL=redis_url, SURGEGATE_SECRET_KEYS=KEYS,
        SURGEGATE_ADMIN_TOKEN=ADMIN, SURGEGATE_LOG_LEVEL="WARNING", SURGEGATE_TRUSTED_PROXIES="127.0.0.1/32",
    )  # fmt: skip
    await prepare_database(dsn)
    figures: list[Figure] = []
    if "edges" in args.kinds:
        for k in args.processes:
            figures += await edge_figures(env, redis_url, dsn, k, args)
    if "workers" in args.kinds:
        for k in args.processes:
            # as loadtests.bench's booking figure: the API's per-token limits do not apply to a benchmark
            figures.append(await booking_figure({**env, **NO_LIMITS}, redis_url, dsn, k, args))
    return figures


def cost_us(f: Figure) -> tuple[float, float, float]:
    """CPU microseconds one operation cost (processes under test, Redis, PostgreSQL): CPU-seconds per
    second / operations per second. Unlike the rates, these hardly depend on what else runs."""
    rate = f.result.rate or 1.0
    under = f.cpu.get("edges", 0.0) + f.cpu.get("api", 0.0) + f.cpu.get("workers", 0.0)
    return under / rate * 1e6, f.cpu.get("redis", 0.0) / rate * 1e6, f.cpu.get("postgresql", 0.0) / rate * 1e6


def table(figures: list[Figure]) -> list[str]:
    lines = [
        "| figure | processes | per second | vs 1 process | p99 | CPU: load generator / under test / Redis / "
        "PostgreSQL / machine | CPU µs per operation: under test / Redis / PostgreSQL | statuses |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    ones = {f.kind: f.result.rate for f in figures if f.processes == 1}
    for f in figures:
        under = f.cpu.get("edges", 0.0) + f.cpu.get("api", 0.0) + f.cpu.get("workers", 0.0)
        detail = (
            f" (API {f.cpu['api']:.2f} + workers {f.cpu['workers']:.2f})" if "workers" in f.cpu else ""
        )  # fmt: skip
        cpu = (
            f"{f.cpu.get('load generator', 0):.2f} / {under:.2f}{detail} / {f.cpu.get('redis', 0):.2f} / "
            f"{f.cpu.get('postgresql', 0):.2f} / {f.cpu.get('machine', 0):.2f}"
        )
        base = ones.get(f.kind)
        ratio = f"{f.result.rate / base:.2f}" if base else "-"
        per_op = " / ".join(f"{cost:,.0f}" for cost in cost_us(f))
        lines.append(
            f"| {f.kind} | {f.processes} | {f.result.rate:,.0f} | {ratio} | "
            f"{f.result.percentile(0.99) * 1000:.1f} ms | {cpu} | {per_op} | "
            f"{dict(sorted(f.result.statuses.items()))} |"
        )
    return lines


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, backing_services(Path(tmp)) as (dsn, url):
        figures = await measure(dsn, url, args)
    print(f"machine: {describe_machine()}")
    print(f"command: python -m loadtests.scaling --processes {' '.join(map(str, args.processes))} "
          f"--seconds {args.seconds:g} --concurrency {args.concurrency} --bookings {args.bookings} "
          f"--kinds {' '.join(args.kinds)}\n")  # fmt: skip
    print("\n".join(table(figures)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--bookings", type=int, default=2000)
    p.add_argument("--kinds", nargs="+", choices=["edges", "workers"], default=["edges", "workers"])
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
