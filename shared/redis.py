"""Redis access: a client for the waiting room (a single Redis or a Valkey/Redis Cluster), an arq
pool for whoever enqueues jobs (always a single Redis: arq does not speak cluster).

Cluster mode is detected from the server, as cluster-aware clients do: :func:`connect_redis` asks
the node ``SURGEGATE_REDIS_URL`` names for ``INFO cluster`` and, on ``cluster_enabled:1``, returns a
``redis.asyncio.cluster.RedisCluster`` seeded from that node (it learns the other nodes and the slot
map from it and follows MOVED/ASK redirections). What that client does with what this project sends:
an ``EVALSHA`` goes to the node owning its keys' slot (every script's keys belong to one event, and
an event's keys share a hash slot: ``shared/keys.py``), a missing script is loaded on every primary
(``SCRIPT LOAD`` is fanned out) and retried, and a non-transactional pipeline is split per node and
its answers put back in order. Nothing here uses pub/sub or transactions (MULTI), which a cluster
would restrict: the edges share an event's settings through the event's hash and PostgreSQL.

Every arq pool and job handle here reads and writes jobs and results as JSON (``shared.job_codec``),
never with arq's default pickle: nothing read from Redis is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from shared import job_codec
from shared.settings import SettingsError

log = logging.getLogger("surgegate.redis")

# A command waits at most this long for an answer: a server that stopped answering (a network
# partition, not a restart, which refuses at once) raises instead of hanging the worker's loop.
ARQ_SOCKET_TIMEOUT_S = 5


def redis_settings(url: str) -> RedisSettings:
    settings: RedisSettings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 2
    return settings


def create_redis(url: str, *, timeout_s: float = 2) -> Redis:
    """A pooled client; commands fail fast (``timeout_s``) when the server is gone instead of hanging."""
    client: Redis = Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=15
    )
    return client


async def is_cluster(url: str, *, timeout_s: float = 2) -> bool:
    """Whether the server ``url`` names runs in cluster mode (``INFO cluster``: ``cluster_enabled:1``)."""
    probe = create_redis(url, timeout_s=timeout_s)
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return str(info.get("cluster_enabled", 0)) == "1"


def _without_database(url: str) -> str:
    """A cluster has only database 0: a ``/N`` path in the URL is dropped (RedisCluster refuses it)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", parts.query, parts.fragment))


async def connect_redis(url: str, *, timeout_s: float = 2, probes: int = 3) -> Redis:
    """The waiting room's client for ``url``: a plain client, or a cluster client when the server
    says it runs in cluster mode. Commands fail fast (``timeout_s``) when a server is gone.

    A server that does not answer (``probes`` tries, 1 s apart) cannot say: a plain client is returned
    and a warning logged, so an edge started during a Redis outage still starts and answers 503 until
    Redis is back, as before clusters existed; on a cluster such an edge must be restarted once the
    cluster answers.

    Typed as ``Redis``: ``RedisCluster`` answers every command this project sends (scripts, pipelines
    without MULTI, single-key commands) with the same results, and the call sites stay one type."""
    for attempt in range(probes):
        try:
            cluster_mode = await is_cluster(url, timeout_s=timeout_s)
            break
        except (RedisError, OSError) as exc:
            if attempt == probes - 1:
                log.warning("Redis did not answer INFO cluster (%s): assuming a single Redis", type(exc).__name__)
                return create_redis(url, timeout_s=timeout_s)
            await asyncio.sleep(1)
    if not cluster_mode:
        return create_redis(url, timeout_s=timeout_s)
    cluster = RedisCluster.from_url(
        _without_database(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=15
    )
    await cluster.initialize()
    return cast(Redis, cluster)


QUEUE_ON_A_CLUSTER = (
    "SURGEGATE_QUEUE_REDIS_URL (default: SURGEGATE_REDIS_URL) names a Redis/Valkey Cluster node; the booking "
    "queue (arq) needs a single Redis: set SURGEGATE_QUEUE_REDIS_URL to one (the waiting room may stay on the cluster)"
)


async def require_single_redis(url: str) -> None:
    """Refuse a cluster where arq's queue must live (``SettingsError`` naming the setting)."""
    if await is_cluster(url):
        raise SettingsError(QUEUE_ON_A_CLUSTER)


async def refuse_cluster(client: Redis) -> None:
    """The same check on a connected client (an arq pool): ``SettingsError`` if it is a cluster node."""
    info = await client.info("cluster")
    if str(info.get("cluster_enabled", 0)) == "1":
        raise SettingsError(QUEUE_ON_A_CLUSTER)


async def create_arq_pool(url: str, queue_name: str, *, connect_retries: int = 2) -> ArqRedis:
    """An arq pool speaking JSON, checked with a PING (tried ``1 + connect_retries`` times, 1 s apart).

    Built here rather than by arq's ``create_pool``, which takes no socket timeout.
    """
    pool = ArqRedis(
        ConnectionPool.from_url(url, socket_timeout=ARQ_SOCKET_TIMEOUT_S, socket_connect_timeout=2),
        job_serializer=job_codec.dumps,
        job_deserializer=job_codec.loads,
        default_queue_name=queue_name,
    )
    pool.auto_close_connection_pool = True  # it owns its connections, as Redis.from_pool's clients do
    for _ in range(connect_retries):
        try:
            await pool.ping()
            return pool
        except (RedisError, OSError):
            await asyncio.sleep(1)
    try:
        await pool.ping()
    except BaseException:
        await pool.aclose()
        raise
    return pool


def job_of(pool: ArqRedis, job_id: str) -> Job:
    """arq's handle on a job of ``pool``'s queue, reading its result with the pool's JSON codec."""
    return Job(job_id, pool, _queue_name=pool.default_queue_name, _deserializer=pool.job_deserializer)
