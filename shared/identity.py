"""Identity to the level an event requires: OpenID Connect ID tokens of an event's identity provider.

An event may name its program's identity provider (table ``event_identity``, migration 0023; set by
``PUT /admin/v1/events/{event_id}/identity``, role ``rules``): issuer, audience, JWKS URL, the
provider's assurance levels (``acr_values``, lowest first), the minimum level the event requires
(``min_acr``) and the signature algorithms accepted (public-key ones only).

What a caller can rely on:

- :func:`verify_id_token` returns a token's claims only when it is signed by a key of the provider's
  JWKS (with one of the configured algorithms), its ``iss`` and ``aud`` are the configured ones, its
  ``exp`` (required) and ``nbf`` (if present) hold at ``now`` (within the leeway), and, when the event
  sets ``min_acr``, its ``acr`` is one of ``acr_values`` at or above ``min_acr``. Anything else —
  no token, an unreadable one, a forged, expired, foreign or too weak one — raises
  ``Refused(Code.IDENTITY_REQUIRED)`` whose detail says which (never a claim's value). A provider
  whose keys cannot be fetched (and none are cached) is ``Overloaded`` (503): the visitor is not at
  fault. The JOSE work is PyJWT's; the key set (cache, refetch on an unknown ``kid``) is
  :class:`shared.idp.JwksKeys`, the same one staff sign-in uses.
- :func:`verified_attributes` maps the claims to the rule set's attributes whose ``source`` is
  ``verified``: the attribute takes the claim named by its schema's ``claim`` (a dotted path into
  nested claims such as ``address.region``; default: the attribute's own name), type-checked against
  the attribute's ``type``. A missing claim or one of the wrong type is ``identity_required`` too.
- :meth:`Identities.verified` is what the evaluate endpoint calls: it reads the event's configuration
  (at most :data:`CACHE_S` old), demands a valid token when the event has a provider (or when the rule
  set asks for verified attributes), and returns the verified attributes. The token travels in the
  evaluate request's body as ``"id_token"`` (a form field of the same name on the no-JS page): a body,
  not a header, so the page's plain HTML form can carry it, and never in a URL.

``exp``/``nbf`` are compared with the caller's ``now`` (not PyJWT's own clock) so a test can inject
time; PyJWT checks signature, algorithm, ``iss`` and ``aud``. Nothing here logs a claim.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
import jwt

from shared import queries
from shared.errors import Code, NotFound, Refused
from shared.idp import ASYMMETRIC, JwksKeys, kid_of

log = logging.getLogger(__name__)

CACHE_S = 1.0  # an event's configuration is read from PostgreSQL at most this often per process
DEFAULT_ALGORITHMS = ("RS256", "ES256")
ATTRIBUTE_TYPES = ("int", "bool", "string", "enum", "date", "list")


class IdentityRequired(Refused):
    """403 ``identity_required``: no ID token, or one that does not prove identity at the event's level."""

    code = Code.IDENTITY_REQUIRED

    def __init__(self, detail: str = "") -> None:
        super().__init__(None, detail)


def check_levels(acr_values: Sequence[str], min_acr: str | None, algorithms: Sequence[str]) -> None:
    """ValueError naming what is wrong with a configuration's levels or algorithms."""
    if len(set(acr_values)) != len(acr_values) or any(not v for v in acr_values):
        raise ValueError("acr_values must be distinct, non-empty strings, lowest assurance first")
    if min_acr is not None and min_acr not in acr_values:
        raise ValueError(f"min_acr {min_acr!r} must be one of acr_values")
    weak = [a for a in algorithms if a not in ASYMMETRIC]
    if weak or not algorithms:
        raise ValueError(f"algorithms must be among {', '.join(sorted(ASYMMETRIC))}, not {weak or 'none'}")


