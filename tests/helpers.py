"""Test helpers: plain functions, classes and constants the tests import.

Fixtures live in ``conftest.py`` (pytest finds them there); everything a test calls or builds by hand
lives here, so ``from tests.helpers import ...`` never reaches into pytest's plugin module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.worker import Worker
from prometheus_client.parser import text_string_to_metric_families

from booking_worker.worker import build_worker
from shared import attempts, seats
from shared.booking import BookingJob
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from waitingroom.room import Room

TEST_KEYS = (("k1", "test-secret-key-number-one"),)
ADMIN = "test-admin-token"


@dataclass
class FakeClock:
    """An injected clock: time moves only when a test says so."""

    now: float = field(default_factory=lambda: 1_800_000_000.0)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def tick_for(clock: FakeClock, seconds: float, *rooms: Room, step: float = 0.125) -> None:
    """Let ``seconds`` of queue time pass in ``step``s, every room ticking at each step."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for room in rooms:
            await room.tick()


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


SAMPLE_SUFFIXES = ("", "_total", "_count", "_sum", "_bucket")


def metric_value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's current value as a scrape of ``/metrics`` would show it (``surgegate_admitted_total``),
    read through prometheus-client's public registry API; 0 for a labelled series not yet touched."""
    value = metrics.registry.get_sample_value(name, labels)
    if value is not None:
        return value
    # Only a series nobody touched yet reads as 0: a misspelt name must not pass as "nothing counted".
    known = {family.name + suffix for family in metrics.registry.collect() for suffix in SAMPLE_SUFFIXES}
    if name not in known:
        raise KeyError(f"no metric {name!r} in the registry")
    return 0.0


def make_worker(settings: Settings, metrics: Metrics | None = None, **overrides: Any) -> Worker:
    ctx: dict[str, Any] = {"metrics": metrics or Metrics()}
    # No cron in test workers: tests that need the re-queue job call it directly, deterministically.
    options: dict[str, Any] = {"handle_signals": False, "poll_delay": 0.01, "cron_jobs": [], **overrides}
    return build_worker(settings, ctx=ctx, **options)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Worker]:
    """A worker polling in the background for the duration of the block."""

    worker = make_worker(settings, metrics)
    task = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


@dataclass
class Processes:
    """The three processes of a deployment, in this process on real ports: their base URLs."""

    settings: Settings
    edge: str
    api: str
    worker: str  # the worker's /metrics and /healthz


@contextlib.asynccontextmanager
async def serving_processes(settings: Settings) -> AsyncIterator[Processes]:
    """Edge and booking API served on free ports, and a supervised worker serving its ``/metrics``
    (as ``surgegate worker`` does), for the duration of the block."""
    from admission.app import create_app as create_api
    from booking_worker.supervisor import Supervisor
    from surgegate.embedded import free_port
    from waitingroom.app import create_app as create_edge

    live = replace(settings, edge_port=free_port(), api_port=free_port(), worker_metrics_port=free_port(),
                   booking_wait_s=5.0)  # fmt: skip
    runners: list[web.AppRunner] = []
    supervisor = Supervisor(live, poll_delay=0.01, cron_jobs=[])
    running = None
    try:
        for app, port in ((create_edge(live), live.edge_port), (create_api(live), live.api_port)):
            runner = web.AppRunner(app, shutdown_timeout=2.0)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, live.host, port).start()
        running = asyncio.create_task(supervisor.run())
        deadline = time.monotonic() + 30
        while supervisor.worker is None:  # connected to Redis and PostgreSQL, polling
            assert time.monotonic() < deadline and not running.done(), "the worker did not start"
            await asyncio.sleep(0.02)
        yield Processes(live, live.edge_url, live.api_url, f"http://{live.host}:{live.worker_metrics_port}")
    finally:
        supervisor.stop()
        if running is not None:
            await asyncio.wait_for(running, 30)  # a stop that hangs fails the test, not the run
        for runner in runners:
            await runner.cleanup()


async def run_burst(settings: Settings, metrics: Metrics | None = None) -> Worker:
    """Run every queued job, then return (arq burst mode)."""
    worker = make_worker(settings, metrics, burst=True, poll_delay=0)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def seed_site_and_slot(
    pool: asyncpg.Pool,
    *,
    capacity: int = 20,
    site_id: str = "site-a",
    timezone: str = "Europe/Berlin",
    event_id: str = "ev",
    site_ids: list[str] | None = None,
) -> str:
    """An event, a site and one slot tomorrow; returns the slot id."""
    slot_id = uuid.uuid4()
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    async with pool.acquire() as con, con.transaction():
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s, site_ids) VALUES ($1, $2, 1, 900, $3)"
            " ON CONFLICT DO NOTHING",
            event_id,
            "Test event",
            site_ids,
        )
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'Site', 'R', $2, 52.5, 13.4)"
            " ON CONFLICT DO NOTHING",
            site_id,
            timezone,
        )
        await con.execute(
            "INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity) VALUES ($1, $2, $3, $4, $5)",
            slot_id,
            site_id,
            starts,
            starts + timedelta(minutes=15),
            capacity,
        )
    return str(slot_id)


