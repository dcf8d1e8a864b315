"""GET /api/v1/appointments/{id}/calendar.ics through the booking API: SEQUENCE follows reschedules,
METHOD:CANCEL once cancelled, and only the admission that booked it may read it."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient
from icalendar import Calendar

from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, booking_headers, person, running_worker, seed_typed_slots


async def test_calendar_file_follows_the_appointment(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slots = await seed_typed_slots(pool, count=2)
    await pool.execute("UPDATE sites SET address = 'Karl-Marx-Allee 1, Berlin'")
    token = admission_token(codec)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slots[0], "person": person(1)},
                              headers=booking_headers(token))  # fmt: skip
        booked = await resp.json()
    path = f"/api/v1/appointments/{booked['appointment_id']}"

    async def event() -> tuple[str, object]:
        resp = await api.get(f"{path}/calendar.ics", headers=booking_headers(token))
        assert resp.status == 200 and resp.content_type == "text/calendar"
        cal = Calendar.from_ical(await resp.read())
        return str(cal["method"]), cal.walk("VEVENT")[0]

    method, first = await event()
    assert method == "PUBLISH" and first["sequence"] == 0  # type: ignore[index]
    assert str(first["location"]) == "Site, Karl-Marx-Allee 1, Berlin"  # type: ignore[index]
    moved = await api.post(f"{path}/reschedule", json={"slot_id": slots[1]}, headers=booking_headers(token))
    assert moved.status == 200
    method, second = await event()
    assert second["sequence"] == 1 and second["uid"] == first["uid"]  # type: ignore[index]
    assert second.decoded("dtstart") > first.decoded("dtstart")  # type: ignore[attr-defined]
    assert (await api.delete(path, headers=booking_headers(token))).status == 200
    method, third = await event()
    assert method == "CANCEL" and third["uid"] == first["uid"]  # type: ignore[index]

    other = await api.get(f"{path}/calendar.ics", headers=booking_headers(admission_token(codec)))
    assert other.status == 404
