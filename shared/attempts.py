"""Booking attempts: accepted by the API, executed once in effect by the worker, refused by either.

An attempt is a row of ``booking_attempts`` keyed by ``uuid5(token id, Idempotency-Key)``
(:func:`shared.booking.attempt_id_for`). Its life:

* :func:`accept` (the API, before queueing): the row is inserted ``pending`` with its job, so an
  accepted attempt is durable even if Redis loses the job. A booking from a hold pins the hold to the
  attempt in the same transaction; a hold already gone refuses the attempt on the spot.
* :func:`execute` (the worker): claims the row (``FOR UPDATE``), and in the same transaction takes the
  seat, inserts the appointment and finishes the attempt with its audit row. It books the job stored
  with the row, never the one the queue delivered: a job written into Redis by anyone else names at
  most an attempt the API accepted, and books exactly what was accepted. An execution that finds
  the attempt already final returns the stored outcome and changes nothing; one that fails before
  commit leaves no trace; two at once serialise on the row lock.
* Who may book: one person holds at most one active appointment per *program* (the event's; unique
  index ``appointments_person_active``), and an admission that came from a waitlist claim books only
  for the person who joined the waitlist (``claim_person_mismatch``, checked in the booking
  transaction; the refused attempt leaves the claim's hold in place for the right person).
* Eligibility: when the event has a published rule set, the attempt's decision is evaluated again
  under the version published at commit (:func:`shared.eligibility.check_booking` shares the
  pointer's lock in this transaction: a publish waits for it, or it for the publish), on the
  appointment's local date; ineligible → ``ineligible`` with the reasons, no seat taken. The
  version is recorded on the appointment and in the audit row.
* :func:`finish`: the one place an attempt gets its final status and its audit row, whoever ends it.

Business refusals (slot full, already booked, admission used...) are outcomes, not exceptions: they
are stored with the attempt and answered from it. Every function runs in the caller's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg

from shared import eligibility, notifications, queries, seats
from shared.booking import BookingJob, BookingOutcome, InvalidJob, local_iso, utc_iso
from shared.errors import Code, Refused
from shared.notifications import NotificationKind, language_of
from shared.persons import PersonVault
from shared.statuses import AttemptStatus

# A unique index that refused the appointment → the refusal it means (a race the early checks missed).
_CONSTRAINT_CODES = {
    "appointments_token_once": Code.ADMISSION_USED,
    "appointments_person_active": Code.ALREADY_BOOKED,
}


async def outcome_of(
    con: asyncpg.Connection, attempt_id: uuid.UUID, *, token_id: str | None = None
) -> BookingOutcome | None:
    """The attempt as stored (pending, confirmed or rejected), or None if it was never accepted
    (or, with ``token_id``, belongs to another admission)."""
    row = await con.fetchrow(queries.ATTEMPT_OUTCOME, attempt_id)
    if row is None or (token_id is not None and row["token_id"] != token_id):
        return None
    return BookingOutcome.from_row(row)


async def finish(
    con: asyncpg.Connection,
    job: BookingJob,
    *,
    code: Code | None,
    appointment_id: uuid.UUID | None = None,
    slot_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> AttemptStatus:
    """Give a pending attempt its final status (confirmed when ``code`` is None) and its audit row
    (``detail`` added to it: the rule version that decided, for one)."""
    attempt_id = uuid.UUID(job.attempt_id)
    status = AttemptStatus.CONFIRMED if code is None else AttemptStatus.REJECTED
    await con.execute(queries.FINISH_ATTEMPT, attempt_id, status, code, appointment_id)
    await con.execute(
        queries.INSERT_AUDIT,
        "booked" if code is None else "booking_rejected",
        job.event_id,
        slot_id,
        appointment_id,
        attempt_id,
        job.token_id,
        {**({} if code is None else {"code": code}), **(detail or {})},
    )
    return status


async def _insert_pending(con: asyncpg.Connection, job: BookingJob) -> bool:
    """Insert the attempt as pending; False if it already existed (a repeat or a concurrent request)."""
    inserted = await con.fetchval(
        queries.ACCEPT_ATTEMPT, uuid.UUID(job.attempt_id), job.token_id, job.event_id, job.slot_id,
        bytes.fromhex(job.request_hash), job.to_dict(),
    )  # fmt: skip
    return bool(inserted)


async def accept(con: asyncpg.Connection, job: BookingJob, now: datetime) -> BookingJob | None:
    """Record the attempt as pending and return the job to queue (with the hold's slot filled in).

    None when there is nothing to queue: the attempt already existed, or its hold was already gone
    (then the attempt is stored rejected ``hold_expired``). Either way the stored outcome answers."""
    if job.hold_id is not None:
        slot_id = await seats.pin_hold(con, uuid.UUID(job.hold_id), job.token_id, uuid.UUID(job.attempt_id), now)
        job = replace(job, slot_id="" if slot_id is None else str(slot_id))
    if not await _insert_pending(con, job):
        return None
    if job.hold_id is not None and not job.slot_id:
        await finish(con, job, code=Code.HOLD_EXPIRED)
        return None
    return job


class Executed(NamedTuple):
    outcome: BookingOutcome
    executed: bool  # False: the attempt already had its outcome, returned unchanged
    job: BookingJob | None  # the job as accepted (None when it had already ended)


async def execute(
    con: asyncpg.Connection, attempt_id: str, now: datetime | None = None, *, vault: PersonVault | None = None
) -> Executed:
    """Execute the accepted attempt inside the caller's transaction.

    The attempt's row is the truth: what is booked, for whom and where comes from the job stored when
    the API accepted it, never from what the queue delivered (anyone who can write to Redis could
    write a job). An id the API never accepted raises :class:`UnknownAttempt` and nothing runs. With
    a hold, the seat comes from that hold (pinned to this attempt when it was accepted); a refused
    attempt releases its pinned hold. ``vault`` opens eligibility decisions' stored inputs and, for a
    booked attempt, seals its confirmation and reminders, queued in the same transaction
    (:func:`_queue_confirmation`).
    """
    now = now or seats.utcnow()
    status, job = await _claim(con, attempt_id)
    if status != AttemptStatus.PENDING or job is None:
        stored = await outcome_of(con, uuid.UUID(attempt_id))
        assert stored is not None  # claimed above: the row exists
        return Executed(stored, False, None)

    slot = await _slot_before_seat(con, job)
    code = _refusal_before_seat(job, slot, now)
    check = None if code is not None else await _check_eligibility(con, job, slot, now, vault)
    if check is not None and check.reasons:
        code = Code.INELIGIBLE
    appointment_id: uuid.UUID | None = None
    if code is None:
        try:
            appointment_id = await _take_seat_and_book(con, job, now)
        except Refused as refused:
            code = refused.code
    detail = await _record_eligibility(con, job, check, code, appointment_id)
    await _settle_holds(con, job, code, slot, now)
    if appointment_id is not None and vault is not None:
        await _queue_confirmation(con, vault, job, appointment_id, slot, now)
    await finish(
        con, job, code=code, appointment_id=appointment_id, slot_id=None if slot is None else slot["slot_id"],
        detail=detail,
    )  # fmt: skip
    outcome = _outcome(job, code, appointment_id, slot)
    if code == Code.INELIGIBLE and check is not None:
        outcome = replace(outcome, reasons=check.reasons)
    return Executed(outcome, True, job)


async def _check_eligibility(
    con: asyncpg.Connection, job: BookingJob, slot: Any, now: datetime, vault: PersonVault | None
) -> eligibility.BookingCheck:
    """The event's published rules on the decision's inputs, on the appointment's local date."""
    return await eligibility.check_booking(
        con, vault, event_id=job.event_id, person_ref=bytes.fromhex(job.person_ref), decision_id=job.decision_id,
        on=slot["starts_at"].astimezone(ZoneInfo(slot["timezone"])).date(), now=now,
    )  # fmt: skip


async def _record_eligibility(
    con: asyncpg.Connection,
    job: BookingJob,
    check: eligibility.BookingCheck | None,
    code: Code | None,
    appointment_id: uuid.UUID | None,
) -> dict[str, Any]:
    """The version on the appointment, the reasons on a refused attempt; the audit row's detail."""
    if check is None or check.rule_version is None:
        return {}
    if appointment_id is not None:
        await con.execute(queries.ELIG_APPOINTMENT_VERSION, appointment_id, check.rule_version, check.decision_id)
    if code == Code.INELIGIBLE:
        await con.execute(queries.ELIG_ATTEMPT_REASONS, uuid.UUID(job.attempt_id), check.reasons)
        return {"rule_version": check.rule_version, "reasons": [r["code"] for r in check.reasons]}
    return {"rule_version": check.rule_version}


class UnknownAttempt(InvalidJob):
    """A job for an attempt the API never accepted (or whose stored job is not a booking job)."""


async def _claim(con: asyncpg.Connection, attempt_id: str) -> tuple[AttemptStatus, BookingJob | None]:
    """Lock the attempt's row → its status and, while pending, the job stored when it was accepted."""
    try:
        row = await con.fetchrow(queries.LOCK_ATTEMPT, uuid.UUID(attempt_id))
    except ValueError:
        raise UnknownAttempt("not an attempt id") from None
    if row is None:
        raise UnknownAttempt("no accepted attempt has this id")
    status = AttemptStatus(row["status"])
    if status != AttemptStatus.PENDING:
        return status, None
    try:
        return status, BookingJob.from_dict(row["job"])
    except InvalidJob:
        raise UnknownAttempt("the accepted attempt's stored job is not a booking job") from None


def _slot_uuid(job: BookingJob) -> uuid.UUID | None:
    try:
        return uuid.UUID(job.slot_id)
    except ValueError:
        return None


async def _slot_before_seat(con: asyncpg.Connection, job: BookingJob) -> Any:
    """The slot with its site and window, and lock-free answers for doomed attempts; None: no such slot."""
    slot_uuid = _slot_uuid(job)
    if slot_uuid is None:
        return None
    row = await con.fetchrow(queries.BEFORE_SEAT, slot_uuid, job.token_id, job.event_id, bytes.fromhex(job.person_ref))
    return None if row["slot_id"] is None else row


def _refusal_before_seat(job: BookingJob, slot: Any, now: datetime) -> Code | None:
    """Why the attempt cannot book, known before any lock is taken (None: go and take the seat)."""
    if slot is None:
        return Code.NOT_FOUND
    if job.scope is not None and slot["site_id"] not in job.scope:
        return Code.TOKEN_SCOPE
    if slot["claimed_for_another_person"]:
        return Code.CLAIM_PERSON_MISMATCH
    if slot["admission_used"]:
        return Code.ADMISSION_USED
    if slot["already_booked"]:
        return Code.ALREADY_BOOKED
    if job.hold_id is not None:
        return None  # the hold already passed the window checks when it was placed
    if slot["withdrawn_at"] is not None:
        return Code.SLOT_WITHDRAWN
    return seats.window_problem(
        slot["starts_at"], slot["timezone"], slot["min_notice_minutes"] or 0, slot["max_advance_days"], now
    )


async def _take_seat_and_book(con: asyncpg.Connection, job: BookingJob, now: datetime) -> uuid.UUID:
    """Take the seat (the hold's, or a free one) and insert the appointment, in a savepoint: a refusal
    or a unique violation undoes the seat (and the hold's consumption) too. Refused with the code."""
    slot_uuid = _slot_uuid(job)
    assert slot_uuid is not None
    async with con.transaction():
        if job.hold_id is not None:
            held = await seats.take_held_seat(con, uuid.UUID(job.hold_id), job.token_id, uuid.UUID(job.attempt_id), now)
            if held != slot_uuid:
                raise Refused(Code.HOLD_EXPIRED)
        elif not await seats.take_seat(con, slot_uuid, now):
            raise Refused(Code.SLOT_FULL)
        appointment_id = uuid.uuid4()
        try:
            await con.execute(
                queries.INSERT_APPOINTMENT, appointment_id, job.event_id, slot_uuid, job.token_id,
                bytes.fromhex(job.person_ref), job.person_sealed.encode(), language_of(job.language),
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            code = _CONSTRAINT_CODES.get(exc.constraint_name or "")
            if code is None:
                raise
            raise Refused(code) from None
    return appointment_id


async def _settle_holds(con: asyncpg.Connection, job: BookingJob, code: Code | None, slot: Any, now: datetime) -> None:
    """A refused attempt gives its pinned hold's seat back at once; a booked admission's other holds are moot.
    A claim refused for the wrong person keeps its hold (until its expiry) for the right one: a typo
    in the form must not cost the person the seat they were offered."""
    if job.hold_id is not None and code is not None:
        keep = code == Code.CLAIM_PERSON_MISMATCH
        await seats.unpin_hold(con, uuid.UUID(job.hold_id), uuid.UUID(job.attempt_id), now, release=not keep)
    if code is None and slot is not None and slot["holds_seats"]:
        await seats.release_admission_holds(con, job.token_id, now)


async def _queue_confirmation(
    con: asyncpg.Connection, vault: PersonVault, job: BookingJob, appointment_id: uuid.UUID, slot: Any, now: datetime
) -> None:
    """The confirmation (due now) and the reminders at starts_at - 24 h and - 1 h (those not past), in
    the booking's transaction: they exist exactly when the appointment does. Sending is the dispatcher's."""
    await notifications.queue_appointment_messages(
        con, vault, kind=NotificationKind.CONFIRMATION, appointment_id=appointment_id,
        person_sealed=job.person_sealed.encode(), person_ref=bytes.fromhex(job.person_ref),
        starts_at=slot["starts_at"], sequence=0, now=now,
    )  # fmt: skip


def _outcome(job: BookingJob, code: Code | None, appointment_id: uuid.UUID | None, slot: Any) -> BookingOutcome:
    booked = slot if code is None else None  # where and when, for a confirmation only
    return BookingOutcome(
        attempt_id=job.attempt_id,
        status=AttemptStatus.CONFIRMED if code is None else AttemptStatus.REJECTED,
        code=code,
        request_hash=job.request_hash,
        event_id=job.event_id,
        appointment_id=None if appointment_id is None else str(appointment_id),
        slot_id=job.slot_id,
        site_id=None if booked is None else booked["site_id"],
        starts_at=None if booked is None else utc_iso(booked["starts_at"]),
        local_starts_at=None if booked is None else local_iso(booked["starts_at"], booked["timezone"]),
        ends_at=None if booked is None else utc_iso(booked["ends_at"]),
    )
