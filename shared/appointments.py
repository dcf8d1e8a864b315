"""Changes to an appointment: cancel, reschedule, check-in. Service functions of the booking domain.

Each runs in the caller's transaction with the seat authority (:mod:`shared.seats`): the appointment
row is locked first, then the slots involved in slot-id order. A freed seat is offered to the waitlist
in the same transaction, so nobody can take it before the people waiting for it are asked. Every
change writes its audit row in the same transaction too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared import eligibility, notifications, queries, seats
from shared.errors import CATALOGUE, Code, Ineligible, NotFound, Refused, TokenScope
from shared.notifications import NotificationKind
from shared.statuses import AppointmentStatus, CancelledBy
from shared.waitlist import Waitlist

UNCHANGED = " (your appointment is unchanged)"


def cancel_is_late(starts_at: datetime, cutoff_minutes: int, now: datetime) -> bool:
    """After the type's cut-off a cancellation is still accepted, and flagged as late."""
    return now > starts_at - timedelta(minutes=cutoff_minutes)


async def lock_own(con: asyncpg.Connection, appointment_id: uuid.UUID, token_id: str | None) -> Any:
    """Lock the admission's appointment; not_found for anyone else's. ``token_id`` None: the caller
    holds the appointment's own manage credential (shared/manage.py), which names this appointment."""
    row = await con.fetchrow(queries.LOCK_APPOINTMENT, appointment_id, token_id)
    if row is None:
        raise NotFound("no such appointment")
    return row


@dataclass(frozen=True)
class Cancelled:
    late: bool
    site_id: str
    event_id: str


async def cancel(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    *,
    now: datetime,
    waitlist: Waitlist,
    actor: str,
    reason: str | None = None,
    by_site: bool = False,
) -> Cancelled | None:
    """Cancel a confirmed appointment (locking it) and return its seat; None if it was not confirmed.
    A person's cancel offers the freed seat to the waitlist before anyone else can take it (a site
    closing a day withdraws the seat instead). Refused appointment_started once it has begun."""
    row = await con.fetchrow(queries.APPOINTMENT_FOR_CHANGE, appointment_id)
    if row is None or row["status"] != AppointmentStatus.CONFIRMED:
        return None
    if not by_site and now >= row["starts_at"]:
        raise Refused(Code.APPOINTMENT_STARTED)
    late = False if by_site else cancel_is_late(row["starts_at"], row["cancel_cutoff_minutes"] or 0, now)
    by = CancelledBy.SITE if by_site else CancelledBy.PERSON
    await con.execute(queries.MARK_CANCELLED, appointment_id, now, late, reason, by)
    await seats.return_seat(con, row["slot_id"])
    await _tell_cancelled(con, row, waitlist, by_site=by_site)
    await con.execute(
        queries.INSERT_AUDIT, "cancelled_by_site" if by_site else "cancelled", row["event_id"], row["slot_id"],
        appointment_id, None, actor, {"late": late, **({"reason": reason} if reason else {})},
    )  # fmt: skip
    if not by_site:
        await waitlist.offer_freed(con, row["slot_id"], now)
    return Cancelled(late=late, site_id=row["site_id"], event_id=row["event_id"])


@dataclass(frozen=True)
class Rescheduled:
    slot: seats.SlotState  # where the appointment is now
    from_slot_id: uuid.UUID | None  # None: it was already there (nothing changed)
    sites: tuple[str, ...]  # where seats changed
    event_id: str = ""


def _refuse_unchanged(code: Code) -> Refused:
    return Refused(code, CATALOGUE[code].message + UNCHANGED)


async def _target_slot(
    con: asyncpg.Connection, token_id: str, slot_id: uuid.UUID | None, hold_id: uuid.UUID | None, now: datetime
) -> uuid.UUID:
    if hold_id is None:
        assert slot_id is not None
        return slot_id
    hold = await seats.get_hold(con, hold_id)
    if hold is None or hold.token_id != token_id or hold.pinned_attempt is not None or not hold.live(now):
        raise _refuse_unchanged(Code.HOLD_EXPIRED)
    return hold.slot_id


async def reschedule(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    token_id: str,
    allows_site: Callable[[str], bool],
    *,
    slot_id: uuid.UUID | None = None,
    hold_id: uuid.UUID | None = None,
    now: datetime,
    waitlist: Waitlist,
    language: str = "en",
) -> Rescheduled:
    """Move the appointment to another seat (a free one of ``slot_id``, or the one ``hold_id`` sets
    aside): the new seat is taken and the old one freed, or nothing changes (every refusal raises
    before a write, or inside the caller's savepoint). Safe to repeat: moving to where it is changes nothing.
    With a published rule set the move is an eligibility check like a booking's (:func:`_recheck`):
    ineligible on the new slot's date → :class:`Ineligible` (reasons in ``language``), nothing moved."""
    current = await lock_own(con, appointment_id, token_id)
    if current["status"] != AppointmentStatus.CONFIRMED:
        raise Refused(Code.APPOINTMENT_NOT_ACTIVE)
    new = await _target_slot(con, token_id, slot_id, hold_id, now)
    return await _move(
        con, current, new, allows_site, token_id=token_id, hold_id=hold_id, now=now, waitlist=waitlist,
        actor=token_id, detail={}, language=language,
    )  # fmt: skip


