"""`surgegate staff add|list|revoke` against the database, and the admin CLIs sending a staff key."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app as create_api
from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from tests.helpers import FakeClock
from waitingroom.app import create_app as create_edge


@pytest.fixture
async def urls(settings: Settings, clock: FakeClock) -> AsyncIterator[dict[str, str]]:
    runners, urls = [], {}
    for name, app in (("api", create_api(settings)), ("edge", create_edge(settings, clock=clock, run_ticker=False))):
        port = free_port()
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{port}"
    yield urls
    for runner in runners:
        await runner.cleanup()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = await asyncio.to_thread(main, list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
        print(exc.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SURGEGATE_ADMIN_TOKEN", "SURGEGATE_STAFF_KEY", "SURGEGATE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


async def test_add_use_list_revoke(
    urls: dict[str, str], database_url: str, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    staff = ["staff", "--database-url", database_url]
    code, out, _ = await cli(capsys, *staff, "add", "alice", "--role", "supply", "--role", "auditor")
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("sg_") and " " not in key and len(key) >= 40
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'staff_added'") == "db:" + (
        await pool.fetchval("SELECT current_user")
    )

    supply = ["supply", "--api-url", urls["api"], "--data-dir", str(tmp_path)]
    code, out, err = await cli(capsys, *supply, "--key", key, "type", "shot", "--name", "Shot", "--duration", "30")
    assert code == 0, err
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'appointment_type_saved'") == "staff:alice"
    monkeypatch.setenv("SURGEGATE_STAFF_KEY", key)  # the key from the environment, as an operator's shell has it
    code, _, err = await cli(capsys, "event", "--edge-url", urls["edge"], "--data-dir", str(tmp_path), "show", "x")
    assert code == 1 and "403 forbidden" in err and "operator" in err

    code, _, err = await cli(capsys, *staff, "add", "alice", "--role", "rules")
    assert code == 1 and "exists" in err
    code, _, err = await cli(capsys, *staff, "add", "Bad Name", "--role", "rules")
    assert code == 2 and "staff name" in err
    code, out, _ = await cli(capsys, *staff, "list")
    assert code == 0 and out.startswith("alice\tauditor,supply\tactive") and key not in out

    assert (await cli(capsys, *staff, "revoke", "alice"))[0] == 0
    code, _, err = await cli(capsys, *supply, "type", "shot", "--name", "Shot", "--duration", "30")
    assert code == 1 and "401 unauthorized" in err and "SURGEGATE_STAFF_KEY" in err
    code, out, _ = await cli(capsys, *staff, "list")
    assert "\trevoked " in out
    code, _, err = await cli(capsys, *staff, "revoke", "alice")
    assert code == 1 and "no active staff member" in err


async def test_no_credential_says_where_it_looked(
    urls: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await cli(capsys, "supply", "--api-url", urls["api"], "--data-dir", str(tmp_path), "check-in", "x")
    assert code != 0
    for place in ("--key", "SURGEGATE_STAFF_KEY", "--admin-token", "SURGEGATE_ADMIN_TOKEN", "secrets.json"):
        assert place in err
