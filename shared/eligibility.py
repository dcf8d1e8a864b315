"""Eligibility: the published version per process, decisions, and the check the booking makes.

Versions and their moves (create, publish, shadow, rollback) are :mod:`shared.rule_versions`.
What a caller can rely on:

* **Moves and bookings serialise** on the event's ``RULES_POINTER`` advisory lock
  (:mod:`shared.locks`): a move takes it alone, a booking shares it. It is an advisory lock rather
  than the pointer row's ``FOR SHARE`` because PostgreSQL queues new shared requests behind a waiting
  exclusive one, so a publish is never starved by a stream of bookings (a row's share locks let new
  sharers in ahead of a waiting ``FOR UPDATE``: a publish during a busy hour could wait for it to end).
* **Every process sees a move within a second.** :class:`RuleBook` answers the published and shadow
  versions from PostgreSQL, re-read at most every ``eligibility_refresh_s`` (0.5 s) per event;
  compiled rule sets are cached by digest (a version never changes).
* **Every evaluation is stored** (:func:`decide`): outcome, reason codes, per-rule explanation
  (held / failed / error), a keyed hash of the canonical inputs, the person's keyed reference, the
  inputs sealed (only the vault opens them: replay), the local date age was computed on, and the
  shadow version's answer beside the published one.
* **The booking re-checks at commit** (:func:`check_booking`, called by :func:`shared.attempts.execute`
  inside the booking transaction): it shares the pointer's lock before reading it, so a concurrent
  publish waits for the booking to commit, and a booking that starts after a publish waits for it
  and reads the new version. The version recorded on the appointment is therefore the one published
  when the booking committed; a publish never commits between the read and the booking's commit.
* **A reschedule re-checks the same way** (:func:`shared.appointments.reschedule` and its variants
  call :func:`check_booking` inside the move's transaction, on the new slot's date, with
  ``lapses=False``: the decision the appointment was booked with is re-evaluated however old it is).

No attribute value is logged or counted: metrics carry the event, version, outcome and reason codes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from cryptography.fernet import InvalidToken

from shared import locks, queries
from shared.errors import NotFound, ValidationFailed
from shared.locks import LockNamespace
from shared.persons import PersonVault
from shared.rules import (
    Compiled,
    Evaluation,
    canonical_json,
    coerce_attributes,
    compiled_from_body,
    evaluate,
)
from shared.statuses import DecisionKind, DecisionOutcome

# Reasons that are not a rule's: the booking's own checks of the decision it was given.
DECISION_REQUIRED = "decision_required"
DECISION_MISMATCH = "decision_mismatch"
DECISION_EXPIRED = "decision_expired"
DECISION_UNREADABLE = "decision_unreadable"
BOOKING_REASONS: Mapping[str, dict[str, str]] = {
    DECISION_REQUIRED: {
        "en": "Check your eligibility before booking.",
        "es": "Compruebe su elegibilidad antes de reservar.",
    },
    DECISION_MISMATCH: {
        "en": "This eligibility answer was given to another person.",
        "es": "Esta respuesta de elegibilidad corresponde a otra persona.",
    },
    DECISION_EXPIRED: {
        "en": "Your eligibility answer has expired: check again.",
        "es": "Su respuesta de elegibilidad ha caducado: compruébela de nuevo.",
    },
    DECISION_UNREADABLE: {
        "en": "Your answers are no longer held: check your eligibility again.",
        "es": "Sus respuestas ya no se conservan: compruebe su elegibilidad de nuevo.",
    },
}


def reason_text(compiled: Compiled | None, code: str, language: str) -> str:
    if code in BOOKING_REASONS:
        return BOOKING_REASONS[code]["es" if language == "es" else "en"]
    return code.replace("_", " ") if compiled is None else compiled.text_of(code, language)


def reasons_json(
    compiled: Compiled | None, codes: list[str] | tuple[str, ...], language: str = "en"
) -> list[dict[str, str]]:
    return [{"code": c, "text": reason_text(compiled, c, language)} for c in codes]


# --- the published version, per process -------------------------------------------------------------


@dataclass(frozen=True)
class Current:
    published: int | None
    shadow: int | None
    serial: int
    compiled: Compiled | None
    shadow_compiled: Compiled | None
    zones: tuple[str, ...]


class RuleBook:
    """Each event's published and shadow versions as this process last read them, re-read from
    PostgreSQL at most every ``refresh_s`` (so a move shows everywhere within that). Safe to share."""

    def __init__(self, refresh_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._seen: dict[str, tuple[float, Current]] = {}

    async def current(self, pool: asyncpg.Pool, event_id: str) -> Current:
        now = self._clock()
        seen = self._seen.get(event_id)
        if seen is not None and now - seen[0] < self._refresh_s:
            return seen[1]
        async with pool.acquire() as con:
            pointer = await con.fetchrow(queries.ELIG_POINTER, event_id)
            if seen is not None and pointer is not None and pointer["serial"] == seen[1].serial:
                current = seen[1]
            else:
                current = await self._read(con, event_id, pointer)
        self._seen[event_id] = (now, current)
        return current

    def changed(self, event_id: str) -> None:
        """This process moved the event's pointer: read it again on the next call."""
        self._seen.pop(event_id, None)

    @staticmethod
    async def _read(con: asyncpg.Connection, event_id: str, pointer: Any) -> Current:
        zones = tuple(r["timezone"] for r in await con.fetch(queries.ELIG_EVENT_ZONES, event_id))
        if pointer is None:
            return Current(None, None, -1, None, None, zones)
        published, shadowed = pointer["published_version"], pointer["shadow_version"]
        compiled = None if published is None else await compiled_version(con, event_id, published)
        shadow_compiled = None if shadowed is None else await compiled_version(con, event_id, shadowed)
        return Current(published, shadowed, pointer["serial"], compiled, shadow_compiled, zones)


