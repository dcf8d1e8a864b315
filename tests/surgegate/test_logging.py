"""Routine periodic jobs do not flood the worker's log; bookings and failures still show. No line per
HTTP request unless SURGEGATE_ACCESS_LOG asks; SURGEGATE_LOG_FORMAT=json writes one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from shared.settings import Settings, SettingsError
from surgegate.cli import _access_log, _QuietRoutine
from surgegate.embedded import free_port
from surgegate.logs import JsonLines
from tests.helpers import ADMIN, TEST_KEYS


def record(level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("arq.worker", level, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("level", "message", "args", "kept"),
    [
        (logging.INFO, "%6.2fs → %s(%s)%s", (0.01, "cron:seal_audit:1800000000:cron:seal_audit", "", ""), False),
        (logging.INFO, "%6.2fs ← %s ● %s", (0.01, "cron:tidy_holds:1800000000:cron:tidy_holds", "{}"), False),
        (logging.INFO, "%6.2fs → %s(%s)%s", (0.02, "5e3a438e:book", "{...}", ""), True),
        (logging.WARNING, "%6.2fs ! %s failed", (0.01, "cron:seal_audit:1800000000:cron:seal_audit"), True),
        (logging.INFO, "Starting worker for %d functions: %s", (2, "book, cron:seal_audit"), True),
    ],
)
def test_routine_job_lines_are_dropped_and_the_rest_kept(
    level: int, message: str, args: tuple[object, ...], kept: bool
) -> None:
    assert _QuietRoutine().filter(record(level, message, *args)) is kept


# --- the log's format and the access log (surgegate/logs.py, surgegate/cli.py's _logging) -------------


def test_a_json_record_is_one_line_with_its_exception_text() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "surgegate.http", logging.ERROR, __file__, 1, "failed on %s\nline two", ("/x",), exc_info
    )
    line = JsonLines().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "surgegate.http"
    assert entry["message"] == "failed on /x\nline two"
    assert "ZeroDivisionError" in entry["exception"]
    assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no exception", (), None)
    assert set(json.loads(JsonLines().format(plain))) == {"time", "level", "logger", "message"}


async def _serve_edge(settings: Settings, log: Path, **variables: str) -> None:
    """Run ``surgegate edge`` with ``variables``, send it a few requests, stop it; its stderr goes to ``log``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")} | {
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "SURGEGATE_DATABASE_URL": settings.require_database(),
        "SURGEGATE_REDIS_URL": settings.require_redis(),
        "SURGEGATE_SECRET_KEYS": ",".join(f"{kid}:{secret}" for kid, secret in TEST_KEYS),
        "SURGEGATE_ADMIN_TOKEN": ADMIN,
        "SURGEGATE_LOG_LEVEL": "INFO",
        **variables,
    }
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "surgegate", "edge", "--port", str(port), stderr=err, stdout=err, env=env
        )
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, "the edge exited; see its log"
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the edge did not start"
                await asyncio.sleep(0.1)
            async with http.get(f"{base}/no/such/page") as resp:
                assert resp.status == 404
            # a credential in a link's first hop (manage, claim, opt-out links) never reaches the log
            async with http.get(f"{base}/e/nope?c=FIRSTHOPSECRET") as resp:
                assert resp.status == 404
            async with http.post(f"{base}/api/v1/events/nope/join", data=b"{") as resp:
                assert resp.status == 404
            async with http.get(f"{base}/metrics") as resp:
                scraped = await resp.text()
            assert 'surgegate_join_rejected_total{event="(unknown)",reason="unknown_event"} 1.0' in scraped
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_no_line_per_request_by_default(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    await _serve_edge(settings, log)
    text = log.read_text()
    assert "aiohttp.access" not in text and "/no/such/page" not in text, text


async def test_the_access_log_and_json_lines_when_asked_for(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    await _serve_edge(settings, log, SURGEGATE_ACCESS_LOG="1", SURGEGATE_LOG_FORMAT="json")
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    access = [e["message"] for e in entries if e["logger"] == "aiohttp.access"]
    # the matched route's template, never the path's values or the query (surgegate/logs.py)
    assert any(" GET - 404 " in m for m in access), access
    assert any("POST /api/v1/events/{event_id}/join" in m for m in access), access
    assert any("GET /e/{event_id} 404 " in m for m in access), access
    assert "FIRSTHOPSECRET" not in log.read_text() and "/no/such/page" not in log.read_text()


def test_access_logs_are_off_unless_asked() -> None:
    assert _access_log(Settings.from_env({})) is None  # aiohttp then logs no line per request
    assert _access_log(Settings.from_env({"SURGEGATE_ACCESS_LOG": "1"})) is logging.getLogger("aiohttp.access")
    with pytest.raises(SettingsError, match="SURGEGATE_ACCESS_LOG"):
        Settings.from_env({"SURGEGATE_ACCESS_LOG": "maybe"})
