"""`surgegate report ...` against a live booking API over HTTP: JSON, CSV, and a refused query."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app
from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from tests.helpers import ADMIN, seed_site_and_slot


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


async def test_report_from_the_command_line(
    api_url: str, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    slot = await seed_site_and_slot(pool, timezone="UTC")
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    for _ in range(6):
        await pool.execute(
            "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed, status)"
            " VALUES ($1, 'ev', $2, $3, $4, 'x', 'confirmed')",
            uuid.uuid4(),
            uuid.UUID(slot),
            uuid.uuid4().hex,
            os.urandom(32),
        )
    common = ["report", "--api-url", api_url, "--admin-token", ADMIN]
    code, out, _ = await cli(capsys, *common, "bookings", "--group-by", "site,day", "--event", "ev")
    assert code == 0
    assert json.loads(out) == {"rows": [{"site": "site-a", "day": day, "count": 6, "suppressed": False}]}
    code, out, _ = await cli(capsys, *common, "bookings", "--group-by", "day", "--csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [["day", "count", "suppressed"], [day, "6", "false"]]
    code, out, _ = await cli(capsys, *common, "cancellations", "--from", day, "--to", day)
    assert (code, json.loads(out)) == (0, {"rows": []})
    code, _, err = await cli(capsys, *common, "bookings", "--group-by", "person")
    assert code == 1 and "validation_error" in err
