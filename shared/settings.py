"""Settings: the one place that reads the environment.

Every process builds one frozen :class:`Settings` with :meth:`Settings.from_env` (the CLI may
override single fields with ``dataclasses.replace``); tests build it directly. It is a pydantic
dataclass, so every construction — from the environment, directly, or by ``replace`` — checks types
and ranges; a bad variable stops the process at start with a :class:`SettingsError` that names it
and says what it expects (``SURGEGATE_HOLD_TTL_S must be a whole number above 0, not 'abc'``).

Each field read from the environment says so next to its type (``Env("SURGEGATE_...")``); the
others are tuning knobs for tests and benchmarks. Why not pydantic-settings: its ``BaseSettings``
is a model, not a dataclass (the CLI and tests override fields with ``dataclasses.replace``), and it
reads ``os.environ`` on every construction, tests' direct ones included; what it would do here is
the dozen lines of :meth:`Settings.from_env`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass, is_pydantic_dataclass
from pydantic.fields import FieldInfo

from shared.keys import BOOKING_QUEUE_NAME

_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# What an id number may be once written in its canonical form (shared/persons.py): ASCII letters
# (upper case) and digits, separators already removed.
DEFAULT_ID_NUMBER_PATTERN = "[A-Z0-9]{1,64}"


class SettingsError(ValueError):
    """The configuration cannot work; the message says which variable and why."""


def parse_secret_keys(raw: str, variable: str = "SURGEGATE_SECRET_KEYS") -> tuple[tuple[str, str], ...]:
    """Parse ``kid:secret,kid:secret`` (of ``variable``, which errors name); the last pair signs, all verify."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep or not _KID.match(kid) or len(secret) < 16:
            raise SettingsError(
                f"{variable} must be comma-separated kid:secret pairs "
                "(kid of letters, digits, - or _; secret of at least 16 characters)"
            )
        pairs.append((kid, secret))
    if len({kid for kid, _ in pairs}) != len(pairs):
        raise SettingsError(f"{variable} has a repeated kid")
    return tuple(pairs)


def _parse_smtp_url(raw: str) -> str:
    """``smtp://[user:pass@]host[:port]`` or ``smtps://…``; the error never repeats the value (it may
    hold a password)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw)
        ok = parts.scheme in {"smtp", "smtps"} and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
        raise SettingsError(
            "SURGEGATE_SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://[user:pass@]host[:port]"
        )
    return raw


def _parse_ca_file(raw: str) -> str:
    """A PEM file of CA certificates that loads: checked at start, not at the first email."""
    import ssl

    try:
        ssl.create_default_context(cafile=raw)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"SURGEGATE_SMTP_CA_FILE must be a readable PEM file of CA certificates, not {raw!r} ({type(exc).__name__})"
        ) from None
    return raw


def _parse_role_map(raw: str) -> tuple[tuple[str, str], ...]:
    from shared.idp import parse_role_map  # shared.idp imports this module

    return parse_role_map(raw)


def comma_list(raw: str) -> tuple[str, ...]:
    """``a, b,,c`` -> ``("a", "b", "c")``."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_audit_keys(raw: str) -> tuple[str, ...]:
    """``seed,seed``: base64url (padding optional) of 32-byte Ed25519 private keys; the last signs."""
    keys = comma_list(raw)
    for key in keys:
        try:
            seed = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except (ValueError, binascii.Error):
            seed = b""
        if len(seed) != 32:
            raise SettingsError(
                "SURGEGATE_AUDIT_SIGNING_KEY must be comma-separated base64url Ed25519 private keys of 32 bytes "
                "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'` makes one)"
            )
    return keys


@dataclasses.dataclass(frozen=True)
class Env:
    """Marks a field as read from the environment variable ``name``; ``parse`` turns the text
    into the field's value first (else pydantic converts it). An empty variable counts as unset."""

    name: str
    parse: Callable[[str], Any] | None = None


# The kinds of value a variable may hold; ``description`` is what the error message says it expects.
Port = Annotated[int, Field(ge=0, le=65535, description="a port number (0 to 65535)")]
PositiveInt = Annotated[int, Field(gt=0, description="a whole number above 0")]
NonNegativeInt = Annotated[int, Field(ge=0, description="a whole number (0 or more)")]
PositiveFloat = Annotated[float, Field(gt=0, description="a number above 0")]
NonNegativeFloat = Annotated[float, Field(ge=0, description="a number (0 or more)")]


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:  # as a ValueError, pydantic reports it as this field's error
        raise ValueError(str(exc)) from None
    return pattern


Regex = Annotated[str, AfterValidator(_compiles), Field(min_length=1, description="a regular expression")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET"],  # logging's names
    Field(description="a logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL"),
]

LogFormat = Annotated[Literal["text", "json"], Field(description="text or json")]


@dataclass(frozen=True, config=ConfigDict(allow_inf_nan=False))
class Settings:
    database_url: Annotated[str | None, Env("SURGEGATE_DATABASE_URL")] = None
    redis_url: Annotated[str | None, Env("SURGEGATE_REDIS_URL")] = None
    secret_keys: Annotated[tuple[tuple[str, str], ...], Env("SURGEGATE_SECRET_KEYS", parse_secret_keys)] = ()
    admin_tokens: Annotated[tuple[str, ...], Env("SURGEGATE_ADMIN_TOKEN", comma_list)] = ()
    # Keys the hash of a person's id number (person_ref). Kept apart from the signing keys so
    # rotating those never changes who is who; defaults to one derived from the oldest signing key.
    person_key: Annotated[str | None, Env("SURGEGATE_PERSON_KEY")] = None
    host: Annotated[str, Env("SURGEGATE_HOST")] = "127.0.0.1"
    edge_port: Annotated[Port, Env("SURGEGATE_EDGE_PORT")] = 8080
    api_port: Annotated[Port, Env("SURGEGATE_API_PORT")] = 8081
    worker_metrics_port: Annotated[Port, Env("SURGEGATE_WORKER_METRICS_PORT")] = 9101
    # Where browsers reach the services (printed by `up`, used for booking_url and CORS).
    public_edge_url: Annotated[str | None, Env("SURGEGATE_PUBLIC_EDGE_URL")] = None
    public_api_url: Annotated[str | None, Env("SURGEGATE_PUBLIC_API_URL")] = None
    cors_origins: Annotated[tuple[str, ...], Env("SURGEGATE_CORS_ORIGINS", comma_list)] = ()
    booking_wait_s: Annotated[NonNegativeFloat, Env("SURGEGATE_BOOKING_WAIT_S")] = 2.0
    max_body_bytes: PositiveInt = 64 * 1024
    # Booking queue depth above which the API sheds load with 503 overloaded.
    max_queue_depth: NonNegativeInt = 50_000
    queue_name: str = BOOKING_QUEUE_NAME
    edge_tick_s: PositiveFloat = 0.1
    # Polls per second all waiters of one event may send together (see waitingroom/polling.py).
    poll_budget_per_s: Annotated[PositiveFloat, Env("SURGEGATE_POLL_BUDGET_PER_S")] = 2000.0
    # Joins per client (IPv4 address or IPv6 /64): a burst, refilled per minute; 0 disables.
    join_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_JOIN_LIMIT_PER_MIN")] = 30.0
    join_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_JOIN_LIMIT_BURST")] = 10
    # Proxies whose X-Forwarded-For is believed (CIDRs), e.g. the load balancer's addresses.
    trusted_proxies: Annotated[tuple[str, ...], Env("SURGEGATE_TRUSTED_PROXIES", comma_list)] = ()
    event_refresh_s: NonNegativeFloat = 1.0
    # How often each edge saves where every queue stands (the restore point if Redis loses it).
    checkpoint_interval_s: PositiveFloat = 1.0
    # How often the auto rate controller (rate_mode "auto") re-decides each event's rate.
    rate_control_interval_s: PositiveFloat = 2.0
    token_leeway_s: NonNegativeInt = 5
    log_level: Annotated[LogLevel, Env("SURGEGATE_LOG_LEVEL", str.upper)] = "INFO"
    # Holds: how long a seat stays set aside for an admission.
    hold_ttl_s: Annotated[PositiveInt, Env("SURGEGATE_HOLD_TTL_S")] = 300
    # Waitlist: how many people one freed seat is offered to at once, and for how long.
    waitlist_offer_size: Annotated[PositiveInt, Env("SURGEGATE_WAITLIST_OFFER_SIZE")] = 3
    waitlist_offer_window_s: Annotated[PositiveInt, Env("SURGEGATE_WAITLIST_OFFER_WINDOW_S")] = 7200
    # Search answers are served from a per-process cache at most this old (a booking, cancel or
    # hold in the same process drops the site's entry at once).
    search_cache_s: Annotated[NonNegativeFloat, Env("SURGEGATE_SEARCH_CACHE_S")] = 1.0
    # --- issue 14, item 5: one person, one identity -------------------------------------------------
    # The whole canonical form of an id number (NFKC, case-folded, upper case, every script's digits
    # as ASCII, separators " - . /" removed) must match this, or the request is refused 400.
    id_number_pattern: Annotated[Regex, Env("SURGEGATE_ID_NUMBER_PATTERN")] = DEFAULT_ID_NUMBER_PATTERN
    # --- issue 14, item 4 ---
    # A queue ticket older than this answers "expired" (join again), also for an event that never
    # closes; the ticket cookie and the pinned admission moments live as long.
    ticket_max_age_s: Annotated[PositiveInt, Env("SURGEGATE_TICKET_MAX_AGE_S")] = 7 * 86400
    # --- issue 14 item 7: the booking API's limits per credential (admission/throttle.py) ----------
    # Requests per admission token, a burst refilled per minute, reads (GET) and writes (POST, DELETE)
    # apart, so a visitor polling an attempt's status is never refused for their own writes; 0 disables.
    api_token_read_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_API_TOKEN_READ_LIMIT_PER_MIN")] = 120.0
    api_token_read_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_API_TOKEN_READ_LIMIT_BURST")] = 60
    api_token_write_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_API_TOKEN_WRITE_LIMIT_PER_MIN")] = 20.0
    api_token_write_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_API_TOKEN_WRITE_LIMIT_BURST")] = 10
    # Requests per client (IPv4 address, IPv6 /64, behind SURGEGATE_TRUSTED_PROXIES), all its admission
    # tokens, claims and the admin API together; sized for a few dozen people behind one NAT.
    api_client_read_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_API_CLIENT_READ_LIMIT_PER_MIN")] = 1200.0
    api_client_read_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_API_CLIENT_READ_LIMIT_BURST")] = 300
    api_client_write_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_API_CLIENT_WRITE_LIMIT_PER_MIN")] = 240.0
    api_client_write_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_API_CLIENT_WRITE_LIMIT_BURST")] = 120
    # What one admission may leave behind: hold rows in total (replaced ones stay as rows), and stored
    # Idempotency-Keys (of holds, reschedules, waitlist joins; and, apart, booking attempts); 0: no cap.
    max_holds_per_admission: Annotated[NonNegativeInt, Env("SURGEGATE_MAX_HOLDS_PER_ADMISSION")] = 50
    max_keys_per_admission: Annotated[NonNegativeInt, Env("SURGEGATE_MAX_KEYS_PER_ADMISSION")] = 100
    # --- issue 11, "Staff and roles" items 1-2: staff signed in by an identity provider (shared/idp.py) ---
    # Bearer JWTs on /admin/* are verified against this issuer's JWKS; all three or none.
    idp_issuer: Annotated[str | None, Env("SURGEGATE_IDP_ISSUER")] = None
    idp_audience: Annotated[str | None, Env("SURGEGATE_IDP_AUDIENCE")] = None
    idp_jwks_url: Annotated[str | None, Env("SURGEGATE_IDP_JWKS_URL")] = None
    # The claim carrying the roles (a dotted path, e.g. realm_access.roles), and optionally how its
    # values map to roles ("sg-ops:operator,sg-supply:supply"); without a map the values are role names.
    idp_roles_claim: Annotated[str, Env("SURGEGATE_IDP_ROLES_CLAIM"), Field(min_length=1)] = "roles"
    idp_role_map: Annotated[tuple[tuple[str, str], ...], Env("SURGEGATE_IDP_ROLE_MAP", _parse_role_map)] = ()
    idp_algorithms: Annotated[tuple[str, ...], Env("SURGEGATE_IDP_ALGORITHMS", comma_list)] = ("RS256", "ES256")
    # The key set is kept this long; an unknown kid refetches it, at most once per idp_jwks_refetch_s.
    idp_jwks_max_age_s: PositiveFloat = 300.0
    idp_jwks_refetch_s: NonNegativeFloat = 10.0
    # The staff key the CLIs (event, supply, ...) send when no --key is given (item 5).
    staff_key: Annotated[str | None, Env("SURGEGATE_STAFF_KEY")] = None
    # --- issue 11, reports (shared/reports.py) ------------------------------------------------------
    # A report's count below this is published as suppressed (and so is a complementary cell).
    report_min_cell: Annotated[PositiveInt, Env("SURGEGATE_REPORT_MIN_CELL")] = 5
    # --- issue 11, "Keeping less": retention and the person seal keys (shared/retention.py, persons.py) --
    # Days after an appointment's slot ended (a waitlist entry's day, a message's sending) that the
    # person's name, email and birth date are kept; then their ciphertext is destroyed.
    retention_days: Annotated[PositiveInt, Env("SURGEGATE_RETENTION_DAYS")] = 90
    # Keys that encrypt person details at rest, ``kid:secret,kid:secret``: the last seals, all open
    # (as SURGEGATE_SECRET_KEYS). Unset: the key derived from SURGEGATE_PERSON_KEY, as before rotation
    # existed; list that one as ``kid:<the SURGEGATE_PERSON_KEY value>`` to keep opening what it sealed.
    person_seal_keys: Annotated[
        tuple[tuple[str, str], ...],
        Env("SURGEGATE_PERSON_SEAL_KEYS", partial(parse_secret_keys, variable="SURGEGATE_PERSON_SEAL_KEYS")),
    ] = ()
    # --- issue 11, "Audit you can prove" (items 1-2: the hash chain and its signed checkpoints) ------
    # Ed25519 private keys (base64url of the 32-byte seed), comma-separated: the last signs the audit's
    # checkpoints, all verify them (rotation). Without one the chain is sealed but never signed.
    audit_signing_keys: Annotated[tuple[str, ...], Env("SURGEGATE_AUDIT_SIGNING_KEY", parse_audit_keys)] = ()
    # How often the chain's head is signed, and how old an audit row must be before it is sealed (rows
    # committed later than that still chain, with a later seq; the margin only keeps seq near audit_id).
    audit_checkpoint_interval_s: Annotated[PositiveFloat, Env("SURGEGATE_AUDIT_CHECKPOINT_INTERVAL_S")] = 60.0
    audit_seal_margin_s: NonNegativeFloat = 1.0
    # --- issue 12, "HTTP metrics and logs an operator can use" ---------------------------------------
    # One INFO line per HTTP request (aiohttp.access) from the edge and the API; off: logs stay quiet.
    access_log: Annotated[bool, Env("SURGEGATE_ACCESS_LOG"), Field(description="1 or 0 (true or false)")] = False
    # "text" (one readable line per record) or "json" (one JSON object per line, for log shippers).
    log_format: Annotated[LogFormat, Env("SURGEGATE_LOG_FORMAT", str.lower)] = "text"
    # --- issue 9, "After Book": delivering notifications (booking_worker/dispatcher.py) --------------
    # smtp://[user:pass@]host:port (STARTTLS when the server offers it) or smtps://… (implicit TLS).
    # Unset: no email goes out (under `surgegate up`, a local sink keeps each message as a .eml file).
    smtp_url: Annotated[str | None, Env("SURGEGATE_SMTP_URL", _parse_smtp_url)] = None
    mail_from: Annotated[str, Env("SURGEGATE_MAIL_FROM"), Field(min_length=3)] = "surgegate@localhost"
    # Text messages: each is POSTed as JSON signed with HMAC-SHA256 to this URL (unset: no SMS).
    sms_webhook_url: Annotated[str | None, Env("SURGEGATE_SMS_WEBHOOK_URL")] = None
    sms_webhook_secret: Annotated[str | None, Env("SURGEGATE_SMS_WEBHOOK_SECRET")] = None
    # Retries: exponential backoff from the first delay, capped, with jitter, for this long after a
    # message fell due; then it is `failed` (the dead letter).
    notify_retry_budget_s: Annotated[PositiveFloat, Env("SURGEGATE_NOTIFY_RETRY_BUDGET_S")] = 3600.0
    notify_retry_first_s: PositiveFloat = 5.0
    notify_retry_max_s: PositiveFloat = 600.0
    # A claimed message not marked sent within this lease goes back to any dispatcher.
    notify_lease_s: PositiveFloat = 60.0
    notify_batch: PositiveInt = 50
    # Where the dispatcher looks again when the outbox was empty.
    notify_poll_s: PositiveFloat = 1.0
    # Where `surgegate up` starts its mail sink when SURGEGATE_SMTP_URL is unset (0: any free port).
    mail_sink_port: NonNegativeInt = 0
    # --- issue 9, "A way back: the manage link" -----------------------------------------------------
    # POST /api/v1/manage-links per client (IPv4 address or IPv6 /64): a few at once, then this many a
    # minute (each may send an email to a stranger; 0 switches the limit off).
    manage_link_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_MANAGE_LINK_LIMIT_PER_MIN")] = 1.0
    manage_link_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_MANAGE_LINK_LIMIT_BURST")] = 3
    # --- issue 10, "Eligibility" ----------------------------------------------------------------------
    # How long an eligibility decision may be booked with (the booking re-evaluates it anyway).
    eligibility_decision_ttl_s: Annotated[PositiveInt, Env("SURGEGATE_ELIGIBILITY_DECISION_TTL_S")] = 3600
    # Evaluations per queue ticket or admission: a burst, refilled per minute; 0 disables.
    eligibility_limit_per_min: Annotated[NonNegativeFloat, Env("SURGEGATE_ELIGIBILITY_LIMIT_PER_MIN")] = 10.0
    eligibility_limit_burst: Annotated[NonNegativeInt, Env("SURGEGATE_ELIGIBILITY_LIMIT_BURST")] = 5
    # How long an API process may answer from the published version it last read (pointer in PostgreSQL).
    eligibility_refresh_s: NonNegativeFloat = 0.5
    # --- issue 9, "The booking page, finished" (waitingroom/page.py) ---------------------------------
    # Who runs the program: named in the queue page's header and footer (empty: not shown).
    org_name: Annotated[str, Env("SURGEGATE_ORG_NAME")] = ""
    # --- issue 9, delivery follow-up: whom the SMTP client trusts ---------------------------------------
    # A PEM file of CA certificates trusted for the SMTP server's certificate (STARTTLS or smtps://), on
    # top of the system's: a private relay's own CA. Certificates are always verified, host name too.
    smtp_ca_file: Annotated[str | None, Env("SURGEGATE_SMTP_CA_FILE", _parse_ca_file)] = None
    # --- issue 13, "Outgrowing one machine" (README "Scaling out") ---------------------------------
    # Where the booking queue (arq) and the booking API's rate-limit buckets live: one Redis, never a
    # cluster (arq does not speak cluster). Unset: the same as SURGEGATE_REDIS_URL.
    queue_redis_url: Annotated[str | None, Env("SURGEGATE_QUEUE_REDIS_URL")] = None
    # A PostgreSQL streaming replica serving reads that may lag (search, reports); unset: the primary.
    database_replica_url: Annotated[str | None, Env("SURGEGATE_DATABASE_REPLICA_URL")] = None
    # A replica further behind than this (seconds) is not used: reads go to the primary meanwhile.
    replica_max_lag_s: Annotated[NonNegativeFloat, Env("SURGEGATE_REPLICA_MAX_LAG_S")] = 5.0
    # --- issue 13, "Joins" (README "How joins are batched") -------------------------------------
    # The joins of one event an edge receives within this window (milliseconds, from the first) take
    # their numbers in one Redis script call; 0: only those ready in the same turn of the event loop.
    join_batch_window_ms: Annotated[NonNegativeFloat, Env("SURGEGATE_JOIN_BATCH_WINDOW_MS")] = 1.0
    # At most this many joins per script call (a full batch is sent at once, before its window ends).
    join_batch_max: Annotated[PositiveInt, Env("SURGEGATE_JOIN_BATCH_MAX")] = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default ``os.environ``); unset or empty variables keep the
        defaults. Raises :class:`SettingsError` naming every bad variable and what it expects."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        read: dict[str, tuple[Env, str]] = {}  # field -> (its variable, the text found there)
        fields = _fields()
        for name, field in fields.items():
            var = next((m for m in field.metadata if isinstance(m, Env)), None)
            raw = env.get(var.name, "") if var else ""
            if var and raw:
                values[name] = var.parse(raw) if var.parse else raw
                read[name] = (var, raw)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0])
                var, raw = read[name]
                expects = fields[name].description or error["msg"]
                problems.append(f"{var.name} must be {expects}, not {raw!r}")
            raise SettingsError("; ".join(problems)) from None

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

    def require_queue_redis(self) -> str:
        """The booking queue's Redis: SURGEGATE_QUEUE_REDIS_URL, else SURGEGATE_REDIS_URL."""
        if self.queue_redis_url:
            return self.queue_redis_url
        if not self.redis_url:
            raise SettingsError(
                "SURGEGATE_QUEUE_REDIS_URL or SURGEGATE_REDIS_URL is not set (use `surgegate up` for embedded servers)"
            )
        return self.redis_url

    def require_keys(self) -> None:
        if not self.secret_keys:
            raise SettingsError("SURGEGATE_SECRET_KEYS is not set; servers refuse to start without a signing key")

    def require_admin(self) -> None:
        if not self.admin_tokens:
            raise SettingsError("SURGEGATE_ADMIN_TOKEN is not set; servers refuse to start without one")


def _fields() -> dict[str, FieldInfo]:
    """Settings' fields as pydantic sees them: their metadata holds the :class:`Env` markers."""
    assert is_pydantic_dataclass(Settings)  # always true; tells mypy the class has pydantic's attributes
    return Settings.__pydantic_fields__
