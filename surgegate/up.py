"""``surgegate up``: the whole system on one machine, in one command.

Order: keys (from the environment, else generated once into ``<data-dir>/secrets.json``, with the
embedded servers' passwords) -> embedded PostgreSQL / Valkey unless URLs are configured, each
requiring its password -> migrate -> seed the demo into an empty database -> edge, api and worker
as child processes -> wait until each answers -> print the URLs and the admin token (once).
From then on a child that dies is started again (:mod:`surgegate.supervisor`); only a crash loop
stops everything. Ctrl-C, SIGTERM or SIGHUP stops the children, then the embedded servers; nothing is
left running. Should ``up`` itself be killed (SIGKILL), every process it started is told by Linux
to stop (:mod:`surgegate.lifeline`).

Before anything starts: the data dir is locked (a second ``up`` on it refuses, naming the first one's
pid), and the edge, api and worker-metrics ports are tried. A port given (option or environment) that
is taken is an error naming it and the option; a default one that is taken is replaced by a free port,
and ``up`` says so.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, NamedTuple

from shared.settings import Settings
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from surgegate.supervisor import Child, CrashLoop, Supervisor

# SIGHUP: the terminal closed or the SSH session dropped; the children (in sessions of their own) never
# see it, so `up` stops them as on Ctrl-C.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(BaseException):
    """Raised from the signal handler to unwind into the shutdown path."""


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP raise :class:`_Stop` wherever ``up`` is, except inside :meth:`held`: there
    (a child being started) the signal waits for the end of the block, so that no process is forked
    without being recorded for the shutdown."""

    def __init__(self) -> None:
        self._held = False
        self._pending: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        self._previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}

    def ignore(self) -> None:
        """From now on until :meth:`restore` (the shutdown itself), signals are ignored."""
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]  # what signal.signal returned

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._held:
            self._pending = signum
            return
        raise _Stop(signum)

    @contextmanager
    def held(self) -> Iterator[None]:
        self._held = True
        try:
            yield
        finally:
            self._held = False
            pending, self._pending = self._pending, None
            if pending is not None:
                raise _Stop(pending)


# What ``secrets.json`` holds, each made once by its generator and reused after.
SECRETS: dict[str, Callable[[], str]] = {
    "secret_keys": lambda: f"k1:{secrets.token_urlsafe(32)}",
    "admin_token": lambda: secrets.token_urlsafe(24),
    "person_key": lambda: secrets.token_urlsafe(32),
    "postgres_password": lambda: secrets.token_urlsafe(24),  # the embedded servers' passwords
    "valkey_password": lambda: secrets.token_urlsafe(24),
    "audit_signing_key": lambda: secrets.token_urlsafe(32),  # an Ed25519 seed: 32 random bytes, base64url
}


def load_secrets(data_dir: Path) -> dict[str, str]:
    """Keys and passwords generated on the first run and reused after (file mode 0600). A file of an
    older version gains the secrets it lacks (the others are kept), written whole by rename."""
    path = data_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in SECRETS.items() if name not in stored}
    if missing:
        stored |= missing
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        staged.unlink(missing_ok=True)  # one a killed run left: made anew, so surely 0600
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f)
        os.replace(staged, path)
    return stored


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


class _Ports(NamedTuple):
    edge: int
    api: int
    metrics: int


class PortTaken(Exception):
    """A port asked for is in use; the message names it and the option that chooses another."""


class DataDirLocked(Exception):
    """Another ``surgegate up`` runs on the data dir; the message names its pid."""


# The option that sets each port of _Ports.
_PORT_OPTIONS = {"edge": "--edge-port", "api": "--api-port", "metrics": "--worker-metrics-port"}


