"""The operator console's server side: the page shell, the live stream (SSE) and recent actions."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from admission.keys import TOKEN_FAILURES
from booking_worker.booking import book
from shared.booking import BookingJob, attempt_id_for
from shared.keys import token_failures_key
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.redis import create_arq_pool, create_redis
from shared.settings import Settings
from shared.staff import OWNER, Role, add_staff, revoke_staff
from shared.token_failures import UNKNOWN_EVENT, TokenFailureCounter
from shared.tokens import TokenCodec
from surgegate.embedded import EmbeddedValkey
from tests.helpers import (
    FakeClock,
    accepted,
    admin_headers,
    admission_token,
    assert_problem,
    seed_site_and_slot,
    serve,
)
from waitingroom.app import create_app
from waitingroom.booking_figures import BookingFigures
from waitingroom.keys import ROOM, TRENDS
from waitingroom.trends import TREND_SPAN_S


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        for event_id in ("ev", "other"):
            body = {"name": f"Event {event_id}", "rate_per_s": 1}
            assert (await client.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())).status == 200
        yield client


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def next_message(resp: ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next server-sent event of the stream: (event name, its JSON data)."""
    kind, data = "message", ""
    while True:
        line = (await resp.content.readline()).decode()
        assert line, "the stream ended"
        line = line.rstrip("\n")
        if not line:
            return kind, json.loads(data)
        field, _, value = line.partition(": ")
        if field == "event":
            kind = value
        elif field == "data":
            data += value


def by_id(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in message["events"]}


async def test_the_page_is_a_data_free_shell_that_obeys_the_policy(edge: TestClient) -> None:
    resp = await edge.get("/admin")
    assert resp.status == 200 and resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    page = await resp.text()
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/console.js" defer>']
    assert " style=" not in page and "<style" not in page  # no inline style: the policy would refuse it
    assert "Event ev" not in page  # no data without a credential
    for asset in ("/static/console.js", "/static/console.css"):
        assert (await edge.get(asset)).status == 200


