"""The calendar file, parsed back with icalendar, on both sides of both DST changes of one zone."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from shared.calendar import appointment_ics

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("local", "offset_h"),
    [
        (datetime(2027, 3, 27, 10, 0), 1),  # the day before clocks go forward: CET
        (datetime(2027, 3, 28, 10, 0), 2),  # the day they did (02:00 -> 03:00): CEST
        (datetime(2027, 10, 30, 10, 0), 2),  # the day before they go back: CEST
        (datetime(2027, 10, 31, 10, 0), 1),  # the day they did (03:00 -> 02:00): CET
    ],
)
def test_wall_time_and_zone_survive_a_dst_change(local: datetime, offset_h: int) -> None:
    appointment_id = uuid.uuid4()
    starts = local.replace(tzinfo=BERLIN)
    ics = appointment_ics(
        appointment_id=appointment_id, sequence=2, starts_at=starts, ends_at=starts + timedelta(minutes=30),
        timezone="Europe/Berlin", site_name="Impfzentrum Mitte", address="Karl-Marx-Allee 1", summary="Vaccination",
    )  # fmt: skip
    assert b"DTSTART;TZID=Europe/Berlin:" + local.strftime("%Y%m%dT%H%M%S").encode() in ics
    cal = Calendar.from_ical(ics)
    assert cal["method"] == "PUBLISH"
    (zone,) = cal.walk("VTIMEZONE")
    assert zone["tzid"] == "Europe/Berlin"
    (event,) = cal.walk("VEVENT")
    start = event.decoded("dtstart")
    assert start == starts and start.utcoffset() == timedelta(hours=offset_h)
    assert (start.hour, start.minute) == (10, 0)
    assert event.decoded("dtend") - start == timedelta(minutes=30)
    assert str(event["uid"]) == f"{appointment_id}@surgegate" and event["sequence"] == 2
    assert str(event["location"]) == "Impfzentrum Mitte, Karl-Marx-Allee 1"


def test_cancel_and_a_stable_uid() -> None:
    appointment_id = uuid.uuid4()
    starts = datetime(2027, 3, 28, 10, 0, tzinfo=BERLIN)
    common = {"appointment_id": appointment_id, "starts_at": starts, "ends_at": starts + timedelta(hours=1),
              "timezone": "Europe/Berlin", "site_name": "S", "address": None, "summary": "A"}  # fmt: skip
    booked = Calendar.from_ical(appointment_ics(sequence=0, **common))  # type: ignore[arg-type]
    cancelled = Calendar.from_ical(appointment_ics(sequence=1, method="CANCEL", **common))  # type: ignore[arg-type]
    assert cancelled["method"] == "CANCEL"
    (before,), (after,) = booked.walk("VEVENT"), cancelled.walk("VEVENT")
    assert before["uid"] == after["uid"] and (before["sequence"], after["sequence"]) == (0, 1)
    assert (before["status"], after["status"]) == ("CONFIRMED", "CANCELLED")
    assert str(after["location"]) == "S"
