"""`surgegate event ...` against a live edge over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from tests.helpers import ADMIN
from waitingroom.app import create_app


@pytest.fixture
async def edge_url(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    runner = web.AppRunner(create_app(replace(settings, edge_port=port)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_set_show_pause_resume(edge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["event", "--edge-url", edge_url, "--admin-token", ADMIN]
    code, out, _ = await cli(capsys, *common, "set", "cohort4", "--name", "Cohort 4", "--rate", "5",
                             "--sites", "a,b", "--opens-at", "2026-01-01T08:00:00Z")  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert (created["rate_per_s"], created["site_ids"], created["paused"]) == (5.0, ["a", "b"], False)
    assert (await cli(capsys, *common, "pause", "cohort4"))[0] == 0
    code, out, _ = await cli(capsys, *common, "show", "cohort4")
    shown = json.loads(out)
    assert shown["paused"] is True
    assert {k: shown["stats"][k] for k in ("joined", "admitted", "waiting")} == {
        "joined": 0,
        "admitted": 0,
        "waiting": 0,
    }
    assert shown["stats"]["tail_eta_s"] is None  # paused: no admissions, no ETA
    assert json.loads((await cli(capsys, *common, "resume", "cohort4"))[1])["paused"] is False
    code, out, _ = await cli(capsys, *common, "set", "cohort4", "--max-active", "50", "--abandon-after", "none",
                             "--one-place", "--pow-difficulty", "16", "--rate-mode", "auto", "--rate-min", "1",
                             "--rate-max", "30", "--target-queue-depth", "500", "--target-latency", "1.5")  # fmt: skip
    limits = json.loads(out)
    assert (limits["max_active"], limits["abandon_after_s"], limits["one_place_per_person"]) == (50, None, True)
    assert (limits["pow_difficulty"], limits["rate_mode"], limits["rate_min"], limits["rate_max"]) == (
        16,
        "auto",
        1,
        30,
    )
    assert (limits["target_queue_depth"], limits["target_latency_s"]) == (500, 1.5)
    code, out, _ = await cli(capsys, *common, "set", "cohort4", "--all-sites", "--opens-at", "none", "--rate", "7")
    changed = json.loads(out)
    assert (changed["site_ids"], changed["opens_at"], changed["rate_per_s"], changed["name"]) == (
        None, None, 7.0, "Cohort 4")  # fmt: skip


async def test_errors_are_explained(edge_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = await cli(capsys, "event", "--edge-url", edge_url, "--admin-token", "wrong", "show", "x")
    assert code == 1 and "401 unauthorized" in err
    code, _, err = await cli(capsys, "event", "--edge-url", edge_url, "--admin-token", ADMIN,
                             "set", "new", "--rate", "-1")  # fmt: skip
    assert code == 1 and "validation_error" in err and "rate_per_s" in err
    (tmp_path / "secrets.json").write_text(json.dumps({"admin_token": ADMIN}))
    code, _, err = await cli(capsys, "event", "--edge-url", edge_url, "--data-dir", str(tmp_path), "show", "nope")
    assert code == 1 and "404 not_found" in err  # the token came from up's secrets file
    code, _, err = await cli(capsys, "event", "--edge-url", "http://127.0.0.1:9", "--admin-token", ADMIN, "show", "x")
    assert code == 1 and "cannot reach" in err