async def reschedule_by_link(
    con: asyncpg.Connection, appointment_id: uuid.UUID, slot_id: uuid.UUID, *, now: datetime, waitlist: Waitlist,
    language: str = "en",
) -> Rescheduled:  # fmt: skip
    """Move the appointment a manage credential names to a free seat of ``slot_id`` at the same site
    and of the same type (token_scope otherwise): the same rules and guarantees as :func:`reschedule`."""
    current = await con.fetchrow(queries.APPOINTMENT_FOR_CHANGE, appointment_id)
    if current is None:
        raise NotFound("no such appointment")
    if current["status"] != AppointmentStatus.CONFIRMED:
        raise Refused(Code.APPOINTMENT_NOT_ACTIVE)
    return await _move(
        con, current, slot_id, lambda site: site == current["site_id"], token_id=None, hold_id=None, now=now,
        waitlist=waitlist, actor=f"manage:{appointment_id}", detail={"via": "manage_link"}, same_type=True,
        language=language,
    )  # fmt: skip


async def reschedule_on_behalf(
    con: asyncpg.Connection,
    appointment_id: uuid.UUID,
    slot_id: uuid.UUID,
    allows_site: Callable[[str], bool],
    *,
    actor: str,
    reason: str,
    now: datetime,
    waitlist: Waitlist,
) -> Rescheduled:
    """Staff move a person's appointment to a free seat of ``slot_id``, whoever's admission made it:
    the same rules and guarantees as :func:`reschedule` (booking window, capacity, the freed seat
    offered to the waitlist), audited with the staff ``actor`` and their ``reason``. Eligibility is
    re-checked on the new date and the version recorded, but an ineligible answer does not refuse:
    the staff member's reason stands as an override, and the audit row names the version and the
    reasons overridden (``eligibility_overridden``)."""
    current = await con.fetchrow(queries.APPOINTMENT_FOR_CHANGE, appointment_id)
    if current is None:
        raise NotFound("no such appointment")
    if current["status"] != AppointmentStatus.CONFIRMED:
        raise Refused(Code.APPOINTMENT_NOT_ACTIVE)
    return await _move(
        con, current, slot_id, allows_site, token_id=None, hold_id=None, now=now, waitlist=waitlist,
        actor=actor, detail={"reason": reason}, override=True,
    )  # fmt: skip


async def _move(
    con: asyncpg.Connection,
    current: Any,
    new: uuid.UUID,
    allows_site: Callable[[str], bool],
    *,
    token_id: str | None,
    hold_id: uuid.UUID | None,
    now: datetime,
    waitlist: Waitlist,
    actor: str,
    detail: dict[str, Any],
    same_type: bool = False,
    language: str = "en",
    override: bool = False,
) -> Rescheduled:
    """The move itself, for a confirmed appointment row ``current`` already locked by the caller
    (with its ``type_id`` when ``same_type``: then only a slot of that type will do)."""
    appointment_id = current["appointment_id"]
    old = current["slot_id"]
    slots = await seats.lock_slots(con, [old, new], now)
    if new not in slots:
        raise NotFound("no such slot")
    if not allows_site(slots[new].site_id):
        raise TokenScope()
    if same_type and slots[new].type_id != current["type_id"]:
        raise TokenScope("a manage link moves the appointment to another time of the same type at the same site")
    if now >= slots[old].starts_at:
        raise Refused(Code.APPOINTMENT_STARTED)
    if new == old:
        if hold_id is not None:
            assert token_id is not None
            await seats.release_hold(con, hold_id, token_id, now)
        return Rescheduled(slot=slots[old], from_slot_id=None, sites=(), event_id=current["event_id"])
    detail = {**detail, **await _recheck(con, waitlist, current, slots[new], now, language=language, override=override)}
    await _take_new_seat(con, slots[new], token_id, hold_id, now)
    await seats.return_seat(con, old)
    moved = await con.fetchrow(queries.MOVE_APPOINTMENT, appointment_id, new, now)
    await _tell_moved(con, appointment_id, moved, slots[new].starts_at, waitlist, now)
    await con.execute(
        queries.INSERT_AUDIT, "rescheduled", current["event_id"], new, appointment_id, None, actor,
        {"from_slot_id": str(old), **detail},
    )  # fmt: skip
    await waitlist.offer_freed(con, old, now)
    return Rescheduled(
        slot=slots[new], from_slot_id=old, sites=(slots[old].site_id, slots[new].site_id), event_id=current["event_id"]
    )


