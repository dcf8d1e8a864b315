"""Verified attributes through the evaluate endpoint: they come from the ID token of the event's identity
provider (body field ``id_token``), never from the form; an event with a provider needs a valid token at
its minimum level from everyone (shared/identity.py, wired in admission/eligibility.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admission.app import create_app as create_api
from admission.keys import IDENTITIES
from shared.identity import Identities
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, admin_headers, admission_token, serve
from tests.shared.test_identity import AUDIENCE, ISSUER, Provider

RULES: dict[str, Any] = {
    "attributes": {
        "health_worker": {"type": "bool", "source": "verified", "claim": "employment.health",
                          "label": {"en": "Health worker", "es": "Sanitario"}},
        "region": {"type": "enum", "values": ["north", "south"], "label": {"en": "Region", "es": "Región"}},
    },
    "rules": [{"id": "health", "expr": "health_worker", "reason": "not_health_worker",
               "text": {"en": "Only health workers, for now.", "es": "Solo personal sanitario, por ahora."}}],
    "examples": [{"birth_date": "1980-01-01", "attributes": {"health_worker": True, "region": "north"},
                  "eligible": True}],
}  # fmt: skip


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    idp = Provider()
    idp.add_rsa("k1")

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(idp.jwks())

    app = web.Application()
    app.router.add_get("/certs", jwks)
    async with serve(app) as client:
        idp.url = str(client.make_url("/certs"))
        yield idp


@pytest.fixture
async def api(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    app = create_api(replace(settings, eligibility_limit_burst=100))  # seven checks from one admission
    app[IDENTITIES] = Identities(clock=clock)  # configurations are re-read when the test moves time
    async with serve(app) as client:
        yield client


def token(provider: Provider, **claims: Any) -> str:
    now = int(time.time())  # the API checks against the real clock
    return provider.token("k1", iat=now, exp=now + 300, **claims)


async def test_verified_attributes_come_from_the_id_token(
    api: TestClient, pool: asyncpg.Pool, codec: TokenCodec, provider: Provider, clock: FakeClock
) -> None:
    await pool.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
    resp = await api.post("/admin/v1/events/ev/rules", json=RULES, headers=admin_headers())
    assert resp.status == 201, await resp.text()
    assert (await api.post("/admin/v1/events/ev/rules/1/publish", headers=admin_headers())).status == 200
    credential = {"Authorization": f"Bearer {admission_token(codec)}"}
    # the form claims to be a health worker: not believed
    body: dict[str, Any] = {"person": {"id_number": "X1", "birth_date": "1980-01-01"},
                            "attributes": {"region": "north", "health_worker": True}}  # fmt: skip

    async def evaluate(**extra: Any) -> tuple[int, dict[str, Any]]:
        resp = await api.post("/api/v1/events/ev/eligibility:evaluate", json={**body, **extra}, headers=credential)
        return resp.status, await resp.json()

    status, answer = await evaluate()  # verified attributes, and no provider to prove them
    assert (status, answer["code"]) == (403, "identity_required")
    provider_config = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": provider.url,
                       "acr_values": ["low", "substantial", "high"], "min_acr": "substantial"}  # fmt: skip
    resp = await api.put("/admin/v1/events/ev/identity", json=provider_config, headers=admin_headers())
    assert resp.status == 200
    clock.advance(1.0)  # each process reads the configuration at most once a second
    status, answer = await evaluate()
    assert (status, answer["code"]) == (403, "identity_required") and "id_token" in answer["detail"]
    status, answer = await evaluate(id_token=token(provider, acr="low", employment={"health": True}))
    assert (status, answer["code"]) == (403, "identity_required") and "too low" in answer["detail"]
    status, answer = await evaluate(id_token=token(provider, employment={"health": False}))
    assert status == 200 and answer["eligible"] is False  # the token's claim decides, not the form's answer
    assert [r["code"] for r in answer["reasons"]] == ["not_health_worker"]
    status, answer = await evaluate(id_token=token(provider, employment={"health": True}))
    assert status == 200 and answer["eligible"] is True
    status, answer = await evaluate(id_token=token(provider, aud="someone-else", employment={"health": True}))
    assert (status, answer["code"]) == (403, "identity_required")
