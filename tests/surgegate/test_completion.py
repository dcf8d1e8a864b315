"""Shell completion: ``surgegate completion SHELL`` prints argcomplete's script; the CLI answers the
script's call-backs (the ``_ARGCOMPLETE`` protocol, in a real subprocess) with commands, actions,
options and, from a real edge, event ids; and the bash script, sourced in a real bash, fills COMPREPLY."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from surgegate.cli import main
from tests.helpers import ADMIN, admin_headers

ROOT = Path(__file__).resolve().parents[2]
IFS = "\013"  # argcomplete's separator between candidates


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what the CLI needs: none of the test run's SURGEGATE_ settings leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGEGATE_", "_ARC", "COMP_"))}
    return {**env, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **extra}


async def complete(line: str, tmp_path: Path, **env: str) -> list[str]:
    """What the CLI offers for the cursor at the end of ``line`` (the call-back the shell script makes)."""
    out = tmp_path / "completions.txt"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "surgegate", cwd=tmp_path,
        env=base_env(tmp_path, _ARGCOMPLETE="1", COMP_LINE=line, COMP_POINT=str(len(line)),
                     _ARGCOMPLETE_STDOUT_FILENAME=str(out), **env),
    )  # fmt: skip
    assert await proc.wait() == 0
    return sorted(c.strip() for c in out.read_text().split(IFS) if c.strip())


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "#compdef surgegate"),
                                               ("fish", "complete --command surgegate")])  # fmt: skip
def test_each_shell_gets_its_script(shell: str, marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert marker in script and "_ARGCOMPLETE" in script


def test_an_unknown_shell_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["completion", "tcshh"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


async def test_commands_actions_and_options_complete(tmp_path: Path) -> None:
    assert await complete("surgegate ev", tmp_path) == ["event"]
    assert await complete("surgegate st", tmp_path) == ["staff"]
    assert await complete("surgegate event p", tmp_path) == ["pause"]
    assert await complete("surgegate event set demo --rate-m", tmp_path) == ["--rate-max", "--rate-min", "--rate-mode"]
    assert await complete("surgegate event set demo --rate-mode ", tmp_path) == ["auto", "fixed"]
    assert await complete("surgegate event show demo --ed", tmp_path) == ["--edge-url"]  # options after the action
    assert await complete("surgegate completion ", tmp_path) == ["--help", "-h", "bash", "fish", "zsh"]


async def test_event_ids_come_from_the_edge(edge: TestClient, tmp_path: Path) -> None:
    for event_id in ("demo", "demo-2", "other"):
        resp = await edge.put(f"/admin/v1/events/{event_id}", json={"name": event_id, "rate_per_s": 1},
                              headers=admin_headers())  # fmt: skip
        assert resp.status == 200
    url = str(edge.make_url("")).rstrip("/")
    owner = {"SURGEGATE_ADMIN_TOKEN": ADMIN}
    assert await complete(f"surgegate event pause --edge-url {url} de", tmp_path, **owner) == ["demo", "demo-2"]
    assert await complete(f"surgegate event invites --edge-url {url} o", tmp_path, **owner) == ["other"]
    assert await complete("surgegate event close d", tmp_path, SURGEGATE_PUBLIC_EDGE_URL=url, **owner) == [
        "demo",
        "demo-2",
    ]  # the configured edge
    # nothing guessed: a refused credential, no credential at all, an edge that does not answer
    wrong = {"SURGEGATE_ADMIN_TOKEN": "not-the-token"}
    assert await complete(f"surgegate event pause --edge-url {url} de", tmp_path, **wrong) == []
    assert await complete(f"surgegate event pause --edge-url {url} de", tmp_path) == []
    assert await complete("surgegate event pause --edge-url http://127.0.0.1:9 de", tmp_path, **owner) == []
    # and `create` offers none: a new event's id is the operator's to invent
    assert await complete(f"surgegate event create --edge-url {url} de", tmp_path, **owner) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
async def test_the_bash_script_fills_compreply(tmp_path: Path) -> None:
    """The printed script sourced in a real bash, its function called as bash calls it on <Tab>."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "surgegate"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m surgegate "$@"\n')
    wrapper.chmod(0o755)
    script = r"""
source <(surgegate completion bash)
COMP_LINE="surgegate event res"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(surgegate event res); COMP_CWORD=2
_python_argcomplete surgegate
printf '%s\n' "${COMPREPLY[@]}"
"""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        env=base_env(tmp_path, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"),
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().split() == ["resume"]
