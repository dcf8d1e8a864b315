"""Staff signed in by an identity provider (shared/idp.py): JWTs checked against a JWKS served by a local
aiohttp server, with key pairs generated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from admission.app import create_app as create_api
from shared.errors import Overloaded
from shared.idp import IdentityProvider
from shared.settings import Settings, SettingsError
from shared.staff import Role
from tests.helpers import serve

ISSUER = "https://idp.example.test/realms/health"
AUDIENCE = "surgegate-admin"


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@dataclass
class Provider:
    """A key holder publishing its JWKS: ``keys`` is what the server serves right now."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    fetches: int = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, private in self.keys.items():
            jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
            published.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
        return {"keys": published}

    def token(self, kid: str, key: Any = None, algorithm: str = "ES256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "kim", "iat": now, "exp": now + 300, "roles": ["supply"]}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}  # a claim given as None is left out
        return jwt.encode(body, key or self.keys[kid], algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    idp = Provider()
    idp.add_key("k1")

    async def jwks(request: web.Request) -> web.Response:
        idp.fetches += 1
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/certs", jwks)
    async with serve(app) as client:
        idp.url = str(client.make_url("/certs"))
        yield idp


@pytest.fixture
async def verifier(provider: Provider) -> AsyncIterator[IdentityProvider]:
    idp = IdentityProvider(issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.url, refetch_s=0)
    yield idp
    await idp.close()


async def test_a_valid_token_gives_its_roles(provider: Provider, verifier: IdentityProvider) -> None:
    actor = await verifier.verify(provider.token("k1", roles=["supply", "auditor", "not-a-role"]))
    assert actor is not None
    assert (actor.audit_name(), actor.roles) == ("idp:kim", frozenset({Role.SUPPLY, Role.AUDITOR}))
    # The key set is cached: a second token costs no fetch.
    assert await verifier.verify(provider.token("k1")) is not None and provider.fetches == 1


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"key": ec.generate_private_key(ec.SECP256R1())}, id="signed-by-another-key"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"iss": "https://evil.example.test"}, id="wrong-issuer"),
        pytest.param({"sub": None}, id="no-subject"),
    ],
)
async def test_tokens_that_do_not_hold_are_refused(
    provider: Provider, verifier: IdentityProvider, bad: dict[str, Any]
) -> None:
    claims = {k: v for k, v in bad.items() if k != "key"}
    token = provider.token("k1", key=bad.get("key"), **claims)
    assert await verifier.verify(token) is None
    assert await verifier.verify(provider.token("k1")) is not None  # the control: the same path, holding


async def test_unpinned_algorithms_are_refused(provider: Provider, verifier: IdentityProvider) -> None:
    payload = jwt.decode(provider.token("k1"), options={"verify_signature": False})
    unsigned = jwt.encode(payload, None, algorithm="none", headers={"kid": "k1"})
    assert await verifier.verify(unsigned) is None
    # HS256 keyed with the published public key (the classic confusion), made by hand since PyJWT
    # refuses to make one: refused, HS* is not pinned.
    public = ECAlgorithm.to_jwk(provider.keys["k1"].public_key()).encode()
    signing_input = b".".join(b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": "k1"}, payload))
    forged = signing_input + b"." + b64(hmac.new(public, signing_input, hashlib.sha256).digest())
    assert await verifier.verify(forged.decode()) is None
    for garbage in ("a.b.c", "not-a-jwt", ""):
        assert await verifier.verify(garbage) is None


async def test_a_rotated_key_works_after_a_refetch(provider: Provider, verifier: IdentityProvider) -> None:
    assert await verifier.verify(provider.token("k1")) is not None
    provider.add_key("k2")
    del provider.keys["k1"]  # the provider rotated: only k2 is published now
    assert await verifier.verify(provider.token("k2")) is not None
    assert provider.fetches == 2


async def test_unknown_kids_refetch_at_most_once_per_interval(provider: Provider) -> None:
    idp = IdentityProvider(issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.url, refetch_s=3600)
    try:
        assert await idp.verify(provider.token("k1")) is not None
        provider.add_key("k2")
        for _ in range(5):  # a stream of unknown kids does not hammer the provider
            assert await idp.verify(provider.token("k2")) is None
        assert provider.fetches == 1
    finally:
        await idp.close()


async def test_roles_through_a_claim_path_and_a_mapping(provider: Provider) -> None:
    idp = IdentityProvider(issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.url, roles_claim="realm_access.roles",
                           role_map={"sg-ops": "operator", "sg-audit": "auditor"})  # fmt: skip
    try:
        token = provider.token("k1", roles=["supply"], realm_access={"roles": ["sg-ops", "supply", "other"]})
        actor = await idp.verify(token)
        assert actor is not None and actor.roles == frozenset({Role.OPERATOR})  # unmapped values grant nothing
    finally:
        await idp.close()


async def test_an_unreachable_provider_is_a_503_not_a_401() -> None:
    idp = IdentityProvider(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:9/certs")
    try:
        with pytest.raises(Overloaded):
            await idp.verify(Provider(keys={"k1": ec.generate_private_key(ec.SECP256R1())}).token("k1"))
    finally:
        await idp.close()


def test_a_half_configured_provider_stops_the_process() -> None:
    with pytest.raises(SettingsError, match="SURGEGATE_IDP_AUDIENCE, SURGEGATE_IDP_JWKS_URL"):
        IdentityProvider.from_settings(Settings(idp_issuer=ISSUER))
    with pytest.raises(SettingsError, match="SURGEGATE_IDP_ALGORITHMS"):
        IdentityProvider.from_settings(
            Settings(idp_issuer=ISSUER, idp_audience=AUDIENCE, idp_jwks_url="http://x", idp_algorithms=("HS256",))
        )
    with pytest.raises(SettingsError, match="SURGEGATE_IDP_ROLE_MAP"):
        Settings.from_env({"SURGEGATE_IDP_ROLE_MAP": "sg-ops:admin"})
    assert Settings.from_env({"SURGEGATE_IDP_ROLE_MAP": "sg-ops:operator, a:b:auditor"}).idp_role_map == (
        ("sg-ops", "operator"), ("a:b", "auditor"))  # fmt: skip


async def test_the_booking_api_signs_staff_in_with_the_provider(provider: Provider, settings: Settings) -> None:
    configured = replace(settings, idp_issuer=ISSUER, idp_audience=AUDIENCE, idp_jwks_url=provider.url)
    async with serve(create_api(configured)) as api:

        async def status(token: str) -> int:
            resp = await api.get("/admin/v1/appointment-types", headers={"Authorization": f"Bearer {token}"})
            return resp.status

        assert await status(provider.token("k1")) == 200
        assert await status(provider.token("k1", roles=["operator"])) == 403
        assert await status(provider.token("k1", exp=int(time.time()) - 3600)) == 401
        assert await status(provider.token("k1", aud="other")) == 401
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert RSAAlgorithm.to_jwk(rsa_key.public_key())  # an RS256 token by a key the provider never published
        assert await status(provider.token("k1", key=rsa_key, algorithm="RS256")) == 401
