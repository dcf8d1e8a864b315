"""`surgegate up` and its processes, for real: SIGHUP stops the whole tree, a SIGKILL of `up` leaves
no child behind (PostgreSQL, run as another user when root, included), taken ports are refused before
anything starts, and a second `up` on the same data dir refuses while the first keeps running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from surgegate.embedded import free_port
from tests.e2e.test_up import data_dir, describe, process_tree, start_up, still_running, stop_up

pytestmark = pytest.mark.slow  # starts real PostgreSQL, Valkey and three processes

__all__ = ["data_dir"]  # the fixture, imported to be used here


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}


def gone_within(processes: Iterable[psutil.Process], timeout: float) -> list[str]:
    """Waits until none of ``processes`` runs, at most ``timeout`` s; returns those still running."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while (left := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [describe(p) for p in left]


def using(path: Path) -> list[str]:
    """Every running process with ``path`` on its command line (a PostgreSQL of that data dir)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(str(path) in arg for arg in process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(describe(process))
    return found


def ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as r:
        return bool(r.status == 200)


def test_a_second_up_refuses_and_sighup_stops_the_first(data_dir: Path, tmp_path: Path) -> None:
    first = start_up(data_dir, tmp_path / "first.log", (free_port(), free_port(), free_port()))
    try:
        second = subprocess.run(
            [sys.executable, "-m", "surgegate", "up", "--data-dir", str(data_dir), "--edge-port", str(free_port()),
             "--api-port", str(free_port()), "--worker-metrics-port", str(free_port())],
            capture_output=True, text=True, env=clean_env(), timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"another surgegate up (pid {first.proc.pid}) is running on {data_dir.resolve()}" in second.stderr
        assert "surgegate is up" not in second.stdout
        # The first one is untouched: every process it started still runs, and edge and api answer.
        assert len(still_running(first.tree)) == len(first.tree)
        assert ready(f"{first.edge}/readyz") and ready(f"{first.api}/readyz")
    except BaseException:
        stop_up(first)
        raise

    # A closed terminal: SIGHUP stops `up` cleanly and every process of its tree with it.
    tree = first.tree | process_tree(first.proc)
    first.proc.send_signal(signal.SIGHUP)
    assert first.proc.wait(60) == 0, first.output()[-4000:]
    assert gone_within(tree, 0) == []
    assert "stopping" in first.output()
    # Quiet by default: no access-log line for up's readiness polls (it runs at DEBUG here), no
    # warning of a library about XDG_RUNTIME_DIR.
    assert "aiohttp.access" not in first.output() and "XDG_RUNTIME_DIR" not in first.output()


def test_sigkill_of_up_takes_every_child_with_it(data_dir: Path, tmp_path: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    up = start_up(data_dir, tmp_path / "up.log", ports)
    tree = up.tree | process_tree(up.proc)
    if os.geteuid() == 0:  # PostgreSQL then runs as another user: the death signal survived the switch
        assert any(p.username() != "root" for p in tree if "postgres" in describe(p))
    up.proc.kill()
    up.proc.wait()
    left = gone_within(tree, 30)
    for process in still_running(tree):  # whatever the assertion below reports, leave nothing behind
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert left == []
    # The ports and the data dir are free again: the next `up` on them starts.
    stop_up(start_up(data_dir, tmp_path / "up.log", ports))


LIFELINE_PARENT = """
import subprocess, sys
from surgegate.supervisor import Child
tied = Child("tied", [sys.executable, "-c", "import time; time.sleep(120)", "tied"], {})
tied.start()
plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "plain"], start_new_session=True)
print(tied.proc.pid, plain.pid, flush=True)
import time; time.sleep(120)
"""


def test_negative_control_a_child_without_the_death_signal_outlives_its_parent() -> None:
    """The check above bites: of two children of a parent killed with SIGKILL, the one started as `up`
    starts its children dies with it, the one started without the death signal keeps running."""
    with subprocess.Popen(
        [sys.executable, "-c", LIFELINE_PARENT], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    ) as parent:
        assert parent.stdout is not None
        tied, plain = (psutil.Process(int(pid)) for pid in parent.stdout.readline().split())
        try:
            parent.kill()
            parent.wait()
            assert gone_within([tied], 30) == []
            time.sleep(1)  # a check that something does NOT happen: give it the time the other one took
            assert still_running([plain]) == [plain]
        finally:
            for process in (tied, plain):
                with contextlib.suppress(psutil.Error):
                    process.kill()


def test_a_taken_port_is_refused_before_anything_starts(data_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "surgegate", "up", "--data-dir", str(data_dir), "--edge-port", str(free_port()),
             "--api-port", str(port), "--worker-metrics-port", str(free_port())],
            capture_output=True, text=True, env=clean_env(), timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port} (api) is already in use on 127.0.0.1: pass --api-port with a free port" in done.stderr
    assert "surgegate is up" not in done.stdout
    assert "embedded PostgreSQL" not in done.stdout  # refused before any server started
    assert using(data_dir) == []
