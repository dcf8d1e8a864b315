"""Identity to the level an event requires (shared/identity.py): OpenID Connect ID tokens checked against
a JWKS served by a local aiohttp server, with key pairs generated here; the event's provider set through
the booking API's admin endpoint (role ``rules``, audited)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared import identity
from shared.errors import Code, Overloaded, Refused
from shared.identity import Identities, IdentityConfig, IdentityRequired, verified_attributes, verify_id_token
from shared.idp import JwksKeys
from shared.staff import OWNER, Role, add_staff
from tests.helpers import admin_headers, serve

ISSUER = "https://id.example.test/realms/citizens"
AUDIENCE = "surgegate-vaccination"
NOW = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)  # the injected clock: far from the real one on purpose
LEVELS = ("low", "substantial", "high")


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


@dataclass
class Provider:
    """An identity provider: ``keys`` (kid → private key) is what its JWKS publishes right now."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    fetches: int = 0

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, private in self.keys.items():
            if isinstance(private, rsa.RSAPrivateKey):
                jwk, alg = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "RS256"
            else:
                jwk, alg = ECAlgorithm.to_jwk(private.public_key(), as_dict=True), "ES256"
            published.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": published}

    def token(self, kid: str, key: Any = None, **claims: Any) -> str:
        now = int(NOW.timestamp())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "p-123", "iat": now, "exp": now + 300, "acr": "substantial",
                "region": "north", "address": {"region": "north"}, "health_worker": True}  # fmt: skip
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}  # a claim given as None is left out
        signer = key or self.keys[kid]
        algorithm = "RS256" if isinstance(signer, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(body, signer, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    idp = Provider()
    idp.add_rsa("k1")

    async def jwks(request: web.Request) -> web.Response:
        idp.fetches += 1
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/certs", jwks)
    async with serve(app) as client:
        idp.url = str(client.make_url("/certs"))
        yield idp


@pytest.fixture
def config(provider: Provider) -> IdentityConfig:
    return IdentityConfig(event_id="ev", issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.url,
                          acr_values=LEVELS, min_acr="substantial")  # fmt: skip


@pytest.fixture
async def keys(provider: Provider) -> AsyncIterator[JwksKeys]:
    key_set = JwksKeys(provider.url, refetch_s=0)
    yield key_set
    await key_set.close()


async def refusal(config: IdentityConfig, token: str | None, keys: JwksKeys, now: datetime = NOW) -> str:
    with pytest.raises(IdentityRequired) as refused:
        await verify_id_token(config, token, now, keys=keys)
    assert refused.value.code == Code.IDENTITY_REQUIRED and refused.value.status == 403
    return refused.value.detail


async def test_a_valid_token_gives_its_claims(provider: Provider, config: IdentityConfig, keys: JwksKeys) -> None:
    claims = await verify_id_token(config, provider.token("k1"), NOW, keys=keys)
    assert (claims["sub"], claims["acr"], claims["region"]) == ("p-123", "substantial", "north")
    assert (await verify_id_token(config, provider.token("k1", acr="high"), NOW, keys=keys))["acr"] == "high"
    assert provider.fetches == 1  # the key set is cached: a second token costs no fetch


T = int(NOW.timestamp())


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        pytest.param({"exp": T - 60}, "expired", id="expired"),
        pytest.param({"exp": None}, "required claim", id="no-expiry"),
        pytest.param({"exp": "tomorrow"}, "expiry", id="expiry-not-a-number"),
        pytest.param({"nbf": T + 3600}, "not valid yet", id="not-yet-valid"),
        pytest.param({"aud": "someone-else"}, "another service", id="wrong-audience"),
        pytest.param({"iss": "https://evil.example.test"}, "another identity provider", id="wrong-issuer"),
        pytest.param({"acr": "low"}, "too low", id="insufficient-acr"),
        pytest.param({"acr": None}, "assurance level", id="no-acr"),
        pytest.param({"acr": "gold"}, "assurance level", id="unknown-acr"),
        pytest.param(
            {"key": rsa.generate_private_key(public_exponent=65537, key_size=2048)}, "signature", id="wrong-key"
        ),
    ],
)
async def test_tokens_that_do_not_hold_are_identity_required(
    provider: Provider, config: IdentityConfig, keys: JwksKeys, bad: dict[str, Any], says: str
) -> None:
    claims = {k: v for k, v in bad.items() if k != "key"}
    assert says in await refusal(config, provider.token("k1", key=bad.get("key"), **claims), keys)
    assert await verify_id_token(config, provider.token("k1"), NOW, keys=keys)  # the control: the same path, holding


async def test_times_are_checked_against_the_callers_clock(
    provider: Provider, config: IdentityConfig, keys: JwksKeys
) -> None:
    token = provider.token("k1")  # valid from NOW for 300 s (years away from the real clock)
    assert await verify_id_token(config, token, NOW + timedelta(seconds=300), keys=keys)  # within exp
    assert "expired" in await refusal(config, token, keys, NOW + timedelta(seconds=306))  # past exp + 5 s leeway
    early = provider.token("k1", nbf=T + 60)
    assert "not valid yet" in await refusal(config, early, keys)
    assert await verify_id_token(config, early, NOW + timedelta(seconds=60), keys=keys)