async def compiled_version(con: asyncpg.Connection, event_id: str, version: int) -> Compiled:
    body = await con.fetchval(queries.ELIG_VERSION_BODY, event_id, version)
    if body is None:
        raise NotFound(f"event {event_id} has no rule version {version}")
    return compiled_from_body(body)


def local_today(zones: tuple[str, ...], now: datetime) -> date:
    """The date an evaluation made before a slot is chosen computes age on: today at the event's
    sites, the latest of their dates when they span zones (a site east of UTC may already be on
    tomorrow). Appointments are never earlier than that, and the booking checks again on the
    appointment's own local date. No site: today in UTC."""
    return max((now.astimezone(ZoneInfo(z)).date() for z in zones), default=now.date())


# --- decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What a person gave: their birth date and the declared (and verified) attributes, as sent."""

    birth_date: date
    attributes: dict[str, Any]

    def canonical(self, person_ref: bytes) -> str:
        return canonical_json(
            {"person": person_ref.hex(), "birth_date": self.birth_date.isoformat(), "attributes": self.attributes}
        )

    def sealed(self, vault: PersonVault) -> bytes:
        return vault.seal({"birth_date": self.birth_date.isoformat(), "attributes": self.attributes})

    @classmethod
    def opened(cls, vault: PersonVault, sealed: bytes) -> Inputs:
        data = vault.open(bytes(sealed))
        return cls(date.fromisoformat(str(data["birth_date"])), dict(data["attributes"]))


def input_hash(vault: PersonVault, person_ref: bytes, inputs: Inputs) -> bytes:
    """Keyed, so the stored hash of someone's answers cannot be brute-forced back into them."""
    return hmac.new(vault.hash_key, b"eligibility:" + inputs.canonical(person_ref).encode(), hashlib.sha256).digest()


def run(compiled: Compiled, inputs: Inputs, on: date) -> Evaluation:
    """The rule set on stored or given inputs; ValidationFailed when they do not fit its attributes."""
    return evaluate(compiled, inputs.birth_date, coerce_attributes(compiled.spec, inputs.attributes), on)


@dataclass(frozen=True)
class Decision:
    decision_id: uuid.UUID
    event_id: str
    rule_version: int
    evaluation: Evaluation
    valid_until: datetime
    shadow_version: int | None
    shadow: Evaluation | None


async def decide(
    con: asyncpg.Connection,
    vault: PersonVault,
    current: Current,
    event_id: str,
    *,
    id_number: str,
    inputs: Inputs,
    credential: str,
    now: datetime,
    ttl_s: int,
) -> Decision:
    """Evaluate under the published version (and the shadow one beside it) and store the decision.
    404 when the event has no published rule set; 400 naming the attribute for inputs that do not
    fit it (nothing stored)."""
    if current.compiled is None or current.published is None:
        raise NotFound(f"event {event_id} has no published rule set")
    person_ref = vault.ref(id_number, field=("person", "id_number"))
    on = local_today(current.zones, now)
    try:
        evaluation = run(current.compiled, inputs, on)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.detail, exc.errors) from None
    shadow_eval: Evaluation | None = None
    if current.shadow_compiled is not None:
        try:
            shadow_eval = run(current.shadow_compiled, inputs, on)
        except ValidationFailed:  # the candidate asks for other attributes: it cannot judge this one
            shadow_eval = None
    decision = Decision(
        uuid.uuid4(), event_id, current.published, evaluation, now + timedelta(seconds=ttl_s),
        None if shadow_eval is None else current.shadow, shadow_eval,
    )  # fmt: skip
    await con.execute(
        queries.ELIG_INSERT_DECISION, decision.decision_id, event_id, current.published, evaluation.outcome,
        list(evaluation.reasons), evaluation.explanation, DecisionKind.EVALUATION,
        input_hash(vault, person_ref, inputs), person_ref, inputs.sealed(vault), on, credential,
        decision.shadow_version, None if shadow_eval is None else shadow_eval.outcome,
        None if shadow_eval is None else list(shadow_eval.reasons), None, None, None, decision.valid_until,
    )  # fmt: skip
    return decision