def _free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now (as aiohttp binds: SO_REUSEADDR, so a port in
    TIME_WAIT counts as free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return True  # the child will say what is wrong with the host
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
    return True


def choose_ports(host: str, asked: _Ports, defaults: _Ports, say: Callable[[str], None]) -> _Ports:
    """``asked``, each checked free on ``host``. A taken port that is its default is replaced by a free
    one (``say`` tells which); any other taken port (or two the same) raises :class:`PortTaken`."""
    chosen: dict[str, int] = {}
    for name, port in asked._asdict().items():
        option = _PORT_OPTIONS[name]
        if port in chosen.values() or not _free(host, port):
            if port != getattr(defaults, name):
                raise PortTaken(
                    f"port {port} ({name}) is already in use on {host}: pass {option} with a free port "
                    f"(or stop what listens there); nothing was started"
                )
            port = free_port()
            say(f"the default {name} port {getattr(defaults, name)} is in use; using {port} (pass {option} to choose)")
        chosen[name] = port
    return _Ports(**chosen)


def lock_data_dir(data_dir: Path) -> IO[str]:
    """An exclusive lock on ``data_dir`` for as long as the returned file stays open (the kernel drops
    it when this process ends, however). Raises :class:`DataDirLocked` naming the holder's pid."""
    handle = (data_dir / "up.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise DataDirLocked(
            f"another surgegate up (pid {holder}) is running on {data_dir}; stop it first, or pass another --data-dir"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass
class _Running:
    """What ``up`` started, so that shutdown stops exactly that: the children, then the servers."""

    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedValkey | None = None
    children: Supervisor | None = None

    def stop(self) -> None:
        if self.children is not None:
            self.children.stop()
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
    if not settings.audit_signing_keys:
        env["SURGEGATE_AUDIT_SIGNING_KEY"] = load_secrets(data_dir)["audit_signing_key"]
    env.update(
        SURGEGATE_EDGE_PORT=str(ports.edge),
        SURGEGATE_API_PORT=str(ports.api),
        SURGEGATE_WORKER_METRICS_PORT=str(ports.metrics),
    )
    return env


def _start_servers(settings: Settings, data_dir: Path, env: dict[str, str], running: _Running) -> None:
    """Embedded PostgreSQL / Valkey for whichever URL is not configured, each requiring its password
    from ``secrets.json``; their URLs (passwords included) go into ``env``, never to the output."""
    if settings.database_url is None:
        password = load_secrets(data_dir)["postgres_password"]
        running.postgres = EmbeddedPostgres(data_dir / "pg", password=password)
        env["SURGEGATE_DATABASE_URL"] = running.postgres.start()
        print(f"embedded PostgreSQL  {running.postgres.address}  (data in {running.postgres.data_dir})", flush=True)
    if settings.redis_url is None:
        running.valkey = EmbeddedValkey(data_dir / "valkey", password=load_secrets(data_dir)["valkey_password"])
        env["SURGEGATE_REDIS_URL"] = running.valkey.start()
        print(f"embedded Valkey      {running.valkey.address}  (data in {running.valkey.data_dir})", flush=True)
    if running.postgres is not None or running.valkey is not None:
        print(f"passwords            in {data_dir / 'secrets.json'}", flush=True)


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


def _say(line: str) -> None:
    print(f"surgegate up: {line}", file=sys.stderr, flush=True)


def _mail_sink(settings: Settings, data_dir: Path, env: dict[str, str]) -> tuple[Child, int] | None:
    """With no SURGEGATE_SMTP_URL: a local SMTP sink (surgegate/mailsink.py) keeping every message as
    an ``.eml`` file under ``<data-dir>/mail/``, and the worker sends there. Says where."""
    if settings.smtp_url:
        return None
    port = settings.mail_sink_port or free_port()
    env["SURGEGATE_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    mail_dir = data_dir / "mail"
    print(f"mail sink            smtp://127.0.0.1:{port}  (every message as a .eml file in {mail_dir})", flush=True)
    return Child("mail", [sys.executable, "-m", "surgegate.mailsink", str(mail_dir), str(port)], env), port


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not start listening on port {port}")


def _start_children(
    env: dict[str, str],
    host: str,
    ports: _Ports,
    running: _Running,
    signals: _StopSignals,
    mail: tuple[Child, int] | None = None,
) -> Supervisor:
    """Edge, api and worker (after the mail sink, when there is one) as supervised child processes;
    returns once each answers its health check. A child that dies while starting stops ``up`` (a
    configuration error, most likely)."""
    children = [Child(name, [sys.executable, "-m", "surgegate", name], env) for name in ("edge", "api", "worker")]
    if mail is not None:
        children.insert(0, mail[0])
    running.children = Supervisor(children, say=_say, hold=signals.held)
    running.children.start_all()
    ready = {"edge": f"{ports.edge}/readyz", "api": f"{ports.api}/readyz", "worker": f"{ports.metrics}/healthz"}
    for child in children:
        assert child.proc is not None
        if mail is not None and child is mail[0]:
            _wait_tcp(mail[1], child.proc, child.name)
            continue
        _wait_http(f"http://{host}:{ready[child.name]}", child.proc, child.name)
    return running.children


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


def run_up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    asked = _Ports(
        args.edge_port or settings.edge_port,
        args.api_port or settings.api_port,
        args.worker_metrics_port or settings.worker_metrics_port,
    )
    defaults = Settings()
    try:
        lock = lock_data_dir(data_dir)
        ports = choose_ports(
            settings.host, asked, _Ports(defaults.edge_port, defaults.api_port, defaults.worker_metrics_port), _say
        )
    except (DataDirLocked, PortTaken) as exc:
        _say(str(exc))
        return 1
    with lock:
        return _run(args, settings, data_dir, ports)


def _run(args: argparse.Namespace, settings: Settings, data_dir: Path, ports: _Ports) -> int:
    env = _child_env(settings, data_dir, ports)
    if args.access_log:
        env["SURGEGATE_ACCESS_LOG"] = "1"

    signals = _StopSignals()
    signals.install()
    running = _Running()
    code = 0
    try:
        _start_servers(settings, data_dir, env, running)
        _prepare_database(env["SURGEGATE_DATABASE_URL"], seed=not args.no_seed)
        mail = _mail_sink(settings, data_dir, env)
        children = _start_children(env, settings.host, ports, running, signals, mail)
        # The only line that shows the admin token: restarts and every other line leave it out.
        _announce(settings.host, ports, admin=env["SURGEGATE_ADMIN_TOKEN"].split(",")[0])
        children.run()
    except _Stop:
        print("\nstopping…", flush=True)
    except CrashLoop as exc:
        _say(f"{exc}; stopping everything")
        code = 1
    except Exception as exc:
        _say(str(exc))
        code = 1
    finally:
        signals.ignore()  # a second Ctrl-C must not interrupt the cleanup itself
        running.stop()
        signals.restore()
    return code


async def _database_empty(dsn: str) -> bool:
    from shared.db import connect
    from waitingroom.events import count_events

    con = await connect(dsn)
    try:
        return await count_events(con) == 0
    finally:
        await con.close()
