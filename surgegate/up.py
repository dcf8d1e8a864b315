"""``surgegate up``: the whole system on one machine, in one command.

Order: keys (from the environment, else generated once into ``<data-dir>/secrets.json``) ->
embedded PostgreSQL / Valkey unless URLs are configured -> migrate -> seed the demo into an empty
database -> edge, api and worker as child processes -> wait until each answers -> print the URLs.
Ctrl-C or SIGTERM stops the children, then the embedded servers; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NamedTuple

from shared.settings import Settings
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey


class _Stop(BaseException):
    """Raised from the signal handler to unwind into the shutdown path."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def load_secrets(data_dir: Path) -> dict[str, str]:
    """Keys generated on the first run and reused after (file mode 0600)."""
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    created = {
        "secret_keys": f"k1:{secrets.token_urlsafe(32)}",
        "admin_token": secrets.token_urlsafe(24),
        "person_key": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(created, f)
    return created


def _wait_http(url: str, proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (our own loopback URL)
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not become ready at {url}")


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Ports(NamedTuple):
    edge: int
    api: int
    metrics: int


@dataclass
class _Running:
    """What ``up`` started, so that shutdown stops exactly that: the children, then the servers."""

    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def stop(self) -> None:
        _stop_children(self.children)
        if self.valkey is not None:
            self.valkey.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _child_env(settings: Settings, data_dir: Path, ports: _Ports) -> dict[str, str]:
    """The children's environment: ours, plus the stored keys where none are configured, plus the ports."""
    env = dict(os.environ)
    if not settings.secret_keys:
        stored = load_secrets(data_dir)
        env["SURGEGATE_SECRET_KEYS"] = stored["secret_keys"]
        if not settings.person_key:
            env["SURGEGATE_PERSON_KEY"] = stored["person_key"]
    if not settings.admin_tokens:
        env["SURGEGATE_ADMIN_TOKEN"] = load_secrets(data_dir)["admin_token"]
    env.update(
        SURGEGATE_EDGE_PORT=str(ports.edge),
        SURGEGATE_API_PORT=str(ports.api),
        SURGEGATE_WORKER_METRICS_PORT=str(ports.metrics),
    )
    return env


def _start_servers(settings: Settings, data_dir: Path, env: dict[str, str], running: _Running) -> None:
    """Embedded PostgreSQL / Valkey for whichever URL is not configured; their URLs go into ``env``."""
    if settings.database_url is None:
        running.postgres = EmbeddedPostgres(data_dir / "pg")
        env["SURGEGATE_DATABASE_URL"] = running.postgres.start()
        print(
            f"embedded PostgreSQL  {env['SURGEGATE_DATABASE_URL']}  (data in {running.postgres.data_dir})",
            flush=True,
        )
    if settings.redis_url is None:
        running.valkey = EmbeddedValkey(data_dir / "valkey")
        env["SURGEGATE_REDIS_URL"] = running.valkey.start()
        print(f"embedded Valkey      {env['SURGEGATE_REDIS_URL']}  (data in {running.valkey.data_dir})", flush=True)


def _prepare_database(dsn: str, *, seed: bool) -> None:
    """Migrate; load the demo into an empty database unless told not to."""
    from surgegate.cli import _migrate, _seed

    applied = asyncio.run(_migrate(dsn))
    print(
        f"migrations applied: {', '.join(applied)}" if applied else "database schema up to date",
        flush=True,
    )
    if seed and asyncio.run(_database_empty(dsn)) and asyncio.run(_seed(dsn)):
        print("demo event, sites and slots loaded", flush=True)


def _start_children(env: dict[str, str], host: str, ports: _Ports, running: _Running) -> None:
    """Edge, api and worker as child processes; returns once each answers its health check."""
    for name in ("edge", "api", "worker"):
        running.children[name] = subprocess.Popen(
            [sys.executable, "-m", "surgegate", name], env=env, start_new_session=True
        )
    _wait_http(f"http://{host}:{ports.edge}/readyz", running.children["edge"], "edge")
    _wait_http(f"http://{host}:{ports.api}/readyz", running.children["api"], "api")
    _wait_http(f"http://{host}:{ports.metrics}/healthz", running.children["worker"], "worker")


def _announce(host: str, ports: _Ports, admin: str) -> None:
    edge, api, metrics = ports
    print(
        "\nsurgegate is up\n"
        f"  queue page     http://{host}:{edge}/   (the demo: http://{host}:{edge}/e/demo)\n"
        f"  waiting room   http://{host}:{edge}/api/v1/events/{{event_id}}/join\n"
        f"  booking API    http://{host}:{api}/api/v1\n"
        f"  metrics        http://{host}:{edge}/metrics  http://{host}:{api}/metrics  "
        f"http://{host}:{metrics}/metrics\n"
        f"  admin token    {admin}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )


def _watch(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """Block until a child exits (then 1: ``up`` stops everything); a signal interrupts it."""
    while True:
        for name, proc in children.items():
            if proc.poll() is not None:
                print(f"surgegate up: {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.2)


def run_up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _Ports(
        args.edge_port or settings.edge_port,
        args.api_port or settings.api_port,
        args.worker_metrics_port or settings.worker_metrics_port,
    )
    env = _child_env(settings, data_dir, ports)

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    running = _Running()
    code = 0
    try:
        _start_servers(settings, data_dir, env, running)
        _prepare_database(env["SURGEGATE_DATABASE_URL"], seed=not args.no_seed)
        _start_children(env, settings.host, ports, running)
        _announce(settings.host, ports, admin=env["SURGEGATE_ADMIN_TOKEN"].split(",")[0])
        code = _watch(running.children)
    except _Stop:
        print("\nstopping…", flush=True)
    except Exception as exc:
        print(f"surgegate up: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not interrupt the cleanup itself.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        running.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code


async def _database_empty(dsn: str) -> bool:
    from shared.db import connect
    from waitingroom.events import count_events

    con = await connect(dsn)
    try:
        return await count_events(con) == 0
    finally:
        await con.close()
