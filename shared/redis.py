"""Redis access: a plain asyncio client for the edge, an arq pool for whoever enqueues jobs.

Every arq pool and job handle here reads and writes jobs and results as JSON (``shared.job_codec``),
never with arq's default pickle: nothing read from Redis is unpickled.
"""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from shared import job_codec

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
