"""The fault suite's servers and processes: PostgreSQL, Valkey, ``surgegate api`` and ``surgegate worker``.

Everything here is real: the servers come from ``surgegate/embedded.py`` on free ports in temp dirs,
and each API and worker is a ``python -m surgegate api|worker`` child process of this checkout
(``PYTHONPATH`` and the working directory point at it). The harness plays the part of the
deployment around them: it kills a process with SIGKILL and, where a supervisor (systemd, compose)
would, starts a new one in its place. It also watches every process: one that exits without being
killed by the harness is a failure to report (a Redis or PostgreSQL outage must not need a restart).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from shared.db import connect, create_pool, migrate
from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from tests.helpers import ADMIN, TEST_KEYS, seed_typed_slots

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose code the processes run
SLOTS = 24  # slots of the load's event ...
CAPACITY = 3  # ... of this many seats each


def make_template(data_dir: Path) -> None:
    """Initialise a PostgreSQL data dir once, migrated and seeded with the load's event and slots;
    each scenario runs its own server on a copy of it (a copy costs far less than an initdb)."""
    server = EmbeddedPostgres(data_dir)
    dsn = server.start()
    try:
        asyncio.run(_migrate_and_seed(dsn))
    finally:
        server.stop()


async def _migrate_and_seed(dsn: str) -> None:
    con = await connect(dsn)
    try:
        await migrate(con)
    finally:
        await con.close()
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await seed_typed_slots(pool, count=SLOTS, capacity=CAPACITY)
    finally:
        await pool.close()


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Service:
    """One ``surgegate api`` or ``surgegate worker`` process, started again under the same name and port."""

    role: str  # "api" or "worker"
    name: str  # "api-1", "worker-2"
    port: int  # the API's port, the worker's metrics port
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False  # by the harness: its exit is expected
    exits: list[str] = field(default_factory=list)  # unexpected exits seen by the watcher

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        variable = "SURGEGATE_API_PORT" if self.role == "api" else "SURGEGATE_WORKER_METRICS_PORT"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "surgegate", self.role],
                env={**self.env, variable: str(self.port)}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.killed = False

    async def ready(self, within_s: float = 90) -> None:
        """Wait until it answers its health check (the API's /readyz needs Redis and PostgreSQL)."""
        url = f"{self.url}/readyz" if self.role == "api" else f"{self.url}/healthz"
        deadline = time.monotonic() + within_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready within {within_s:.0f} s:\n{tail(self.log)}")
                await asyncio.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.killed = True
        self.proc.kill()
        self.proc.wait()

    def check(self, t: float) -> bool:
        """Note an exit the harness did not cause (at ``t`` s into the scenario); True if it just exited."""
        if self.proc is None or self.killed or self.proc.poll() is None:
            return False
        self.exits.append(f"{self.name} exited with code {self.proc.returncode} at t={t:.1f} s")
        self.killed = True  # noted once
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killed = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Cluster:
    """One scenario's PostgreSQL (a copy of the template), Valkey and API and worker processes."""

    def __init__(self, workdir: Path, template: Path, *, apis: int, workers: int) -> None:
        self.workdir = workdir
        shutil.copytree(template, workdir / "pg")
        self.pg = EmbeddedPostgres(workdir / "pg")
        self.valkey_dirs = 0
        self.valkey = EmbeddedValkey(self._valkey_dir(), persist=True)
        self.apis = [self._service("api", i) for i in range(1, apis + 1)]
        self.workers = [self._service("worker", i) for i in range(1, workers + 1)]
        self.started = time.monotonic()

    def _valkey_dir(self) -> Path:
        self.valkey_dirs += 1
        return self.workdir / f"valkey-{self.valkey_dirs}"

    def _service(self, role: str, i: int) -> Service:
        return Service(role, f"{role}-{i}", free_port(), {}, self.workdir / f"{role}-{i}.log")

    @property
    def services(self) -> list[Service]:
        return [*self.apis, *self.workers]

    @property
    def dsn(self) -> str:
        return self.pg.dsn

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            SURGEGATE_DATABASE_URL=self.pg.dsn,
            SURGEGATE_REDIS_URL=self.valkey.url,
            SURGEGATE_SECRET_KEYS=",".join(f"{kid}:{secret}" for kid, secret in TEST_KEYS),
            SURGEGATE_ADMIN_TOKEN=ADMIN,
            SURGEGATE_PERSON_KEY="fault-suite-person-key-0123456789",
            SURGEGATE_LOG_LEVEL="WARNING",
        )
        return env

    async def start(self) -> None:
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.valkey.start)
        env = self.env()
        for service in self.services:
            service.env = env
            service.start()
        for service in self.services:
            await service.ready()

    def t(self) -> float:
        return time.monotonic() - self.started

    def watch(self) -> list[Service]:
        """Services that exited since the last look without the harness killing them."""
        return [s for s in self.services if s.check(self.t())]

    async def restart(self, service: Service) -> None:
        """What a supervisor does after a process dies: start it again, under the same port."""
        service.start()
        await service.ready()

    async def kill_valkey(self, *, keep_data: bool, down_s: float) -> None:
        """SIGKILL Valkey; start it again on the same port after ``down_s``, on its append-only file
        (``keep_data``: what was fsynced survives, up to the last second) or on a fresh empty dir."""
        assert self.valkey.proc is not None
        self.valkey.proc.kill()
        self.valkey.proc.wait()
        await asyncio.sleep(down_s)
        data = self.valkey.data_dir if keep_data else self._valkey_dir()
        self.valkey = EmbeddedValkey(data, self.valkey.port, persist=True)
        await asyncio.to_thread(self.valkey.start)

    async def stop_postgres(self, down_s: float) -> None:
        """Shut PostgreSQL down (fast: open transactions are rolled back, connections dropped) and
        start it again on the same port and data after ``down_s``."""
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.pg.start)

    async def jobs_in_progress(self, within_s: float) -> int:
        """Wait (up to ``within_s``) until some worker is inside a booking job; how many booking jobs it
        saw started and not finished (their arq in-progress keys; cron jobs aside), 0 if none in time."""
        redis = Redis.from_url(self.valkey.url, socket_timeout=2)
        deadline = time.monotonic() + within_s
        try:
            while time.monotonic() < deadline:
                keys = [key async for key in redis.scan_iter(match=f"{in_progress_key_prefix}*", count=1000)
                        if not key.startswith(f"{in_progress_key_prefix}cron:".encode())]  # fmt: skip
                if keys:
                    return len(keys)
                await asyncio.sleep(0.005)
            return 0
        finally:
            await redis.aclose()

    def stop(self, *, keep_postgres: bool = False) -> None:
        for service in self.services:
            service.stop()
        self.valkey.stop()
        if not keep_postgres:
            self.pg.stop()
