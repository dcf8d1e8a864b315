"""`surgegate supply ...` against a live booking API over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app
from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from tests.helpers import ADMIN


@pytest.fixture
async def api_url(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    runner = web.AppRunner(create_app(replace(settings, api_port=port)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_supply_from_the_command_line(
    api_url: str, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["supply", "--api-url", api_url, "--admin-token", ADMIN]
    sites = tmp_path / "sites.csv"
    sites.write_text("site_id,name,region,timezone,lat,lng\nber-1,Mitte,Berlin,Europe/Berlin,52.52,13.40\n")
    assert (await cli(capsys, *common, "import-sites", str(sites)))[0] == 0
    last = ["--api-url", api_url, "--admin-token", ADMIN]  # options after the action work too
    code, out, _ = await cli(capsys, "supply", "type", "shot", "--name", "Shot", "--duration", "30", "--seats", "4",
                             "--max-advance", "5", *last)  # fmt: skip
    assert code == 0 and json.loads(out)["seats_per_slot"] == 4
    code, out, _ = await cli(capsys, *common, "schedule", "ber-1", "shot", "--mon", "09:00-10:00",
                             "--tue", "09:00-10:00", "--wed", "09:00-10:00", "--thu", "09:00-10:00",
                             "--fri", "09:00-10:00", "--sat", "09:00-10:00", "--sun", "09:00-10:00")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["regenerated"]["created"] >= 10
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=2)).date().isoformat()
    code, out, _ = await cli(capsys, *common, "override", "ber-1", day, "--closed", "--note", "holiday")
    assert code == 0 and json.loads(out)["regenerated"][0]["withdrawn"] == 2
    code, out, _ = await cli(capsys, *common, "close-day", "ber-1", day, "--reason", "storm")
    assert code == 0 and json.loads(out)["cancelled"] == 0
    code, _, err = await cli(capsys, *common, "schedule", "ber-1", "shot", "--mon", "10:00-09:00")
    assert code == 1 and "validation_error" in err
    code, _, err = await cli(capsys, *common, "check-in", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "not_found" in err
    assert await pool.fetchval("SELECT count(*) FROM schedule_overrides") == 1