async def test_an_event_without_a_minimum_level_accepts_any_acr(
    provider: Provider, config: IdentityConfig, keys: JwksKeys
) -> None:
    any_level = IdentityConfig(event_id="ev", issuer=ISSUER, audience=AUDIENCE, jwks_url=provider.url)
    assert await verify_id_token(any_level, provider.token("k1", acr=None), NOW, keys=keys)
    assert await refusal(config, provider.token("k1", acr=None), keys)  # the control: with a minimum, refused


async def test_unsigned_and_hmac_tokens_are_refused(provider: Provider, config: IdentityConfig, keys: JwksKeys) -> None:
    payload = jwt.decode(provider.token("k1"), options={"verify_signature": False})
    unsigned = jwt.encode(payload, None, algorithm="none", headers={"kid": "k1"})
    assert "algorithm" in await refusal(config, unsigned, keys)
    # HS256 keyed with the published public key (the classic confusion), made by hand since PyJWT refuses to.
    public = RSAAlgorithm.to_jwk(provider.keys["k1"].public_key()).encode()
    signing_input = b".".join(b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": "k1"}, payload))
    forged = signing_input + b"." + b64(hmac.new(public, signing_input, hashlib.sha256).digest())
    assert "algorithm" in await refusal(config, forged.decode(), keys)
    for garbage in ("a.b.c", "not-a-jwt", "", None):
        assert await refusal(config, garbage, keys)
    assert await verify_id_token(config, provider.token("k1"), NOW, keys=keys)  # the control


async def test_a_rotated_key_is_picked_up_from_the_jwks(
    provider: Provider, config: IdentityConfig, keys: JwksKeys
) -> None:
    assert await verify_id_token(config, provider.token("k1"), NOW, keys=keys)
    provider.add_ec("k2")
    del provider.keys["k1"]  # the provider rotated: only k2 (an ES256 key) is published now
    assert (await verify_id_token(config, provider.token("k2"), NOW, keys=keys))["sub"] == "p-123"
    assert provider.fetches == 2
    assert "not signed by a key" in await refusal(config, provider.token("k3", key=ec.generate_private_key(
        ec.SECP256R1())), keys)  # fmt: skip


async def test_an_unreachable_provider_is_a_503_not_the_visitors_fault(config: IdentityConfig) -> None:
    keys = JwksKeys("http://127.0.0.1:9/certs")
    try:
        signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(Overloaded):
            await verify_id_token(config, Provider(keys={"k1": signer}).token("k1"), NOW, keys=keys)
    finally:
        await keys.close()


def test_configurations_refuse_weak_algorithms_and_unknown_levels() -> None:
    base = {"event_id": "ev", "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "https://id.example.test/certs"}
    with pytest.raises(ValueError, match="algorithms"):
        IdentityConfig(**base, algorithms=("HS256",))
    with pytest.raises(ValueError, match="algorithms"):
        IdentityConfig(**base, algorithms=())
    with pytest.raises(ValueError, match="min_acr"):
        IdentityConfig(**base, acr_values=LEVELS, min_acr="gold")
    with pytest.raises(ValueError, match="distinct"):
        IdentityConfig(**base, acr_values=("low", "low"))
    assert IdentityConfig(**base, acr_values=LEVELS, min_acr="high").min_acr == "high"


# --- claims → attributes ---------------------------------------------------------------------------------

SCHEMA: dict[str, dict[str, Any]] = {
    "region": {"type": "enum", "source": "verified", "values": ["north", "south"], "claim": "address.region"},
    "health_worker": {"type": "bool", "source": "verified"},
    "occupation": {"type": "string", "source": "declared"},
}


def test_verified_attributes_come_from_the_claims_the_schema_names() -> None:
    claims = {"address": {"region": "north"}, "health_worker": False, "occupation": "nurse", "region": "south"}
    # "region" reads address.region (its "claim"), not the top-level claim of the same name; declared
    # attributes are not taken from the token.
    assert verified_attributes(claims, SCHEMA) == {"region": "north", "health_worker": False}
    typed = {
        "n": ({"type": "int", "source": "verified"}, 3, "3"),
        "d": ({"type": "date", "source": "verified"}, "1950-02-28", "28/02/1950"),
        "l": ({"type": "list", "source": "verified"}, ["a", "b"], ["a", 1]),
        "s": ({"type": "string", "source": "verified"}, "x", 5),
        "b": ({"type": "bool", "source": "verified"}, True, "true"),
    }
    for name, (spec, good, bad) in typed.items():
        assert verified_attributes({name: good}, {name: spec}) == {name: good}
        with pytest.raises(IdentityRequired, match=f"claim '{name}' is not a valid"):
            verified_attributes({name: bad}, {name: spec})


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"health_worker": True}, id="missing-claim"),
        pytest.param({"address": {"region": "west"}, "health_worker": True}, id="not-one-of-the-values"),
        pytest.param({"address": "north", "health_worker": True}, id="not-nested"),
    ],
)
def test_a_claim_missing_or_of_the_wrong_type_is_identity_required(claims: dict[str, Any]) -> None:
    with pytest.raises(IdentityRequired, match=r"address\.region"):
        verified_attributes(claims, SCHEMA)
    assert verified_attributes({**claims, "address": {"region": "south"}}, SCHEMA)["region"] == "south"  # control


