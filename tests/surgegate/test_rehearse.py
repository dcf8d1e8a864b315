"""``surgegate rehearse`` end to end: a fresh embedded stack, two tiny steps of the locust opening,
a report with locust's HTML next to it, everything stopped after. The numbers are never asserted
(speed is the machine's, not the code's); that each step measured an outcome and the report says
what to configure is."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def surgegate(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "surgegate", *args], env=env, capture_output=True, text=True, timeout=timeout,
        check=False, cwd=ROOT,
    )  # fmt: skip


def test_without_locust_it_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['locust'] = None; from surgegate.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "rehearse", "--out", str(tmp_path / "r")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'surgegate[load]'" in done.stderr
    assert not (tmp_path / "r").exists()


def test_bad_rates_are_refused_before_anything_starts(tmp_path: Path) -> None:
    done = surgegate("rehearse", "--rates", "5,fast", "--out", str(tmp_path))
    assert done.returncode != 0
    assert "--rates must be numbers" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_rehearsal_on_a_fresh_embedded_stack_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "rehearsal"
    done = surgegate("rehearse", "--rates", "2,3", "--step-seconds", "4", "--max-latency", "30", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "report.json").read_text())
    steps = summary["steps"]
    assert 1 <= len(steps) <= 2
    for n, step in enumerate(steps, 1):
        html = out / f"step-{n}-rate-{step['rate_per_s']:g}.html"
        assert html.stat().st_size > 0
        assert step["funnel"].get("joined", 0) > 0  # locust's own statistics were read
        assert step["invariants"].startswith("invariants hold")
    report = (out / "report.md").read_text()
    assert "Bottleneck" in report
    assert report in done.stdout
    if summary["highest_rate_per_s"] is not None:
        assert "Rate to configure: `surgegate event set EVENT --rate" in report
    # Everything it started is stopped: `up` said so, and its edge and API ports are free again.
    up_log = (out / "up.log").read_text()
    assert "stopping" in up_log
    ports = re.findall(r"http://127\.0\.0\.1:(\d+)/", up_log)
    assert ports
    for port in set(ports):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0
