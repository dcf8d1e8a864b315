"""Rate limits: who the client is, and token buckets in Redis (the edge's joins, the booking API).

The client is the connecting address, or, when the connection comes from a trusted proxy, the
right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries further left are
whatever the client chose to send, so they are never believed). IPv6 clients are limited per /64,
since one subscriber typically holds a whole /64.

A bucket holds up to ``burst`` requests and refills at ``per_minute``. :meth:`Buckets.take` takes
one request from each bucket it names, or from none of them (one Lua script, one Redis round trip,
atomic across every process sharing the Redis): a request refused by one bucket costs the others
nothing, so a credential refused for its own excess does not drain its network's shared allowance.

:class:`LocalBuckets` runs the same arithmetic in one process's memory. It is the booking API's
fallback while Redis is unreachable (each process then enforces the limits on its own, so N
processes allow at most N times the allowance); it mirrors the script line for line, and
``tests/shared/test_limits.py`` runs both on the same requests and compares every verdict. Hand-
written because no library we use keeps a multi-bucket, all-or-nothing take in Redis.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# KEYS: the buckets; ARGV: now, then (rate per second, burst) per key. Returns {wait, which}: which =
# the first refusing key (1-based; 0 when all allow), wait = seconds until every refusing bucket holds
# one request again. Buckets are refilled and saved either way, charged only when all of them allow.
_TAKE = """
local now, n = tonumber(ARGV[1]), #KEYS
local tokens, stamps, wait, which = {}, {}, 0, 0
for i = 1, n do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 't')
  local have = tonumber(b[1]) or burst
  local t = tonumber(b[2]) or now
  if now > t then have = math.min(burst, have + (now - t) * rate); t = now end
  tokens[i], stamps[i] = have, t
  if have < 1 then
    wait = math.max(wait, (1 - have) / rate)
    if which == 0 then which = i end
  end
end
for i = 1, n do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if which == 0 then tokens[i] = tokens[i] - 1 end
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens[i]), 't', string.format('%.17g', stamps[i]))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {string.format('%.17g', wait), which}
"""


def parse_networks(raw: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in raw if item.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def client_key(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """A stable key for the client behind this request (``ip:1.2.3.4`` or ``ip:2001:db8:1:2::/64``)."""
    addr = _address(peer or "")
    if addr is not None and forwarded_for and any(addr in net for net in trusted):
        for hop in reversed(forwarded_for.split(",")):
            candidate = _address(hop)
            if candidate is None:
                break  # garbage from here leftwards: keep the last address we could trust
            addr = candidate
            if not any(candidate in net for net in trusted):
                break
    if addr is None:
        return "ip:unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        return f"ip:{ipaddress.IPv6Network((addr, 64), strict=False)}"
    return f"ip:{addr}"


@dataclass(frozen=True)
class Limit:
    """A bucket's size and refill: ``burst`` requests at once, refilled at ``per_minute``."""

    per_minute: float
    burst: int

    @property
    def enabled(self) -> bool:
        """A zero rate or burst switches the limit off (the settings' ``0`` disables)."""
        return self.per_minute > 0 and self.burst > 0

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int  # whole seconds until a refused request would be allowed (at least 1)
    refused_by: int | None = None  # index of the first bucket that refused (None when allowed)


ALLOWED = Verdict(True, 0)

Charge = tuple[str, Limit]  # (bucket key, its limit)


def _enabled(charges: Sequence[Charge]) -> list[int]:
    """Positions of the charges whose limit is enabled (the others are skipped)."""
    return [i for i, (_, limit) in enumerate(charges) if limit.enabled]


def _verdict(wait: float, which: int, positions: Sequence[int]) -> Verdict:
    """The verdict from the take's outcome over the enabled charges at ``positions``: ``which`` is
    the 1-based refusing one among them, 0 when allowed."""
    if which == 0:
        return ALLOWED
    return Verdict(False, max(1, math.ceil(wait)), positions[which - 1])


class Buckets:
    """Token buckets in Redis, shared by every process that uses the same Redis.

    Takes requested in the same turn of the event loop travel together, in one pipeline (one write,
    one read), each still its own atomic script call: under load a request's share of the round trip
    shrinks with the batch (about three times cheaper at 32 in flight), and a take alone costs one
    round trip as before. Hand-written because redis-py does not pipeline concurrent commands itself.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_TAKE)  # for its sha: the pipeline calls EVALSHA
        self._batch: list[tuple[list[str], list[str], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def take(self, now: float, charges: Sequence[Charge]) -> Verdict:
        """Take one request from every bucket in ``charges`` (atomic), or from none of them and say
        when to retry. Disabled limits are skipped; with none left, allowed without a round trip.
        Redis errors propagate (``redis.exceptions.RedisError``, ``OSError``)."""
        positions = _enabled(charges)
        if not positions:
            return ALLOWED
        args = [repr(now)]
        for i in positions:
            args += [repr(charges[i][1].per_second), str(charges[i][1].burst)]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append(([charges[i][0] for i in positions], args, future))
        if len(self._batch) == 1:
            loop.call_soon(self._send)  # after the other requests ready in this turn have joined
        wait, which = await future
        return _verdict(float(wait), int(which), positions)

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._run(batch))
        self._sending.add(task)  # a running task must be referenced
        task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[list[str], list[str], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._evaluate([(keys, args) for keys, args, _ in batch])
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # Redis away: every take of the batch fails alike
            results = [exc] * len(batch)
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its request was cancelled meanwhile
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _evaluate(self, calls: list[tuple[list[str], list[str]]], *, loaded: bool = False) -> list[Any]:
        if isinstance(self._redis, RedisCluster):
            # redis-py refuses EVALSHA in a cluster pipeline: the calls go out together instead, each
            # to its key's node (the script loads itself where it is missing); errors come back as results.
            return await asyncio.gather(*(self._script(keys=k, args=a) for k, a in calls), return_exceptions=True)
        # ``async with``: a pipeline cut off mid-call (a request cancelled, the app shutting down) is
        # reset and gives its connection back, instead of being left for the garbage collector.
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        if not loaded and any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            await self._redis.script_load(_TAKE)  # a new or restarted Redis has not seen it yet
            return await self._evaluate(calls, loaded=True)
        return results


class LocalBuckets:
    """The same buckets in this process's memory (see the module docstring); at most ``max_keys``
    of them, the least recently used forgotten first (a forgotten bucket starts full again)."""

    def __init__(self, max_keys: int = 50_000) -> None:
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, t)

    def take(self, now: float, charges: Sequence[Charge]) -> Verdict:
        positions = _enabled(charges)
        live = [charges[i] for i in positions]
        state: list[tuple[float, float]] = []
        wait, which = 0.0, 0
        for i, (key, limit) in enumerate(live, 1):
            have, t = self._buckets.get(key, (float(limit.burst), now))
            if now > t:
                have, t = min(limit.burst, have + (now - t) * limit.per_second), now
            state.append((have, t))
            if have < 1:
                wait = max(wait, (1 - have) / limit.per_second)
                which = which or i
        for (key, _), (have, t) in zip(live, state, strict=True):
            self._buckets[key] = (have - 1 if which == 0 else have, t)
            self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return _verdict(wait, which, positions)
