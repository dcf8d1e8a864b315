"""What an admission booked: the server's truth behind the page's confirmation.

An admission token's id is the admitted visitor's id (``shared.tokens``), and the booking API stores
it on the appointment it books (``appointments.token_id``, unique: one admission books at most one
appointment). So the edge, which knows the visitor from the queue ticket, can tell — from PostgreSQL,
not from the browser — whether this visitor's admission was used and for what. The status API
carries it as ``appointment`` and the page renders the confirmation from it, on every reload and
without JavaScript, instead of an empty form that the booking API would refuse (``admission_used``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from shared.booking import local_iso, utc_iso
from shared.db import DATABASE_UNAVAILABLE
from shared.statuses import AppointmentStatus
from waitingroom.queries import ADMISSION_APPOINTMENT

log = logging.getLogger("surgegate.waitingroom")


# Signs the manage link of an appointment valid until its end (``shared.manage.manage_url`` bound to
# the settings, once that module is there): the confirmation then carries it on every reload too.
ManageLink = Callable[[uuid.UUID, datetime], str]


async def booked_appointment(
    pool: asyncpg.Pool, event_id: str, visitor_id: str, manage_link: ManageLink | None = None
) -> dict[str, Any] | None:
    """The appointment this visitor's admission booked in the event (any status), or None.

    Only what the visitor's own confirmation shows: what, where and when — never who (no person
    data leaves the booking API this way). Read-only; safe to call on every status poll of an
    admitted or expired visitor. With PostgreSQL unreachable it answers None (the status stays what
    Redis says; a booking attempt would then be refused ``admission_used`` by the API) rather than
    failing the visitor's status."""
    try:
        async with pool.acquire() as con:
            row = await con.fetchrow(ADMISSION_APPOINTMENT, visitor_id, event_id)
    except DATABASE_UNAVAILABLE:
        log.warning("what an admission booked could not be read: PostgreSQL is unreachable")
        return None
    if row is None:
        return None
    link = None
    if manage_link is not None and row["status"] == AppointmentStatus.CONFIRMED:
        link = manage_link(row["appointment_id"], row["ends_at"])
    return {
        "appointment_id": str(row["appointment_id"]),
        "status": row["status"],
        "type_name": row["type_name"],
        "site_id": row["site_id"],
        "site_name": row["site_name"],
        "address": row["address"],
        "timezone": row["timezone"],
        "starts_at": utc_iso(row["starts_at"]),
        "ends_at": utc_iso(row["ends_at"]),
        "local_starts_at": local_iso(row["starts_at"], row["timezone"]),
        "manage_url": link,
    }
