"""The manage link: the 201's manage_url, the credential as Bearer on its own appointment only, the
page (cookie exchange to a clean URL, cancel and reschedule by plain forms with a per-session token),
and lost links (the same answer whatever matched, rate-limited per client)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared.manage import MANAGE_LINK_KIND, manage_url, verify_manage_credential
from shared.persons import PersonVault
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import free_port
from surgegate.mailsink import MailSink
from tests.booking_worker.test_dispatcher import Clock, Sink, dispatcher, drain
from tests.helpers import (
    admission_token,
    assert_problem,
    book,
    person,
    running_worker,
    seats_of,
    seed_typed_slots,
    serve,
)

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def credential_of(url: str) -> str:
    return urlsplit(url).query.removeprefix("c=")


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def booked(api: TestClient, settings: Settings, codec: TokenCodec, slot: str, i: int) -> dict[str, Any]:
    async with running_worker(settings):
        status, body = await book(api, admission_token(codec), i, slot_id=slot)
    assert status == 201, body
    return body


async def open_page(api: TestClient, url: str) -> tuple[str, str]:
    """Open a manage_url as a browser would: (the clean location, the cookie it set)."""
    resp = await api.get(local(url), allow_redirects=False)
    assert resp.status == 303
    cookie = resp.cookies["sg_manage"]
    api.session.cookie_jar.clear()  # cookies travel explicitly in these tests
    return resp.headers["Location"], f"sg_manage={cookie.value}"


async def csrf_of(resp: ClientResponse) -> str:
    match = CSRF.search(await resp.text())
    assert match is not None
    return match.group(1)


async def test_the_confirmation_carries_a_link_that_opens_a_clean_page(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, cancel_cutoff_minutes=3 * 24 * 60)
    await pool.execute("UPDATE sites SET address = 'Calle Mayor 1, Madrid'")
    confirmation = await booked(api, settings, codec, slot, 1)
    appointment_id = confirmation["appointment_id"]
    url = confirmation["manage_url"]
    assert url.startswith(f"{settings.api_url}/manage?c=")
    assert verify_manage_credential(settings, credential_of(url), datetime.now(UTC)) == uuid.UUID(appointment_id)
    # valid until the appointment is over, not a second longer
    ends = await pool.fetchval("SELECT ends_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    assert verify_manage_credential(settings, credential_of(url), ends) == uuid.UUID(appointment_id)

    resp = await api.get(local(url), allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/manage/{appointment_id}"  # no credential left in the address
    assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["Cache-Control"] == "no-store"
    set_cookie = resp.headers["Set-Cookie"]
    assert f"Path=/manage/{appointment_id}" in set_cookie
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie

    cookie = f"sg_manage={resp.cookies['sg_manage'].value}"
    api.session.cookie_jar.clear()
    page = await api.get(resp.headers["Location"], headers={"Cookie": cookie})
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert credential_of(url) not in text
    for shown in ("Group", "Site", "Calle Mayor 1, Madrid", "Europe/Berlin", "openstreetmap.org/?mlat=52.500000"):
        assert shown in text
    ics = await api.get(f"{resp.headers['Location']}/calendar.ics", headers={"Cookie": cookie})
    assert ics.status == 200 and ics.content_type == "text/calendar" and f'href="{ics.url.path}"' in text
    assert (await api.get(f"{resp.headers['Location']}/calendar.ics")).status == 401  # no cookie, no file
    assert "late cancellation" in text  # the slot is two days away, the type's cut-off three
    spanish = await (
        await api.get(resp.headers["Location"], headers={"Cookie": cookie, "Accept-Language": "es"})
    ).text()
    assert '<html lang="es">' in spanish and "Su cita" in spanish and "cancelación tardía" in spanish
    chosen = await (await api.get(f"{resp.headers['Location']}?lang=es", headers={"Cookie": cookie})).text()
    assert '<html lang="es">' in chosen

    # the attempt and the appointment say the same link (signed anew, naming the same appointment)
    got = await (await api.get(f"/api/v1/appointments/{appointment_id}", headers=auth(credential_of(url)))).json()
    assert verify_manage_credential(settings, credential_of(got["manage_url"]), datetime.now(UTC)) == uuid.UUID(
        appointment_id
    )


async def test_a_credential_reads_and_changes_its_own_appointment_only(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b, c = await seed_typed_slots(pool, count=3, capacity=2)
    mine = await booked(api, settings, codec, a, 1)
    theirs = await booked(api, settings, codec, a, 2)
    credential = credential_of(mine["manage_url"])
    own = f"/api/v1/appointments/{mine['appointment_id']}"
    other = f"/api/v1/appointments/{theirs['appointment_id']}"

    resp = await api.get(own, headers=auth(credential))
    assert resp.status == 200 and (await resp.json())["appointment_id"] == mine["appointment_id"]
    resp = await api.get(f"{own}/calendar.ics", headers=auth(credential))
    assert resp.status == 200 and resp.content_type == "text/calendar"
    for method, path, body in (("GET", other, None), ("DELETE", other, None), ("GET", f"{other}/calendar.ics", None),
                               ("POST", f"{other}/reschedule", {"slot_id": b})):  # fmt: skip
        resp = await api.request(method, path, json=body, headers=auth(credential))
        assert_problem(resp.status, await resp.json(), 404, "not_found")
    assert await pool.fetchval("SELECT status FROM appointments WHERE appointment_id = $1",
                               uuid.UUID(theirs["appointment_id"])) == "confirmed"  # fmt: skip
    # nothing but its appointment's routes
    resp = await api.get("/api/v1/sites", headers=auth(credential))
    assert_problem(resp.status, await resp.json(), 401, "token_invalid")
    # a hold belongs to an admission: a link moves to a slot
    resp = await api.post(f"{own}/reschedule", json={"hold_id": str(uuid.uuid4())}, headers=auth(credential))
    assert_problem(resp.status, await resp.json(), 400, "validation_error")

    resp = await api.post(f"{own}/reschedule", json={"slot_id": b}, headers=auth(credential))
    moved = await resp.json()
    assert resp.status == 200 and moved["slot_id"] == b and moved["from_slot_id"] == a
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((1, 0), (1, 0))
    resp = await api.delete(own, headers=auth(credential))
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    assert await seats_of(pool, b) == (0, 0)
    audit = await pool.fetch("SELECT action, actor FROM audit_log WHERE appointment_id = $1 ORDER BY audit_id",
                             uuid.UUID(mine["appointment_id"]))  # fmt: skip
    assert [(r["action"], r["actor"]) for r in audit][-2:] == [
        ("rescheduled", f"manage:{mine['appointment_id']}"),
        ("cancelled", f"manage:{mine['appointment_id']}"),
    ]
    del c


async def test_a_link_moves_only_to_the_same_type_at_the_same_site(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    (elsewhere,) = await seed_typed_slots(pool, count=1, site_id="site-b")
    other_type = uuid.uuid4()
    await pool.execute("INSERT INTO appointment_types (type_id, name, duration_minutes) VALUES ('solo', 'Solo', 30)")
    await pool.execute(
        "INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity)"
        " SELECT $1, site_id, 'solo', starts_at + interval '5 hours', ends_at + interval '5 hours', 1"
        " FROM slots WHERE slot_id = $2", other_type, uuid.UUID(slot),
    )  # fmt: skip
    mine = await booked(api, settings, codec, slot, 1)
    path = f"/api/v1/appointments/{mine['appointment_id']}/reschedule"
    for target in (elsewhere, str(other_type)):
        resp = await api.post(path, json={"slot_id": target}, headers=auth(credential_of(mine["manage_url"])))
        assert_problem(resp.status, await resp.json(), 403, "token_scope")
    assert await seats_of(pool, slot) == (1, 0)


async def test_expired_and_tampered_credentials_are_refused(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    mine = await booked(api, settings, codec, slot, 1)
    appointment_id = uuid.UUID(mine["appointment_id"])
    path = f"/api/v1/appointments/{appointment_id}"
    expired = credential_of(manage_url(settings, appointment_id, datetime.now(UTC) - timedelta(seconds=1)))
    resp = await api.get(path, headers=auth(expired))
    assert_problem(resp.status, await resp.json(), 401, "token_expired")
    good = credential_of(mine["manage_url"])
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for bad in (tampered, "k1." + good.partition(".")[2][::-1], "nokid" + good):
        resp = await api.delete(path, headers=auth(bad))
        assert_problem(resp.status, await resp.json(), 401, "token_invalid")
    # the page refuses them too, and keeps nothing
    for bad in (expired, tampered):
        resp = await api.get("/manage", params={"c": bad}, allow_redirects=False)
        assert resp.status == 401 and "sg_manage" not in resp.cookies and "Lost your link?" in await resp.text()
    resp = await api.get(f"/manage/{appointment_id}", headers={"Cookie": f"sg_manage={expired}"})
    assert resp.status == 401 and "has expired" in await resp.text()
    assert (
        await pool.fetchval("SELECT status FROM appointments WHERE appointment_id = $1", appointment_id) == "confirmed"
    )


async def test_the_page_reschedules_and_cancels_by_plain_forms(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    a, b = await seed_typed_slots(pool, count=2, capacity=1)
    mine = await booked(api, settings, codec, a, 1)
    theirs = await booked(api, settings, codec, b, 2)  # b is full now
    (c,) = await seed_typed_slots(pool, count=1, capacity=1, days_ahead=3)
    location, cookie = await open_page(api, mine["manage_url"])
    page = await api.get(location, headers={"Cookie": cookie})
    csrf = await csrf_of(page)

    choices = await api.get(f"{location}/reschedule", headers={"Cookie": cookie})
    listed = await choices.text()
    assert choices.status == 200 and f'value="{c}"' in listed
    assert re.search(r"<span>\d\d:\d\d \(CET\)</span>", listed)  # each time in the site's zone (Berlin)
    assert f'value="{a}"' not in listed and f'value="{b}"' not in listed  # its own time, and a full one

    form = {"slot_id": c, "csrf": csrf, "lang": "en"}
    # without the session's token, or with another's cookie: refused, nothing moves
    resp = await api.post(f"{location}/reschedule", data={**form, "csrf": "0" * 64}, headers={"Cookie": cookie})
    assert resp.status == 403
    _, their_cookie = await open_page(api, theirs["manage_url"])
    resp = await api.post(f"{location}/reschedule", data=form, headers={"Cookie": their_cookie})
    assert resp.status == 401
    assert await seats_of(pool, a) == (1, 0)
    # a time taken meanwhile: the page says so, in the page's language, and nothing moves
    resp = await api.post(
        f"{location}/reschedule", data={**form, "slot_id": b, "lang": "es"}, headers={"Cookie": cookie}
    )
    assert resp.status == 409 and "esa hora acaba de ocuparse" in await resp.text()
    assert await seats_of(pool, a) == (1, 0)

    resp = await api.post(f"{location}/reschedule", data=form, headers={"Cookie": cookie}, allow_redirects=False)
    api.session.cookie_jar.clear()
    assert resp.status == 303 and resp.headers["Location"] == f"{location}?done=rescheduled&lang=en"
    assert "sg_manage" in resp.cookies  # renewed: valid until the new end
    assert (await seats_of(pool, a), await seats_of(pool, c)) == ((0, 0), (1, 0))
    cookie = f"sg_manage={resp.cookies['sg_manage'].value}"
    done = await api.get(resp.headers["Location"], headers={"Cookie": cookie})
    assert "has a new time" in await done.text()

    resp = await api.post(f"{location}/cancel", data={"csrf": await csrf_of(done), "lang": "es"},
                          headers={"Cookie": cookie}, allow_redirects=False)  # fmt: skip
    assert resp.status == 303 and resp.headers["Location"] == f"{location}?done=cancelled&lang=es"
    assert await seats_of(pool, c) == (0, 0)
    after = await (await api.get(resp.headers["Location"], headers={"Cookie": cookie})).text()
    assert "Su cita está cancelada" in after and "Cancelar mi cita" not in after


async def test_lost_links_get_the_same_answer_whatever_matched(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    mine = await booked(api, settings, codec, slot, 1)
    who = person(1)
    match = {"event_id": "ev", "id_number": who["id_number"].lower(), "email": f"  {who['email'].upper()}"}
    misses = [
        {**match, "email": "someone.else@example.org"},
        {**match, "id_number": person(2)["id_number"]},
        {**match, "event_id": "another-event"},
    ]
    answers = []
    for body in [match, *misses]:
        resp = await api.post("/api/v1/manage-links", json=body)
        answers.append((resp.status, resp.content_type, await resp.read()))
    assert answers[0][0] == 202 and all(answer == answers[0] for answer in answers)

    rows = await pool.fetch("SELECT kind, appointment_id, sealed FROM notifications WHERE kind = $1", MANAGE_LINK_KIND)
    assert len(rows) == 1 and str(rows[0]["appointment_id"]) == mine["appointment_id"]
    sent = PersonVault.from_settings(settings).open(bytes(rows[0]["sealed"]))
    assert sent["email"] == who["email"]
    named = verify_manage_credential(settings, credential_of(sent["manage_url"]), datetime.now(UTC))
    assert str(named) == mine["appointment_id"]

    # the page's form: the same words either way
    texts = []
    for body in (match, misses[0]):
        resp = await api.post("/manage", data={**body, "lang": "en"})
        texts.append((resp.status, await resp.text()))
    assert texts[0] == texts[1] and texts[0][0] == 200 and "a new link is on its way" in texts[0][1]


async def test_lost_links_are_rate_limited_per_client(settings: Settings, pool: asyncpg.Pool) -> None:
    body = {"event_id": "ev", "id_number": "ID-000001", "email": "a@example.org"}
    limited = replace(settings, manage_link_limit_burst=2, manage_link_limit_per_min=1)
    async with serve(create_app(limited)) as api:
        statuses = [(await api.post("/api/v1/manage-links", json=body)).status for _ in range(2)]
        resp = await api.post("/api/v1/manage-links", json=body)
        assert statuses == [202, 202]
        assert_problem(resp.status, await resp.json(), 429, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1
        form = await api.post("/manage", data=body)  # the page's form shares the client's bucket
        assert form.status == 429 and "Retry-After" in form.headers
    del pool


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[Sink]:
    """A real SMTP server (aiosmtpd) keeping what it receives."""
    sink = Sink(MailSink(tmp_path / "mail"), free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


async def test_a_lost_link_arrives_by_email_and_opens_the_page(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, mail: Sink
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    mine = await booked(api, settings, codec, slot, 1)
    await pool.execute("UPDATE notifications SET status = 'sent'")  # the confirmation's messages: not this test's
    who = person(1)
    resp = await api.post("/api/v1/manage-links", json={"event_id": "ev", "id_number": who["id_number"],
                                                       "email": who["email"]})  # fmt: skip
    assert resp.status == 202
    await drain(dispatcher(pool, settings, mail, Clock(datetime.now(UTC))))
    (message,) = mail.messages
    assert message["To"] == who["email"]
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    (url,) = re.findall(r"https?://\S+/manage\?c=\S+", text.get_content())
    assert url.startswith(settings.api_url)
    location, _cookie = await open_page(api, url)
    assert location == f"/manage/{mine['appointment_id']}"
