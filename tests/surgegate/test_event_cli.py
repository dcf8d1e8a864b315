"""`surgegate event ...` against a live edge over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from aiohttp import ClientSession, web

from shared.settings import Settings
from surgegate.cli import main
from surgegate.embedded import free_port
from tests.helpers import ADMIN, admin_headers
from waitingroom.app import create_app


@pytest.fixture
async def edge_url(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    for site_id in ("a", "b"):
        await pool.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'S', 'R', 'UTC', 0, 0)", site_id
        )
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


async def stored(edge_url: str, event_id: str) -> dict[str, object] | None:
    async with (
        ClientSession() as http,
        http.get(f"{edge_url}/admin/v1/events/{event_id}", headers=admin_headers()) as r,
    ):
        return None if r.status == 404 else dict(await r.json())


async def test_create_change_pause_resume_print_what_changed(edge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    opts = ["--edge-url", edge_url, "--admin-token", ADMIN]
    code, out, _ = await cli(capsys, "event", "create", "cohort4", "--name", "Cohort 4", "--rate", "5",
                             "--sites", "a,b", "--opens-at", "2026-01-01T08:00:00Z", *opts)  # fmt: skip
    assert code == 0
    assert (
        out.startswith("created event 'cohort4':\n")
        and "  rate_per_s: 5.0\n" in out
        and '  site_ids: ["a", "b"]\n' in out
    )
    code, out, _ = await cli(capsys, "event", "set", "cohort4", "--rate", "7", "--name", "Cohort 4", *opts)
    assert (code, out) == (0, "changed event 'cohort4':\n  rate_per_s: 5.0 → 7.0\n")  # name unchanged: not listed
    code, out, _ = await cli(capsys, "event", "pause", "cohort4", *opts)
    assert (code, out) == (0, "changed event 'cohort4':\n  paused: false → true\n")
    code, out, _ = await cli(capsys, "event", "pause", "cohort4", *opts)
    assert (code, out) == (0, "event 'cohort4': nothing changed\n")
    code, out, _ = await cli(capsys, "event", "show", "cohort4", *opts)
    shown = json.loads(out)
    assert shown["paused"] is True and shown["stats"]["tail_eta_s"] is None  # paused: no admissions, no ETA
    assert {k: shown["stats"][k] for k in ("joined", "admitted", "waiting")} == {
        "joined": 0,
        "admitted": 0,
        "waiting": 0,
    }
    code, out, _ = await cli(capsys, "event", "resume", "cohort4", "--json", *opts)
    assert json.loads(out)["paused"] is False
    code, out, _ = await cli(capsys, "event", "set", "cohort4", "--max-active", "50", "--abandon-after", "none",
                             "--one-place", "--pow-difficulty", "16", "--rate-mode", "auto", "--rate-min", "1",
                             "--rate-max", "30", "--target-queue-depth", "500", "--target-latency", "1.5",
                             *opts)  # fmt: skip
    assert code == 0
    for line in ("max_active: null → 50", "abandon_after_s: 300 → null", "one_place_per_person: false → true",
                 "pow_difficulty: null → 16", 'rate_mode: "fixed" → "auto"', "rate_min: null → 1.0",
                 "rate_max: null → 30.0", "target_queue_depth: 200 → 500", "target_latency_s: 2.0 → 1.5"):  # fmt: skip
        assert f"  {line}\n" in out
    code, out, _ = await cli(capsys, "event", "set", "cohort4", "--all-sites", "--opens-at", "none", *opts)
    assert (code, out) == (
        0, "changed event 'cohort4':\n  opens_at: \"2026-01-01T08:00:00+00:00\" → null\n"
        '  site_ids: ["a", "b"] → null\n')  # fmt: skip
    code, out, _ = await cli(capsys, "event", "list", *opts)
    header, row = out.splitlines()
    assert header.split()[:5] == ["EVENT", "PHASE", "PAUSED", "RATE/S", "WAITING"]
    assert row.split()[:4] == ["cohort4", "open", "no", "7"] and row.endswith("Cohort 4")


async def test_an_unknown_event_is_never_created(edge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    opts = ["--edge-url", edge_url, "--admin-token", ADMIN]
    for action in (["set", "demp", "--name", "typo", "--rate", "10"], ["pause", "demp"], ["resume", "demp"],
                   ["show", "demp"], ["close", "demp", "--yes"]):  # fmt: skip
        code, out, err = await cli(capsys, "event", *action, *opts)
        assert code == 1 and out == "", action
        assert "no event 'demp'" in err and "surgegate event create demp" in err, action
    assert await stored(edge_url, "demp") is None
    code, out, _ = await cli(capsys, "event", "list", *opts)
    assert (code, out.splitlines()[0]) == (
        0,
        "no events (create one: surgegate event create EVENT --name NAME --rate RATE)",
    )
    assert (await cli(capsys, "event", "create", "demo", "--name", "Demo", "--rate", "2", *opts))[0] == 0
    code, _, err = await cli(capsys, "event", "create", "demo", "--name", "Other", "--rate", "9", *opts)
    assert code == 1 and "'demo' already exists" in err
    assert (await stored(edge_url, "demo") or {})["name"] == "Demo"  # untouched
    with pytest.raises(SystemExit):  # argparse: create needs name and rate
        await cli(capsys, "event", "create", "x", "--rate", "1", *opts)
    assert "--name" in capsys.readouterr().err


async def test_the_server_refuses_unknown_sites_and_inconsistent_merges(
    edge_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = ["--edge-url", edge_url, "--admin-token", ADMIN]
    code, _, err = await cli(
        capsys, "event", "create", "x", "--name", "X", "--rate", "1", "--sites", "a,nosuchsite", *opts
    )
    assert code == 1 and "400 validation_error" in err and "nosuchsite" in err
    assert await stored(edge_url, "x") is None
    assert (await cli(capsys, "event", "create", "x", "--name", "X", "--rate", "1", *opts))[0] == 0
    assert (await cli(capsys, "event", "set", "x", "--opens-at", "2030-01-01T00:00:00Z", *opts))[0] == 0
    code, out, err = await cli(capsys, "event", "set", "x", "--closes-at", "2029-01-01T00:00:00Z", *opts)
    assert code == 1 and out == "" and "closes_at" in err and "opens_at" in err
    assert (await stored(edge_url, "x") or {})["closes_at"] is None
    code, _, err = await cli(capsys, "event", "set", "x", "--max-active", "lots", *opts)
    assert code == 1 and "--max-active must be a whole number" in err
    code, _, err = await cli(capsys, "event", "set", "x", *opts)
    assert code == 1 and "nothing to change" in err


async def test_close_asks_first(
    edge_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = ["--edge-url", edge_url, "--admin-token", ADMIN]
    assert (await cli(capsys, "event", "create", "demo", "--name", "Demo", "--rate", "0", *opts))[0] == 0
    async with ClientSession() as http:
        assert (await http.post(f"{edge_url}/api/v1/events/demo/join")).status == 201
        monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
        code, out, err = await cli(capsys, "event", "close", "demo", *opts)
        assert code == 1 and "1 person waiting" in out and "not closed" in err
        assert (await stored(edge_url, "demo") or {})["closes_at"] is None
        monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no answer (a closed stdin) is no
        assert (await cli(capsys, "event", "close", "demo", *opts))[0] == 1
        monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
        code, out, _ = await cli(capsys, "event", "close", "demo", *opts)
        assert code == 0 and "  closes_at: null → " in out
        assert (await http.post(f"{edge_url}/api/v1/events/demo/join")).status == 410
    assert (await cli(capsys, "event", "create", "other", "--name", "O", "--rate", "1", *opts))[0] == 0
    code, out, _ = await cli(capsys, "event", "close", "other", "--yes", *opts)
    assert code == 0 and "[y/N]" not in out and "closes_at: null → " in out
    _, out, _ = await cli(capsys, "event", "list", *opts)
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [["demo", "closed"], ["other", "closed"]]


async def test_options_go_anywhere_on_the_line(edge_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    await cli(capsys, "event", "create", "demo", "--name", "Demo", "--rate", "2", "--edge-url", edge_url,
              "--admin-token", ADMIN)  # fmt: skip
    for argv in (
        ["event", "--edge-url", edge_url, "--admin-token", ADMIN, "show", "demo"],
        ["event", "show", "demo", "--edge-url", edge_url, "--admin-token", ADMIN],
        ["event", "--admin-token", ADMIN, "show", "--edge-url", edge_url, "demo"],
    ):
        code, out, err = await cli(capsys, *argv)
        assert code == 0 and json.loads(out)["event_id"] == "demo", (argv, err)


async def test_errors_say_where_the_credential_came_from(
    edge_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = await cli(capsys, "event", "show", "x", "--edge-url", edge_url, "--admin-token", "wrong")
    assert code == 1 and "401 unauthorized" in err and "the credential sent came from --admin-token" in err
    (tmp_path / "secrets.json").write_text(json.dumps({"admin_token": ADMIN}))
    code, _, err = await cli(capsys, "event", "show", "nope", "--edge-url", edge_url, "--data-dir", str(tmp_path))
    assert code == 1 and "no event 'nope'" in err  # the token came from up's secrets file
    code, _, err = await cli(capsys, "event", "show", "x", "--edge-url", "http://127.0.0.1:9", "--admin-token", ADMIN)
    assert code == 1 and "cannot reach" in err
    monkeypatch.delenv("SURGEGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SURGEGATE_STAFF_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        await cli(capsys, "event", "list", "--edge-url", edge_url, "--data-dir", "elsewhere")
    message = str(exc.value)
    assert "--key, SURGEGATE_STAFF_KEY, --admin-token, SURGEGATE_ADMIN_TOKEN" in message
    assert str(tmp_path / "elsewhere" / "secrets.json") in message  # the absolute path, wherever it ran


async def test_an_id_that_is_no_url_segment_is_answered_not_a_traceback(
    edge_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A space, a slash or a question mark typed in an id: the edge answers for the id as typed."""
    opts = ["--edge-url", edge_url, "--admin-token", ADMIN]
    for typed in ("demo x", "demo/x", "demo?x=1", "../demo"):
        code, out, err = await cli(capsys, "event", "show", typed, *opts)
        assert code == 1 and out == "" and f"no event {typed!r}" in err, typed
        assert "Traceback" not in err
    code, out, err = await cli(capsys, "event", "create", "Bad Id", "--name", "X", "--rate", "1", *opts)
    assert code == 1 and out == "" and "400 validation_error" in err and "Traceback" not in err
    code, _, err = await cli(capsys, "event", "invites", "demo x", "--list", *opts)
    assert code == 1 and "Traceback" not in err