async def test_the_stream_needs_the_operator_role(edge: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con, con.transaction():
        supply = await add_staff(con, "sue", [Role.SUPPLY], actor=OWNER)
    assert_problem((r := await edge.get("/admin/v1/live")).status, await r.json(), 401, "unauthorized")
    resp = await edge.get("/admin/v1/live", headers=bearer(supply))
    assert_problem(resp.status, await resp.json(), 403, "forbidden")
    resp = await edge.get("/admin/v1/live?token=" + supply)  # a credential in the URL counts for nothing
    assert resp.status == 401


async def test_the_stream_moves_with_the_queue(edge: TestClient, clock: FakeClock) -> None:
    room = edge.app[ROOM]
    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-store"
    kind, first = await next_message(resp)
    events = by_id(first)
    assert kind == "stats" and set(events) == {"ev", "other"}
    assert events["ev"]["stats"]["joined"] == 0 and events["ev"]["trend"] == []
    assert events["ev"]["rate_per_s"] == 1.0 and events["ev"]["bookings_frozen"] is False
    for _ in range(3):
        await room.join("ev", None)
    kind, later = await next_message(resp)  # the next message, a second later
    now = by_id(later)["ev"]
    assert kind == "stats" and now["stats"]["joined"] == 3 and now["stats"]["waiting"] == 3
    assert "trend" not in now  # only the first message carries the backlog
    assert by_id(later)["other"]["stats"]["joined"] == 0
    resp.close()


async def test_the_first_message_carries_the_last_fifteen_minutes(edge: TestClient, clock: FakeClock) -> None:
    room, trends = edge.app[ROOM], edge.app[TRENDS]
    for _ in range(100):  # 1,000 s of ten-second points, one join each
        await room.join("ev", None)
        await room.tick()
        trends.record(room, clock())
        clock.advance(10)
    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    _, first = await next_message(resp)
    trend = by_id(first)["ev"]["trend"]
    assert trend[-1]["joined"] == 100 and 0 < len(trend) < 100  # older points than 15 minutes were dropped
    assert trend[-1]["at"] - trend[0]["at"] <= TREND_SPAN_S
    resp.close()


async def test_a_revoked_key_ends_the_stream(edge: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con, con.transaction():
        key = await add_staff(con, "olga", [Role.OPERATOR], actor=OWNER)
    resp = await edge.get("/admin/v1/live", headers=bearer(key))
    assert (await next_message(resp))[0] == "stats"
    async with pool.acquire() as con, con.transaction():
        assert await revoke_staff(con, "olga", actor=OWNER)
    kind, data = await next_message(resp)
    assert (kind, data["code"]) == ("signed_out", "unauthorized")
    assert await resp.content.read() == b""  # and the stream is over


async def test_shutting_down_ends_the_streams_at_once(edge: TestClient) -> None:
    """aiohttp waits for running handlers on shutdown (60 s under run_app): the stream must not be one."""
    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    assert (await next_message(resp))[0] == "stats"
    await edge.app.shutdown()  # what the runner does first when the edge stops
    kind, _ = await asyncio.wait_for(next_message(resp), 10)
    assert kind == "closing"
    assert await asyncio.wait_for(resp.content.read(), 10) == b""


async def test_the_stream_outlives_a_redis_outage(
    settings: Settings, clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> None:
    valkey = EmbeddedValkey(tmp_path_factory.mktemp("vk"), persist=False)
    valkey.start()
    try:
        live = replace(settings, redis_url=valkey.url)
        async with serve(create_app(live, clock=clock, run_ticker=False)) as edge:
            body = {"name": "E", "rate_per_s": 1}
            assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
            resp = await edge.get("/admin/v1/live", headers=admin_headers())
            assert (await next_message(resp))[0] == "stats"
            valkey.stop()
            kind, data = await asyncio.wait_for(next_message(resp), 10)
            assert (kind, data["code"]) == ("unavailable", "overloaded")  # not a broken stream, nor a 500
            assert "ConnectionError" in data["detail"] and "127.0.0.1" not in data["detail"]
            resp.close()
    finally:
        valkey.stop()


async def test_recent_actions_are_the_operators_event_changes(edge: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as con, con.transaction():
        key = await add_staff(con, "olga", [Role.OPERATOR], actor=OWNER)
    assert (await edge.put("/admin/v1/events/ev", json={"paused": True}, headers=bearer(key))).status == 200
    await pool.execute("INSERT INTO audit_log (action, event_id, actor) VALUES ('booked', 'ev', 'tok')")
    resp = await edge.get("/admin/v1/actions", headers=bearer(key))
    actions = (await resp.json())["actions"]
    assert [(a["action"], a["event_id"], a["actor"]) for a in actions] == [
        ("event_updated", "ev", "staff:olga"),  # newest first
        ("event_created", "other", "owner"),
        ("event_created", "ev", "owner"),
    ]
    assert actions[0]["detail"] == {"paused": True}
    only = await (await edge.get("/admin/v1/actions?event_id=other&limit=5", headers=bearer(key))).json()
    assert [a["event_id"] for a in only["actions"]] == ["other"]
    for bad in ("limit=0", "limit=x", "event_id=NO%20SUCH"):
        resp = await edge.get(f"/admin/v1/actions?{bad}", headers=bearer(key))
        assert_problem(resp.status, await resp.json(), 400, "validation_error")


async def test_the_stream_carries_the_booking_side(
    edge: TestClient, clock: FakeClock, settings: Settings, pool: asyncpg.Pool
) -> None:
    room = edge.app[ROOM]
    tickets = [(await room.join("ev", None))[0] for _ in range(3)]
    for _ in range(12):  # 1/s: all three admitted
        clock.advance(0.5)
        await room.tick()
    slot_id = await seed_site_and_slot(pool, event_id="ev", capacity=1)
    vault = PersonVault(b"k" * 32)
    assert settings.redis_url
    arq = await create_arq_pool(settings.redis_url, settings.queue_name)
    outcomes = []
    try:
        for i, ticket in enumerate(tickets):
            status = await room.status("ev", ticket)
            assert status.admission_token is not None
            admission = room.codec.verify_admission(status.admission_token)
            job = BookingJob(attempt_id=str(attempt_id_for(admission.token_id, "k")), token_id=admission.token_id,
                             event_id="ev", scope=None, slot_id=slot_id, request_hash="00" * 32,
                             person_ref=vault.ref(f"P-{i}").hex(), person_sealed=vault.seal({}).decode(),
                             rank=admission.rank)  # fmt: skip
            payload = await accepted(pool, job)
            outcomes.append(await book({"pool": pool, "metrics": Metrics(), "redis": arq}, payload))
        for name in ("a", "b"):  # two jobs waiting in the booking queue (no worker runs)
            assert await arq.enqueue_job("book", _job_id=f"console-{name}") is not None
    finally:
        await arq.aclose()
    assert [o["status"] for o in outcomes] == ["confirmed", "rejected", "rejected"]
    # exact latencies: 2 s and 4 s in the window; the third became final 10 minutes ago (outside it)
    ids = [o["attempt_id"] for o in outcomes]
    async with pool.acquire() as con:
        for attempt_id, finished, took in ((ids[0], 0, 2), (ids[1], 1, 4), (ids[2], 600, 1)):
            await con.execute(
                "UPDATE booking_attempts SET finished_at = now() - $2::interval,"
                " created_at = now() - $2::interval - $3::interval WHERE attempt_id = $1",
                uuid.UUID(attempt_id), timedelta(seconds=finished), timedelta(seconds=took),
            )  # fmt: skip
    expires = datetime.fromtimestamp(clock() + 3600, UTC).isoformat()
    resp = await edge.post("/admin/v1/events/ev/invites", headers=admin_headers(),
                           json={"count": 3, "expires_at": expires, "label": "cohort"})  # fmt: skip
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["links"][0].partition("#")[2]
    assert (await edge.post("/api/v1/events/ev/invites:redeem", json={"invite": token})).status == 201

    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    _, first = await next_message(resp)
    resp.close()
    booking = by_id(first)["ev"]["booking"]
    assert booking == {
        "booked": 1,
        "slot_full": 2,
        "ineligible": 0,
        "refusals": {"slot_full": 2},
        "latency_s": {"p50": 3.0, "p99": 3.98, "finished": 2, "window_s": 300},
        "queue_depth": 2,
        "invites": {"issued": 3, "used": 1, "open": 2},
        "token_failures": {"total": 0, "by_reason": {}, "per_minute": [0] * 15, "window_s": 900, "step_s": 60},
    }
    other = by_id(first)["other"]["booking"]
    assert other["booked"] == 0 and other["refusals"] == {} and other["invites"]["issued"] == 0
    assert other["latency_s"]["p50"] is None and other["queue_depth"] == 2  # one queue for all events


async def test_booking_figures_are_computed_at_most_once_a_second(
    edge: TestClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    now = [100.0]
    figures = BookingFigures(clock=lambda: now[0])
    room = edge.app[ROOM]
    before = await figures.of(room, "ev")
    await seed_site_and_slot(pool, event_id="ev")
    redis = room.queue.redis
    await redis.zadd(settings.queue_name, {"console-x": 1})
    now[0] += 0.9
    assert await figures.of(room, "ev") == before  # cached
    now[0] += 0.1
    assert (await figures.of(room, "ev"))["queue_depth"] == before["queue_depth"] + 1  # a second later: afresh


async def test_token_failures_reach_the_console_from_the_api(
    edge: TestClient, api: TestClient, codec: TokenCodec, redis: Redis
) -> None:
    """Real refused requests to a real booking API, counted by event and reason in Redis, shown by the
    edge's stream; a token that names no trustworthy event counts under the unknown event only."""
    expired = bearer(admission_token(codec, event_id="ev", ttl=-60))
    forged = bearer(admission_token(TokenCodec([("k1", "some-other-secret-xyz")]), event_id="ev"))
    good_other = admission_token(codec, event_id="other", scope=["S1"])
    for headers in (expired, expired, forged, {}, {"Authorization": "Bearer not-a-token"}):
        assert (await api.get("/api/v1/sites", headers=headers)).status == 401
    resp = await api.get("/api/v1/slots", params={"site_id": "S2"}, headers=bearer(good_other))
    assert_problem(resp.status, await resp.json(), 403, "token_scope")
    assert (await api.get("/api/v1/sites", headers=bearer(good_other))).status == 200  # not a failure
    await api.app[TOKEN_FAILURES].flush(redis)  # what the API's loop does once a second
    # an earlier minute of the window, as another API process left it
    seconds, _ = await redis.time()
    await redis.hset(token_failures_key(int(seconds) // 60 - 3), "ev:binding", "4")

    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    _, first = await next_message(resp)
    resp.close()
    ev, other = by_id(first)["ev"]["booking"]["token_failures"], by_id(first)["other"]["booking"]["token_failures"]
    assert ev["by_reason"] == {"binding": 4, "expired": 2} and ev["total"] == 6
    minutes = ev["per_minute"]  # oldest first; the flush and the read may straddle a minute's end
    assert len(minutes) == 15 and [n for n in minutes if n] == [4, 2] and minutes.index(2) >= 13
    assert ev["window_s"] == 900 and ev["step_s"] == 60
    assert other["by_reason"] == {"scope": 1} and other["total"] == 1
    unknown = first["token_failures_unknown_event"]
    assert unknown["by_reason"] == {"malformed": 1, "missing": 1, "signature": 1} and unknown["total"] == 3
    stored = {field.decode() for key in await redis.keys(token_failures_key(0)[:-1] + "*")
              for field in await redis.hgetall(key)}  # fmt: skip
    assert stored == {"ev:expired", "ev:binding", "other:scope", "-:malformed", "-:missing", "-:signature"}


async def test_token_failures_outside_the_catalogue_or_window_do_not_count(
    edge: TestClient, redis: Redis, settings: Settings
) -> None:
    counter = TokenFailureCounter()
    counter.count("ev", "something-an-attacker-chose")
    counter.count(None, "expired")
    await counter.flush(redis)
    seconds, _ = await redis.time()
    await redis.hset(token_failures_key(int(seconds) // 60 - 15), "ev:expired", "9")  # 15 minutes ago: outside
    failures = await BookingFigures().token_failures(edge.app[ROOM])
    assert failures.of("ev")["by_reason"] == {"other": 1}
    assert failures.of(UNKNOWN_EVENT)["by_reason"] == {"expired": 1}
    assert failures.of("nobody")["total"] == 0 and failures.of("nobody")["per_minute"] == [0] * 15


async def test_token_failures_wait_in_memory_while_redis_is_away() -> None:
    counter = TokenFailureCounter()
    counter.count("ev", "expired")
    away = create_redis("redis://127.0.0.1:1/0", timeout_s=0.5)  # nothing listens on port 1
    try:
        await counter.flush(away)
    finally:
        await away.aclose()
    assert counter.pending == {("ev", "expired"): 1}  # kept for the next flush, not lost


async def test_the_stream_carries_the_notification_backlog(edge: TestClient, pool: asyncpg.Pool) -> None:
    resp = await edge.get("/admin/v1/live", headers=admin_headers())
    _, first = await next_message(resp)
    resp.close()
    assert first["notifications"] == {"due": 0, "oldest_due_age_s": None}
    # (status, due in s, retry in s): negative = in the past
    rows = [("queued", -120, None), ("queued", -30, None), ("queued", -1000, -60), ("queued", 3600, None),
            ("queued", -900, 300), ("sent", -600, None), ("failed", -900, None), ("sending", -900, None)]  # fmt: skip
    for status, due, retry in rows:
        await pool.execute(
            "INSERT INTO notifications (kind, sealed, status, due_at, next_attempt_at)"
            " VALUES ('probe', '\\x00', $1, now() + make_interval(secs => $2), now() + make_interval(secs => $3))",
            status, due, retry,
        )  # fmt: skip
    backlog = await BookingFigures().notification_backlog(edge.app[ROOM])
    # due and not sent: all queued but the reminder due in an hour (retries pending or not), and the one
    # being sent; not those sent or failed
    assert backlog["due"] == 5
    assert 1000 <= backlog["oldest_due_age_s"] < 1500
