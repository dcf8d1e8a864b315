"""The outcome of a booking attempt, as the worker stores it and the API answers it.

An attempt is identified by ``uuid5(token id, Idempotency-Key)``: the same request from the same
admission always maps to the same attempt, which is what makes resubmits and duplicate enqueues
harmless. The worker returns :meth:`BookingOutcome.to_dict` as the arq job result; the API reads it
back (or rebuilds it from the database) with :meth:`BookingOutcome.from_dict`.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, TypeAdapter, ValidationError

from shared.statuses import AppointmentStatus

ATTEMPT_NAMESPACE = uuid.UUID("3f0d9a59-4d51-4e4f-9a3e-6d7d0c9b1a21")


def attempt_id_for(token_id: str, idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(ATTEMPT_NAMESPACE, f"{token_id}\n{idempotency_key}")


def local_iso(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).isoformat()


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BookingOutcome:
    attempt_id: str
    status: str  # an AttemptStatus: pending, confirmed or rejected
    code: str | None  # the refusal's Code when rejected (shared/errors.py)
    request_hash: str  # hex
    event_id: str
    appointment_id: str | None = None
    slot_id: str | None = None
    site_id: str | None = None
    starts_at: str | None = None  # UTC iso8601
    local_starts_at: str | None = None
    ends_at: str | None = None  # UTC iso8601; bounds the manage link's validity (shared/manage.py)
    reasons: list[dict[str, Any]] | None = None  # ineligible: each reason's code and text in en and es

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BookingOutcome:
        return cls(**data)

    @classmethod
    def from_row(cls, row: Any) -> BookingOutcome:
        """From a row of booking_attempts joined to its appointment, slot and site (may be NULL)."""
        starts_at: datetime | None = row["starts_at"]
        return cls(
            attempt_id=str(row["attempt_id"]),
            status=row["status"],
            code=row["code"],
            request_hash=bytes(row["request_hash"]).hex(),
            event_id=row["event_id"],
            appointment_id=None if row["appointment_id"] is None else str(row["appointment_id"]),
            slot_id=str(row["slot_id"]),
            site_id=row["site_id"],
            starts_at=None if starts_at is None else utc_iso(starts_at),
            local_starts_at=None if starts_at is None else local_iso(starts_at, row["timezone"]),
            ends_at=None if row["ends_at"] is None else utc_iso(row["ends_at"]),
            reasons=row["reasons"],
        )

    def confirmation(self) -> dict[str, Any]:
        return {
            "appointment_id": self.appointment_id,
            "status": AppointmentStatus.CONFIRMED,
            "slot_id": self.slot_id,
            "starts_at": self.starts_at,
            "local_starts_at": self.local_starts_at,
            "site_id": self.site_id,
        }


@dataclass(frozen=True)
class BookingJob:
    """The job's only argument. Holds no readable identity: a keyed hash and ciphertext."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # for from_dict: no key we do not know

    attempt_id: str
    token_id: str
    event_id: str
    scope: list[str] | None
    slot_id: str
    request_hash: str  # hex
    person_ref: str  # hex
    person_sealed: str  # Fernet token
    rank: int | None = None  # the admission's queue place, freed for max_active once booked
    hold_id: str | None = None  # book the seat this hold (pinned to the attempt when accepted) set aside
    language: str = "en"  # what the person's messages are written in (a shared.statuses.Language)
    decision_id: str | None = None  # the eligibility decision the person booked with (shared/eligibility.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> BookingJob:
        """The job from its ``to_dict()`` (read back from Redis or PostgreSQL): data to check, never
        to trust. Raises :class:`InvalidJob` (a ValueError naming only the wrong fields, never their
        values) for anything but an object with exactly these fields, each of (or plainly convertible
        to, as "5" to 5) its type."""
        try:
            return _BOOKING_JOB.validate_python(data)
        except ValidationError as exc:
            wrong = sorted({".".join(map(str, e["loc"])) or "(the whole job)" for e in exc.errors()})
            raise InvalidJob(f"not a booking job; wrong: {', '.join(wrong)}") from None


class InvalidJob(ValueError):
    """A job argument that is not a :class:`BookingJob`'s ``to_dict()``."""


_BOOKING_JOB = TypeAdapter(BookingJob)
