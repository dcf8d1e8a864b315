"""What an admission booked, as the edge tells it (waitingroom/booked.py): the status API's
``appointment`` and the page's confirmation, on every reload, even after the turn has lapsed —
never an empty form for a used admission."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from shared.manage import verify_manage_credential
from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, book, running_worker, seed_typed_slots
from waitingroom.keys import ROOM

SECRET = ("ID-000007", "Person Number7", "person7@example.org", "1970-01-01")  # helpers.person(7)


async def admitted(edge: TestClient, clock: FakeClock) -> dict[str, object]:
    """Join (the client keeps the ticket cookie) and be let in; the status of an admitted visitor."""
    assert (await edge.post("/api/v1/events/ev/join")).status == 201
    clock.advance(2)
    await edge.app[ROOM].tick()
    status: dict[str, object] = await (await edge.get("/api/v1/events/ev/status")).json()
    assert status["state"] == "admitted" and status["appointment"] is None
    return status


def shown(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert match, element_id
    return match.group(1)


async def test_a_used_admission_shows_its_confirmation_on_every_reload(
    edge: TestClient, api: TestClient, settings: Settings, clock: FakeClock, pool: asyncpg.Pool
) -> None:
    [slot_id, _] = await seed_typed_slots(pool)
    body = {"name": "Cohort 4", "rate_per_s": 5, "admission_ttl_s": 60}
    assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    status = await admitted(edge, clock)
    async with running_worker(settings):
        code, booking = await book(api, str(status["admission_token"]), 7, slot_id=slot_id)
    assert code == 201, booking

    status = await (await edge.get("/api/v1/events/ev/status")).json()
    appointment = status["appointment"]
    assert appointment["appointment_id"] == booking["appointment_id"] and appointment["status"] == "confirmed"
    assert (appointment["site_name"], appointment["type_name"], appointment["timezone"]) == (
        "Site", "Group", "Europe/Berlin"
    )  # fmt: skip
    assert appointment["address"] is None  # the sites here have no address
    # the edge signs the appointment's own manage link (waitingroom/app.py wires shared.manage)
    credential = parse_qs(urlsplit(appointment["manage_url"]).query)["c"][0]
    assert str(verify_manage_credential(settings, credential, datetime.now(UTC))) == booking["appointment_id"]
    assert appointment["local_starts_at"] == booking["local_starts_at"]
    assert not any(secret in str(status) for secret in SECRET)  # what, where, when: never who

    page = await (await edge.get("/e/ev")).text()
    assert 'data-state="booked"' in page
    assert 'id="done" >' in page and 'id="queue" hidden' in page  # the confirmation, not the form
    assert shown(page, "what") == "Cohort 4 — Group" and shown(page, "where") == "Site"
    assert re.fullmatch(r"\w+day \d+ \w+ 20\d\d, \d\d:\d\d \(CES?T, Europe/Berlin\)", shown(page, "when"))
    calendar = f"{settings.api_url}/api/v1/appointments/{booking['appointment_id']}/calendar.ics"
    assert f'href="{calendar}"' in page
    assert not any(secret in page for secret in SECRET)
    spanish = await (await edge.get("/e/ev", headers={"Accept-Language": "es"})).text()
    assert "Su cita está reservada" in spanish and " de 20" in shown(spanish, "when")

    clock.advance(120)  # the turn lapses: the booking it made is still what the page shows
    status = await (await edge.get("/api/v1/events/ev/status")).json()
    assert status["state"] == "expired" and status["appointment"]["appointment_id"] == booking["appointment_id"]
    page = await (await edge.get("/e/ev")).text()
    assert 'data-state="booked"' in page and 'id="join-form" method="post" action="/e/ev/join" hidden' in page

    await pool.execute("UPDATE appointments SET status = 'cancelled', cancelled_at = now()")
    page = await (await edge.get("/e/ev")).text()
    assert 'id="cancelled" class="warning" >' in page and 'id="calendar-link"' in page
    assert re.search(r'id="calendar-link"[^>]*hidden', page)


async def test_an_admission_that_booked_nothing_has_no_appointment(
    edge: TestClient, api: TestClient, settings: Settings, clock: FakeClock, pool: asyncpg.Pool
) -> None:
    """The negative control: someone else's booking is not this visitor's."""
    [slot_id, _] = await seed_typed_slots(pool)
    body = {"name": "Cohort 4", "rate_per_s": 5}
    assert (await edge.put("/admin/v1/events/ev", json=body, headers=admin_headers())).status == 200
    first = await admitted(edge, clock)
    async with running_worker(settings):
        assert (await book(api, str(first["admission_token"]), 1, slot_id=slot_id))[0] == 201
    edge.session.cookie_jar.clear()  # another visitor
    await admitted(edge, clock)
    status = await (await edge.get("/api/v1/events/ev/status")).json()
    assert status["state"] == "admitted" and status["appointment"] is None
    page = await (await edge.get("/e/ev")).text()
    assert 'data-state="admitted"' in page and 'id="done" hidden' in page


async def test_with_postgresql_unreachable_the_status_does_not_fail(settings: Settings) -> None:
    """The lookup is an extra: a pool that cannot reach PostgreSQL gives None, not an error."""
    from shared.db import create_pool
    from waitingroom.booked import booked_appointment

    closed = await create_pool(settings.require_database(), min_size=1, max_size=1)
    await closed.close()
    assert await booked_appointment(closed, "ev", "someone") is None


async def test_the_manage_link_comes_with_a_confirmed_appointment_only(
    edge: TestClient, api: TestClient, settings: Settings, clock: FakeClock, pool: asyncpg.Pool
) -> None:
    from waitingroom.booked import booked_appointment

    [slot_id, _] = await seed_typed_slots(pool)
    assert (
        await edge.put("/admin/v1/events/ev", json={"name": "E", "rate_per_s": 5}, headers=admin_headers())
    ).status == 200
    status = await admitted(edge, clock)
    async with running_worker(settings):
        assert (await book(api, str(status["admission_token"]), 3, slot_id=slot_id))[0] == 201
    visitor = edge.app[ROOM].codec.verify_admission(str(status["admission_token"])).visitor_id

    def link(appointment_id: object, ends_at: object) -> str:
        return f"https://api.example/manage?for={appointment_id}"

    booked = await booked_appointment(pool, "ev", visitor, link)
    assert booked is not None and booked["manage_url"] == f"https://api.example/manage?for={booked['appointment_id']}"
    assert (await booked_appointment(pool, "ev", visitor))["manage_url"] is None  # type: ignore[index]
    await pool.execute("UPDATE appointments SET status = 'cancelled', cancelled_at = now()")
    assert (await booked_appointment(pool, "ev", visitor, link))["manage_url"] is None  # type: ignore[index]
