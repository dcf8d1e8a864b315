"""Benchmark harness: each surgegate figure next to a baseline measured in the same run.

    python -m loadtests.bench [--seconds 10] [--concurrency 32] [--bookings 2000]

Uses SURGEGATE_DATABASE_URL / SURGEGATE_REDIS_URL when set, else embedded servers in a temp dir.
Servers run as separate processes (like production); the load generator runs here. Prints a
Markdown table: figure, surgegate, baseline, ratio. Nothing is asserted: the numbers are reported.

* status polls/s of one edge process  vs  a bare aiohttp handler replaying the edge's own answer (the
  same JSON and headers: loadtests/baseline_server.py --replay)
* joins/s of one edge process         vs  the same bare handler (a join's answer, Set-Cookie included;
  edge and baseline in turns, --rounds; joins also report Redis script calls per join)
* bookings committed/s, API -> arq -> worker  vs  the worker's booking transaction run directly
  through asyncpg with the same concurrency (the SQL floor of the path)
* eligibility evaluations/s of one API process (a published rule set of two CEL rules; each decision
  stored)  vs  the same bare handler returning the same JSON size
* other users' hold latency while one admission token floods POST /holds with fresh Idempotency-Keys
  vs  the same with nobody flooding: with the API's limits and caps (defaults), and without them
* a reminder burst: reminders/s the notification dispatcher delivers (claim, render, .eml-keeping
  SMTP sink, mark sent)  vs  raw aiosmtplib sends of the same messages to the same sink, at the
  dispatcher's concurrency (its batch size)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from booking_worker.worker import MAX_JOBS
from loadtests.loadgen import Result, request_bytes, run_load
from shared.attempts import accept
from shared.attempts import execute as run_attempt
from shared.booking import BookingJob, attempt_id_for
from shared.db import connect, create_pool, migrate
from shared.persons import PersonVault
from shared.rule_versions import create_version, publish
from shared.rules import RuleSetSpec
from shared.seats import utcnow
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey, free_port

KEYS = "bench:benchmark-secret-key-0001"
ADMIN = "bench-admin"
SLOTS = 50
SEARCHERS = 2000  # each searches at most ~15 times in 10 s: well inside a token's read limit
# Everything SURGEGATE_API_* off and no caps: the booking API as it was before its limits.
NO_LIMITS = {
    **{f"SURGEGATE_API_{who}_{kind}_LIMIT_{part}": "0" for who in ("TOKEN", "CLIENT") for kind in ("READ", "WRITE")
       for part in ("PER_MIN", "BURST")},
    "SURGEGATE_MAX_HOLDS_PER_ADMISSION": "0", "SURGEGATE_MAX_KEYS_PER_ADMISSION": "0",
}  # fmt: skip


@contextlib.contextmanager
def backing_services(workdir: Path) -> Iterator[tuple[str, str]]:
    db, rd = os.environ.get("SURGEGATE_DATABASE_URL"), os.environ.get("SURGEGATE_REDIS_URL")
    pg = None if db else EmbeddedPostgres(workdir / "pg")
    vk = None if rd else EmbeddedValkey(workdir / "valkey", persist=False)
    try:
        yield (db or pg.start()), (rd or vk.start())  # type: ignore[union-attr]
    finally:
        for server in (vk, pg):
            if server is not None:
                server.stop()


def spawn(args: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args} exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        with contextlib.suppress(OSError), urllib.request.urlopen(ready_url, timeout=1):
            return proc
        time.sleep(0.2)
    raise RuntimeError(f"{args} not ready")


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(20)


def rss_mb(proc: subprocess.Popen[bytes]) -> float:
    return float(psutil.Process(proc.pid).memory_info().rss) / 2**20


async def prepare_database(dsn: str) -> list[uuid.UUID]:
    con = await connect(dsn)
    try:
        await migrate(con)
        await con.execute("TRUNCATE audit_log, booking_attempts, appointments, slots, sites, events CASCADE")
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('bench', 'Bench', 0, 3600)"
        )
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng)"
            " VALUES ('bench-site', 'Bench', 'R', 'Europe/Berlin', 52.5, 13.4)"
        )
        start = datetime.now(UTC) + timedelta(days=1)
        ids = [uuid.uuid4() for _ in range(SLOTS)]
        await con.executemany(
            "INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity)"
            " VALUES ($1, 'bench-site', $2, $3, 1000000)",
            [(sid, start + timedelta(minutes=i), start + timedelta(minutes=i + 1)) for i, sid in enumerate(ids)],
        )
        return ids
    finally:
        await con.close()


def _shifted(make: Callable[[int], bytes], offset: int, i: int) -> bytes:
    return make(offset + i)


async def alternating(
    ours: tuple[int, Callable[[int], bytes]], base: tuple[int, Callable[[int], bytes]], args: argparse.Namespace
) -> tuple[Result, Result]:
    """The same load on two servers in turns (``--rounds`` of each, ``--seconds`` in all per server):
    on a VM whose other tenants come and go, both figures then see the same conditions. Each round
    goes on where the last left off in the request list (fresh client addresses)."""
    results = (Result(), Result())
    sent = [0, 0]
    for _ in range(args.rounds):
        for k, (port, make) in enumerate((ours, base)):
            r = await run_load(port, functools.partial(_shifted, make, sent[k]), concurrency=args.concurrency,
                               seconds=args.seconds / args.rounds)  # fmt: skip
            sent[k] += r.requests
            total = results[k]
            total.requests += r.requests
            total.seconds += r.seconds
            total.latencies += r.latencies
            for code, n in r.statuses.items():
                total.statuses[code] = total.statuses.get(code, 0) + n
    return results


async def answer(port: int, request: bytes) -> dict[str, Any]:
    """One request on its own connection; the answer as ``loadtests.baseline_server --replay`` takes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = [tuple(h.split(": ", 1)) for h in head[1:] if h]
        length = int(next(v for k, v in headers if k.lower() == "content-length"))
        body = (await reader.readexactly(length)).decode()
        return {"status": int(head[0].split()[1]), "headers": headers, "body": body}
    finally:
        writer.close()


