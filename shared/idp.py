"""Staff signed in by an organisation's identity provider: bearer JWTs verified against its JWKS.

What a caller can rely on: :meth:`IdentityProvider.verify` returns an :class:`~shared.staff.Actor`
(``kind="idp"``, named by the token's ``sub``) only for a token signed by a key of the configured
JWKS with one of the pinned algorithms, whose ``iss`` and ``aud`` are the configured ones and whose
``exp`` (required) and ``nbf`` (if present) hold; anything else is None (401 upstream). Roles come
from one claim (a dotted path such as ``realm_access.roles``; a list, or a space/comma separated
string), through the optional mapping ``IDP_VALUE:role``; values that name no role are ignored.

The JWKS is fetched with aiohttp (never blocking the loop) and kept ``max_age_s``; a token whose
``kid`` the cached set lacks makes one refetch (the provider rotated its keys), at most one per
``refetch_s`` so a stream of forged kids cannot make us hammer the provider. The JOSE work is
PyJWT's (``PyJWKSet``, ``jwt.decode``): nothing of it is hand-written here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import jwt

from shared.errors import Overloaded
from shared.settings import Settings, SettingsError
from shared.staff import Actor, Role

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 5.0
# Public-key algorithms only: "none" and the HMAC ones would let a token be made without the provider.
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


def parse_role_map(raw: str) -> tuple[tuple[str, str], ...]:
    """``SURGEGATE_IDP_ROLE_MAP``: ``value:role,value:role`` (the value is what the claim carries)."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        value, sep, role = item.strip().rpartition(":")
        if not item.strip():
            continue
        if not sep or not value or role not in set(Role):
            raise SettingsError(
                f"SURGEGATE_IDP_ROLE_MAP must be comma-separated VALUE:ROLE pairs with ROLE one of "
                f"{', '.join(Role)}, not {item.strip()!r}"
            )
        pairs.append((value, role))
    return tuple(pairs)


class JwksKeys:
    """One provider's public keys, fetched from its JWKS URL and cached (the module docstring says how).

    Shared by staff sign-in (:class:`IdentityProvider`) and the ID tokens of an event's identity
    provider (:mod:`shared.identity`). :meth:`key` answers the key a ``kid`` names, or None; it raises
    :class:`~shared.errors.Overloaded` only when no key was ever fetched and the provider is unreachable.
    """

    def __init__(
        self,
        url: str,
        *,
        max_age_s: float = 300.0,
        refetch_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._max_age_s, self._refetch_s, self._clock = max_age_s, refetch_s, clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age_s
        unknown = kid not in self._keys and (self._fetched_at is None or now - self._fetched_at >= self._refetch_s)
        if stale or unknown:
            async with self._lock:  # one fetch at a time; waiters see its result
                if self._fetched_at is None or self._fetched_at < now:
                    await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
        try:
            async with self._session.get(self.url) as resp:
                resp.raise_for_status()
                document = await resp.json(content_type=None)
            keyset = jwt.PyJWKSet.from_dict(document)
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            log.warning("identity provider keys unavailable from %s: %s", self.url, type(exc).__name__)
            if not self._keys:
                raise Overloaded("the identity provider's keys cannot be fetched; retry shortly") from None
            return  # keep the keys we have; try again after refetch_s
        finally:
            self._fetched_at = self._clock()
        keys: dict[str | None, jwt.PyJWK] = {k.key_id: k for k in keyset.keys}
        if len(keyset.keys) == 1:
            keys[None] = keyset.keys[0]  # a token without kid is checked against a set of one key
        self._keys = keys


def kid_of(token: str) -> str | None:
    """The token's ``kid`` header (None when it has none); ``jwt.PyJWTError`` when it cannot be parsed."""
    kid = jwt.get_unverified_header(token).get("kid")
    return kid if isinstance(kid, str) else None


class IdentityProvider:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        roles_claim: str = "roles",
        role_map: Mapping[str, str] | None = None,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        leeway_s: float = 5.0,
        max_age_s: float = 300.0,
        refetch_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self._claim_path = roles_claim.split(".")
        self._role_map = dict(role_map) if role_map else None
        self._algorithms = list(algorithms)
        self._leeway_s = leeway_s
        self._keys = JwksKeys(jwks_url, max_age_s=max_age_s, refetch_s=refetch_s, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityProvider | None:
        """None when no provider is configured; a half configuration is a :class:`SettingsError`."""
        given = {
            "SURGEGATE_IDP_ISSUER": settings.idp_issuer,
            "SURGEGATE_IDP_AUDIENCE": settings.idp_audience,
            "SURGEGATE_IDP_JWKS_URL": settings.idp_jwks_url,
        }
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise SettingsError(f"{', '.join(missing)} must be set too: an identity provider needs all three")
        assert settings.idp_issuer  # all three, checked just above
        assert settings.idp_audience
        assert settings.idp_jwks_url
        weak = [a for a in settings.idp_algorithms if a not in ASYMMETRIC]
        if weak or not settings.idp_algorithms:
            raise SettingsError(f"SURGEGATE_IDP_ALGORITHMS must be among {', '.join(sorted(ASYMMETRIC))}, not {weak}")
        return cls(
            issuer=settings.idp_issuer,
            audience=settings.idp_audience,
            jwks_url=settings.idp_jwks_url,
            roles_claim=settings.idp_roles_claim,
            role_map=dict(settings.idp_role_map) or None,
            algorithms=settings.idp_algorithms,
            leeway_s=settings.token_leeway_s,
            max_age_s=settings.idp_jwks_max_age_s,
            refetch_s=settings.idp_jwks_refetch_s,
        )

    async def close(self) -> None:
        await self._keys.close()

    async def verify(self, token: str) -> Actor | None:
        try:
            kid = kid_of(token)
        except jwt.PyJWTError:
            return None
        key = await self._keys.key(kid)
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            log.info("identity provider token refused: %s", type(exc).__name__)
            return None
        return Actor(str(claims["sub"]), self._roles(claims), kind="idp")

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[Role]:
        value: Any = claims
        for part in self._claim_path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            values = value.replace(",", " ").split()
        elif isinstance(value, list):
            values = [v for v in value if isinstance(v, str)]
        else:
            values = []
        if self._role_map is not None:
            values = [self._role_map[v] for v in values if v in self._role_map]
        return frozenset(Role(v) for v in values if v in set(Role))
