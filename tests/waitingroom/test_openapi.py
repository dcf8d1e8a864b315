"""The edge's OpenAPI document is valid, matches the routes exactly, and describes real responses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, assert_problem, serve
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.pow import solve


async def spec_of(edge: TestClient) -> dict[str, Any]:
    resp = await edge.get("/openapi.json")
    assert resp.status == 200
    spec: dict[str, Any] = await resp.json()
    return spec


async def test_the_document_is_valid_openapi(edge: TestClient) -> None:
    validate(await spec_of(edge))


async def test_paths_match_the_routes_exactly(edge: TestClient) -> None:
    spec = await spec_of(edge)
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical), route.method)
        for route in edge.app.router.routes()
        if route.method != "HEAD" and route.resource is not None and not route.resource.canonical.startswith("/static")
    }
    assert documented == served


def checker(spec: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_real_responses_match_their_schemas(edge: TestClient, clock: FakeClock) -> None:
    spec = await spec_of(edge)
    await edge.app[ROOM].pool.execute(
        "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ('a', 'A', 'R', 'UTC', 0, 0)"
    )
    put = await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1, "site_ids": ["a"]},
                         headers=admin_headers())  # fmt: skip
    checker(spec, "Event").validate(await put.json())
    joined = await (await edge.post("/api/v1/events/ev/join")).json()
    checker(spec, "Joined").validate(joined)
    clock.advance(2)
    await edge.app[ROOM].tick()
    status = await (await edge.get("/api/v1/events/ev/status")).json()
    assert status["state"] == "admitted"
    checker(spec, "Status").validate(status)
    checker(spec, "EventWithStats").validate(
        await (await edge.get("/admin/v1/events/ev", headers=admin_headers())).json()
    )
    listed = spec["paths"]["/admin/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**listed, "components": spec["components"]}).validate(
        await (await edge.get("/admin/v1/events", headers=admin_headers())).json()
    )
    checker(spec, "Problem").validate(await (await edge.post("/api/v1/events/nope/join")).json())
    bad = await edge.put("/admin/v1/events/ev", json={"rate_per_s": "x"}, headers=admin_headers())
    checker(spec, "Problem").validate(await bad.json())
    checker(spec, "Event").validate(await (await edge.delete("/admin/v1/events/ev", headers=admin_headers())).json())
    # the schema is strict enough to notice a broken response
    assert not checker(spec, "Status").is_valid({**status, "state": "somewhere"})


# --- the join body: what the schema allows is exactly what the server accepts ------------------

POW_DIFFICULTY = 8  # a few hundred hashes


@pytest.fixture
async def unlimited_edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    """An edge without the join allowance, with one event that asks for work and one that does not."""
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        for event_id, difficulty in (("work", POW_DIFFICULTY), ("free", None)):
            body = {"name": event_id, "rate_per_s": 1, "pow_difficulty": difficulty}
            assert (await client.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())).status == 200
        yield client


def join_body_checker(spec: dict[str, Any]) -> jsonschema.Draft202012Validator:
    body = spec["paths"]["/api/v1/events/{event_id}/join"]["post"]["requestBody"]["content"]["application/json"]
    return jsonschema.Draft202012Validator({**body["schema"], "components": spec["components"]})


async def join_as_stranger(edge: TestClient, event_id: str, body: object) -> tuple[int, dict[str, Any]]:
    edge.session.cookie_jar.clear()  # no live ticket: every join is a new place (and needs its own work)
    resp = await edge.post(f"/api/v1/events/{event_id}/join", json=body)
    payload: dict[str, Any] = await resp.json()
    return resp.status, payload


DEVICE_HASH = "ab" * 32

# Bodies a client may plausibly send, valid and not; each is sent to an event without work.
JOIN_BODIES: list[object] = [
    {},
    {"person_id": "X-123", "device_key_hash": DEVICE_HASH},
    {"device_key_hash": None},  # found by fuzzing: accepted, once refused by the schema
    {"person_id": None},
    {"pow": None},
    {"pow": {}},
    {"pow": {"challenge": None, "solution": None}},
    {"pow": {"challenge": "c", "solution": "1", "elapsed_ms": 812, "worker": {"threads": 4}}},  # found by fuzzing
    {"unknown": [1, 2]},
    {"device_key_hash": "ABC"},
    {"device_key_hash": 7},
    {"person_id": ""},
    {"person_id": "x" * 65},
    {"pow": "abc"},
    {"pow": []},
    {"pow": {"challenge": 1, "solution": "1"}},
    {"pow": {"challenge": "c", "solution": 1}},
    [],
    "join",
]


async def test_the_join_schema_allows_exactly_the_bodies_the_server_accepts(unlimited_edge: TestClient) -> None:
    checker = join_body_checker(await spec_of(unlimited_edge))
    for body in JOIN_BODIES:
        status, answer = await join_as_stranger(unlimited_edge, "free", body)
        assert status in (201, 400), (body, status, answer)
        assert checker.is_valid(body) == (status == 201), (body, status, answer)
        if status == 400:
            assert_problem(status, answer, 400, "validation_error")
    accepted = sum(checker.is_valid(b) for b in JOIN_BODIES)
    assert 0 < accepted < len(JOIN_BODIES)  # the list really holds both kinds


async def test_null_for_an_optional_join_field_means_left_out(unlimited_edge: TestClient) -> None:
    status, body = await join_as_stranger(
        unlimited_edge, "free", {"person_id": None, "pow": None, "device_key_hash": None}
    )
    assert status == 201, body
    status, body = await join_as_stranger(unlimited_edge, "work", {"pow": None})
    assert_problem(status, body, 403, "pow_invalid")  # no proof, as when pow is left out


async def test_unknown_keys_under_pow_are_ignored_and_the_proof_still_counts(unlimited_edge: TestClient) -> None:
    checker = join_body_checker(await spec_of(unlimited_edge))
    issued = await (await unlimited_edge.get("/api/v1/events/work/challenge")).json()
    proof = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], POW_DIFFICULTY)}
    body = {"pow": {**proof, "elapsed_ms": 812, "worker": {"threads": 4}, "note": None}}
    assert checker.is_valid(body)
    status, answer = await join_as_stranger(unlimited_edge, "work", body)
    assert status == 201, answer
    status, answer = await join_as_stranger(unlimited_edge, "work", body)  # extra keys do not launder a replay
    assert_problem(status, answer, 403, "pow_invalid")
    wrong_type = {"pow": {**proof, "solution": 5}}
    assert not checker.is_valid(wrong_type)
    assert_problem(*(await join_as_stranger(unlimited_edge, "work", wrong_type)), 400, "validation_error")
