"""Who a person is, through the API and the worker: one id number however it is written, and one
active appointment per person per program, whichever event admitted them.

Negative controls: with the old normalisation (keep whatever ``isalnum()`` accepts) three written
forms of one number book three appointments; with the old per-event unique index two events book
one person twice at the same site.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared import attempts
from shared.persons import PersonVault
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import (
    admin_headers,
    admission_token,
    assert_problem,
    booking_headers,
    person,
    running_worker,
    seed_site_and_slot,
    serve,
)
from waitingroom.app import create_app as create_edge


def full_width(text: str) -> str:
    """ASCII letters, digits and '-' as their FULLWIDTH forms (U+FF01.. = ASCII + 0xFEE0)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def arabic_indic(text: str) -> str:
    """Digits as ARABIC-INDIC DIGITs (U+0660..U+0669); letters lower case."""
    return "".join(chr(0x0660 + int(c)) if c.isdigit() else c.lower() for c in text)


PLAIN = person(1)["id_number"]  # "ID-000001"
FORMS = (PLAIN, full_width(PLAIN), arabic_indic(PLAIN).replace("-", " "))


def old_canonical_id(self: PersonVault, id_number: str, **_: Any) -> str:
    """The rule before issue 14: keep every character whose isalnum() is true, upper-cased."""
    return "".join(ch for ch in id_number.upper() if ch.isalnum())


async def book_as(api: TestClient, codec: TokenCodec, id_number: str, slot_id: str, event_id: str = "ev") -> str:
    """Book person 1 under ``id_number`` with a fresh admission of ``event_id``; "confirmed" or the code."""
    body = {"slot_id": slot_id, "person": {**person(1), "id_number": id_number}}
    resp = await api.post(
        "/api/v1/appointments", json=body, headers=booking_headers(admission_token(codec, event_id=event_id))
    )
    answer = await resp.json()
    return "confirmed" if resp.status == 201 else str(answer["code"])