async def decision_for(con: asyncpg.Connection, event_id: str, decision_id: uuid.UUID, credential: str) -> Any:
    """The decision, for the credential (visitor) that asked for it only; 404 otherwise."""
    row = await con.fetchrow(queries.ELIG_DECISION, decision_id)
    if row is None or row["event_id"] != event_id or row["credential"] != credential:
        raise NotFound("no such decision")
    return row


# --- the booking's check -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingCheck:
    """What the booking transaction found: the version published now (None: the event has no
    rules), the decision used, and the reasons it refuses (empty: go on and take the seat)."""

    rule_version: int | None
    decision_id: uuid.UUID | None
    reasons: list[dict[str, Any]]


def _reasons_all_languages(compiled: Compiled | None, codes: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"code": c, "text": {"en": reason_text(compiled, c, "en"), "es": reason_text(compiled, c, "es")}} for c in codes
    ]


async def check_booking(
    con: asyncpg.Connection,
    vault: PersonVault | None,
    *,
    event_id: str,
    person_ref: bytes,
    decision_id: str | None,
    on: date,
    now: datetime,
    lapses: bool = True,
) -> BookingCheck:
    """Inside the booking transaction: share the pointer's lock and read it (a publish waits for this
    transaction, see the module docstring) and re-evaluate the decision's stored inputs under the
    version published now, on ``on`` (the appointment's local date). An override decision stands as
    the staff member decided it. Reasons carry texts in en and es. ``lapses`` False: the decision's
    validity does not count (a reschedule re-checks the decision its appointment was booked with)."""
    await locks.xact_lock_shared(con, LockNamespace.RULES_POINTER, event_id)
    published: int | None = await con.fetchval(queries.ELIG_POINTER_FOR_BOOKING, event_id)
    if published is None:
        return BookingCheck(None, None, [])
    compiled = await compiled_version(con, event_id, published)
    row = None
    if decision_id is not None:
        try:
            row = await con.fetchrow(queries.ELIG_DECISION, uuid.UUID(decision_id))
        except ValueError:
            row = None
    if row is None or row["event_id"] != event_id:
        return BookingCheck(published, None, _reasons_all_languages(compiled, [DECISION_REQUIRED]))
    used = row["decision_id"]
    if not hmac.compare_digest(bytes(row["person_ref"]), person_ref):
        return BookingCheck(published, used, _reasons_all_languages(compiled, [DECISION_MISMATCH]))
    if lapses and row["valid_until"] < now:
        return BookingCheck(published, used, _reasons_all_languages(compiled, [DECISION_EXPIRED]))
    if row["kind"] == DecisionKind.OVERRIDE:
        codes = [] if row["outcome"] == DecisionOutcome.ELIGIBLE else list(row["reasons"])
        return BookingCheck(published, used, _reasons_all_languages(compiled, codes))
    if row["inputs_sealed"] is None or vault is None:
        return BookingCheck(published, used, _reasons_all_languages(compiled, [DECISION_UNREADABLE]))
    try:
        evaluation = run(compiled, Inputs.opened(vault, row["inputs_sealed"]), on)
    except (InvalidToken, ValidationFailed, KeyError, ValueError):
        # Sealed under a key no longer held, or the new version asks for other attributes.
        return BookingCheck(published, used, _reasons_all_languages(compiled, [DECISION_UNREADABLE]))
    return BookingCheck(published, used, _reasons_all_languages(compiled, evaluation.reasons))


def reasons_in(stored: list[dict[str, Any]], language: str) -> list[dict[str, str]]:
    """Stored booking reasons (texts in en and es) in one language."""
    lang = "es" if language == "es" else "en"
    return [{"code": r["code"], "text": r["text"][lang] if isinstance(r["text"], dict) else r["text"]} for r in stored]
