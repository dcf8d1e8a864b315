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
from pathlib import Path
from types import FrameType

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


def run_up(args: argparse.Namespace) -> int:
    from surgegate.cli import _migrate, _seed

    settings = Settings.from_env()
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not settings.secret_keys:
        stored = load_secrets(data_dir)
        env["SURGEGATE_SECRET_KEYS"] = stored["secret_keys"]
        if not settings.person_key:
            env["SURGEGATE_PERSON_KEY"] = stored["person_key"]
    if not settings.admin_tokens:
        env["SURGEGATE_ADMIN_TOKEN"] = load_secrets(data_dir)["admin_token"]
    edge_port = args.edge_port or settings.edge_port
    api_port = args.api_port or settings.api_port
    metrics_port = args.worker_metrics_port or settings.worker_metrics_port
    env.update(
        SURGEGATE_EDGE_PORT=str(edge_port),
        SURGEGATE_API_PORT=str(api_port),
        SURGEGATE_WORKER_METRICS_PORT=str(metrics_port),
    )
    host = settings.host

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        if settings.database_url is None:
            postgres = EmbeddedPostgres(data_dir / "pg")
            env["SURGEGATE_DATABASE_URL"] = postgres.start()
            print(
                f"embedded PostgreSQL  {env['SURGEGATE_DATABASE_URL']}  (data in {postgres.data_dir})",
                flush=True,
            )
        if settings.redis_url is None:
            valkey = EmbeddedValkey(data_dir / "valkey")
            env["SURGEGATE_REDIS_URL"] = valkey.start()
            print(f"embedded Valkey      {env['SURGEGATE_REDIS_URL']}  (data in {valkey.data_dir})", flush=True)
        dsn = env["SURGEGATE_DATABASE_URL"]
        applied = asyncio.run(_migrate(dsn))
        print(
            f"migrations applied: {', '.join(applied)}" if applied else "database schema up to date",
            flush=True,
        )
        if not args.no_seed and asyncio.run(_database_empty(dsn)) and asyncio.run(_seed(dsn)):
            print("demo event, sites and slots loaded", flush=True)

        for name in ("edge", "api", "worker"):
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "surgegate", name], env=env, start_new_session=True
            )
        _wait_http(f"http://{host}:{edge_port}/readyz", children["edge"], "edge")
        _wait_http(f"http://{host}:{api_port}/readyz", children["api"], "api")
        _wait_http(f"http://{host}:{metrics_port}/healthz", children["worker"], "worker")
        admin = env["SURGEGATE_ADMIN_TOKEN"].split(",")[0]
        print(
            "\nsurgegate is up\n"
            f"  queue page     http://{host}:{edge_port}/   (the demo: http://{host}:{edge_port}/e/demo)\n"
            f"  waiting room   http://{host}:{edge_port}/api/v1/events/{{event_id}}/join\n"
            f"  booking API    http://{host}:{api_port}/api/v1\n"
            f"  metrics        http://{host}:{edge_port}/metrics  http://{host}:{api_port}/metrics  "
            f"http://{host}:{metrics_port}/metrics\n"
            f"  admin token    {admin}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while True:
            for name, proc in children.items():
                if proc.poll() is not None:
                    print(f"surgegate up: {name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
    except _Stop:
        print("\nstopping…", flush=True)
    except Exception as exc:
        print(f"surgegate up: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not interrupt the cleanup itself.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        _stop_children(children)
        if valkey is not None:
            valkey.stop()
        if postgres is not None:
            postgres.stop()
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