async def _recheck(
    con: asyncpg.Connection, waitlist: Waitlist, current: Any, slot: seats.SlotState, now: datetime, *,
    language: str, override: bool,
) -> dict[str, Any]:  # fmt: skip
    """The booking's eligibility check (:func:`shared.eligibility.check_booking`: the pointer's lock
    shared, the version published now) on the decision the appointment was booked with, on the new
    slot's local date; its lapse does not count. Records the version on the appointment and returns
    the audit row's detail. Ineligible raises :class:`Ineligible` before any write, unless ``override``
    (staff): then the move goes on and the detail names what was overridden. No rule set: ``{}``."""
    appointment_id = current["appointment_id"]
    booked = await con.fetchrow(queries.ELIG_APPOINTMENT_DECISION, appointment_id)
    decision_id = booked["decision_id"]
    check = await eligibility.check_booking(
        con, waitlist.vault, event_id=current["event_id"], person_ref=bytes(booked["person_ref"] or b""),
        decision_id=None if decision_id is None else str(decision_id),
        on=slot.starts_at.astimezone(ZoneInfo(slot.timezone)).date(), now=now, lapses=False,
    )  # fmt: skip
    if check.rule_version is None:
        return {}
    if check.reasons and not override:
        raise Ineligible(
            eligibility.reasons_in(check.reasons, language), CATALOGUE[Code.INELIGIBLE].message + UNCHANGED
        )
    await con.execute(queries.ELIG_APPOINTMENT_VERSION, appointment_id, check.rule_version, decision_id)
    if check.reasons:
        return {"rule_version": check.rule_version, "eligibility_overridden": [r["code"] for r in check.reasons]}
    return {"rule_version": check.rule_version}


async def _tell_cancelled(con: asyncpg.Connection, row: Any, waitlist: Waitlist, *, by_site: bool) -> None:
    """Withdraw the appointment's queued messages about its time (reminders above all) and, for a
    person's or staff's cancel, queue the cancellation (a site's closure sends its own, with a reason)."""
    await notifications.withdraw_timed(con, row["appointment_id"])
    sealed = None if row["person_sealed"] is None else bytes(row["person_sealed"])
    contact = notifications.contact_of(waitlist.vault, sealed)
    if by_site or contact is None:
        return
    await notifications.queue_for_person(
        con, waitlist.vault, contact, kind=NotificationKind.CANCELLATION,
        appointment_id=row["appointment_id"], person_ref=bytes(row["person_ref"]), sequence=row["sequence"],
    )  # fmt: skip


async def _tell_moved(
    con: asyncpg.Connection, appointment_id: uuid.UUID, moved: Any, starts_at: datetime, waitlist: Waitlist,
    now: datetime,
) -> None:  # fmt: skip
    """Withdraw the messages queued for the old time; queue the reschedule and the new time's reminders."""
    await notifications.withdraw_timed(con, appointment_id)
    await notifications.queue_appointment_messages(
        con, waitlist.vault, kind=NotificationKind.RESCHEDULE, appointment_id=appointment_id,
        person_sealed=None if moved["person_sealed"] is None else bytes(moved["person_sealed"]),
        person_ref=bytes(moved["person_ref"]), starts_at=starts_at, sequence=moved["sequence"], now=now,
    )  # fmt: skip


async def _take_new_seat(
    con: asyncpg.Connection, slot: seats.SlotState, token_id: str | None, hold_id: uuid.UUID | None, now: datetime
) -> None:
    if hold_id is not None:
        assert token_id is not None
        if await seats.take_held_seat(con, hold_id, token_id, None, now) != slot.slot_id:
            raise _refuse_unchanged(Code.HOLD_EXPIRED)
        return
    problem = seats.slot_problem(slot, now)
    if problem is not None:
        raise _refuse_unchanged(problem)
    if not await seats.take_seat(con, slot.slot_id, now):
        raise _refuse_unchanged(Code.SLOT_FULL)


async def check_in(con: asyncpg.Connection, appointment_id: uuid.UUID, *, now: datetime, actor: str) -> None:
    """Mark a confirmed appointment completed (the person came). Refused appointment_not_active otherwise."""
    row = await con.fetchrow(queries.MARK_COMPLETED, appointment_id, now)
    if row is None:
        status = await con.fetchval(queries.APPOINTMENT_STATUS, appointment_id)
        if status is None:
            raise NotFound("no such appointment")
        raise Refused(Code.APPOINTMENT_NOT_ACTIVE, f"the appointment is {status}, not confirmed")
    await con.execute(
        queries.INSERT_AUDIT, "checked_in", row["event_id"], row["slot_id"], appointment_id, None, actor, {}
    )
