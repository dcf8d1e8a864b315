"""The HTTP layer both services share, against the real apps: every JSON body goes through one parse
that refuses deep nesting with 400; every response carries a Content-Security-Policy that forbids
framing (pages: only their own script and style); a request aiohttp cannot parse (a NUL byte in a
header) is answered 400 without an ERROR line or traceback in the log."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from admission.auth import CLAIMS_PATH
from shared.http import NOT_A_PAGE_POLICY, problem_middleware
from shared.tokens import TokenCodec
from tests.helpers import admin_headers, admission_token, assert_problem, booking_headers, seed_site_and_slot
from waitingroom.keys import SETTINGS

# 5,000 levels fit in 10 KB, far under the 64 KiB body limit; json.loads recursed until RecursionError.
NESTED = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000

EDGE_BODIES = [("POST", "/api/v1/events/ev/join"), ("PUT", "/admin/v1/events/ev")]
API_BODIES = [
    ("POST", "/api/v1/holds"),
    ("POST", "/api/v1/appointments"),
    ("POST", f"/api/v1/appointments/{uuid.UUID(int=1)}/reschedule"),
    ("POST", "/api/v1/waitlist"),
    ("POST", CLAIMS_PATH),
    ("POST", "/admin/v1/sites"),
    ("POST", "/admin/v1/slots"),
    ("PUT", "/admin/v1/appointment-types/group"),
    ("PUT", "/admin/v1/sites/site-a/schedules/group"),
    ("PUT", "/admin/v1/sites/site-a/overrides/2030-01-07"),
    ("POST", "/admin/v1/sites/site-a/generate"),
    ("POST", "/admin/v1/sites/site-a/closures"),
]


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("body", [NESTED, DEEP_OBJECT], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_400_on_the_edge(
    edge: TestClient, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    assert (await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())).ok
    caplog.set_level(logging.INFO)
    for method, path in EDGE_BODIES:
        resp = await edge.request(method, path, data=body, headers=admin_headers())
        problem = await resp.json()
        assert_problem(resp.status, problem, 400, "validation_error")
        assert resp.content_type == "application/problem+json"
        assert "not valid JSON" in problem["detail"], problem
    assert no_errors_logged(caplog) == []


@pytest.mark.parametrize("body", [NESTED, DEEP_OBJECT], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_400_on_the_api(
    api: TestClient, codec: TokenCodec, pool: object, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    await seed_site_and_slot(pool)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO)
    token = admission_token(codec)
    for method, path in API_BODIES:
        headers = admin_headers() if path.startswith("/admin/") else booking_headers(token)
        resp = await api.request(method, path, data=body, headers={**headers, "Content-Type": "application/json"})
        problem = await resp.json()
        assert_problem(resp.status, problem, 400, "validation_error")
        assert "not valid JSON" in problem["detail"], (path, problem)
    assert no_errors_logged(caplog) == []


async def test_nesting_a_body_can_have_is_still_read(edge: TestClient) -> None:
    """The depth limit is far above any body of the contract: a join with a nested (ignored) extra key."""
    assert (await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())).ok
    body = b'{"extra": ' + b"[" * 50 + b"]" * 50 + b"}"
    resp = await edge.post("/api/v1/events/ev/join", data=body)
    assert resp.status == 201, await resp.text()


# --- Content-Security-Policy -----------------------------------------------------------------------


def assert_page_policy(policy: str) -> None:
    directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"  # nothing inline
    assert "unsafe" not in policy


async def test_every_html_response_has_the_page_policy(edge: TestClient) -> None:
    resp = await edge.get("/")  # no event yet: the list page
    assert resp.content_type == "text/html"
    assert_page_policy(resp.headers["Content-Security-Policy"])
    assert (await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())).ok
    resp = await edge.get("/e/ev")
    assert resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert_page_policy(policy)
    assert f"connect-src 'self' {edge.app[SETTINGS].api_url};" in policy  # the booking API, another origin
    # the join form's refusal is a page too (a form without the required person id)
    assert (await edge.put("/admin/v1/events/one", json={"name": "E", "rate_per_s": 1, "one_place_per_person": True},
                           headers=admin_headers())).ok  # fmt: skip
    resp = await edge.post("/e/one/join", data={}, allow_redirects=False)
    assert resp.status == 400 and resp.content_type == "text/html"
    assert_page_policy(resp.headers["Content-Security-Policy"])


async def test_every_other_response_loads_nothing_and_is_never_framed(edge: TestClient, api: TestClient) -> None:
    for client, path in [(edge, "/static/queue.js"), (edge, "/healthz"), (edge, "/api/v1/events/nope/status"),
                         (edge, "/metrics"), (api, "/healthz"), (api, "/api/v1/sites"), (api, "/nope")]:  # fmt: skip
        resp = await client.get(path)
        assert resp.headers["Content-Security-Policy"] == NOT_A_PAGE_POLICY, (path, resp.status)


# --- requests aiohttp cannot parse -----------------------------------------------------------------


async def raw_request(client: TestClient, request: bytes) -> bytes:
    """Send bytes no HTTP client library would; the server's whole answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "header",
    [b"X-Anything: a\x00b", b"Authorization: Bearer a\x00b", b"Cookie: sg_ticket_ev=\x00", b"Accept-Language: e\x01n"],
)
async def test_an_invalid_byte_in_a_header_is_400_without_an_error_in_the_log(
    edge: TestClient, api: TestClient, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    for client, path in [(edge, b"/e/ev"), (edge, b"/api/v1/events/ev/join"), (api, b"/api/v1/holds")]:
        answer = await raw_request(client, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n"
                                   b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")  # fmt: skip
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", answer
    assert no_errors_logged(caplog) == []
    assert any(r.name == "aiohttp.server" and "malformed" in r.getMessage() for r in caplog.records)


async def test_a_credential_that_is_not_ascii_is_no_credential(
    edge: TestClient, api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are not UTF-8 reach handlers as surrogate escapes, which cannot be encoded again
    (the admin check compares bytes): 401, as for any wrong token."""
    caplog.set_level(logging.INFO)
    for client, path in [(edge, b"/admin/v1/events/ev"), (api, b"/admin/v1/slots/x"), (api, b"/api/v1/sites")]:
        answer = await raw_request(client, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                   b"Authorization: Bearer \xff\xfe\x80\r\nConnection: close\r\n\r\n")  # fmt: skip
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"401", answer
    assert no_errors_logged(caplog) == []


async def test_a_body_that_cannot_be_decoded_is_400(edge: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    assert (await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 1}, headers=admin_headers())).ok
    caplog.set_level(logging.INFO)
    resp = await edge.post("/api/v1/events/ev/join", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    assert no_errors_logged(caplog) == []


async def test_a_validation_problem_names_each_field_and_the_kind_of_error(api: TestClient, codec: TokenCodec) -> None:
    """``errors[]``: the field (``loc``) and the kind (``type``), which the page words in its own
    language next to the field; never the value sent."""
    body = {
        "slot_id": str(uuid.uuid4()),
        "person": {"id_number": "X1", "email": "nobody-at-all", "birth_date": "1970-01-01"},
    }
    resp = await api.post("/api/v1/appointments", json=body, headers=booking_headers(admission_token(codec)))
    problem = await resp.json()
    assert_problem(resp.status, problem, 400, "validation_error")
    kinds = {tuple(e["loc"]): e["type"] for e in problem["errors"]}
    assert kinds == {("person", "name"): "missing", ("person", "email"): "value_error"}
    assert "nobody-at-all" not in str(problem)


TOKEN_ROUTE = "/api/v1/reminders/unsubscribe/{token}"
A_TOKEN = "k1.eyJhIjoiYXBwb2ludG1lbnQifQ.c2VjcmV0LXNpZ25hdHVyZQ"


@pytest.mark.parametrize("failure", ["unhandled", "constraint"])
async def test_an_error_on_a_path_with_a_credential_logs_the_route_not_the_path(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    """Opt-out, manage and claim links carry their credential in the URL: a 500 or a constraint's
    refusal on one logs the matched route's template, never the token."""

    async def failing(request: web.Request) -> web.Response:
        if failure == "unhandled":
            raise RuntimeError("forced")
        async with pool.acquire() as con, con.transaction():
            await con.execute("CREATE TEMP TABLE forced (x int CONSTRAINT positive CHECK (x > 0)) ON COMMIT DROP")
            await con.execute("INSERT INTO forced VALUES (0)")
        return web.Response()

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_post(TOKEN_ROUTE, failing)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.INFO):
            resp = await client.post(f"/api/v1/reminders/unsubscribe/{A_TOKEN}?lang=en")
            assert resp.status == (500 if failure == "unhandled" else 409)
    # (the test server's own access line is aiohttp's default; the services use RouteAccessLogger)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name == "surgegate.http")
    assert TOKEN_ROUTE in logged  # the place is still said
    assert A_TOKEN not in logged and "c2VjcmV0" not in logged
