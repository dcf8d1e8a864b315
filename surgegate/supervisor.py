"""Child processes that come back: ``surgegate up`` runs edge, api and worker under a :class:`Supervisor`.

A child that dies (any exit, any signal: it was not asked to stop) is started again after a pause
that doubles with each of its recent deaths (0.5 s, 1 s, 2 s, … up to a cap), so a child that dies
once now and then is back within a second, while one that cannot start does not spin. A child that
died ``crash_loop`` times within ``window_s`` seconds is in a crash loop: :meth:`Supervisor.check`
raises :class:`CrashLoop` and the caller stops everything, as restarting would only hide the error.
Every death and restart is one line through ``say``; the lines name the child, never its environment.

Every child dies with the supervisor's process, even when that is killed (:mod:`surgegate.lifeline`).

Hand-written rather than a process manager (supervisord, circus): ``up`` must stay a single command
that needs nothing but pip, and its children must stop with it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from surgegate.lifeline import dies_with_parent


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    crash_loop: int = 5  # deaths of one child within window_s that make the supervisor give up
    window_s: float = 60.0

    def delay(self, recent_deaths: int) -> float:
        """The pause before the next start of a child that died ``recent_deaths`` times in the window."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** (recent_deaths - 1)))


class CrashLoop(Exception):
    """A child died too often too fast; the message says which, how often and how it last ended."""


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    """One supervised command: the process running it now and the times of its recent deaths."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    proc: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None  # set while it waits for its next start

    def start(self) -> None:
        # Its own session: a Ctrl-C in the terminal reaches only `up`, which then stops the children
        # in order (SIGTERM, then SIGKILL after a grace period). And SIGTERM from Linux should `up` die
        # without stopping them (SIGKILL, a crash): a child never outlives it.
        self.proc = subprocess.Popen(
            list(self.argv), env=dict(self.env), start_new_session=True, preexec_fn=dies_with_parent(signal.SIGTERM)
        )


def _nothing_held() -> AbstractContextManager[None]:
    return contextlib.nullcontext()


class Supervisor:
    """Starts ``children``, restarts those that die (see the module docstring), stops them all.

    ``hold`` wraps every start: ``up`` passes a block that holds back SIGINT/SIGTERM, so that a stop
    signal never falls between the fork and the moment the process is recorded (it would be left
    running). ``clock`` is injectable for the sake of the policy's arithmetic; tests use real time.
    """

    def __init__(
        self,
        children: Iterable[Child],
        policy: RestartPolicy | None = None,
        *,
        say: Callable[[str], None] = print,
        hold: Callable[[], AbstractContextManager[None]] = _nothing_held,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = {child.name: child for child in children}
        self.policy = policy or RestartPolicy()
        self._say = say
        self._hold = hold
        self._clock = clock

    def start_all(self) -> None:
        for child in self.children.values():
            with self._hold():
                child.start()

    def check(self) -> None:
        """One look at every child: record deaths, start those whose pause is over. Raises CrashLoop."""
        now = self._clock()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    with self._hold():
                        child.start()
                        child.restart_at = None
                    assert child.proc is not None
                    self._say(f"{child.name} started again (pid {child.proc.pid})")
                continue
            returncode = None if child.proc is None else child.proc.poll()
            if returncode is None:
                continue
            child.deaths.append(now)
            while now - child.deaths[0] > self.policy.window_s:
                child.deaths.popleft()
            ended = how_it_ended(returncode)
            if len(child.deaths) >= self.policy.crash_loop:
                raise CrashLoop(
                    f"{child.name} {ended}, its {len(child.deaths)}th death within {self.policy.window_s:g} s: "
                    "a crash loop, not restarting it (its own log lines above say why it died)"
                )
            delay = self.policy.delay(len(child.deaths))
            child.restart_at = now + delay
            self._say(f"{child.name} {ended}; starting it again in {delay:g} s")

    def run(self, poll_s: float = 0.2) -> None:
        """Check every ``poll_s`` seconds until a crash loop (CrashLoop) or a signal's exception."""
        while True:
            self.check()
            time.sleep(poll_s)

    def stop(self, grace_s: float = 15) -> None:
        """SIGTERM every running child, wait up to ``grace_s`` for all, SIGKILL the rest. Idempotent."""
        running = [c.proc for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
