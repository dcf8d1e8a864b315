"""The worker's ``/metrics`` (booking_worker.supervisor): each scrape reads the booking queue's depth
from Redis and says whether the worker reaches Redis and PostgreSQL."""

from __future__ import annotations

import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from shared.settings import Settings
from tests.helpers import serving_processes


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


async def test_a_scrape_reads_the_queue_depth_and_the_dependencies(settings: Settings, redis: Redis) -> None:
    async with serving_processes(settings) as processes, aiohttp.ClientSession() as s:

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            async with s.get(f"{processes.worker}/metrics") as r:
                return samples(await r.text())

        before = await scrape()
        assert before[("surgegate_booking_queue_depth", ())] == 0
        assert before[("surgegate_dependency_up", (("dependency", "redis"),))] == 1
        assert before[("surgegate_dependency_up", (("dependency", "postgresql"),))] == 1
        # three jobs due in an hour: queued, not started (arq takes only jobs whose time has come)
        queue = processes.settings.queue_name
        later = (time.time() + 3600) * 1000
        await redis.zadd(queue, {"later-1": later, "later-2": later, "later-3": later})
        try:
            assert (await scrape())[("surgegate_booking_queue_depth", ())] == 3
        finally:
            await redis.zrem(queue, "later-1", "later-2", "later-3")
        assert (await scrape())[("surgegate_booking_queue_depth", ())] == 0
