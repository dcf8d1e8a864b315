"""Support: look a person up by id number (any written form; audited; nothing of them in the logs),
cancel and move appointments on their behalf with a reason; other roles are refused."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared.settings import Settings
from shared.staff import STAFF, Actor, Role, StaffDirectory
from shared.tokens import TokenCodec
from tests.helpers import (
    admin_headers,
    admission_token,
    assert_problem,
    book,
    booking_headers,
    person,
    running_worker,
    seats_of,
    seed_typed_slots,
    serve,
)

LOOKUP = "/admin/v1/support/lookup"
# Person 1's number as a desk might type it: plain, lower case with spaces, full-width letters, digits
# and dash, Unicode dashes, dots.
FULL_WIDTH = "".join(chr(ord(ch) + 0xFEE0) for ch in "ID-000001")
WRITTEN_FORMS = ("ID-000001", "id 000 001", FULL_WIDTH, "ID\u2010000\u2011001", " ID.000001 ")


def cancel_url(appointment_id: str) -> str:
    return f"/admin/v1/support/appointments/{appointment_id}/cancel"


def move_url(appointment_id: str) -> str:
    return f"/admin/v1/support/appointments/{appointment_id}/reschedule"


async def look_up(api: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    resp = await api.post(LOOKUP, json=body, headers=admin_headers() if headers is None else headers)
    return resp.status, await resp.json()


async def person_one_history(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> str:
    """Person 1 books the only seat of a day, is refused a second booking, and joins the day's waitlist;
    person 2 is refused the full slot. Returns person 1's appointment id."""
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    async with running_worker(settings):
        status, mine = await book(api, admission_token(codec), 1, slot_id=slot)
        assert status == 201, mine
        status, again = await book(api, admission_token(codec), 1, slot_id=slot)
        assert status == 409, again
        status, other = await book(api, admission_token(codec), 2, slot_id=slot)
        assert status == 409 and other["code"] == "slot_full", other
    day = await pool.fetchval(
        "SELECT (s.starts_at AT TIME ZONE si.timezone)::date FROM slots s JOIN sites si USING (site_id)"
    )
    wait = {"site_id": "site-a", "type_id": "group", "day": day.isoformat(), "person": person(1)}
    resp = await api.post("/api/v1/waitlist", json=wait, headers=booking_headers(admission_token(codec)))
    assert resp.status == 201, await resp.json()
    appointment_id: str = mine["appointment_id"]
    return appointment_id


