"""Support: look a person up by their id number, and cancel or move an appointment on their behalf.

What a caller can rely on:

* A person is found by the keyed reference of their id number (:meth:`PersonVault.ref`, so every
  written form of one number finds the same person) through indexed columns, never by decrypting
  anyone's data. Only the newest contact of the person found is decrypted, and only masked initials
  and the email's shape leave this module (:func:`masked_contact`): enough for the desk to check they
  are talking to the right person, not enough to learn who that is. Birth dates are never shown.
* Every look-up writes its ``support_lookup`` audit row in the look-up's own transaction, naming the
  staff actor, the event asked about, what was found (counts) and a keyed digest of the person
  (:func:`subject_of`): who looked at whom, without the id number. No look-up without its row.
* Changes on a person's behalf take a mandatory reason and run the same services as the person's
  own (:mod:`shared.appointments`): the same locks, capacity and booking-window rules, the freed
  seat offered to the waitlist in the same transaction, the audit row naming the staff actor and the
  reason.

Every function runs in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cryptography.fernet import InvalidToken

from shared import appointments, queries
from shared.appointments import Cancelled, Rescheduled
from shared.eligibility_review import decision_json, reviews_of
from shared.errors import Code, NotFound, Refused
from shared.persons import PersonVault
from shared.statuses import AppointmentStatus
from shared.waitlist import Waitlist


@dataclass(frozen=True)
class Found:
    """A person's records, newest first. Rows carry no ciphertext and no keyed reference."""

    contact: dict[str, str] | None  # masked name and email of the newest record (None: none readable)
    appointments: list[Any]  # each with ``reviews``: the replays' flags on it (open or cleared)
    attempts: list[Any]
    waitlist: list[Any]
    decisions: list[dict[str, Any]]


def subject_of(vault: PersonVault, person_ref: bytes) -> str:
    """A keyed digest naming the person in audit rows: the same person gives the same digest, so an
    auditor holding the person key can answer "who looked at this person?", and nobody else can link it
    to an id number. Distinct from ``person_ref`` itself, so the audit export does not carry the key
    that uniqueness is enforced on."""
    return hmac.new(vault.hash_key, b"support_subject:" + person_ref, hashlib.sha256).hexdigest()[:32]


def _initial(word: str) -> str:
    return f"{word[0]}…" if word else ""


def mask_name(name: str) -> str:
    """``Ana María López`` → ``A… M… L…``: initials only, not even each part's length."""
    return " ".join(_initial(part) for part in name.split())


def mask_email(email: str) -> str:
    """``ana.lopez@mail.example.org`` → ``a…@m….org``: the first letters and the top-level domain."""
    local, _, domain = email.rpartition("@")
    labels = domain.split(".")
    shown_domain = _initial(labels[0]) + ("." + labels[-1] if len(labels) > 1 else "")
    return f"{_initial(local)}@{shown_domain}"


def masked_contact(vault: PersonVault, sealed: bytes | None) -> dict[str, str] | None:
    """The masked name and email sealed in ``sealed``; None when there is nothing readable (erased
    after retention, or sealed under a key no longer held)."""
    if not sealed:
        return None
    try:
        data = vault.open(bytes(sealed))
    except (InvalidToken, ValueError):
        return None
    return {"name": mask_name(str(data.get("name", ""))), "email": mask_email(str(data.get("email", "")))}


async def eligibility_decisions(
    con: asyncpg.Connection, person_ref: bytes, event_id: str | None
) -> list[dict[str, Any]]:
    """The person's eligibility decisions and overrides (newest first, at most 100), each with its
    version, outcome, reason codes, per-rule explanation and input hash, never the inputs."""
    return [decision_json(row) for row in await con.fetch(queries.SUPPORT_DECISIONS, person_ref, event_id)]