def admission_token(
    codec: TokenCodec,
    visitor: str | None = None,
    *,
    event_id: str = "ev",
    scope: list[str] | None = None,
    ttl: float = 900,
) -> str:
    return codec.sign_admission(
        event_id=event_id, visitor_id=visitor or uuid.uuid4().hex, scope=scope, expires_at=time.time() + ttl
    )


def person(i: int) -> dict[str, str]:
    return {
        "id_number": f"ID-{i:06d}",
        "name": f"Person Number{i}",
        "email": f"person{i}@example.org",
        "birth_date": "1970-01-01",
    }


def booking_headers(token: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key or uuid.uuid4().hex}


def assert_problem(resp_status: int, body: dict[str, Any], status: int, code: str) -> None:
    assert resp_status == status, body
    assert body["code"] == code, body
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()


async def seed_typed_slots(
    pool: asyncpg.Pool,
    *,
    count: int = 2,
    capacity: int = 2,
    site_id: str = "site-a",
    timezone: str = "Europe/Berlin",
    cancel_cutoff_minutes: int = 0,
    days_ahead: int = 2,
) -> list[str]:
    """An event, a site, appointment type ``group`` and ``count`` hourly slots of it; returns their ids."""
    starts = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days_ahead)
    ids = [uuid.uuid4() for _ in range(count)]
    async with pool.acquire() as con, con.transaction():
        await con.execute(
            "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)"
            " ON CONFLICT DO NOTHING"
        )
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'Site', 'R', $2, 52.5, 13.4)"
            " ON CONFLICT DO NOTHING",
            site_id,
            timezone,
        )
        await con.execute(
            "INSERT INTO appointment_types (type_id, name, duration_minutes, seats_per_slot, cancel_cutoff_minutes)"
            " VALUES ('group', 'Group', 30, $1, $2) ON CONFLICT DO NOTHING",
            capacity,
            cancel_cutoff_minutes,
        )
        for i, slot_id in enumerate(ids):
            await con.execute(
                "INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity)"
                " VALUES ($1, $2, 'group', $3, $4, $5)",
                slot_id, site_id, starts + timedelta(hours=i), starts + timedelta(hours=i, minutes=30), capacity,
            )  # fmt: skip
    return [str(i) for i in ids]


async def book(api: TestClient, token: str, i: int, **target: str) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/appointments for person ``i`` with slot_id= or hold_id=; (status, body)."""
    resp = await api.post("/api/v1/appointments", json={**target, "person": person(i)}, headers=booking_headers(token))
    return resp.status, await resp.json()


async def seats_of(pool: asyncpg.Pool, slot_id: str) -> tuple[int, int]:
    """(booked, live holds) of a slot, from the primary."""
    row = await pool.fetchrow(
        "SELECT booked, (SELECT count(*) FROM holds h WHERE h.slot_id = s.slot_id AND h.status = 'active'"
        " AND (h.expires_at > now() OR h.pinned_attempt IS NOT NULL)) AS held FROM slots s WHERE slot_id = $1",
        uuid.UUID(slot_id),
    )
    return row["booked"], row["held"]


async def accepted(pool: asyncpg.Pool, job: BookingJob) -> dict[str, Any]:
    """Accept ``job``'s attempt as the API does (pending in PostgreSQL; a repeat changes nothing) and
    return the payload to queue: the worker executes only accepted attempts."""
    async with pool.acquire() as con, con.transaction():
        await attempts.accept(con, job, seats.utcnow())
    return job.to_dict()


# --- deploy/: the Grafana dashboard and Prometheus rules -------------------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "surgegate.json"
FUNNEL_PANEL = "Funnel: queue to appointment (totals since the processes started)"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}  # fmt: skip


def dashboard_targets(event: str = ".*") -> list[tuple[str, str, str]]:
    """Every query of the dashboard as (panel title, refId, PromQL), with Grafana's variables
    replaced as Grafana would: ``$event`` by ``event`` (a regex), ``$__rate_interval`` by 1m."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["refId"], target["expr"].replace("$event", event).replace("$__rate_interval", "1m"))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (a scanner enough for the dashboard's queries:
    strings, label matchers, ranges and groupings are removed; what is left and is not a function
    call, a keyword or a number is a metric name)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", promql)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def exposed_names(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` page can produce, also for labelled metrics that have no
    series yet (their ``# TYPE`` line says which suffixes they will have)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"), "gauge": ("",)}  # fmt: skip
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names
