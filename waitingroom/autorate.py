"""rate_mode "auto": the admission rate follows what the booking side can absorb.

Every ``interval_s`` one edge (the holder of a short Redis lease, so edges never fight) reads the
booking side's two signals, the arq queue depth and the p90 of recent attempt latencies (enqueue to
outcome, reported by the worker), and moves each auto event's live rate: down by 30 % when either is
over its target, up by 10 % (at least 0.1/s) when both are under half of it, otherwise unchanged;
always within the operator's [rate_min, rate_max]. Multiplicative decrease, gentle increase: the
classic shape for a controller that must back off fast and probe carefully (TCP's AIMD). The new rate
goes through the same Lua configure as an operator's change, so every edge applies it on its next
tick, and every change is visible in ``surgegate_admission_rate_per_s`` and counted in
``surgegate_rate_changes_total{direction}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis

from shared.keys import booking_latency_key, rate_lease_key

if TYPE_CHECKING:
    from waitingroom.events import Event

_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def next_rate(event: Event, current: float, depth: int, latency_p90: float | None) -> float:
    """The controller's decision for one interval (pure: easy to reason about and to test)."""
    low, high = event.rate_min or 0.0, event.rate_max or current
    over = depth > event.target_queue_depth or (latency_p90 is not None and latency_p90 > event.target_latency_s)
    calm = depth <= event.target_queue_depth / 2 and (latency_p90 is None or latency_p90 <= event.target_latency_s / 2)
    if over:
        proposed = current * 0.7
    elif calm:
        proposed = current + max(0.1, current * 0.1)
    else:
        proposed = current
    return round(min(high, max(low, proposed)), 3)


def p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


class RateController:
    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        edge_id: str,
        interval_s: float = 2.0,
        queue_redis: Redis | None = None,
    ) -> None:
        self._redis = redis
        self._queue_redis = redis if queue_redis is None else queue_redis  # where the booking queue is
        self._queue_name = queue_name
        self._edge_id = edge_id
        self.interval_s = interval_s
        self._lease = redis.register_script(_LEASE)

    async def leads(self, event_id: str) -> bool:
        """Whether this edge controls the event's rate now (a lease of three intervals, renewed)."""
        lease_ms = int(self.interval_s * 3000)
        return bool(await self._lease(keys=[rate_lease_key(event_id)], args=[self._edge_id, lease_ms]))

    async def signals(self, event_id: str) -> tuple[int, float | None]:
        """(booking queue depth, p90 of the event's recent attempt latencies)."""
        if self._queue_redis is self._redis:
            async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
                pipe.zcard(self._queue_name)
                pipe.lrange(booking_latency_key(event_id), 0, -1)
                depth, latencies = await pipe.execute()
        else:  # the queue on its own Redis (SURGEGATE_QUEUE_REDIS_URL), the latencies with the event's keys
            depth = await self._queue_redis.zcard(self._queue_name)
            latencies = await self._redis.lrange(booking_latency_key(event_id), 0, -1)  # type: ignore[misc]
        return int(depth), p90([float(v) for v in latencies])
