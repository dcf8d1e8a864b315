"""Pieces of ``surgegate up`` in-process: its secrets file (made once, 0600, an old one completed),
the embedded servers its code path starts (each refuses a connection without its password, accepts
one with it, and a data dir from before passwords is converted), its stop signals, held back
while a child is being started, its checks before anything starts (ports, the data dir's lock), and
a PostgreSQL still running on a data dir, never taken over. The whole command runs in tests/e2e/test_up.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.exceptions

from shared.settings import Settings
from surgegate.embedded import DataDirInUse, EmbeddedPostgres
from surgegate.up import (
    SECRETS,
    DataDirLocked,
    PortTaken,
    _Ports,
    _Running,
    _start_servers,
    _Stop,
    _StopSignals,
    choose_ports,
    load_secrets,
    lock_data_dir,
)

OLD_SECRETS = {"secret_keys": "k1:old-signing-key", "admin_token": "old-admin", "person_key": "old-person-key"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_made_once_private_and_reused(tmp_path: Path) -> None:
    made = load_secrets(tmp_path)
    assert made.keys() == SECRETS.keys()
    assert mode(tmp_path / "secrets.json") == 0o600
    assert len({made["postgres_password"], made["valkey_password"], made["admin_token"]}) == 3
    assert load_secrets(tmp_path) == made == json.loads((tmp_path / "secrets.json").read_text())


def test_an_older_secrets_file_gains_the_passwords_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(OLD_SECRETS))
    path.chmod(0o600)
    completed = load_secrets(tmp_path)
    assert {k: completed[k] for k in OLD_SECRETS} == OLD_SECRETS
    assert completed["postgres_password"] and completed["valkey_password"]
    assert mode(path) == 0o600 and json.loads(path.read_text()) == completed
    assert list(tmp_path.iterdir()) == [path]  # nothing staged is left behind


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A temp dir outside pytest's temp root: pytest keeps that root 0700 (and puts it back at the start
    of every session, a parallel one included), which the unprivileged user the embedded PostgreSQL
    runs as when we are root could then no longer traverse."""
    with tempfile.TemporaryDirectory(prefix="surgegate-pg-") as path:
        yield Path(path)


@pytest.fixture
def started(outside_tmp: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[dict[str, str], str]]:
    """``up``'s code path for the servers, on a data dir whose PostgreSQL was made by an older
    version (trust for everyone, no password); yields the children's env and what up printed."""
    data_dir = outside_tmp / "data"
    old = EmbeddedPostgres(data_dir / "pg")
    old.start()
    old.stop()
    (data_dir / "secrets.json").write_text(json.dumps(OLD_SECRETS))
    env: dict[str, str] = {}
    running = _Running()
    try:
        _start_servers(Settings(), data_dir, env, running)
        yield env, capsys.readouterr().out
    finally:
        running.stop()


@pytest.mark.slow  # starts PostgreSQL twice and Valkey
async def test_the_servers_up_starts_require_their_passwords(
    started: tuple[dict[str, str], str], outside_tmp: Path
) -> None:
    env, printed = started
    secrets = json.loads((outside_tmp / "data" / "secrets.json").read_text())
    database_url, redis_url = env["SURGEGATE_DATABASE_URL"], env["SURGEGATE_REDIS_URL"]
    assert secrets["postgres_password"] in database_url and secrets["valkey_password"] in redis_url
    without_password = database_url.replace(f":{secrets['postgres_password']}@", "@")

    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(without_password)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(database_url.replace(secrets["postgres_password"], "not-the-password"))
    con = await asyncpg.connect(database_url)
    try:
        assert await con.fetchval("SELECT current_user") == "postgres"
        assert await con.fetchval("SHOW listen_addresses") == "127.0.0.1"
        rules = await con.fetch("SELECT type, auth_method FROM pg_hba_file_rules")
    finally:
        await con.close()
    assert {r["type"] for r in rules} == {"local", "host"}  # the socket line too, should one be opened
    assert {r["auth_method"] for r in rules} == {"scram-sha-256"}

    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(redis_url.replace(f":{secrets['valkey_password']}@", "")).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(redis_url.replace(secrets["valkey_password"], "not-the-password")).ping()
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    assert client.config_get("bind") == {"bind": "127.0.0.1"}
    client.close()

    assert "embedded PostgreSQL" in printed and "embedded Valkey" in printed
    assert secrets["postgres_password"] not in printed and secrets["valkey_password"] not in printed


def test_a_stop_signal_waits_for_the_end_of_a_held_block() -> None:
    signals = _StopSignals()
    reached: list[str] = []

    def signalled_while_held() -> None:
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)  # delivered here, at once, to this thread
            reached.append("the end of the block")

    signals.install()
    try:
        with pytest.raises(_Stop):
            signalled_while_held()
        assert reached == ["the end of the block"]
        with pytest.raises(_Stop):
            os.kill(os.getpid(), signal.SIGTERM)  # outside the block: raised where it lands
    finally:
        signals.restore()


@pytest.fixture
def taken() -> Iterator[int]:
    """A port someone listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_default_port_is_replaced_and_said(taken: int) -> None:
    said: list[str] = []
    defaults = _Ports(taken, 8081, 9101)
    chosen = choose_ports("127.0.0.1", _Ports(taken, free(), free()), defaults, said.append)
    assert chosen.edge != taken and len(set(chosen)) == 3
    assert said == [f"the default edge port {taken} is in use; using {chosen.edge} (pass --edge-port to choose)"]


def test_a_taken_port_asked_for_is_an_error_naming_it(taken: int) -> None:
    said: list[str] = []
    with pytest.raises(PortTaken, match=f"port {taken} \\(metrics\\) is already in use on 127.0.0.1: pass "
                       "--worker-metrics-port"):  # fmt: skip
        choose_ports("127.0.0.1", _Ports(free(), free(), taken), _Ports(8080, 8081, 9101), said.append)
    same = free()
    with pytest.raises(PortTaken, match=f"port {same} \\(api\\)"):  # one port for two servers
        choose_ports("127.0.0.1", _Ports(same, same, free()), _Ports(8080, 8081, 9101), said.append)
    assert said == []


def free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_data_dir_is_locked_while_up_runs(tmp_path: Path) -> None:
    with (
        lock_data_dir(tmp_path),
        pytest.raises(DataDirLocked, match=f"another surgegate up \\(pid {os.getpid()}\\) is running on"),
    ):
        lock_data_dir(tmp_path)
    lock_data_dir(tmp_path).close()  # released with its file (and by the kernel when the process ends)


async def serves(dsn: str) -> bool:
    con = await asyncpg.connect(dsn)
    try:
        return bool(await con.fetchval("SELECT true"))
    finally:
        await con.close()


@pytest.mark.slow  # starts PostgreSQL twice
def test_a_running_postgresql_is_never_taken_over_and_a_reused_pid_never_killed(outside_tmp: Path) -> None:
    first = EmbeddedPostgres(outside_tmp / "pg")
    second = EmbeddedPostgres(outside_tmp / "pg")
    second.in_use_wait_s = 0.5
    first.start()
    try:
        with pytest.raises(DataDirInUse, match=f"PostgreSQL \\(pid {first.proc.pid if first.proc else 0}\\) is still"):
            second.start()
        assert asyncio.run(serves(first.dsn))  # the first one still serves
    finally:
        first.stop()
    # A postmaster.pid naming a live process that is no PostgreSQL of this dir (a pid reused since):
    # the file goes, the process is left alone, the server starts.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as stranger:
        (outside_tmp / "pg" / "postmaster.pid").write_text(f"{stranger.pid}\n{outside_tmp / 'pg'}\n")
        try:
            second.start()
            second.stop()
            assert stranger.poll() is None
        finally:
            stranger.kill()
