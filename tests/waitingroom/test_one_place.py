"""One person, one place (opt-in per event): the same person identifier gets the same place back,
and the identifier itself is never stored, only its keyed hash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from shared.persons import PersonVault
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import FakeClock, admin_headers, assert_problem, serve
from waitingroom.app import create_app


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    async with serve(create_app(replace(settings, join_limit_per_min=0), clock=clock, run_ticker=False)) as client:
        for event_id, one_place in (("cohort", True), ("open", False)):
            body = {"name": event_id, "rate_per_s": 0.01, "one_place_per_person": one_place}
            assert (await client.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())).status == 200
        yield client


async def join(edge: TestClient, event_id: str, person_id: str | None) -> tuple[int, dict[str, object]]:
    edge.session.cookie_jar.clear()  # another browser, another device: no ticket to fall back on
    body = {} if person_id is None else {"person_id": person_id}
    resp = await edge.post(f"/api/v1/events/{event_id}/join", json=body)
    return resp.status, await resp.json()


async def test_the_same_person_gets_the_same_place(edge: TestClient, settings: Settings, redis: Redis) -> None:
    codec = TokenCodec(settings.secret_keys)
    status, first = await join(edge, "cohort", "AB-123 456")
    assert status == 201 and first["position"] == 1
    _, other = await join(edge, "cohort", "ZZ-999")
    _, again = await join(edge, "cohort", "ab123456")  # same number, typed differently
    assert again["position"] == 1
    a, b = codec.read_ticket(str(first["ticket"])), codec.read_ticket(str(again["ticket"]))
    assert (a.visitor_id, a.seq) == (b.visitor_id, b.seq)
    assert other["position"] == 2
    shown = await (await edge.get("/admin/v1/events/cohort", headers=admin_headers())).json()
    assert shown["stats"]["joined"] == 2 and shown["one_place_per_person"] is True
    # only keyed hashes reach Redis
    keys = [k.decode() async for k in redis.scan_iter()]
    values = [str(await redis.hgetall(k)) for k in keys if await redis.type(k) == b"hash"]
    assert not any(x in blob for blob in keys + values for x in ("AB-123", "AB123456", "ZZ-999", "ZZ999"))


async def test_concurrent_joins_of_one_person_get_one_place(edge: TestClient, settings: Settings) -> None:
    codec = TokenCodec(settings.secret_keys)

    async def one() -> tuple[str, int]:
        async with aiohttp.ClientSession() as browser:  # separate browsers, at the same moment
            resp = await browser.post(edge.make_url("/api/v1/events/cohort/join"), json={"person_id": "SAME-1"})
            ticket = codec.read_ticket((await resp.json())["ticket"])
            return ticket.visitor_id, ticket.seq

    places = await asyncio.gather(*(one() for _ in range(20)))
    assert len(set(places)) == 1


async def test_person_id_is_required_only_where_the_event_says_so(edge: TestClient) -> None:
    status, body = await join(edge, "cohort", None)
    assert_problem(status, body, 400, "validation_error")
    status, body = await join(edge, "cohort", "x" * 65)
    assert_problem(status, body, 400, "validation_error")
    _, first = await join(edge, "open", "AB-1")
    _, second = await join(edge, "open", "AB-1")  # ignored here: a new place each time
    assert (first["position"], second["position"]) == (1, 2)


async def test_negative_control_check_then_set_gives_one_person_many_places(redis: Redis, clean: None) -> None:
    """Without the single atomic script, concurrent joins of one person race to several places."""

    async def racy_join() -> int:
        held = await redis.hget("neg:person", "seq")
        if held is not None:
            return int(held)
        seq = int(await redis.hincrby("neg:queue", "joined", 1))
        await redis.hset("neg:person", "seq", seq)
        return seq

    places = await asyncio.gather(*(racy_join() for _ in range(20)))
    assert len(set(places)) > 1


# Issue 14, item 5: one number written three ways (plain, FULLWIDTH letters and digits at ASCII +
# 0xFEE0, DEVANAGARI digits at U+0966..) is one person; a look-alike from another script is refused.
SAME_PERSON = (
    "AB-123 456",
    "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in "ab-123 456"),
    "".join(chr(0x0966 + int(c)) if c.isdigit() else c for c in "AB.123/456"),
)


async def places_of(edge: TestClient, codec: TokenCodec, forms: tuple[str, ...]) -> set[tuple[str, int]]:
    places = set()
    for form in forms:
        status, body = await join(edge, "cohort", form)
        assert status == 201, body
        ticket = codec.read_ticket(str(body["ticket"]))
        places.add((ticket.visitor_id, ticket.seq))
    return places


async def test_one_number_written_three_ways_gets_one_place(edge: TestClient, settings: Settings) -> None:
    assert len(set(SAME_PERSON)) == 3
    assert len(await places_of(edge, TokenCodec(settings.secret_keys), SAME_PERSON)) == 1
    cyrillic = "AB-123 456".replace("A", "\N{CYRILLIC CAPITAL LETTER A}")
    status, body = await join(edge, "cohort", cyrillic)
    assert_problem(status, body, 400, "validation_error")
    assert body["errors"][0]["loc"] == ["person_id"] and "123" not in str(body)


async def test_negative_control_the_old_normalisation_gives_three_places(
    edge: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def old_rule(self: PersonVault, id_number: str, **_: object) -> str:
        return "".join(ch for ch in id_number.upper() if ch.isalnum())

    monkeypatch.setattr(PersonVault, "canonical_id", old_rule)
    assert len(await places_of(edge, TokenCodec(settings.secret_keys), SAME_PERSON)) == 3