async def edge_figures(env: dict[str, str], args: argparse.Namespace) -> list[tuple[str, Result, Result, str]]:
    port, base_port = free_port(), free_port()
    edge = spawn(["surgegate", "edge", "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz")
    base: subprocess.Popen[bytes] | None = None
    try:
        # The event admits nobody (rate 0), so every poll is a waiting visitor's: the common case.
        put = request_bytes(
            "PUT", "/admin/v1/events/bench", {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
            json.dumps({"name": "Bench", "rate_per_s": 0}).encode(),
        )  # fmt: skip
        await run_load(port, lambda i: put, concurrency=1, total=1)
        answers: dict[str, dict[str, Any]] = {}
        tickets: list[str] = []
        for i in range(200):
            client = {"X-Forwarded-For": f"198.19.0.{i + 1}"}
            join = await answer(port, request_bytes("POST", "/api/v1/events/bench/join", client))
            answers.setdefault("POST", join)
            tickets.append(json.loads(join["body"])["ticket"])
        polls = [request_bytes("GET", "/api/v1/events/bench/status", {"Authorization": f"Bearer {t}"}) for t in tickets]
        answers["GET"] = await answer(port, polls[0])
        size = len(answers["GET"]["body"].encode())
        # The bare handler replays the edge's own answers (the same JSON and headers) without making them.
        replay = Path(tempfile.mkdtemp()) / "answers.json"
        replay.write_text(json.dumps(answers))
        base = spawn(["loadtests.baseline_server", str(base_port), "--replay", str(replay)], env,
                     f"http://127.0.0.1:{base_port}/")  # fmt: skip
        replay.unlink()  # read at start
        replay.parent.rmdir()

        status, base_status = await alternating(
            (port, lambda i: polls[i % len(polls)]), (base_port, lambda i: polls[0]), args
        )
        # Each join from its own address (RFC 2544 benchmarking range) through a trusted proxy, so the
        # per-client limiter runs, and is paid for, on every join without refusing any.
        join_reqs = [
            request_bytes("POST", "/api/v1/events/bench/join", {"X-Forwarded-For": address(i)}) for i in range(50_000)
        ]
        calls_before = await redis_calls(env["SURGEGATE_REDIS_URL"])
        joins, base_join = await alternating(
            (port, lambda i: join_reqs[i % len(join_reqs)]), (base_port, lambda i: join_reqs[i % len(join_reqs)]), args
        )
        calls = await redis_calls(env["SURGEGATE_REDIS_URL"]) - calls_before
        edge_rss, base_rss = rss_mb(edge), rss_mb(base)
    finally:
        stop(edge, *([base] if base is not None else []))
    return [
        ("status polls/s (1 edge process)", status, base_status, f"{size} B JSON"),
        (
            "joins/s (1 edge process)",
            joins,
            base_join,
            f"{calls / max(1, joins.requests):.3f} script calls (round trips) per join",
        ),
        ("RSS MB after load", Result(requests=int(edge_rss), seconds=1), Result(requests=int(base_rss), seconds=1), ""),
    ]


async def redis_calls(url: str) -> int:
    """Script calls (``EVALSHA``) the Redis has served so far (``INFO commandstats``; the commands a
    script runs count there too, so they are left out): both the join limiter and the queue are
    scripts, so the difference around a run of joins, over the joins, is their Redis round trips per
    join (the edge's ticker adds a few per second)."""
    client = Redis.from_url(url)
    try:
        stats: dict[str, Any] = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def address(i: int) -> str:
    """The i-th client address of the RFC 2544 benchmarking range (198.18.0.0/15), one per visitor,
    sent through the trusted proxy (127.0.0.1), so per-client limits run on every request unhit."""
    return f"198.18.{i // 250}.{i % 250 + 1}"


def visitor_token(codec: TokenCodec, visitor: str) -> str:
    return codec.sign_admission(event_id="bench", visitor_id=visitor, scope=None, expires_at=time.time() + 3600)


def booking_requests(codec: TokenCodec, slots: list[uuid.UUID], n: int) -> list[bytes]:
    out = []
    for i in range(n):
        token = codec.sign_admission(event_id="bench", visitor_id=f"v{i}", scope=None, expires_at=time.time() + 3600)
        body = json.dumps(
            {
                "slot_id": str(slots[i % len(slots)]),
                "person": {
                    "id_number": f"B{i:08d}",
                    "name": f"Bench {i}",
                    "email": f"b{i}@example.org",
                    "birth_date": "1980-01-01",
                },
            }
        )
        out.append(request_bytes("POST", "/api/v1/appointments", {
            "Authorization": f"Bearer {token}", "Idempotency-Key": f"k{i}", "Content-Type": "application/json",
            "X-Forwarded-For": address(i)}, body.encode()))  # fmt: skip
    return out


async def count_appointments(dsn: str) -> int:
    con = await connect(dsn)
    try:
        return int(await con.fetchval("SELECT count(*) FROM appointments"))
    finally:
        await con.close()


async def booking_figures(env: dict[str, str], dsn: str, args: argparse.Namespace) -> tuple[Result, Result]:
    slots = await prepare_database(dsn)
    codec = TokenCodec([tuple(KEYS.split(":", 1))])  # type: ignore[list-item]
    requests = booking_requests(codec, slots, args.bookings)
    api_port, metrics_port = free_port(), free_port()
    api = spawn(["surgegate", "api", "--port", str(api_port)], env, f"http://127.0.0.1:{api_port}/healthz")
    worker = spawn(
        ["surgegate", "worker", "--port", str(metrics_port)], env, f"http://127.0.0.1:{metrics_port}/healthz"
    )
    try:
        started = time.perf_counter()
        path = await run_load(api_port, lambda i: requests[i], concurrency=args.concurrency, total=len(requests))
        while await count_appointments(dsn) < args.bookings and time.perf_counter() - started < 300:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # 202s still committing (polling another process's database)
        path.seconds = time.perf_counter() - started
        path.requests = await count_appointments(dsn)
    finally:
        stop(api, worker)

    slots = await prepare_database(dsn)
    vault = PersonVault(b"bench-person-key")
    jobs = [
        BookingJob(
            attempt_id=str(attempt_id_for(f"v{i}", f"k{i}")), token_id=f"v{i}", event_id="bench", scope=None,
            slot_id=str(slots[i % len(slots)]), request_hash="00" * 32, person_ref=vault.ref(f"B{i:08d}").hex(),
            person_sealed=vault.seal({"name": f"Bench {i}"}).decode(),
        )
        for i in range(args.bookings)
    ]  # fmt: skip
    pool = await create_pool(dsn, min_size=MAX_JOBS + 1, max_size=MAX_JOBS + 1)  # as the worker's pool
    queue = iter(jobs)
    direct = Result()

    async def runner() -> None:
        for job in queue:
            t0 = time.perf_counter()
            async with pool.acquire() as con, con.transaction():
                await accept(con, job, utcnow())
                await run_attempt(con, job.attempt_id)
            direct.latencies.append(time.perf_counter() - t0)
            direct.requests += 1

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(args.concurrency)))
    direct.seconds = time.perf_counter() - started
    await pool.close()
    return path, direct