async def test_lookup_finds_the_person_however_the_number_is_written(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    appointment_id = await person_one_history(api, settings, codec, pool)
    answers = []
    for written in WRITTEN_FORMS:
        status, found = await look_up(api, {"id_number": written})
        assert status == 200, found
        answers.append(found)
    found = answers[0]
    assert all(answer == found for answer in answers)
    assert [a["appointment_id"] for a in found["appointments"]] == [appointment_id]
    (appointment,) = found["appointments"]
    assert appointment["status"] == "confirmed" and appointment["site_id"] == "site-a"
    assert {"slot_id", "starts_at", "local_starts_at", "timezone", "type_id"} <= appointment.keys()
    # two attempts: the booking, and the second one refused with its reason
    attempts = sorted(found["attempts"], key=lambda a: a["status"])
    assert [(a["status"], a["appointment_id"]) for a in attempts] == [
        ("confirmed", appointment_id),
        ("rejected", None),
    ]
    assert attempts[1]["code"] in {"already_booked", "slot_full"} and attempts[1]["reason"]
    assert [(e["status"], e["site_id"]) for e in found["waitlist"]] == [("waiting", "site-a")]
    assert found["decisions"] == []
    # the person only masked: initials and the email's shape, never the values themselves
    assert found["person"] == {"name": "P… N…", "email": "p…@e….org"}
    text = json.dumps(found, ensure_ascii=False)
    for secret in (*person(1).values(), "000001", "person_ref", "person_sealed"):
        assert secret not in text

    # someone else sees only their own records; a number nobody used finds nothing
    status, other = await look_up(api, {"id_number": "ID-000002"})
    assert status == 200 and other["appointments"] == [] and other["waitlist"] == []
    assert [(a["status"], a["code"]) for a in other["attempts"]] == [("rejected", "slot_full")]
    assert other["person"] is None  # nothing of theirs holds contact details
    status, nobody = await look_up(api, {"id_number": "ID-999999"})
    assert status == 200 and nobody == {"person": None, "appointments": [], "attempts": [], "waitlist": [],
                                        "decisions": []}  # fmt: skip
    # one event only
    status, elsewhere = await look_up(api, {"id_number": "ID-000001", "event_id": "other"})
    assert status == 200 and elsewhere["appointments"] == elsewhere["attempts"] == elsewhere["waitlist"] == []
    status, here = await look_up(api, {"id_number": "ID-000001", "event_id": "ev"})
    assert status == 200 and here == found


async def test_bad_lookups_are_400_and_never_echo_the_number(api: TestClient, pool: asyncpg.Pool) -> None:
    cyrillic = "\u0410B-123"  # a Cyrillic A: not the same character as a Latin one, refused
    for body in ({"id_number": cyrillic}, {}, {"id_number": ""}, {"id_number": "X1", "event_id": "Not An Id"},
                 {"id_number": "X1", "name": "Ana"}):  # fmt: skip
        status, problem = await look_up(api, body)
        assert_problem(status, problem, 400, "validation_error")
        assert cyrillic not in json.dumps(problem, ensure_ascii=False) and "Not An Id" not in json.dumps(problem)
    # the id number may never be in a URL: there is no GET form of the look-up
    resp = await api.get(LOOKUP, params={"id_number": "ID-000001"}, headers=admin_headers())
    assert resp.status == 405
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'support_lookup'") == 0


async def test_every_lookup_is_audited_without_the_number_and_logs_nothing_of_the_person(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, from before the first request
    await person_one_history(api, settings, codec, pool)
    before = await pool.fetchval("SELECT coalesce(max(audit_id), 0) FROM audit_log")
    caplog.clear()
    for written in WRITTEN_FORMS:
        assert (await look_up(api, {"id_number": written, "event_id": "ev"}))[0] == 200
    assert (await look_up(api, {"id_number": "ID-000002"}))[0] == 200
    assert (await look_up(api, {"id_number": "\u0410B-123"}))[0] == 400
    lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    # the capture works: DEBUG records were taken, the access log's lines among them
    assert any(LOOKUP in line for line in lines), lines
    secrets = {*WRITTEN_FORMS, "ID000001", "000001", "000 001", "ID-000002", "ID000002", "\u0410B-123"}
    secrets |= {person(1)["name"], person(1)["email"], person(2)["name"], person(2)["email"]}
    leaked = [(secret, line) for line in lines for secret in secrets if secret.strip() in line]
    assert leaked == []

    rows = await pool.fetch(
        "SELECT action, event_id, actor, detail, detail::text AS raw FROM audit_log WHERE audit_id > $1"
        " ORDER BY audit_id",
        before,
    )
    assert [r["action"] for r in rows] == ["support_lookup"] * (len(WRITTEN_FORMS) + 1)  # the refused one: none
    assert {r["actor"] for r in rows} == {"owner"}
    assert [r["event_id"] for r in rows] == ["ev"] * len(WRITTEN_FORMS) + [None]
    subjects = [r["detail"]["subject"] for r in rows]
    assert len(set(subjects[:-1])) == 1 and subjects[-1] != subjects[0]  # who looked at whom
    assert rows[0]["detail"]["found"] == {"appointments": 1, "attempts": 2, "waitlist": 1, "decisions": 0}
    refs = {bytes(r["person_ref"]).hex() for r in await pool.fetch("SELECT person_ref FROM appointments")}
    for row in rows:
        assert not any(s.strip() in row["raw"] for s in secrets)
        assert not any(ref in row["raw"] for ref in refs)  # not even the keyed ref uniqueness uses


async def test_cancel_on_behalf_needs_a_reason_and_is_audited(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=2)
    async with running_worker(settings):
        _, mine = await book(api, admission_token(codec), 1, slot_id=slot)
    url = cancel_url(mine["appointment_id"])
    for bad in (None, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": "ok", "x": 1}):
        resp = await api.post(url, json=bad, headers=admin_headers())
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    assert await seats_of(pool, slot) == (1, 0)
    resp = await api.post(url, json={"reason": "called: cannot come"}, headers=admin_headers())
    assert resp.status == 200 and await resp.json() == {
        "appointment_id": mine["appointment_id"],
        "status": "cancelled",
        "late": False,
    }
    assert await seats_of(pool, slot) == (0, 0)
    row = await pool.fetchrow("SELECT actor, detail FROM audit_log WHERE action = 'cancelled'")
    assert row["actor"] == "owner" and row["detail"] == {"late": False, "reason": "called: cannot come"}
    stored = await pool.fetchrow("SELECT status, cancel_reason, cancelled_by FROM appointments")
    assert tuple(stored) == ("cancelled", "called: cannot come", "person")
    # again: refused, saying why; unknown ones are not found
    resp = await api.post(url, json={"reason": "again"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 409, "appointment_not_active")
    resp = await api.post(cancel_url(str(uuid.uuid4())), json={"reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    resp = await api.post(cancel_url("not-a-uuid"), json={"reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    status, found = await look_up(api, {"id_number": "ID-000001"})
    assert status == 200 and found["appointments"][0]["cancel_reason"] == "called: cannot come"


async def test_reschedule_on_behalf_moves_the_seat_with_a_reason(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b, c = await seed_typed_slots(pool, count=3, capacity=1)
    (elsewhere,) = await seed_typed_slots(pool, count=1, capacity=1, site_id="site-b", days_ahead=3)
    async with running_worker(settings):
        _, mine = await book(api, admission_token(codec), 1, slot_id=a)
        await book(api, admission_token(codec), 2, slot_id=c)  # c is full
    url = move_url(mine["appointment_id"])
    for bad in ({"slot_id": b}, {"slot_id": b, "reason": ""}, {"reason": "r"}, {"slot_id": "x", "reason": "r"}):
        resp = await api.post(url, json=bad, headers=admin_headers())
        assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.post(url, json={"slot_id": b, "reason": "site asked"}, headers=admin_headers())
    body = await resp.json()
    assert resp.status == 200 and body["slot_id"] == b and body["from_slot_id"] == a, body
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((0, 0), (1, 0))
    row = await pool.fetchrow("SELECT actor, detail FROM audit_log WHERE action = 'rescheduled'")
    assert row["actor"] == "owner" and row["detail"] == {"from_slot_id": a, "reason": "site asked"}
    # to where it is: nothing changes; into a full slot or an unknown one: refused, nothing changes
    resp = await api.post(url, json={"slot_id": b, "reason": "again"}, headers=admin_headers())
    assert resp.status == 200 and "from_slot_id" not in await resp.json()
    resp = await api.post(url, json={"slot_id": c, "reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 409, "slot_full")
    resp = await api.post(url, json={"slot_id": str(uuid.uuid4()), "reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    # only to the event's sites
    await pool.execute("UPDATE events SET site_ids = '{site-a}'")
    resp = await api.post(url, json={"slot_id": elsewhere, "reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 403, "token_scope")
    await pool.execute("UPDATE events SET site_ids = NULL")
    resp = await api.post(url, json={"slot_id": elsewhere, "reason": "r"}, headers=admin_headers())
    assert resp.status == 200
    assert (await seats_of(pool, b), await seats_of(pool, c), await seats_of(pool, elsewhere)) == (
        (0, 0), (1, 0), (1, 0),
    )  # fmt: skip
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'rescheduled'") == 2
    # a cancelled appointment is not moved
    await api.post(cancel_url(mine["appointment_id"]), json={"reason": "r"}, headers=admin_headers())
    resp = await api.post(url, json={"slot_id": b, "reason": "r"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 409, "appointment_not_active")


class Desk(StaffDirectory):
    """Two named staff with one role each (named staff keys are another engineer's item)."""

    KEYS: ClassVar[dict[str, Actor]] = {
        "key-olga": Actor("olga", frozenset({Role.OPERATOR})),
        "key-sam": Actor("sam", frozenset({Role.SUPPORT})),
    }

    async def authenticate(self, credential: str) -> Actor | None:
        return self.KEYS.get(credential) or await super().authenticate(credential)


@pytest.fixture
async def desk(settings: Settings) -> AsyncIterator[TestClient]:
    app = create_app(settings)
    app[STAFF] = Desk(settings.admin_tokens)
    async with serve(app) as client:
        yield client


async def test_only_support_may_look_up_cancel_or_move(
    desk: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b = await seed_typed_slots(pool, count=2, capacity=1)
    async with running_worker(settings):
        _, mine = await book(desk, admission_token(codec), 1, slot_id=a)
    calls = [
        (LOOKUP, {"id_number": "ID-000001"}),
        (move_url(mine["appointment_id"]), {"slot_id": b, "reason": "r"}),
        (cancel_url(mine["appointment_id"]), {"reason": "r"}),
    ]
    for path, body in calls:
        resp = await desk.post(path, json=body)
        assert_problem(resp.status, await resp.json(), 401, "unauthorized")
        resp = await desk.post(path, json=body, headers={"Authorization": "Bearer key-olga"})
        assert_problem(resp.status, await resp.json(), 403, "forbidden")
    # refused before anything happened: no audit row, the appointment where it was
    assert await pool.fetchval("SELECT array_agg(action ORDER BY audit_id) FROM audit_log") == ["booked"]
    assert await seats_of(pool, a) == (1, 0)
    for path, body in calls:
        resp = await desk.post(path, json=body, headers={"Authorization": "Bearer key-sam"})
        assert resp.status == 200, await resp.json()
    actions = await pool.fetch("SELECT action, actor FROM audit_log WHERE actor LIKE 'staff:%' ORDER BY audit_id")
    assert [tuple(r) for r in actions] == [
        ("support_lookup", "staff:sam"),
        ("rescheduled", "staff:sam"),
        ("cancelled", "staff:sam"),
    ]
