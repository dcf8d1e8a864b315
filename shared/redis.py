"""Redis access: a plain asyncio client for the edge, an arq pool for whoever enqueues jobs."""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis


def redis_settings(url: str) -> RedisSettings:
    settings: RedisSettings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 2
    return settings


def create_redis(url: str) -> Redis:
    """A pooled client; commands fail fast (2 s) when the server is gone instead of hanging."""
    client: Redis = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=15)
    return client


async def create_arq_pool(url: str, queue_name: str) -> ArqRedis:
    pool: ArqRedis = await create_pool(redis_settings(url), default_queue_name=queue_name)
    return pool


def active_admissions_key(event_id: str) -> str:
    """Sorted set of the event's admissions out and unused: member = rank, score = when it lapses.
    The edge adds to it when it admits; the booking worker removes a rank once its booking commits."""
    return f"sg:active:{event_id}"


def booking_latency_key(event_id: str) -> str:
    """List of the event's latest booking attempt latencies (seconds from enqueue to outcome),
    newest first; the worker writes it, the edge's auto rate controller reads it."""
    return f"sg:latency:{event_id}"