async def search_figures(
    env: dict[str, str], dsn: str, args: argparse.Namespace
) -> list[tuple[str, Result, Result, str]]:
    """A spike of slot searches: the API with its 1 s read model, the API reading PostgreSQL on every
    request (SURGEGATE_SEARCH_CACHE_S=0), and a bare aiohttp handler sending a body of the same size."""
    await prepare_database(dsn)
    codec = TokenCodec([tuple(KEYS.split(":", 1))])  # type: ignore[list-item]
    # Searches of many visitors, each from its own address: the API's limits run on every one, unhit.
    gets = [
        request_bytes("GET", "/api/v1/slots?site_id=bench-site", {
            "Authorization": f"Bearer {visitor_token(codec, f's{i}')}", "X-Forwarded-For": address(i)})
        for i in range(SEARCHERS)
    ]  # fmt: skip
    get = gets[0]
    results: dict[str, Result] = {}
    size = 0
    for label, cache_s in (("cached", "1"), ("uncached", "0")):
        port = free_port()
        api = spawn(["surgegate", "api", "--port", str(port)], {**env, "SURGEGATE_SEARCH_CACHE_S": cache_s},
                    f"http://127.0.0.1:{port}/healthz")  # fmt: skip
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get)
            head = await reader.readuntil(b"\r\n\r\n")
            size = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            writer.close()
            results[label] = await run_load(
                port, lambda i: gets[i % len(gets)], concurrency=args.concurrency, seconds=args.seconds
            )
        finally:
            stop(api)
    base_port = free_port()
    base = spawn(["loadtests.baseline_server", str(base_port), str(size)], env, f"http://127.0.0.1:{base_port}/")
    try:
        bare = await run_load(base_port, lambda i: get, concurrency=args.concurrency, seconds=args.seconds)
    finally:
        stop(base)
    note = f"{SLOTS} slots, {size} B JSON"
    return [
        ("slot searches/s, 1 s read model (1 API process)", results["cached"], bare, note),
        ("slot searches/s, PostgreSQL every time (1 API process)", results["uncached"], bare, note),
    ]


