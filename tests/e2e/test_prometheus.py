"""A real Prometheus (Debian's binary) scrapes the three processes while visitors join, are admitted
and book; the Grafana dashboard's funnel queries, asked through Prometheus's HTTP API, return the
numbers the test produced. Prometheus also loads deploy/prometheus/alerts.yml as it is shipped.

Skipped without the binary, except under CI=true, where its absence fails the test (.ci/run
installs Debian's ``prometheus`` package).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from surgegate.embedded import free_port
from tests.helpers import (
    DEPLOY,
    FUNNEL_PANEL,
    Processes,
    admin_headers,
    dashboard_targets,
    person,
    seed_site_and_slot,
    serving_processes,
)

PROMETHEUS = shutil.which("prometheus")
EVENT = "prom-e2e"
VISITORS = 4
CAPACITY = 2  # so that 3 bookings end 2 booked, 1 slot_full

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None and os.environ.get("CI") != "true",
        reason="Debian's prometheus is not installed (.ci/run installs it; in CI its absence fails the test)",
    ),
]


@pytest.fixture
async def processes(settings: Settings) -> AsyncIterator[Processes]:
    async with serving_processes(settings) as running:
        yield running


@pytest.fixture
def prometheus(processes: Processes, tmp_path: Path) -> Any:
    assert PROMETHEUS is not None, "prometheus is missing: apt-get install prometheus"
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    jobs = {"surgegate-edge": processes.edge, "surgegate-api": processes.api, "surgegate-worker": processes.worker}
    scrape = "".join(
        f"  - job_name: {job}\n    static_configs: [{{ targets: ['{url.removeprefix('http://')}'] }}]\n"
        for job, url in jobs.items()
    )
    config = "global: { scrape_interval: 1s, evaluation_interval: 1s }\nrule_files: [alerts.yml]\nscrape_configs:\n"
    (tmp_path / "prometheus.yml").write_text(config + scrape)
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 30) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except (aiohttp.ClientError, OSError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {result!r})"
        await asyncio.sleep(0.25)


async def admitted_visitor(processes: Processes) -> str:
    """Join the queue as a new visitor and poll until admitted; returns the admission token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{processes.edge}/api/v1/events/{EVENT}/join") as r:
            assert r.status == 201, await r.text()

        async def admitted() -> str | None:
            async with s.get(f"{processes.edge}/api/v1/events/{EVENT}/status") as r:
                status = await r.json()
            return status.get("admission_token") if status["state"] == "admitted" else None

        token: str = await eventually(admitted, "an admission")
        return token


async def test_the_dashboards_funnel_counts_what_happened(
    processes: Processes, prometheus: str, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool, event_id=EVENT, capacity=CAPACITY)
    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{processes.edge}/admin/v1/events/{EVENT}", headers=admin_headers(),
                           json={"name": "Prometheus opening", "rate_per_s": 10})  # fmt: skip
        assert resp.status == 200, await resp.text()
        tokens = await asyncio.gather(*(admitted_visitor(processes) for _ in range(VISITORS)))
        outcomes = []
        for i, token in enumerate(tokens[:3]):
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"prom-{i}"}
            body = {"slot_id": slot_id, "person": person(i)}
            async with s.post(f"{processes.api}/api/v1/appointments", json=body, headers=headers) as r:
                outcomes.append(r.status)
        assert sorted(outcomes) == [201, 201, 409]

        async def query(expr: str) -> list[dict[str, Any]]:
            async with s.get(f"{prometheus}/api/v1/query", params={"query": expr}) as r:
                answer = await r.json()
            assert answer["status"] == "success", answer
            result: list[dict[str, Any]] = answer["data"]["result"]
            return result

        funnel = {ref: expr for title, ref, expr in dashboard_targets(event=EVENT) if title == FUNNEL_PANEL}
        expected = {  # refId -> {labels that vary: value}
            "A": {(): VISITORS},  # joined
            "B": {(): VISITORS},  # admitted
            "C": {(): CAPACITY},  # booked
            "D": {("slot_full",): 1},  # refused at booking, by outcome
            "E": {},  # abandoned: nobody
            "F": {},  # admissions lapsed: none
        }
        assert set(funnel) == set(expected)

        async def funnel_agrees() -> dict[str, Any] | None:
            got = {}
            for ref, expr in funnel.items():
                rows = await query(expr)
                assert all(row["metric"].get("event") == EVENT for row in rows), rows
                got[ref] = {
                    tuple(v for k, v in sorted(row["metric"].items()) if k not in ("event",)): float(row["value"][1])
                    for row in rows
                }
            return got if got == expected else None

        # scraped every second: wait for the last scrape after the bookings, with time to spare
        try:
            await eventually(funnel_agrees, "Prometheus to show the funnel", within=30)
        except AssertionError:
            # say what Prometheus had, not only that it timed out
            seen = {ref: await query(expr) for ref, expr in funnel.items()}
            raise AssertionError(f"funnel queries answered {seen}, expected {expected}") from None

        async with s.get(f"{prometheus}/api/v1/rules") as r:
            groups = (await r.json())["data"]["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        assert {"WorkerDown", "AdmissionsStalled", "BookingQueueGrowing", "DependencyUnreachable"} <= loaded
        every_target = [("surgegate-api", "1"), ("surgegate-edge", "1"), ("surgegate-worker", "1")]

        async def all_up() -> bool:
            # an instant query sees a target only once its latest scrape is in: on a loaded machine one
            # scrape can be late, so ask until every target's last scrape answered
            up = await query('up{job=~"surgegate-.*"}')
            return sorted((row["metric"]["job"], row["value"][1]) for row in up) == every_target

        await eventually(all_up, "every process scraped and up", within=30)
