"""The supervisor with real processes: a child that dies comes back after a pause that doubles; one
that keeps dying is a crash loop that stops the supervisor; deaths far apart never add up to one;
stop() ends every child, the stubborn ones with SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from surgegate.supervisor import Child, CrashLoop, RestartPolicy, Supervisor

FAST = RestartPolicy(first_delay_s=0.05, max_delay_s=0.2, crash_loop=4, window_s=60)


def python(code: str, name: str = "child") -> Child:
    return Child(name, [sys.executable, "-c", code], dict(os.environ))


def until(condition: Callable[[], bool], supervisor: Supervisor, timeout: float = 30) -> None:
    """Run the supervisor's checks until ``condition`` holds (a generous timeout, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        supervisor.check()
        time.sleep(0.02)


@pytest.fixture
def said() -> list[str]:
    return []


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    """Every supervisor a test builds is stopped afterwards, whatever the test did."""
    made: list[Supervisor] = []
    yield made
    for supervisor in made:
        supervisor.stop(grace_s=2)


def supervise(
    supervisors: list[Supervisor], said: list[str], *children: Child, policy: RestartPolicy = FAST
) -> Supervisor:
    supervisor = Supervisor(children, policy, say=said.append)
    supervisors.append(supervisor)
    supervisor.start_all()
    return supervisor


def test_a_killed_child_is_started_again(supervisors: list[Supervisor], said: list[str]) -> None:
    child = python("import time; time.sleep(120)", "worker")
    supervisor = supervise(supervisors, said, child)
    assert child.proc is not None
    first = child.proc.pid
    os.kill(first, signal.SIGKILL)
    until(lambda: child.proc is not None and child.proc.pid != first and child.proc.poll() is None, supervisor)
    assert said == [
        "worker was killed by SIGKILL; starting it again in 0.05 s",
        f"worker started again (pid {child.proc.pid})",
    ]
    assert psutil.Process(child.proc.pid).cmdline()[-1] == "import time; time.sleep(120)"


def test_a_crash_loop_gives_up_with_the_reason(supervisors: list[Supervisor], said: list[str]) -> None:
    child = python("raise SystemExit(3)", "api")
    supervisor = supervise(supervisors, said, child)
    with pytest.raises(CrashLoop) as caught:
        until(lambda: False, supervisor)
    assert str(caught.value).startswith("api exited with code 3, its 4th death within 60 s: a crash loop")
    # three restarts, each pause twice the last, capped
    pauses = [line for line in said if "starting it again" in line]
    assert pauses == [f"api exited with code 3; starting it again in {s} s" for s in ("0.05", "0.1", "0.2")]


def test_deaths_far_apart_are_no_crash_loop(supervisors: list[Supervisor], said: list[str]) -> None:
    """Two deaths make a crash loop here, but only within 0.3 s: a child living 0.5 s each time
    is restarted again and again."""
    child = python("import time; time.sleep(0.5); raise SystemExit(1)", "edge")
    policy = RestartPolicy(first_delay_s=0.05, crash_loop=2, window_s=0.3)
    supervisor = supervise(supervisors, said, child, policy=policy)
    until(lambda: sum("started again" in line for line in said) >= 3, supervisor)
    assert all("starting it again in 0.05 s" in line for line in said if "exited" in line)


def test_the_policy_caps_the_pause() -> None:
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=30)
    assert [policy.delay(n) for n in (1, 2, 3, 6, 7, 20)] == [0.5, 1, 2, 16, 30, 30]


def test_stop_ends_every_child_even_one_that_ignores_sigterm(
    supervisors: list[Supervisor], said: list[str], tmp_path: Path
) -> None:
    ignoring = tmp_path / "ignoring"
    polite = python("import time; time.sleep(120)", "polite")
    stubborn = python(
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        f" pathlib.Path({str(ignoring)!r}).touch(); time.sleep(120)",
        "stubborn",
    )
    supervisor = supervise(supervisors, said, polite, stubborn)
    until(ignoring.exists, supervisor)  # its SIGTERM handler is in place
    supervisor.stop(grace_s=1)
    assert polite.proc is not None and polite.proc.returncode == -signal.SIGTERM
    assert stubborn.proc is not None and stubborn.proc.returncode == -signal.SIGKILL