# --- the event's configuration, stored and used -----------------------------------------------------------


async def make_event(pool: asyncpg.Pool, event_id: str = "ev") -> None:
    await pool.execute(
        "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ($1, 'E', 1, 900)", event_id
    )


async def test_evaluations_need_a_token_only_where_the_event_asks(
    provider: Provider, config: IdentityConfig, pool: asyncpg.Pool, clean: None
) -> None:
    await make_event(pool)
    identities = Identities(refetch_s=0)
    declared_only = {"occupation": SCHEMA["occupation"]}
    try:
        # No provider: a rule set of declared attributes needs no token; one with verified attributes
        # refuses everyone (nothing could prove them).
        assert await identities.verified(pool, "ev", declared_only, None, NOW) == {}
        with pytest.raises(IdentityRequired, match="names no identity provider"):
            await identities.verified(pool, "ev", SCHEMA, provider.token("k1"), NOW)
        async with pool.acquire() as con:
            await identity.store(con, config, "owner")
        identities = Identities(refetch_s=0)  # a fresh process: no cached "no provider"
        with pytest.raises(IdentityRequired, match="id_token"):
            await identities.verified(pool, "ev", declared_only, None, NOW)  # the event's level holds for everyone
        with pytest.raises(IdentityRequired, match="too low"):
            await identities.verified(pool, "ev", SCHEMA, provider.token("k1", acr="low"), NOW)
        token = provider.token("k1", acr="high")
        assert await identities.verified(pool, "ev", SCHEMA, token, NOW) == {"region": "north", "health_worker": True}
        assert await identities.verified(pool, "ev", declared_only, token, NOW) == {}
    finally:
        await identities.close()


async def test_storing_a_provider_for_an_unknown_event_is_not_found(
    config: IdentityConfig, pool: asyncpg.Pool, clean: None
) -> None:
    async with pool.acquire() as con:
        with pytest.raises(Refused) as refused:
            await identity.store(con, config, "owner")
        assert refused.value.code == Code.NOT_FOUND
        assert await identity.load(con, "ev") is None


async def test_the_admin_endpoint_sets_reads_and_removes_the_provider(
    api: TestClient, pool: asyncpg.Pool, provider: Provider
) -> None:
    await make_event(pool)
    path = "/admin/v1/events/ev/identity"
    body = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": provider.url, "acr_values": list(LEVELS),
            "min_acr": "substantial", "algorithms": ["RS256"]}  # fmt: skip
    assert (await api.get(path, headers=admin_headers())).status == 404
    resp = await api.put(path, json=body, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"event_id": "ev", **body}
    assert await (await api.get(path, headers=admin_headers())).json() == {"event_id": "ev", **body}
    audit = await pool.fetchrow("SELECT actor, detail FROM audit_log WHERE action = 'event_identity_set'")
    assert audit["actor"] == "owner" and audit["detail"]["min_acr"] == "substantial"
    # bad input is a 400 naming the field, never stored
    for wrong in ({"min_acr": "gold"}, {"algorithms": ["HS256"]}, {"jwks_url": "file:///etc/keys"}, {"extra": 1}):
        resp = await api.put(path, json={**body, **wrong}, headers=admin_headers())
        assert resp.status == 400 and (await resp.json())["code"] == "validation_error", wrong
    assert (await api.put("/admin/v1/events/nope/identity", json=body, headers=admin_headers())).status == 404
    # the role: a staff key without `rules` is refused, one with it acts in its own name
    async with pool.acquire() as con:
        supply_key = await add_staff(con, "sue", [Role.SUPPLY], actor=OWNER)
        rules_key = await add_staff(con, "rui", [Role.RULES], actor=OWNER)
    resp = await api.put(path, json=body, headers={"Authorization": f"Bearer {supply_key}"})
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    resp = await api.delete(path, headers={"Authorization": f"Bearer {rules_key}"})
    assert resp.status == 200 and (await resp.json())["issuer"] == ISSUER
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'event_identity_removed'") == "staff:rui"
    assert (await api.get(path, headers=admin_headers())).status == 404
    assert (await api.delete(path, headers=admin_headers())).status == 404


def test_verified_attributes_read_the_rule_sets_own_models_too() -> None:
    from shared.rules import AttributeSpec

    schema = {
        "health_worker": AttributeSpec(type="bool", source="verified", label={"en": "H", "es": "S"}),
        "region": AttributeSpec(type="enum", source="declared", values=["north"], label={"en": "R", "es": "R"}),
    }
    assert verified_attributes({"health_worker": True, "region": "north"}, schema) == {"health_worker": True}
    with pytest.raises(IdentityRequired, match="health_worker"):
        verified_attributes({"region": "north"}, schema)
