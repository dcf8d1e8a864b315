"""The README's "whole flow with curl", pasted into bash as a reader would, against a real edge, API
and worker on real ports with the demo loaded: the poll loop reaches ``admitted`` and every call it
makes at the top level answers 2xx. Guards the walk-through against drifting from the services."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import asyncpg
import pytest

from shared.settings import Settings
from surgegate.demo import seed_demo
from tests.e2e import test_browser
from tests.helpers import ADMIN

stack = test_browser.stack  # the same in-process edge, API and worker on real ports

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash"),
]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The whole flow with curl", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's curl walk-through has no sh block"
    return match.group(1)


async def test_the_readme_curl_walkthrough_works_pasted(stack: Settings, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con:
        assert await seed_demo(con)
    script = walkthrough()
    first = script.splitlines()[0]
    assert first.startswith("EDGE=http://127.0.0.1:8080 API=http://127.0.0.1:8081 ADMIN=")
    script = script.replace(first, f"EDGE={stack.edge_url} API={stack.api_url} ADMIN='{ADMIN}'", 1)
    # every top-level call also prints its status on a line of its own (calls inside $(…) stay as written)
    script = re.sub(r"^curl -s ", 'curl -s -w "\\n[status %{http_code}]\\n" ', script, flags=re.MULTILINE)
    calls = len(re.findall(r"^curl -s ", script, flags=re.MULTILINE))
    proc = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, (text, err.decode())
    assert re.search(r"^admitted$", text, re.MULTILINE), text
    assert '"status": "confirmed"' in text, text
    statuses = re.findall(r"^\[status (\d+)\]$", text, re.MULTILINE)
    assert len(statuses) == calls >= 8, text
    made = re.findall(r"^curl.*$", script, re.MULTILINE)
    assert all(s.startswith("2") for s in statuses), list(zip(made, statuses, strict=True))