async def confirmed(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM appointments WHERE status = 'confirmed'"))


# --- item 5: one number, one person ------------------------------------------------------------------


async def test_one_person_in_three_written_forms_books_once(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool, capacity=5)
    assert len(set(FORMS)) == 3
    async with running_worker(settings):
        outcomes = Counter(await asyncio.gather(*(book_as(api, codec, form, slot_id) for form in FORMS)))
    assert outcomes == Counter({"confirmed": 1, "already_booked": 2})
    assert await confirmed(pool) == 1


async def test_negative_control_the_old_normalisation_books_three_times(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PersonVault, "canonical_id", old_canonical_id)
    slot_id = await seed_site_and_slot(pool, capacity=5)
    async with running_worker(settings):
        outcomes = Counter(await asyncio.gather(*(book_as(api, codec, form, slot_id) for form in FORMS)))
    assert outcomes == Counter({"confirmed": 3})
    assert await confirmed(pool) == 3


async def test_a_look_alike_id_number_is_refused_naming_the_field(
    api: TestClient, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await seed_site_and_slot(pool)
    cyrillic = PLAIN.replace("I", "\N{CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I}")
    token = admission_token(codec)
    for path, body in (
        ("/api/v1/appointments", {"slot_id": slot_id, "person": {**person(1), "id_number": cyrillic}}),
        ("/api/v1/waitlist", {"site_id": "site-a", "type_id": "t", "day": "2030-01-01",
                              "person": {**person(1), "id_number": cyrillic}}),
    ):  # fmt: skip
        resp = await api.post(path, json=body, headers=booking_headers(token))
        text = await resp.text()
        answer = await resp.json()
        assert_problem(resp.status, answer, 400, "validation_error")
        assert answer["errors"][0]["loc"] == ["person", "id_number"]
        assert cyrillic not in text and "000001" not in text
    assert await pool.fetchval("SELECT count(*) FROM booking_attempts") == 0


# --- item 9: one active appointment per person per program ---------------------------------------


async def two_events_one_site(pool: asyncpg.Pool) -> str:
    """Events e1 and e2, neither limited to sites (both admit to every site), and one slot."""
    slot_id = await seed_site_and_slot(pool, capacity=5, event_id="e1")
    await pool.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('e2', 'E2', 1, 900)")
    return slot_id


def without_the_early_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the attempt go to the database without the lock-free already_booked answer."""
    real = attempts._refusal_before_seat

    def refusal(job: Any, slot: Any, now: datetime) -> Any:
        return real(job, None if slot is None else {**dict(slot), "already_booked": False}, now)

    monkeypatch.setattr(attempts, "_refusal_before_seat", refusal)


async def test_two_events_book_one_person_at_one_site_once(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await two_events_one_site(pool)
    async with running_worker(settings):
        at_once = await asyncio.gather(*(book_as(api, codec, PLAIN, slot_id, event_id=e) for e in ("e1", "e2")))
        later = await book_as(api, codec, PLAIN, slot_id, event_id="e2")
    assert sorted(at_once) == ["already_booked", "confirmed"]
    assert later == "already_booked"
    assert await pool.fetchval("SELECT program_id FROM appointments") == "default"
    assert await confirmed(pool) == 1


async def test_the_database_alone_refuses_the_second(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_the_early_check(monkeypatch)
    slot_id = await two_events_one_site(pool)
    async with running_worker(settings):
        outcomes = [await book_as(api, codec, PLAIN, slot_id, event_id=e) for e in ("e1", "e2")]
    assert outcomes == ["confirmed", "already_booked"]  # from the unique index, as a refusal
    assert await confirmed(pool) == 1


@pytest.fixture
async def per_event_index(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The index as it was before migration 0012 (one per person per event), restored afterwards."""
    async with pool.acquire() as con, con.transaction():
        await con.execute("DROP INDEX appointments_person_active")
        await con.execute(
            "CREATE UNIQUE INDEX appointments_person_active ON appointments (event_id, person_ref)"
            " WHERE status = 'confirmed'"
        )
    try:
        yield
    finally:
        async with pool.acquire() as con, con.transaction():
            await con.execute("DELETE FROM booking_attempts; DELETE FROM appointments")
            await con.execute("DROP INDEX appointments_person_active")
            await con.execute(
                "CREATE UNIQUE INDEX appointments_person_active ON appointments (program_id, person_ref)"
                " WHERE status = 'confirmed'"
            )


async def test_negative_control_a_per_event_index_books_one_person_twice(
    api: TestClient,
    settings: Settings,
    codec: TokenCodec,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    per_event_index: None,
) -> None:
    without_the_early_check(monkeypatch)
    slot_id = await two_events_one_site(pool)
    async with running_worker(settings):
        outcomes = [await book_as(api, codec, PLAIN, slot_id, event_id=e) for e in ("e1", "e2")]
    assert outcomes == ["confirmed", "confirmed"]
    assert await confirmed(pool) == 2


async def test_events_of_two_programs_book_independently_and_an_event_moves_with_its_appointments(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot_id = await two_events_one_site(pool)
    async with serve(create_edge(settings, run_ticker=False)) as edge:

        async def move(event_id: str, program_id: str) -> tuple[int, dict[str, Any]]:
            resp = await edge.put(f"/admin/v1/events/{event_id}", json={"program_id": program_id},
                                  headers=admin_headers())  # fmt: skip
            return resp.status, await resp.json()

        status, shown = await move("e2", "flu-2030")
        assert (status, shown["program_id"]) == (200, "flu-2030")
        async with running_worker(settings):
            outcomes = [await book_as(api, codec, PLAIN, slot_id, event_id=e) for e in ("e1", "e2")]
        assert outcomes == ["confirmed", "confirmed"]  # two programs: one appointment in each
        programs = await pool.fetch("SELECT event_id, program_id FROM appointments ORDER BY event_id")
        assert [tuple(r) for r in programs] == [("e1", "default"), ("e2", "flu-2030")]
        # moving e2 back would give the person two active appointments in "default": refused, unchanged
        status, refused = await move("e2", "default")
        assert_problem(status, refused, 409, "conflict")
        assert await pool.fetchval("SELECT program_id FROM events WHERE event_id = 'e2'") == "flu-2030"
        # moving it elsewhere takes its appointment along (the composite foreign key cascades)
        assert (await move("e2", "flu-2031"))[0] == 200
        moved = await pool.fetchval("SELECT program_id FROM appointments WHERE event_id = 'e2'")
        assert moved == "flu-2031"
        status, bad = await move("e2", "Not A Program")
        assert_problem(status, bad, 400, "validation_error")


async def test_an_appointment_cannot_claim_another_program_than_its_events(pool: asyncpg.Pool) -> None:
    slot_id = uuid.UUID(await seed_site_and_slot(pool))
    insert = ("INSERT INTO appointments (appointment_id, event_id, program_id, slot_id, token_id, person_ref,"
              " person_sealed, status) VALUES ($1, 'ev', $2, $3, $4, 'p', 'x', 'confirmed')")  # fmt: skip
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(insert, uuid.uuid4(), "elsewhere", slot_id, "t1")
    await pool.execute(insert, uuid.uuid4(), None, slot_id, "t2")  # filled in from the event
    assert await pool.fetchval("SELECT program_id FROM appointments") == "default"