BENCH_RULES = {
    "attributes": {
        "region": {"type": "enum", "values": ["A", "B"], "label": {"en": "Region", "es": "Región"}},
        "occupations": {"type": "list", "label": {"en": "Occupations", "es": "Ocupaciones"}},
    },
    "rules": [
        {"id": "age_or_worker", "expr": 'age >= 65 || occupations.exists(o, o in ["nurse", "doctor"])',
         "reason": "too_young", "text": {"en": "65 or over, or health workers", "es": "65 o más, o sanitarios"}},
        {"id": "region", "expr": 'region == "A"', "reason": "outside_region",
         "text": {"en": "Region A only", "es": "Solo la región A"}},
    ],
}  # fmt: skip


async def eligibility_figures(
    env: dict[str, str], dsn: str, args: argparse.Namespace
) -> list[tuple[str, Result, Result, str]]:
    """Evaluations through one API process (published version, decision stored each time) against a
    bare aiohttp handler sending a body of the same size."""
    await prepare_database(dsn)
    con = await connect(dsn)
    try:
        async with con.transaction():
            spec = RuleSetSpec.model_validate(BENCH_RULES)
            await create_version(con, "bench", spec, actor="bench", today=utcnow().date())
            await publish(con, "bench", 1, actor="bench", reason="benchmark")
    finally:
        await con.close()
    codec = TokenCodec([tuple(KEYS.split(":", 1))])  # type: ignore[list-item]
    posts = []
    for i in range(SEARCHERS):
        body = json.dumps({"person": {"id_number": f"B{i:07d}", "birth_date": "1950-01-02"},
                           "attributes": {"region": "AB"[i % 2], "occupations": []}}).encode()  # fmt: skip
        headers = {"Authorization": f"Bearer {visitor_token(codec, f'e{i}')}", "X-Forwarded-For": address(i),
                   "Content-Type": "application/json"}  # fmt: skip
        posts.append(request_bytes("POST", "/api/v1/events/bench/eligibility:evaluate", headers, body))
    port = free_port()
    api = spawn(["surgegate", "api", "--port", str(port)], {**env, "SURGEGATE_ELIGIBILITY_LIMIT_PER_MIN": "0"},
                f"http://127.0.0.1:{port}/healthz")  # fmt: skip
    try:
        ours = await run_load(port, lambda i: posts[i % len(posts)], concurrency=args.concurrency, seconds=args.seconds)
    finally:
        stop(api)
    size = 260  # about the answer's size (decision id, version, reasons, valid_until)
    base_port = free_port()
    base = spawn(["loadtests.baseline_server", str(base_port), str(size)], env, f"http://127.0.0.1:{base_port}/")
    try:
        bare = await run_load(base_port, lambda i: posts[0], concurrency=args.concurrency, seconds=args.seconds)
    finally:
        stop(base)
    return [("eligibility evaluations/s (1 API process, each decision stored)", ours, bare, "2 CEL rules")]


