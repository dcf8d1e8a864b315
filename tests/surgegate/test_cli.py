"""The console script refuses bad configuration at start: exit code 2 and one line naming the
variable (or option) and what it expects, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*argv: str, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")} | variables
    return subprocess.run(
        [sys.executable, "-m", "surgegate", *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("command", "variable", "value", "expects"),
    [
        ("api", "SURGEGATE_HOLD_TTL_S", "abc", "a whole number above 0"),
        ("api", "SURGEGATE_BOOKING_WAIT_S", "x", "a number (0 or more)"),
        ("edge", "SURGEGATE_JOIN_LIMIT_BURST", "-3", "a whole number (0 or more)"),
        ("worker", "SURGEGATE_BOOKING_WAIT_S", "x", "a number (0 or more)"),
        ("worker", "SURGEGATE_WORKER_METRICS_PORT", "70000", "a port number (0 to 65535)"),
    ],
)
def test_a_bad_variable_stops_the_process_with_its_name(command: str, variable: str, value: str, expects: str) -> None:
    done = run(command, **{variable: value})
    assert done.returncode == 2
    assert done.stderr == f"surgegate: {variable} must be {expects}, not {value!r}\n"


def test_a_bad_port_option_is_refused_before_anything_starts() -> None:
    done = run("edge", "--port", "70000")
    assert done.returncode == 2
    assert "argument --port: must be a port number (0 to 65535), not '70000'" in done.stderr
    assert "Traceback" not in done.stderr
