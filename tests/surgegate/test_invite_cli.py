"""`surgegate event invites ...` against a live edge over HTTP: issue (links printed), list, revoke."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiohttp import ClientSession, web

from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from surgegate.invite_cli import expiry
from tests.helpers import ADMIN, admin_headers
from waitingroom.app import create_app


@pytest.fixture
async def edge_url(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    runner = web.AppRunner(create_app(replace(settings, edge_port=port, public_edge_url=f"http://127.0.0.1:{port}")))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_expires_takes_a_duration_or_a_time() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert expiry("48h", now) == "2030-01-03T00:00:00+00:00"
    assert expiry("30m", now) == "2030-01-01T00:30:00+00:00"
    assert expiry("2030-02-01T00:00:00Z", now) == "2030-02-01T00:00:00Z"


async def test_issue_list_revoke(edge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["event", "--edge-url", edge_url, "--admin-token", ADMIN]
    assert (await cli(capsys, *common, "create", "ev", "--name", "E", "--rate", "1"))[0] == 0
    code, out, err = await cli(capsys, *common, "invites", "ev", "--count", "3", "--expires", "7d", "--label", "nurses")
    assert code == 0, err
    links = out.split()
    assert len(links) == 3 and all(link.startswith(f"{edge_url}/e/ev/invite#") for link in links)
    async with ClientSession() as http:
        resp = await http.post(
            f"{edge_url}/api/v1/events/ev/invites:redeem", json={"invite": links[0].partition("#")[2]}
        )
        assert resp.status == 201
    code, out, _ = await cli(capsys, *common, "invites", "ev", "--list")
    assert code == 0 and "nurses" in out and "issued 3, used 1, revoked 0, expired 0, open 2" in out
    batch = out.split()[0]
    code, out, _ = await cli(capsys, *common, "invites", "ev", "--revoke", batch)
    assert code == 0 and out.startswith("revoked 2 unused invite(s)")

    # Errors are clear and exit non-zero: no expiry, a past one, an unknown event.
    assert (await cli(capsys, *common, "invites", "ev"))[0] == 2
    code, _, err = await cli(capsys, *common, "invites", "ev", "--expires", "2001-01-01T00:00:00Z")
    assert code == 1 and "validation_error" in err
    code, _, err = await cli(capsys, *common, "invites", "nope", "--expires", "1d")
    assert code == 1 and "404" in err
    async with ClientSession() as http:  # nothing was issued by the refused calls
        resp = await http.get(f"{edge_url}/admin/v1/events/ev/invites", headers=admin_headers())
        assert [b["issued"] for b in (await resp.json())["batches"]] == [3]
