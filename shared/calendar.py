"""The calendar file of an appointment (RFC 5545, made with icalendar).

One ``VEVENT`` with a ``UID`` stable per appointment, ``SEQUENCE`` = the appointment's sequence (one
more per reschedule, so calendars replace the old time), ``DTSTART``/``DTEND`` in the site's zone
(``TZID``) with that zone's ``VTIMEZONE``, and ``LOCATION`` = the site's name and address.
``METHOD:CANCEL`` (and ``STATUS:CANCELLED``) for a cancelled appointment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone

Method = Literal["PUBLISH", "REQUEST", "CANCEL"]
PRODID = "-//surgegate//appointments//EN"


def appointment_uid(appointment_id: uuid.UUID | str) -> str:
    return f"{appointment_id}@surgegate"


def appointment_ics(
    *,
    appointment_id: uuid.UUID | str,
    sequence: int,
    starts_at: datetime,
    ends_at: datetime,
    timezone: str,
    site_name: str,
    address: str | None,
    summary: str,
    method: Method = "PUBLISH",
    stamp: datetime | None = None,
) -> bytes:
    """The ``.ics`` bytes. ``starts_at``/``ends_at`` are absolute (aware) instants; they are written
    as wall times of ``timezone``, which the file defines."""
    zone = ZoneInfo(timezone)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    cal.add_component(Timezone.from_tzinfo(zone, first_date=starts_at.astimezone(zone).date()))
    event = Event()
    event.add("uid", appointment_uid(appointment_id))
    event.add("sequence", sequence)
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", starts_at.astimezone(zone))
    event.add("dtend", ends_at.astimezone(zone))
    event.add("summary", summary)
    event.add("location", ", ".join(part for part in (site_name, address) if part))
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics
