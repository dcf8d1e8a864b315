"""Pieces of ``surgegate up`` in-process: its secrets file (made once, 0600, an old one completed),
the embedded servers its code path starts (each refuses a connection without its password, accepts
one with it, and a data dir from before passwords is converted), and its stop signals, held back
while a child is being started. The whole command runs in tests/e2e/test_up.py."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.exceptions

from shared.settings import Settings
from surgegate.embedded import EmbeddedPostgres
from surgegate.up import SECRETS, _Running, _start_servers, _Stop, _StopSignals, load_secrets

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
def started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[dict[str, str], str]]:
    """``up``'s code path for the servers, on a data dir whose PostgreSQL was made by an older
    version (trust for everyone, no password); yields the children's env and what up printed."""
    data_dir = tmp_path / "data"
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
    started: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, printed = started
    secrets = json.loads((tmp_path / "data" / "secrets.json").read_text())
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
