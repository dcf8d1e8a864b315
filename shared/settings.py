"""Settings: the one place that reads the environment.

Every process builds one frozen :class:`Settings` with :meth:`Settings.from_env` (the CLI may
override single fields with ``dataclasses.replace``); tests build it directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.keys import BOOKING_QUEUE_NAME

_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class SettingsError(ValueError):
    """The configuration cannot work; the message says which variable and why."""


def parse_secret_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse ``kid:secret,kid:secret``; the last pair signs, all verify."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep or not _KID.match(kid) or len(secret) < 16:
            raise SettingsError(
                "SURGEGATE_SECRET_KEYS must be comma-separated kid:secret pairs "
                "(kid of letters, digits, - or _; secret of at least 16 characters)"
            )
        pairs.append((kid, secret))
    if len({kid for kid, _ in pairs}) != len(pairs):
        raise SettingsError("SURGEGATE_SECRET_KEYS has a repeated kid")
    return tuple(pairs)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name} must be a positive integer")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    secret_keys: tuple[tuple[str, str], ...] = ()
    admin_tokens: tuple[str, ...] = ()
    # Keys the hash of a person's id number (person_ref). Kept apart from the signing keys so
    # rotating those never changes who is who; defaults to one derived from the oldest signing key.
    person_key: str | None = None
    host: str = "127.0.0.1"
    edge_port: int = 8080
    api_port: int = 8081
    worker_metrics_port: int = 9101
    # Where browsers reach the services (printed by `up`, used for booking_url and CORS).
    public_edge_url: str | None = None
    public_api_url: str | None = None
    cors_origins: tuple[str, ...] = ()
    booking_wait_s: float = 2.0
    max_body_bytes: int = 64 * 1024
    # Booking queue depth above which the API sheds load with 503 overloaded.
    max_queue_depth: int = 50_000
    queue_name: str = BOOKING_QUEUE_NAME
    edge_tick_s: float = 0.1
    # Polls per second all waiters of one event may send together (see waitingroom/polling.py).
    poll_budget_per_s: float = 2000.0
    # Joins per client (IPv4 address or IPv6 /64): a burst, refilled per minute; 0 disables.
    join_limit_per_min: float = 30.0
    join_limit_burst: int = 10
    # Proxies whose X-Forwarded-For is believed (CIDRs), e.g. the load balancer's addresses.
    trusted_proxies: tuple[str, ...] = ()
    event_refresh_s: float = 1.0
    # How often each edge saves where every queue stands (the restore point if Redis loses it).
    checkpoint_interval_s: float = 1.0
    # How often the auto rate controller (rate_mode "auto") re-decides each event's rate.
    rate_control_interval_s: float = 2.0
    token_leeway_s: int = 5
    log_level: str = "INFO"
    # Holds: how long a seat stays set aside for an admission.
    hold_ttl_s: int = 300
    # Waitlist: how many people one freed seat is offered to at once, and for how long.
    waitlist_offer_size: int = 3
    waitlist_offer_window_s: int = 7200
    # Search answers are served from a per-process cache at most this old (a booking, cancel or
    # hold in the same process drops the site's entry at once).
    search_cache_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def port(name: str, default: int) -> int:
            raw = env.get(name)
            if not raw:
                return default
            if not raw.isdigit() or not 0 <= int(raw) < 65536:
                raise SettingsError(f"{name} must be a port number")
            return int(raw)

        origins = tuple(o.strip() for o in env.get("SURGEGATE_CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            database_url=env.get("SURGEGATE_DATABASE_URL") or None,
            redis_url=env.get("SURGEGATE_REDIS_URL") or None,
            secret_keys=parse_secret_keys(env.get("SURGEGATE_SECRET_KEYS", "")),
            admin_tokens=tuple(t.strip() for t in env.get("SURGEGATE_ADMIN_TOKEN", "").split(",") if t.strip()),
            person_key=env.get("SURGEGATE_PERSON_KEY") or None,
            host=env.get("SURGEGATE_HOST", "127.0.0.1"),
            edge_port=port("SURGEGATE_EDGE_PORT", 8080),
            api_port=port("SURGEGATE_API_PORT", 8081),
            worker_metrics_port=port("SURGEGATE_WORKER_METRICS_PORT", 9101),
            public_edge_url=env.get("SURGEGATE_PUBLIC_EDGE_URL") or None,
            public_api_url=env.get("SURGEGATE_PUBLIC_API_URL") or None,
            cors_origins=origins,
            booking_wait_s=float(env.get("SURGEGATE_BOOKING_WAIT_S", "2.0")),
            poll_budget_per_s=float(env.get("SURGEGATE_POLL_BUDGET_PER_S", "2000")),
            join_limit_per_min=float(env.get("SURGEGATE_JOIN_LIMIT_PER_MIN", "30")),
            join_limit_burst=int(env.get("SURGEGATE_JOIN_LIMIT_BURST", "10")),
            trusted_proxies=tuple(p.strip() for p in env.get("SURGEGATE_TRUSTED_PROXIES", "").split(",") if p.strip()),
            log_level=env.get("SURGEGATE_LOG_LEVEL", "INFO").upper(),
            hold_ttl_s=_positive_int(env, "SURGEGATE_HOLD_TTL_S", 300),
            waitlist_offer_size=_positive_int(env, "SURGEGATE_WAITLIST_OFFER_SIZE", 3),
            waitlist_offer_window_s=_positive_int(env, "SURGEGATE_WAITLIST_OFFER_WINDOW_S", 7200),
            search_cache_s=float(env.get("SURGEGATE_SEARCH_CACHE_S", "1.0")),
        )

    # --- derived values -------------------------------------------------------------------------

    @property
    def edge_url(self) -> str:
        return (self.public_edge_url or f"http://{self.host}:{self.edge_port}").rstrip("/")

    @property
    def api_url(self) -> str:
        return (self.public_api_url or f"http://{self.host}:{self.api_port}").rstrip("/")

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Origins allowed to call the booking API from a browser (the queue page's origin)."""
        if self.cors_origins:
            return frozenset(self.cors_origins)
        origins = {self.edge_url}
        if self.public_edge_url is None:
            # Browsers may reach a laptop run as either loopback name.
            origins.add(f"http://localhost:{self.edge_port}")
            origins.add(f"http://127.0.0.1:{self.edge_port}")
        return frozenset(origins)

    def require_database(self) -> str:
        if not self.database_url:
            raise SettingsError("SURGEGATE_DATABASE_URL is not set (use `surgegate up` for embedded servers)")
        return self.database_url

    def require_redis(self) -> str:
        if not self.redis_url:
            raise SettingsError("SURGEGATE_REDIS_URL is not set (use `surgegate up` for embedded servers)")
        return self.redis_url

    def require_keys(self) -> None:
        if not self.secret_keys:
            raise SettingsError("SURGEGATE_SECRET_KEYS is not set; servers refuse to start without a signing key")

    def require_admin(self) -> None:
        if not self.admin_tokens:
            raise SettingsError("SURGEGATE_ADMIN_TOKEN is not set; servers refuse to start without one")
