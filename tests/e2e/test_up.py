"""`surgegate up` for real: embedded PostgreSQL and Valkey, three child processes, free ports.

Drives join -> admitted -> book -> cancel over HTTP, checks the funnel metrics of all three
processes, checks no person data reached the logs, stops with SIGTERM and checks nothing of the
process tree it started is left running (only its own tree: another `surgegate up` on the machine is
none of its business), then starts again on the same data dir and finds the data still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from surgegate.embedded import free_port

PERSON = {"id_number": "E2E-998877", "name": "Zelda Quarrington", "email": "zelda.q@example.org",
          "birth_date": "1961-07-30"}  # fmt: skip

pytestmark = pytest.mark.slow  # starts real PostgreSQL, Valkey and three processes, twice


@dataclass
class Up:
    proc: subprocess.Popen[str]
    log: Path
    edge: str
    api: str
    worker: str
    admin_token: str
    tree: set[psutil.Process]  # what `up` had started once it was up

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def process_tree(proc: subprocess.Popen[Any]) -> set[psutil.Process]:
    """The processes below ``proc`` now, children of children included. A psutil Process is its pid
    and start time, so a pid that someone else's process reuses later is never taken for ours."""
    try:
        return set(psutil.Process(proc.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def still_running(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running (a zombie is not: it has exited, only its status is left)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def stop_tree(proc: subprocess.Popen[Any], seen: set[psutil.Process]) -> list[str]:
    """SIGTERM ``proc``, expect a clean exit, and return what is still running of its tree: the
    processes seen under it earlier and those under it at the moment of the signal."""
    tree = seen | process_tree(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    return [describe(p) for p in still_running(tree)]


def start_up(data_dir: Path, log: Path, ports: tuple[int, int, int]) -> Up:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
    env["SURGEGATE_LOG_LEVEL"] = "DEBUG"  # the most talkative setting, for the privacy check
    edge, api, metrics = ports
    offset = log.stat().st_size if log.exists() else 0
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "surgegate", "up", "--data-dir", str(data_dir), "--edge-port", str(edge),
             "--api-port", str(api), "--worker-metrics-port", str(metrics)],
            stdout=out, stderr=subprocess.STDOUT, env=env, text=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while "surgegate is up" not in log.read_bytes()[offset:].decode(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("surgegate up did not start:\n" + log.read_text(errors="replace")[-4000:])
        time.sleep(0.2)
    token = re.search(r"admin token\s+(\S+)", log.read_bytes()[offset:].decode(errors="replace")).group(1)  # type: ignore[union-attr]
    tree = process_tree(proc)
    started = " | ".join(describe(p) for p in tree)
    # The leftover check of stop_up watches this tree: it must hold everything `up` runs.
    if missing := [p for p in ("surgegate edge", "surgegate api", "surgegate worker", "postgres", "valkey")
                   if p not in started]:  # fmt: skip
        proc.terminate()
        proc.wait(60)
        raise AssertionError(f"{missing} not among the processes of surgegate up: {started}")
    return Up(proc, log, f"http://127.0.0.1:{edge}", f"http://127.0.0.1:{api}", f"http://127.0.0.1:{metrics}", token,
              tree)  # fmt: skip


def stop_up(up: Up) -> None:
    leftovers = stop_tree(up.proc, up.tree)
    assert leftovers == [], leftovers


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir outside pytest's temp root: pytest keeps that root 0700 (and puts it back at the start
    of every session, another one running in parallel included), which the unprivileged user the
    embedded PostgreSQL runs as when we are root could then no longer traverse."""
    with tempfile.TemporaryDirectory(prefix="surgegate-up-") as parent:
        yield Path(parent) / "data"


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in metrics")


async def drive(up: Up) -> dict[str, str]:
    # unsafe=True: aiohttp's jar (unlike browsers) ignores cookies of IP-address hosts otherwise
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{up.edge}/e/demo") as r:
            assert r.status == 200 and "Demo cohort opening" in await r.text()
        async with s.post(f"{up.edge}/api/v1/events/demo/join") as r:
            assert r.status == 201
            joined = await r.json()
        deadline = time.monotonic() + 30
        while True:
            async with s.get(f"{up.edge}/api/v1/events/demo/status") as r:  # cookie from the join
                status = await r.json()
            if status["state"] == "admitted":
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(status["poll_after_ms"] / 1000)
        assert status["booking_url"] == f"{up.api}/api/v1"
        auth = {"Authorization": f"Bearer {status['admission_token']}"}
        async with s.get(f"{up.api}/api/v1/sites", headers=auth) as r:
            sites = (await r.json())["sites"]
        assert {x["timezone"] for x in sites} == {"America/New_York", "Europe/Berlin", "Australia/Sydney"}
        async with s.get(f"{up.api}/api/v1/slots", params={"site_id": "berlin-mitte"}, headers=auth) as r:
            slot = (await r.json())["slots"][0]
        headers = {**auth, "Idempotency-Key": "e2e-1"}
        async with s.post(f"{up.api}/api/v1/appointments", json={"slot_id": slot["slot_id"], "person": PERSON},
                          headers=headers) as r:  # fmt: skip
            assert r.status == 201, await r.text()
            booked = await r.json()
        async with s.post(f"{up.api}/api/v1/appointments", json={"slot_id": slot["slot_id"], "person": PERSON},
                          headers=headers) as r:  # fmt: skip
            assert (r.status, (await r.json())["appointment_id"]) == (201, booked["appointment_id"])
        admin = {"Authorization": f"Bearer {up.admin_token}"}
        async with s.get(f"{up.api}/admin/v1/slots/{slot['slot_id']}", headers=admin) as r:
            assert (await r.json())["booked"] == 1
        async with s.delete(f"{up.api}/api/v1/appointments/{booked['appointment_id']}", headers=auth) as r:
            assert (await r.json())["status"] == "cancelled"
        async with s.get(f"{up.api}/admin/v1/slots/{slot['slot_id']}", headers=admin) as r:
            assert (await r.json())["booked"] == 0
        async with s.get(f"{up.edge}/metrics") as r:
            edge_metrics = await r.text()
        async with s.get(f"{up.api}/metrics") as r:
            api_metrics = await r.text()
        async with s.get(f"{up.worker}/metrics") as r:
            worker_metrics = await r.text()
    assert metric(edge_metrics, "surgegate_queue_joined_total", event="demo") >= 1
    assert metric(edge_metrics, "surgegate_admitted_total", event="demo") >= 1
    assert metric(api_metrics, "surgegate_token_verify_total", event="demo", result="ok") >= 5
    assert metric(api_metrics, "surgegate_cancellations_total", event="demo") == 1
    assert metric(worker_metrics, "surgegate_booking_attempts_total", event="demo", outcome="confirmed") == 1
    assert metric(worker_metrics, "surgegate_booking_seconds_count", event="demo") == 1
    return {
        "token": status["admission_token"],
        "appointment_id": booked["appointment_id"],
        "ticket": joined["ticket"],
    }


def kept_mail(mail_dir: Path) -> list[EmailMessage]:
    """The messages `up`'s mail sink kept, oldest first."""
    files = sorted(mail_dir.glob("*.eml"))
    parsed = (email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files)
    return [m for m in parsed if isinstance(m, EmailMessage)]


async def delivered(mail_dir: Path, subject: str) -> list[EmailMessage]:
    """The kept messages, once one with ``subject`` is among them (within a minute)."""
    deadline = time.monotonic() + 60
    while True:
        mails = await asyncio.to_thread(kept_mail, mail_dir)
        if any(m["Subject"] == subject for m in mails):
            return mails
        assert time.monotonic() < deadline, [m["Subject"] for m in mails]
        await asyncio.sleep(0.2)


async def test_up_runs_the_whole_path_and_stops_cleanly(data_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    ports = (free_port(), free_port(), free_port())
    up = start_up(data_dir, log, ports)
    try:
        flow = await drive(up)
        mails = await delivered(data_dir / "mail", "Your appointment is cancelled")
    finally:
        stop_up(up)
    first_output = up.output()
    assert f"every message as a .eml file in {data_dir / 'mail'}" in first_output
    # The confirmation goes too unless the cancel came first (then it is withdrawn, not sent).
    assert {str(m["Subject"]) for m in mails} <= {"Your appointment is booked", "Your appointment is cancelled"}
    assert all(m["To"] == PERSON["email"] and m["Message-ID"] for m in mails)
    assert "migrations applied: 0001_initial" in first_output
    assert "demo event, sites and slots loaded" in first_output

    # Second run on the same data dir: nothing re-applied or re-seeded, the appointment is still there.
    up = start_up(data_dir, log, ports)
    try:
        async with aiohttp.ClientSession() as s:
            auth = {"Authorization": f"Bearer {flow['token']}"}
            async with s.get(f"{up.api}/api/v1/appointments/{flow['appointment_id']}", headers=auth) as r:
                assert (await r.json())["status"] == "cancelled"
    finally:
        stop_up(up)
    second_output = up.output()[len(first_output) :]
    assert "database schema up to date" in second_output
    assert "loaded" not in second_output

    # Privacy: no identity data of the person in any line any process wrote (at DEBUG level).
    everything = up.output()
    for value in PERSON.values():
        assert value not in everything


FORGETFUL_UP = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "left-behind"], start_new_session=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exits cleanly, but forgets to stop its child
print("up", flush=True)
time.sleep(120)
"""


def test_negative_control_a_child_left_running_is_caught() -> None:
    """The leftover check bites: an `up` that exits 0 but leaves a child running is caught, while a
    `surgegate up` of someone else, running at the same time outside the tree, is not reported."""
    someone_else = psutil.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                 "surgegate", "up", "--data-dir", "/tmp/other"])  # fmt: skip
    seen: set[psutil.Process] = set()
    try:
        with subprocess.Popen([sys.executable, "-c", FORGETFUL_UP], stdout=subprocess.PIPE, text=True) as forgetful:
            assert forgetful.stdout is not None and forgetful.stdout.readline() == "up\n"
            seen = process_tree(forgetful)
            leftovers = stop_tree(forgetful, seen)
        assert len(leftovers) == 1 and leftovers[0].endswith("left-behind"), leftovers
    finally:
        for process in [*seen, someone_else]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        someone_else.wait()


def command_of(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # it ended meanwhile
        return []


def child_named(up: Up, name: str) -> psutil.Process:
    """The one running `surgegate {name}` process below `up`."""
    found = [p for p in still_running(process_tree(up.proc)) if command_of(p)[-2:] == ["surgegate", name]]
    assert len(found) == 1, [describe(p) for p in found]
    return found[0]


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def test_up_restarts_a_child_that_dies(data_dir: Path, tmp_path: Path) -> None:
    """kill -9 of the worker, then of the api: each is started again and answers, `up` stays up, and
    the whole path still works. The admin token is shown once; the servers' passwords never."""
    log = tmp_path / "up.log"
    up = start_up(data_dir, log, (free_port(), free_port(), free_port()))
    try:
        for name, probe in (("worker", f"{up.worker}/healthz"), ("api", f"{up.api}/readyz")):
            victim = child_named(up, name)
            victim.kill()
            victim.wait(10)
            deadline = time.monotonic() + 60
            while not (await answers(probe) and child_named(up, name).pid != victim.pid):
                assert up.proc.poll() is None, up.output()[-4000:]
                assert time.monotonic() < deadline, f"{name} did not come back:\n{up.output()[-4000:]}"
                await asyncio.sleep(0.2)
            assert f"surgegate up: {name} was killed by SIGKILL; starting it again in 0.5 s" in up.output()
            assert f"surgegate up: {name} started again (pid {child_named(up, name).pid})" in up.output()
        await drive(up)  # join, admission, booking (by the new worker), cancel (by the new api)
        assert up.proc.poll() is None
    finally:
        stop_up(up)
    output = up.output()
    assert output.count(up.admin_token) == 1  # the banner
    stored = json.loads((data_dir / "secrets.json").read_text())
    for password in (stored["postgres_password"], stored["valkey_password"]):
        assert password not in output
