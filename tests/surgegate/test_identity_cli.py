"""`surgegate identity ...` against a live booking API over HTTP: set, show, a refused level, remove."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

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


async def test_an_events_identity_provider_from_the_command_line(
    api_url: str, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
    common = ["identity", "--api-url", api_url, "--admin-token", ADMIN]
    provider = ["--issuer", "https://id.example.test", "--audience", "sg", "--jwks-url", "https://id.example.test/k"]
    code, _, err = await cli(capsys, *common, "set", "ev", *provider, "--acr-values", "low,high", "--min-acr", "mid")
    assert code == 1 and "validation_error" in err and "min_acr" in err
    code, out, _ = await cli(capsys, *common, "set", "ev", *provider, "--acr-values", "low,high", "--min-acr", "high")
    assert code == 0 and json.loads(out)["acr_values"] == ["low", "high"]
    code, out, _ = await cli(capsys, *common, "show", "ev")
    assert code == 0 and json.loads(out)["min_acr"] == "high" and json.loads(out)["algorithms"] == ["RS256", "ES256"]
    assert (await cli(capsys, *common, "remove", "ev"))[0] == 0
    code, _, err = await cli(capsys, *common, "show", "ev")
    assert code == 1 and "not_found" in err
