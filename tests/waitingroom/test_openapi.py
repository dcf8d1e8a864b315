"""The edge's OpenAPI document is valid, matches the routes exactly, and describes real responses."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from tests.helpers import FakeClock, admin_headers
from waitingroom.keys import ROOM


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
    checker(spec, "Problem").validate(await (await edge.post("/api/v1/events/nope/join")).json())
    bad = await edge.put("/admin/v1/events/ev", json={"rate_per_s": "x"}, headers=admin_headers())
    checker(spec, "Problem").validate(await bad.json())
    # the schema is strict enough to notice a broken response
    assert not checker(spec, "Status").is_valid({**status, "state": "somewhere"})
