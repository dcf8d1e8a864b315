"""Limits per credential on the booking API: requests per admission token and per client.

Every ``/api/v1/*`` and ``/admin/v1/*`` request takes one request from up to two token buckets
(:mod:`shared.limits`), kept in Redis so that every API process shares them:

* its admission token's (every ``/api/v1`` route but the waitlist claim, whose link is the credential);
* its client's: the IPv4 address or IPv6 /64 behind ``SURGEGATE_TRUSTED_PROXIES``, shared by all the
  tokens it presents, its claims and the admin API.

Reads (GET, HEAD) and writes (anything else) have buckets of their own, so a visitor who polls an
attempt's status once a second is never refused for their own holds and bookings, nor for another
visitor's spam: a token's buckets are its own. Taking is all or nothing, so a token refused for its
own excess does not drain its client's shared allowance. Over a limit: 429 ``rate_limited`` with
``Retry-After``, and nothing of the request runs. The request is checked after its admission token
is verified, so a forged token id can never spend someone else's allowance.

Redis unreachable: each process decides on its own, with the same limits in its memory
(:class:`shared.limits.LocalBuckets`), and asks Redis again after :data:`REDIS_RETRY_S`. Requests are
neither refused for the outage (the routes that need no Redis keep working) nor let through
unbounded: with N API processes a credential gets at most N times its allowance until Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.exceptions
from redis.asyncio import Redis

from shared.errors import RateLimited
from shared.keys import api_bucket_key
from shared.limits import Buckets, Charge, IPNetwork, Limit, LocalBuckets, Verdict, client_key
from shared.metrics import Metrics
from shared.settings import Settings

log = logging.getLogger("surgegate.admission")

READS = frozenset({"GET", "HEAD"})
# After Redis failed, decide in memory this long before trying it again (so an outage costs each
# process one failed round trip per interval, not one per request).
REDIS_RETRY_S = 1.0
# The limiter's own Redis client gives up this fast: a slow Redis must not slow every request down.
REDIS_TIMEOUT_S = 0.5

_DETAIL = {
    "token": "too many requests with this admission; retry after the time in Retry-After",
    "client": "too many requests from your network; retry after the time in Retry-After",
    "manage_links": "too many requests for links from your network; retry after the time in Retry-After",
}


class Throttle:
    """The booking API's request limits (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        trusted: tuple[IPNetwork, ...],
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        s = settings
        self._limits = {
            ("token", "read"): Limit(s.api_token_read_limit_per_min, s.api_token_read_limit_burst),
            ("token", "write"): Limit(s.api_token_write_limit_per_min, s.api_token_write_limit_burst),
            ("client", "read"): Limit(s.api_client_read_limit_per_min, s.api_client_read_limit_burst),
            ("client", "write"): Limit(s.api_client_write_limit_per_min, s.api_client_write_limit_burst),
            ("manage_links", "write"): Limit(s.manage_link_limit_per_min, s.manage_link_limit_burst),
        }
        self._shared = Buckets(redis)
        self._local = LocalBuckets()
        self._trusted = trusted
        self._metrics = metrics
        self._clock = clock  # wall time: buckets in Redis are shared by processes on several hosts
        self._local_until = 0.0  # monotonic time before which Redis is not asked (it just failed)

    @property
    def enabled(self) -> bool:
        return any(limit.enabled for limit in self._limits.values())

    async def check(self, *, method: str, token_id: str | None, peer: str | None, forwarded_for: str | None) -> None:
        """Take one request from the buckets of this request's admission token (its verified
        ``token_id``, None where there is none) and client (``peer``, the connecting address, and
        its ``X-Forwarded-For``); raise RateLimited if any is empty."""
        kind = "read" if method in READS else "write"
        scopes: list[tuple[str, str]] = []
        if token_id is not None:
            scopes.append(("token", token_id))
        scopes.append(("client", client_key(peer, forwarded_for, self._trusted)))
        charges = [(api_bucket_key(scope, kind, who), self._limits[scope, kind]) for scope, who in scopes]
        verdict = await self._take(charges)
        if not verdict.allowed:
            assert verdict.refused_by is not None
            scope = scopes[verdict.refused_by][0]
            self._metrics.api_throttled.labels(scope, kind).inc()
            raise RateLimited(_DETAIL[scope], retry_after=verdict.retry_after_s)

    async def check_manage_links(self, *, peer: str | None, forwarded_for: str | None) -> None:
        """Take one request for a lost manage link from the client's own, much smaller bucket (each may
        email someone); raise RateLimited when it is empty. The general limits apply as well."""
        charge = (api_bucket_key("manage_links", "write", client_key(peer, forwarded_for, self._trusted)),
                  self._limits["manage_links", "write"])  # fmt: skip
        if not charge[1].enabled:
            return
        verdict = await self._take([charge])
        if not verdict.allowed:
            self._metrics.api_throttled.labels("manage_links", "write").inc()
            raise RateLimited(_DETAIL["manage_links"], retry_after=verdict.retry_after_s)

    async def check_bucket(self, key: str, limit: Limit, detail: str) -> None:
        """Take one request from one named bucket (another concept's limit, e.g. eligibility
        evaluations per ticket: admission/eligibility.py), with the same Redis-or-local fallback."""
        verdict = await self._take([(key, limit)])
        if not verdict.allowed:
            raise RateLimited(detail, retry_after=verdict.retry_after_s)

    async def _take(self, charges: list[Charge]) -> Verdict:
        now = self._clock()
        if time.monotonic() >= self._local_until:
            try:
                verdict = await self._shared.take(now, charges)
            except (redis.exceptions.RedisError, OSError) as exc:
                if not self._local_until:
                    log.warning(
                        "rate limits: Redis unreachable (%s); each process limits on its own", type(exc).__name__
                    )
                self._local_until = time.monotonic() + REDIS_RETRY_S
            else:
                if self._local_until:
                    log.info("rate limits: Redis reachable again; limits are shared again")
                    self._local_until = 0.0
                return verdict
        self._metrics.api_throttle_local.inc()
        return self._local.take(now, charges)