@dataclass(frozen=True)
class IdentityConfig:
    """One event's identity provider. ``acr_values`` lowest assurance first; ``min_acr`` None: any token
    of the provider will do (its ``acr`` is not looked at)."""

    event_id: str
    issuer: str
    audience: str
    jwks_url: str
    acr_values: tuple[str, ...] = ()
    min_acr: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        check_levels(self.acr_values, self.min_acr, self.algorithms)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> IdentityConfig:
        return cls(
            event_id=row["event_id"],
            issuer=row["issuer"],
            audience=row["audience"],
            jwks_url=row["jwks_url"],
            acr_values=tuple(row["acr_values"]),
            min_acr=row["min_acr"],
            algorithms=tuple(row["algorithms"]),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_url": self.jwks_url,
            "acr_values": list(self.acr_values),
            "min_acr": self.min_acr,
            "algorithms": list(self.algorithms),
        }


# --- stored configuration (each function runs in the caller's transaction) --------------------------


async def load(con: asyncpg.Connection, event_id: str) -> IdentityConfig | None:
    row = await con.fetchrow(queries.EVENT_IDENTITY, event_id)
    return None if row is None else IdentityConfig.from_row(row)


async def store(con: asyncpg.Connection, config: IdentityConfig, actor: str) -> IdentityConfig:
    """Create or replace the event's provider; NotFound for an unknown event. The caller audits."""
    if await con.fetchval(queries.EVENT_EXISTS, config.event_id) is None:
        raise NotFound(f"no event {config.event_id!r}")
    row = await con.fetchrow(
        queries.UPSERT_EVENT_IDENTITY,
        config.event_id,
        config.issuer,
        config.audience,
        config.jwks_url,
        list(config.acr_values),
        config.min_acr,
        list(config.algorithms),
        actor,
    )
    return IdentityConfig.from_row(row)


async def remove(con: asyncpg.Connection, event_id: str) -> IdentityConfig:
    """The event no longer names a provider; returns the one removed. NotFound when it named none."""
    row = await con.fetchrow(queries.DELETE_EVENT_IDENTITY, event_id)
    if row is None:
        raise NotFound(f"event {event_id!r} has no identity provider")
    return IdentityConfig.from_row(row)


# --- verifying a token --------------------------------------------------------------------------------

_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidAudienceError, "the identity token was issued for another service"),
    (jwt.InvalidIssuerError, "the identity token comes from another identity provider"),
    (jwt.MissingRequiredClaimError, "the identity token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "the identity token is signed with an algorithm this event does not accept"),
    (jwt.InvalidSignatureError, "the identity token's signature does not hold"),
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _check_times(claims: Mapping[str, Any], now: float, leeway_s: float) -> None:
    exp = _number(claims.get("exp"))
    if exp is None:
        raise IdentityRequired("the identity token has no valid expiry")
    if now > exp + leeway_s:
        raise IdentityRequired("the identity token has expired; sign in again")
    if "nbf" in claims:
        nbf = _number(claims["nbf"])
        if nbf is None or now + leeway_s < nbf:
            raise IdentityRequired("the identity token is not valid yet")


def _check_level(config: IdentityConfig, claims: Mapping[str, Any]) -> None:
    if config.min_acr is None:
        return
    acr = claims.get("acr")
    if not isinstance(acr, str) or acr not in config.acr_values:
        raise IdentityRequired(f"the identity token does not state an assurance level; this event needs "
                               f"{config.min_acr!r} or above")  # fmt: skip
    if config.acr_values.index(acr) < config.acr_values.index(config.min_acr):
        raise IdentityRequired(f"the identity token's assurance level is too low; this event needs "
                               f"{config.min_acr!r} or above")  # fmt: skip


async def verify_id_token(
    config: IdentityConfig, token: str | None, now: datetime, *, keys: JwksKeys, leeway_s: float = 5.0
) -> dict[str, Any]:
    """The token's claims, or IdentityRequired saying why not (see the module docstring). ``keys``
    must be the key set of ``config.jwks_url``."""
    if not token or not isinstance(token, str):
        raise IdentityRequired("this event needs an identity token from its identity provider (id_token)")
    try:
        kid = kid_of(token)
    except jwt.PyJWTError:
        raise IdentityRequired("the identity token cannot be read") from None
    key = await keys.key(kid)
    if key is None:
        raise IdentityRequired("the identity token was not signed by a key of the event's identity provider")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(config.algorithms),
            audience=config.audience,
            issuer=config.issuer,
            # Times are checked below against the caller's clock; PyJWT checks the rest.
            options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        log.info("identity token refused: %s", type(exc).__name__)
        detail = next((text for kind, text in _REFUSALS if isinstance(exc, kind)), "the identity token is not valid")
        raise IdentityRequired(detail) from None
    _check_times(claims, now.timestamp(), leeway_s)
    _check_level(config, claims)
    return claims


# --- claims → attributes --------------------------------------------------------------------------------


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _field(spec: Any, key: str) -> Any:
    """An attribute schema's field, from its JSON (a mapping) or from a model with that attribute."""
    return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)


