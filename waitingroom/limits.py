"""Per-client join limits: who the client is, and an atomic token bucket per client in Redis.

The client is the connecting address, or, when the connection comes from a trusted proxy, the
right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries further left are
whatever the client chose to send, so they are never believed). IPv6 clients are limited per /64,
since one subscriber typically holds a whole /64. Each client gets ``burst`` joins at once, refilled
at ``per_minute``; one Redis round trip (a Lua script) per join.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.keys import join_bucket_key

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_BUCKET = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 't')
local tokens = tonumber(b[1]) or burst
local t = tonumber(b[2]) or now
if now > t then tokens = math.min(burst, tokens + (now - t) * rate) end
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 't', string.format('%.17g', math.max(now, t)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, string.format('%.17g', (1 - tokens) / rate)}
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
class Verdict:
    allowed: bool
    retry_after_s: int


class JoinLimiter:
    def __init__(self, redis: Redis, *, per_minute: float, burst: int) -> None:
        self._script = redis.register_script(_BUCKET)
        self._rate = per_minute / 60.0
        self._burst = burst

    @property
    def enabled(self) -> bool:
        return self._rate > 0 and self._burst > 0

    async def check(self, client: str, now: float) -> Verdict:
        """Take one join from the client's bucket (atomic); say when to retry if it is empty."""
        allowed, wait = await self._script(
            keys=[join_bucket_key(client)], args=[repr(now), repr(self._rate), self._burst]
        )
        return Verdict(bool(int(allowed)), max(1, math.ceil(float(wait))))