def _newest_sealed(booked: Sequence[Any], waiting: Sequence[Any]) -> bytes | None:
    """The ciphertext of the newest appointment or waitlist entry (each list newest first)."""
    stamped = [(row["created_at"], row["person_sealed"]) for row in booked[:1]]
    stamped += [(row["joined_at"], row["person_sealed"]) for row in waiting[:1]]
    return max(stamped, key=lambda pair: pair[0])[1] if stamped else None


def _without_person(rows: Sequence[Any]) -> list[Any]:
    return [{k: v for k, v in row.items() if k != "person_sealed"} for row in rows]


async def look_up(
    con: asyncpg.Connection, vault: PersonVault, id_number: str, *, event_id: str | None, actor: str
) -> Found:
    """Everything the person with this id number did (in ``event_id``, or in every event), and the
    audit row of the look-up. ValidationFailed (never echoing the number) for a number the program's
    pattern refuses; a valid number nobody used finds nothing (and is audited too)."""
    person_ref = vault.ref(id_number)
    booked = await con.fetch(queries.SUPPORT_APPOINTMENTS, person_ref, event_id)
    tried = await con.fetch(queries.SUPPORT_ATTEMPTS, person_ref, event_id)
    waiting = await con.fetch(queries.SUPPORT_WAITLIST, person_ref, event_id)
    decisions = await eligibility_decisions(con, person_ref, event_id)
    flags = await reviews_of(con, [row["appointment_id"] for row in booked])
    found = Found(
        contact=masked_contact(vault, _newest_sealed(booked, waiting)),
        appointments=[
            {**row, "reviews": [f for f in flags if f["appointment_id"] == str(row["appointment_id"])]}
            for row in _without_person(booked)
        ],
        attempts=[dict(row) for row in tried],
        waitlist=_without_person(waiting),
        decisions=decisions,
    )
    counts = {
        "appointments": len(found.appointments),
        "attempts": len(found.attempts),
        "waitlist": len(found.waitlist),
        "decisions": len(found.decisions),
    }
    await con.execute(
        queries.INSERT_AUDIT, "support_lookup", event_id, None, None, None, actor,
        {"subject": subject_of(vault, person_ref), "found": counts},
    )  # fmt: skip
    return found


async def cancel_on_behalf(
    con: asyncpg.Connection, appointment_id: uuid.UUID, *, reason: str, actor: str, now: datetime, waitlist: Waitlist
) -> Cancelled:
    """Cancel a confirmed appointment for its person (their seat offered to the waitlist), audited
    ``cancelled`` with the staff actor and the reason. Refused appointment_not_active when it is not
    confirmed (so a repeat says it is already cancelled), appointment_started once it has begun."""
    done = await appointments.cancel(con, appointment_id, now=now, waitlist=waitlist, actor=actor, reason=reason)
    if done is not None:
        return done
    status = await con.fetchval(queries.APPOINTMENT_STATUS, appointment_id)
    if status is None:
        raise NotFound("no such appointment")
    raise Refused(Code.APPOINTMENT_NOT_ACTIVE, f"the appointment is {status}, not {AppointmentStatus.CONFIRMED}")


async def reschedule_on_behalf(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    slot_id: uuid.UUID,
    *,
    reason: str,
    actor: str,
    now: datetime,
    waitlist: Waitlist,
) -> Rescheduled:
    """Move a person's confirmed appointment to a free seat of ``slot_id`` at one of its event's
    sites, audited ``rescheduled`` with the staff actor and the reason (see
    :func:`shared.appointments.reschedule_on_behalf`). Moving it where it is changes nothing."""
    sites: list[str] | None = await con.fetchval(queries.SUPPORT_EVENT_SITES, appointment_id)
    site = await con.fetchval(queries.SITE_OF_SLOT, slot_id)
    if sites is not None and site is not None and site not in sites:
        raise Refused(Code.TOKEN_SCOPE, "that slot's site is not one of the appointment's event's sites")
    return await appointments.reschedule_on_behalf(
        con, appointment_id, slot_id, lambda s: sites is None or s in sites,
        actor=actor, reason=reason, now=now, waitlist=waitlist,
    )  # fmt: skip