def _typed(kind: str, value: Any, spec: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "enum":
        return isinstance(value, str) and value in (_field(spec, "values") or ())
    if kind == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return False
        return True
    if kind == "list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return False


def verified_attributes(claims: Mapping[str, Any], attribute_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the schema's ``verified`` attributes, from the token's claims.

    ``attribute_schema`` maps each attribute's name to its schema: the rule set's JSON, or models with
    the same fields (``type``, ``source``, ``values``, ``claim``). An attribute's claim is its schema's
    ``claim`` (a dotted path, e.g. ``address.region``), else its own name. Values keep their JSON form
    (a date stays ``"YYYY-MM-DD"``). A claim that is missing or not of the attribute's type is
    IdentityRequired naming the claim (not its value).
    """
    verified: dict[str, Any] = {}
    for name, spec in attribute_schema.items():
        if _field(spec, "source") != "verified":
            continue
        claim = str(_field(spec, "claim") or name)
        value = _claim(claims, claim)
        if value is None:
            raise IdentityRequired(f"the identity token does not carry the claim {claim!r} this event asks for")
        kind = str(_field(spec, "type"))
        if not _typed(kind, value, spec):
            raise IdentityRequired(f"the identity token's claim {claim!r} is not a valid {kind}")
        verified[name] = value
    return verified


def needs_identity(attribute_schema: Mapping[str, Any]) -> bool:
    return any(_field(spec, "source") == "verified" for spec in attribute_schema.values())


@dataclass
class Identities:
    """A process's view of every event's identity provider: configurations read at most every
    :data:`CACHE_S` seconds, one :class:`JwksKeys` per JWKS URL. Open one per app; :meth:`close` it."""

    leeway_s: float = 5.0
    max_age_s: float = 300.0
    refetch_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _configs: dict[str, tuple[float, IdentityConfig | None]] = field(default_factory=dict)
    _keys: dict[str, JwksKeys] = field(default_factory=dict)

    async def close(self) -> None:
        for keys in self._keys.values():
            await keys.close()
        self._keys.clear()

    def keys(self, url: str) -> JwksKeys:
        if url not in self._keys:
            self._keys[url] = JwksKeys(url, max_age_s=self.max_age_s, refetch_s=self.refetch_s, clock=self.clock)
        return self._keys[url]

    async def config(self, pool: asyncpg.Pool, event_id: str) -> IdentityConfig | None:
        now = self.clock()
        seen = self._configs.get(event_id)
        if seen is None or now - seen[0] >= CACHE_S:
            async with pool.acquire() as con:
                seen = (now, await load(con, event_id))
            self._configs[event_id] = seen
        return seen[1]

    async def verify(self, config: IdentityConfig, token: str | None, now: datetime) -> dict[str, Any]:
        return await verify_id_token(config, token, now, keys=self.keys(config.jwks_url), leeway_s=self.leeway_s)

    async def verified(
        self,
        pool: asyncpg.Pool,
        event_id: str,
        attribute_schema: Mapping[str, Any],
        id_token: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        """The verified attributes for an evaluation (empty when the event needs no identity).

        An event with a provider always needs a valid token (its minimum level holds for everyone
        evaluated); a rule set with verified attributes on an event without a provider refuses every
        evaluation with ``identity_required`` (nothing could prove them).
        """
        config = await self.config(pool, event_id)
        if config is None:
            if needs_identity(attribute_schema):
                raise IdentityRequired("this event asks for verified attributes but names no identity provider")
            return {}
        claims = await self.verify(config, id_token, now)
        return verified_attributes(claims, attribute_schema)
