"""Redis access: a plain asyncio client for the edge, an arq pool for whoever enqueues jobs."""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis


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


async def create_arq_pool(url: str, queue_name: str) -> ArqRedis:
    pool: ArqRedis = await create_pool(redis_settings(url), default_queue_name=queue_name)
    return pool
