"""The outbox: messages to people, queued in the transaction that caused them.

A notification is a row of ``notifications``: its kind, the appointment or waitlist entry it is
about, when it falls due (``due_at``; reminders are absolute instants, so a DST change in between
moves nothing), its channel (email, or a text message through the SMS webhook) and language, and a
payload sealed with the person vault (nothing readable at rest). The worker's dispatcher
(``booking_worker/dispatcher.py``) delivers it at least once.

Payload keys (all optional apart from the address of the channel):

* ``email`` (channel email) or ``phone`` (channel sms): where it goes;
* ``language``: ``en`` or ``es`` (default ``en``), also stored in its own column;
* ``manage_url``: confirmation, reschedule, manage_link: the appointment's manage link;
* waitlist_offer: ``claim_url`` (the claim page's link), ``claim_endpoint``, ``claim_token``,
  ``expires_at``, ``site_id``, ``starts_at``,
  ``local_starts_at``; cancelled_by_site: ``reason``, ``site_id``, ``starts_at``, ``rebooking``.

What the message says about an appointment (site, address, time, the calendar file) is read from
the database when it is sent, so it is always the appointment as it then stands. Messages about an
appointment's *time* (confirmation, reschedule, reminders) carry the appointment's ``sequence`` when
queued and are not sent once the appointment moved on (cancelled, or rescheduled: a new sequence):
:func:`withdraw_timed` cancels them in the same transaction as the change, and the dispatcher checks
again when it claims them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
from cryptography.fernet import InvalidToken

from shared import queries
from shared.persons import PersonVault
from shared.statuses import Language, NotificationChannel

log = logging.getLogger("surgegate.notifications")


class NotificationKind(StrEnum):
    """``notifications.kind``."""

    CONFIRMATION = "confirmation"
    CANCELLATION = "cancellation"
    RESCHEDULE = "reschedule"
    REMINDER_24H = "reminder_24h"
    REMINDER_1H = "reminder_1h"
    SITE_CLOSED = "cancelled_by_site"  # the site closed the appointment's day (shared/closures.py)
    WAITLIST_OFFER = "waitlist_offer"
    OFFER_TAKEN = "waitlist_offer_taken"  # someone else claimed the offer first
    MANAGE_LINK = "manage_link"  # a fresh manage link asked for (POST /api/v1/manage-links)


# A reminder falls due this long before the appointment starts.
REMINDERS: dict[NotificationKind, timedelta] = {
    NotificationKind.REMINDER_24H: timedelta(hours=24),
    NotificationKind.REMINDER_1H: timedelta(hours=1),
}
# About the appointment's time: sent only while the appointment is confirmed at the sequence queued.
TIMED: frozenset[NotificationKind] = frozenset({NotificationKind.CONFIRMATION, NotificationKind.RESCHEDULE, *REMINDERS})
# Also sent as a text message when the person gave a phone number.
SMS_KINDS: frozenset[NotificationKind] = frozenset(set(NotificationKind) - {NotificationKind.MANAGE_LINK})


def language_of(value: Any) -> Language:
    """A stored or requested language, ``en`` for anything else."""
    try:
        return Language(value)
    except ValueError:
        return Language.EN


async def queue(
    con: asyncpg.Connection,
    vault: PersonVault,
    *,
    kind: NotificationKind | str,
    appointment_id: uuid.UUID | None = None,
    entry_id: uuid.UUID | None = None,
    payload: Mapping[str, Any],
    due_at: datetime | None = None,
    channel: NotificationChannel | str = NotificationChannel.EMAIL,
    person_ref: bytes | None = None,
    sequence: int | None = None,
) -> int:
    """Queue one message in the caller's transaction (so it exists exactly when its cause commits);
    due now unless ``due_at`` says later. Returns the notification id. ``payload`` is sealed."""
    kind = NotificationKind(kind)
    language = language_of(payload.get("language"))
    sealed = vault.seal({"kind": kind, **payload, "language": language})
    notification_id: int = await con.fetchval(
        queries.QUEUE_NOTIFICATION, kind, appointment_id, entry_id, sealed, due_at,
        NotificationChannel(channel), language, person_ref, sequence,
    )  # fmt: skip
    return notification_id


async def queue_for_person(
    con: asyncpg.Connection,
    vault: PersonVault,
    contact: Mapping[str, Any],
    *,
    kind: NotificationKind,
    details: Mapping[str, Any] | None = None,
    appointment_id: uuid.UUID | None = None,
    entry_id: uuid.UUID | None = None,
    due_at: datetime | None = None,
    person_ref: bytes | None = None,
    sequence: int | None = None,
) -> list[int]:
    """Queue ``kind`` to a person by every channel they gave: email, and a text message when their
    ``contact`` (an opened person record) holds a phone number. Returns the notification ids."""
    base = {"language": language_of(contact.get("language")), **(details or {})}
    ids: list[int] = []
    targets = [(NotificationChannel.EMAIL, "email")]
    if kind in SMS_KINDS:
        targets.append((NotificationChannel.SMS, "phone"))
    for channel, field in targets:
        address = contact.get(field)
        if not address:
            continue
        notification_id = await queue(
            con, vault, kind=kind, appointment_id=appointment_id, entry_id=entry_id,
            payload={**base, field: address}, due_at=due_at, channel=channel, person_ref=person_ref,
            sequence=sequence,
        )  # fmt: skip
        ids.append(notification_id)
    return ids


def contact_of(vault: PersonVault, person_sealed: bytes | None) -> dict[str, Any] | None:
    """The opened person record; None when erased or unreadable (logged, without the record)."""
    if person_sealed is None:
        return None
    try:
        return vault.open(person_sealed)
    except (InvalidToken, ValueError):
        log.warning("a person record does not open: no message queued for it")
        return None


async def queue_appointment_messages(
    con: asyncpg.Connection,
    vault: PersonVault,
    *,
    kind: NotificationKind,
    appointment_id: uuid.UUID,
    person_sealed: bytes | None,
    person_ref: bytes | None,
    starts_at: datetime,
    sequence: int,
    now: datetime,
    details: Mapping[str, Any] | None = None,
) -> list[int]:
    """A confirmation or reschedule message, due now, and the reminders for ``starts_at`` (those not
    already past). Nothing when the person's details were erased or do not open (a seal key removed
    too soon): a message must never stand in the way of the change that causes it."""
    contact = contact_of(vault, person_sealed)
    if contact is None:
        return []
    common: dict[str, Any] = {"appointment_id": appointment_id, "person_ref": person_ref, "sequence": sequence}
    ids = await queue_for_person(con, vault, contact, kind=kind, details=details, **common)
    for reminder, before in REMINDERS.items():
        # In UTC: Python subtracts from an aware datetime in its own zone on the wall clock, which
        # across a DST change is 23 or 25 hours; the reminder is 24 real hours before.
        due = starts_at.astimezone(UTC) - before
        if due > now:
            ids += await queue_for_person(con, vault, contact, kind=reminder, due_at=due, **common)
    return ids


async def withdraw_timed(con: asyncpg.Connection, appointment_id: uuid.UUID) -> int:
    """Cancel the appointment's queued messages about its time (confirmation, reschedule, reminders),
    in the caller's transaction: it was cancelled or moved. Returns how many were withdrawn."""
    rows = await con.fetch(queries.WITHDRAW_TIMED_NOTIFICATIONS, appointment_id, sorted(TIMED))
    return len(rows)


async def opt_out(con: asyncpg.Connection, person_ref: bytes) -> None:
    """No more reminders for this person (their queued ones are withdrawn too). Safe to repeat."""
    await con.execute(queries.OPT_OUT_REMINDERS, person_ref)
    await con.execute(queries.WITHDRAW_REMINDERS_OF_PERSON, person_ref, sorted(REMINDERS))


async def opt_out_of_appointment(con: asyncpg.Connection, appointment_id: uuid.UUID) -> bool:
    """:func:`opt_out` for the person of ``appointment_id`` (a reminder's unsubscribe link names
    the appointment, never the person). False if there is no such appointment."""
    person_ref = await con.fetchval(queries.APPOINTMENT_PERSON_REF, appointment_id)
    if person_ref is None:
        return False
    await opt_out(con, bytes(person_ref))
    return True