def hold_request(token: str, slot: uuid.UUID, key: str, client: str) -> bytes:
    return request_bytes("POST", "/api/v1/holds", {
        "Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json",
        "X-Forwarded-For": client}, json.dumps({"slot_id": str(slot)}).encode())  # fmt: skip


async def hold_run(
    env: dict[str, str], slots: list[uuid.UUID], args: argparse.Namespace, *, flood: bool
) -> tuple[Result, Result]:
    """(others, flood) of one API process: other users' holds on one connection, each a new visitor
    from its own address, for ``--seconds``; with ``flood``, meanwhile one admission token sending
    holds with fresh Idempotency-Keys on ``--concurrency`` connections (the issue-14 attack)."""
    codec = TokenCodec([tuple(KEYS.split(":", 1))])  # type: ignore[list-item]
    run = uuid.uuid4().hex[:8]  # fresh visitors and keys per run (idempotency keys outlive a run)
    others = [
        hold_request(visitor_token(codec, f"o{run}{i}"), slots[i % SLOTS], f"o{i}", address(i)) for i in range(3000)
    ]
    spammer = visitor_token(codec, f"spam{run}")
    port = free_port()
    api = spawn(["surgegate", "api", "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz")
    try:
        measured = run_load(port, lambda i: others[i % len(others)], concurrency=1, seconds=args.seconds)
        if not flood:
            return await measured, Result()
        spam = run_load(
            port, lambda i: hold_request(spammer, slots[0], f"s{run}-{i}", "203.0.113.66"),
            concurrency=args.concurrency, seconds=args.seconds,
        )  # fmt: skip
        others_result, flood_result = await asyncio.gather(measured, spam)
        return others_result, flood_result
    finally:
        stop(api)


async def hold_figures(env: dict[str, str], dsn: str, args: argparse.Namespace) -> list[tuple[str, Result, Result]]:
    """Other users' hold latency with nobody flooding ("quiet"), while one token floods with the
    API's limits and caps at their defaults ("limits on"), and with all of them off ("limits off",
    the API as it was before them): (label, others, flood) per run."""
    slots = await prepare_database(dsn)
    quiet, _ = await hold_run(env, slots, args, flood=False)
    on = await hold_run(env, slots, args, flood=True)
    off = await hold_run({**env, **NO_LIMITS}, slots, args, flood=True)
    return [("quiet", quiet, Result()), ("limits on", *on), ("limits off", *off)]


def describe_machine() -> str:
    freq = psutil.cpu_freq()
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores"
            f"{f' @ {freq.max:.0f} MHz' if freq and freq.max else ''}, {psutil.virtual_memory().total / 2**30:.0f} GiB,"
            f" {platform.system()} {platform.release()}, Python {platform.python_version()}")  # fmt: skip


def start_mail_sink(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """`surgegate up`'s mail sink, as its own process, once it listens."""
    sink = subprocess.Popen([sys.executable, "-m", "surgegate.mailsink", str(directory), str(port)])
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return sink
        except OSError:
            if time.monotonic() > deadline:
                stop(sink)
                raise
            time.sleep(0.1)


async def reminder_figures(dsn: str, args: argparse.Namespace, workdir: Path) -> tuple[Result, Result]:
    """(dispatcher, raw aiosmtplib): ``args.reminders`` reminders due at once, delivered to one local
    SMTP sink process (surgegate/mailsink.py, which writes each as a .eml file)."""
    import aiosmtplib

    from booking_worker.channels import SmtpChannel, SmtpTarget
    from booking_worker.dispatcher import Dispatcher
    from shared import notifications
    from shared.settings import Settings

    settings = Settings(database_url=dsn, secret_keys=(("bench", KEYS.split(":", 1)[1]),))
    vault = PersonVault.from_settings(settings)
    port = free_port()
    sink = await asyncio.to_thread(start_mail_sink, workdir / "mail", port)
    try:
        pool = await create_pool(dsn, min_size=2, max_size=4)
        try:
            slot = (await prepare_database(dsn))[0]
            now = utcnow()
            async with pool.acquire() as con, con.transaction():
                await con.execute("DELETE FROM notifications")
                for i in range(args.reminders):
                    appointment_id = uuid.uuid4()
                    sealed = vault.seal({"email": f"person{i}@example.org", "language": "en"})
                    await con.execute(
                        "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref,"
                        " person_sealed, status) VALUES ($1, 'bench', $2, $3, $4, $5, 'confirmed')",
                        appointment_id, slot, f"reminder-{i}", vault.ref(f"R{i}"), sealed,
                    )  # fmt: skip
                    await notifications.queue(
                        con, vault, kind="reminder_1h", appointment_id=appointment_id, due_at=now,
                        payload={"email": f"person{i}@example.org"}, person_ref=vault.ref(f"R{i}"), sequence=0,
                    )  # fmt: skip
            channel = SmtpChannel(SmtpTarget("127.0.0.1", port, None, None, False))
            dispatcher = Dispatcher(pool, settings, channels={"email": channel})
            started = time.perf_counter()
            while await dispatcher.run_once():
                pass
            ours = Result(requests=args.reminders, seconds=time.perf_counter() - started)
            sent = await pool.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'")
            assert sent == args.reminders, f"{sent} of {args.reminders} reminders sent"
        finally:
            await pool.close()
        # The baseline: the same number of ready-made messages, sent raw at the same concurrency.
        gate = asyncio.Semaphore(settings.notify_batch)

        async def raw(i: int) -> None:
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = settings.mail_from, f"p{i}@example.org", "Reminder"
            message.set_content("A reminder: your appointment is in an hour.")
            async with gate:
                await aiosmtplib.send(message, hostname="127.0.0.1", port=port, start_tls=False)

        started = time.perf_counter()
        await asyncio.gather(*(raw(i) for i in range(args.reminders)))
        base = Result(requests=args.reminders, seconds=time.perf_counter() - started)
    finally:
        stop(sink)
    return ours, base


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, backing_services(Path(tmp)) as (dsn, redis_url):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
        env.update(
            SURGEGATE_DATABASE_URL=dsn, SURGEGATE_REDIS_URL=redis_url, SURGEGATE_SECRET_KEYS=KEYS,
            SURGEGATE_ADMIN_TOKEN=ADMIN, SURGEGATE_LOG_LEVEL="WARNING", SURGEGATE_TRUSTED_PROXIES="127.0.0.1/32",
        )  # fmt: skip
        await prepare_database(dsn)
        rows = await edge_figures(env, args) if "edge" in args.figures else []
        rows += await search_figures(env, dsn, args) if "search" in args.figures else []
        rows += await eligibility_figures(env, dsn, args) if "eligibility" in args.figures else []
        path, direct = await booking_figures(env, dsn, args) if "bookings" in args.figures else (Result(), Result())
        holds = await hold_figures(env, dsn, args) if "holds" in args.figures else []
        reminders = await reminder_figures(dsn, args, Path(tmp)) if "reminders" in args.figures else None

    print(f"\nMachine: {describe_machine()}")
    print(f"Run: {args.seconds:.0f} s per HTTP figure, {args.concurrency} connections, {args.bookings} bookings\n")
    print("| figure | surgegate | baseline | ratio | notes |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, ours, base, note in rows:
        if name.startswith("RSS"):
            ratio = ours.requests / base.requests
            print(f"| edge {name} | {ours.requests} | {base.requests} (bare aiohttp) | {ratio:.2f} | |")
            continue
        print(f"| {name} | {ours.rate:,.0f} (p99 {ours.percentile(0.99) * 1000:.1f} ms) | "
              f"{base.rate:,.0f} (p99 {base.percentile(0.99) * 1000:.1f} ms) bare aiohttp | "
              f"{ours.rate / base.rate:.2f} | {note}; statuses {dict(sorted(ours.statuses.items()))} |")  # fmt: skip
    if holds:
        quiet = holds[0][1].percentile(0.5)
        for label, others, flood in holds[1:]:
            print(f"| other users' hold latency, one token flooding holds, {label} | "
                  f"p50 {others.percentile(0.5) * 1000:.1f} ms (p99 {others.percentile(0.99) * 1000:.0f} ms) | "
                  f"p50 {quiet * 1000:.1f} ms (p99 {holds[0][1].percentile(0.99) * 1000:.0f} ms) nobody flooding | "
                  f"{others.percentile(0.5) / quiet:.1f} | flood: {flood.requests:,} requests on {args.concurrency} "
                  f"connections, statuses {dict(sorted(flood.statuses.items()))}; others' statuses "
                  f"{dict(sorted(others.statuses.items()))} |")  # fmt: skip
    if reminders is not None:
        ours, base = reminders
        print(f"| reminders delivered/s (burst of {args.reminders:,} due at once) | {ours.rate:,.0f} | "
              f"{base.rate:,.0f} raw aiosmtplib | {ours.rate / base.rate:.2f} | one dispatcher: batches of 50, "
              "8 SMTP connections each sending its share in turn; baseline: aiosmtplib.send, 50 at a time, "
              "a connection each; one .eml-keeping aiosmtpd sink for both |")  # fmt: skip
    if "bookings" not in args.figures:
        return
    print(f"| bookings committed/s | {path.rate:,.0f} (HTTP p50 {path.percentile(0.5) * 1000:.0f} ms, "
          f"p99 {path.percentile(0.99) * 1000:.0f} ms) | "
          f"{direct.rate:,.0f} (tx p50 {direct.percentile(0.5) * 1000:.1f} ms)"
          f" direct asyncpg | {path.rate / direct.rate:.2f} | API -> arq -> worker vs the same transaction, "
          f"{args.concurrency} concurrent; {SLOTS} slots |")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5, help="edge figures: turns of surgegate and its baseline")
    p.add_argument("--bookings", type=int, default=2000)
    p.add_argument("--reminders", type=int, default=2000)
    p.add_argument(
        "--figures",
        default="edge,search,eligibility,bookings,holds,reminders",
        help="comma-separated subset of: edge, search, eligibility, bookings, holds, reminders",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
