"""Garbage in, never a 500: seeded random requests at every booking API endpoint.

Reproducible (fixed seed) so a failure can be replayed; the cases mix valid and broken tokens,
idempotency keys, query strings, content types and bodies (truncated JSON, wrong types, binary).
"""

from __future__ import annotations

import json
import random
import uuid

from aiohttp.test_utils import TestClient

from shared.tokens import TokenCodec
from tests.helpers import ADMIN, admission_token, seed_site_and_slot

PATHS = ["/api/v1/sites", "/api/v1/slots", "/api/v1/appointments", "/api/v1/appointments/{id}",
         "/api/v1/attempts/{id}", "/admin/v1/sites", "/admin/v1/slots", "/admin/v1/slots/{id}", "/metrics",
         "/healthz", "/api/v1/nope", "/%ff%fe"]  # fmt: skip
JUNK = [b"", b"{", b"[]", b"null", b'{"slot_id": 1}', b'{"person": "x"}', b"\xff\xfe\x00", b"a" * 2000,
        json.dumps({"slot_id": str(uuid.uuid4()), "person": {"id_number": "1", "name": 5}}).encode(),
        json.dumps({"site_id": "s", "starts_at": "tomorrow", "duration_minutes": -1, "capacity": 1e99}).encode(),
        ]  # fmt: skip


async def test_no_request_produces_a_server_error(api: TestClient, codec: TokenCodec, pool: object) -> None:
    slot_id = await seed_site_and_slot(pool)  # type: ignore[arg-type]
    rng = random.Random(20261121)
    tokens = [admission_token(codec), admission_token(codec, ttl=-100), "k1.garbage", "", "x" * 5000, ADMIN]
    ids = [slot_id, str(uuid.uuid4()), "not-a-uuid", "%00", "1" * 300]
    queries = [{}, {"site_id": "site-a"}, {"lat": "nan", "lng": "inf"}, {"from": "2026-13-45"}, {"radius_km": "-1"},
               {"site_id": "site-a", "from": "2026-01-01T00:00:00", "to": "2025-01-01T00:00:00Z"}]  # fmt: skip
    statuses = []
    for _ in range(400):
        path = rng.choice(PATHS).replace("{id}", rng.choice(ids))
        headers = {"Authorization": f"Bearer {rng.choice(tokens)}"}
        if rng.random() < 0.7:
            headers["Idempotency-Key"] = rng.choice(["k", "", " ", "ü", "x" * 300, uuid.uuid4().hex])
        headers["Content-Type"] = rng.choice(
            ["application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"]
        )
        method = rng.choice(["GET", "POST", "DELETE", "PUT", "PATCH"])
        try:
            resp = await api.request(method, path, params=rng.choice(queries), data=rng.choice(JUNK), headers=headers)
        except ValueError:
            continue  # the client itself refused to send it (e.g. a header it cannot encode)
        statuses.append(resp.status)
        assert resp.status < 500, (method, path, resp.status, await resp.text())
        if resp.status >= 400:
            assert resp.headers["Content-Type"].startswith("application/problem+json"), (method, path)
    assert len(statuses) > 350 and len(set(statuses)) >= 5  # it really exercised many outcomes
