"""Admissions bound to the visitor's device: a leaked token is useless without the device secret."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

from aiohttp.test_utils import TestClient

from admission.keys import METRICS
from shared.settings import Settings
from shared.tokens import TokenCodec, device_hash
from tests.helpers import FakeClock, admin_headers, assert_problem, metric_value, serve
from waitingroom.app import create_app
from waitingroom.keys import ROOM


def bound_token(codec: TokenCodec, secret: str) -> str:
    return codec.sign_admission(event_id="ev", visitor_id="v1", scope=None, expires_at=time.time() + 600,
                                device=device_hash(secret))  # fmt: skip


async def test_a_bound_admission_needs_its_device_key(api: TestClient, codec: TokenCodec) -> None:
    secret = secrets.token_hex(32)
    token = bound_token(codec, secret)
    for headers in ({}, {"X-Device-Key": "not-the-secret"}):
        resp = await api.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}", **headers})
        assert_problem(resp.status, await resp.json(), 401, "token_invalid")
    assert metric_value(api.app[METRICS], "surgegate_token_verify_total", event="ev", result="binding") == 2
    ok = await api.get("/api/v1/sites", headers={"Authorization": f"Bearer {token}", "X-Device-Key": secret})
    assert ok.status == 200


async def test_the_edge_binds_the_admission_to_the_hash_sent_on_join(
    settings: Settings, clock: FakeClock, codec: TokenCodec
) -> None:
    secret = secrets.token_hex(32)
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as edge:
        assert (
            await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 5}, headers=admin_headers())
        ).status == 200
        bound = await (await edge.post("/api/v1/events/ev/join", json={"device_key_hash": device_hash(secret)})).json()
        edge.session.cookie_jar.clear()
        unbound = await (await edge.post("/api/v1/events/ev/join")).json()
        bad = await edge.post("/api/v1/events/ev/join", json={"device_key_hash": "xyz"})
        assert_problem(bad.status, await bad.json(), 400, "validation_error")
        clock.advance(1)
        await edge.app[ROOM].tick()
        room = edge.app[ROOM]
        tokens = [(await room.status("ev", str(t["ticket"]))).admission_token for t in (bound, unbound)]
    admissions = [codec.verify_admission(t or "") for t in tokens]
    assert admissions[0].device == device_hash(secret) and admissions[0].held_by(secret)
    assert not admissions[0].held_by(None) and not admissions[0].held_by("other")
    assert admissions[1].device is None and admissions[1].held_by(None)  # clients that send no hash
