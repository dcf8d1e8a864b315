"""Events (a cohort opening, a clinic's schedule): their definition, validation and storage.

PostgreSQL holds the definition; the live rate and pause flag are mirrored into the queue state in
Redis (see :mod:`waitingroom.queue`) so all edge processes apply a change together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.errors import Code, Refused
from shared.statuses import RateMode
from waitingroom import queries
from waitingroom.lottery import Lottery
from waitingroom.queue import QueueConfig

EVENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # program ids too
DEFAULT_PROGRAM = "default"
SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Phase = Literal["not_open", "prequeue", "open", "closed"]


@dataclass(frozen=True)
class Event:
    event_id: str
    name: str
    rate_per_s: float
    opens_at: datetime | None
    prequeue_opens_at: datetime | None
    closes_at: datetime | None
    paused: bool
    admission_ttl_s: int
    site_ids: tuple[str, ...] | None
    one_place_per_person: bool = False
    abandon_after_s: int | None = 300  # background tabs poll about once a minute: be generous
    max_active: int | None = None
    rate_mode: str = RateMode.FIXED
    rate_min: float | None = None
    rate_max: float | None = None
    target_queue_depth: int = 200
    target_latency_s: float = 2.0
    pow_difficulty: int | None = None
    # What people are admitted for: one person holds one active appointment per program, whichever
    # of its events admitted them (shared/migrations/0012_one_appointment_per_program.sql).
    program_id: str = DEFAULT_PROGRAM
    # The operator's emergency stop: nobody is admitted (as paused) and the booking API refuses new
    # bookings (503 bookings_frozen) until it is lifted.
    bookings_frozen: bool = False
    freeze_reason: str | None = None

    @property
    def halted(self) -> bool:
        """Whether admissions stand still: paused, or bookings frozen."""
        return self.paused or self.bookings_frozen

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Event:
        site_ids = row["site_ids"]
        return cls(
            event_id=row["event_id"],
            name=row["name"],
            rate_per_s=float(row["rate_per_s"]),
            opens_at=row["opens_at"],
            prequeue_opens_at=row["prequeue_opens_at"],
            closes_at=row["closes_at"],
            paused=row["paused"],
            admission_ttl_s=row["admission_ttl_s"],
            site_ids=None if site_ids is None else tuple(site_ids),
            one_place_per_person=row["one_place_per_person"],
            abandon_after_s=row["abandon_after_s"],
            max_active=row["max_active"],
            rate_mode=row["rate_mode"],
            rate_min=row["rate_min"],
            rate_max=row["rate_max"],
            target_queue_depth=row["target_queue_depth"],
            target_latency_s=row["target_latency_s"],
            pow_difficulty=row["pow_difficulty"],
            program_id=row["program_id"],
            bookings_frozen=row["bookings_frozen"],
            freeze_reason=row["freeze_reason"],
        )

    def phase(self, now: float) -> Phase:
        if self.closes_at is not None and now >= self.closes_at.timestamp():
            return "closed"
        if self.opens_at is not None and now < self.opens_at.timestamp():
            if self.prequeue_opens_at is not None and now < self.prequeue_opens_at.timestamp():
                return "not_open"
            return "prequeue"
        return "open"

    @property
    def queue_config(self) -> QueueConfig:
        return QueueConfig(
            rate_per_s=self.rate_per_s,
            paused=self.halted,
            opens_at=0.0 if self.opens_at is None else self.opens_at.timestamp(),
            abandonment=self.abandon_after_s is not None,
            max_active=self.max_active,
            admission_ttl_s=self.admission_ttl_s,
        )

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "event_id": self.event_id,
            "name": self.name,
            "rate_per_s": self.rate_per_s,
            "opens_at": iso(self.opens_at),
            "prequeue_opens_at": iso(self.prequeue_opens_at),
            "closes_at": iso(self.closes_at),
            "paused": self.paused,
            "admission_ttl_s": self.admission_ttl_s,
            "site_ids": None if self.site_ids is None else list(self.site_ids),
            "one_place_per_person": self.one_place_per_person,
            "abandon_after_s": self.abandon_after_s,
            "max_active": self.max_active,
            "rate_mode": self.rate_mode,
            "rate_min": self.rate_min,
            "rate_max": self.rate_max,
            "target_queue_depth": self.target_queue_depth,
            "target_latency_s": self.target_latency_s,
            "pow_difficulty": self.pow_difficulty,
            "program_id": self.program_id,
            "bookings_frozen": self.bookings_frozen,
            "freeze_reason": self.freeze_reason,
        }


class EventUpdate(BaseModel):
    """Body of ``PUT /admin/v1/events/{id}``. Fields left out keep their current value
    (or the default, when the event is new); ``name`` and ``rate_per_s`` are needed to create."""

    model_config = ConfigDict(extra="forbid", strict=False)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    rate_per_s: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    opens_at: datetime | None = None
    prequeue_opens_at: datetime | None = None
    closes_at: datetime | None = None
    paused: bool | None = None
    admission_ttl_s: int | None = Field(default=None, ge=10, le=7 * 86400)
    site_ids: list[str] | None = Field(default=None, max_length=1000)
    one_place_per_person: bool | None = None
    abandon_after_s: int | None = Field(default=None, ge=5, le=86400)
    max_active: int | None = Field(default=None, ge=1, le=10_000_000)
    rate_mode: RateMode | None = None
    rate_min: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
    rate_max: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    target_queue_depth: int | None = Field(default=None, ge=1, le=10_000_000)
    target_latency_s: float | None = Field(default=None, gt=0, le=3600, allow_inf_nan=False)
    pow_difficulty: int | None = Field(default=None, ge=1, le=32)
    program_id: str | None = Field(default=None, pattern=EVENT_ID.pattern)
    bookings_frozen: bool | None = None
    freeze_reason: str | None = Field(default=None, min_length=1, max_length=500)

    @field_validator("opens_at", "prequeue_opens_at", "closes_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a UTC offset (e.g. 2026-11-21T09:00:00Z)")
        return value

    @field_validator("site_ids")
    @classmethod
    def _site_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for site_id in value:
                if not SITE_ID.match(site_id):
                    raise ValueError("site ids are letters, digits, - and _ (at most 64)")
        return value

    def apply(self, event_id: str, current: Event | None) -> Event:
        """The event after this update; raises ValueError if a new event lacks name or rate."""
        given = self.model_fields_set
        for name in (
            "name", "rate_per_s", "paused", "admission_ttl_s", "one_place_per_person", "rate_mode",
            "target_queue_depth", "target_latency_s", "program_id", "bookings_frozen",
        ):  # fmt: skip
            if name in given and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if current is None and (self.name is None or self.rate_per_s is None):
            raise ValueError("a new event needs name and rate_per_s")
        base = current or Event(event_id, "", 0.0, None, None, None, False, 900, None)
        changes = {name: getattr(self, name) for name in given}
        if "site_ids" in changes and changes["site_ids"] is not None:
            changes["site_ids"] = tuple(changes["site_ids"])
        event = replace(base, event_id=event_id, **changes)
        if not event.bookings_frozen:  # a lifted freeze keeps no reason (the audit log keeps it)
            event = replace(event, freeze_reason=None)
        check(event)
        return event


def check(event: Event) -> None:
    """Every rule between fields, on the whole event: a partial update is checked as merged with what
    it changes (setting opens_at after the stored closes_at is refused like sending both)."""
    opens, prequeue, closes = event.opens_at, event.prequeue_opens_at, event.closes_at
    if prequeue is not None and opens is None:  # it would be ignored: the event is open from the start
        raise ValueError("prequeue_opens_at needs opens_at: a pre-queue is the time before the opening")
    if prequeue is not None and opens is not None and prequeue > opens:
        raise ValueError(f"prequeue_opens_at ({prequeue.isoformat()}) must not be after opens_at ({opens.isoformat()})")
    if closes is not None and opens is not None and closes <= opens:
        raise ValueError(f"closes_at ({closes.isoformat()}) must be after opens_at ({opens.isoformat()})")
    if closes is not None and prequeue is not None and closes <= prequeue:
        raise ValueError(f"closes_at ({closes.isoformat()}) must be after prequeue_opens_at ({prequeue.isoformat()})")
    if event.rate_min is not None and event.rate_max is not None and event.rate_min > event.rate_max:
        raise ValueError(f"rate_min ({event.rate_min:g}) must not be above rate_max ({event.rate_max:g})")
    if event.rate_mode == RateMode.AUTO and (event.rate_min is None or event.rate_max is None):
        raise ValueError("rate_mode auto needs rate_min and rate_max")


@dataclass(frozen=True)
class Checkpoint:
    """Where an event's queue stood at ``taken_at`` (see queries.SAVE_CHECKPOINT)."""

    joined: int
    served: float
    join_rate: float
    taken_at: float


async def load_checkpoints(con: asyncpg.Connection) -> dict[str, Checkpoint]:
    return {
        r["event_id"]: Checkpoint(r["joined"], r["served"], r["join_rate"], r["taken_at"])
        for r in await con.fetch(queries.LIST_CHECKPOINTS)
    }


async def load_draws(con: asyncpg.Connection) -> dict[str, Lottery]:
    return {r["event_id"]: Lottery(r["size"], r["seed"]) for r in await con.fetch(queries.LIST_DRAWS)}


async def get_draw(con: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await con.fetchrow(queries.GET_DRAW, event_id)


async def get_event(con: asyncpg.Connection, event_id: str) -> Event | None:
    row = await con.fetchrow(queries.GET_EVENT, event_id)
    return None if row is None else Event.from_row(row)


async def list_events(con: asyncpg.Connection) -> list[Event]:
    return [Event.from_row(r) for r in await con.fetch(queries.LIST_EVENTS)]


async def save_event(con: asyncpg.Connection, event: Event) -> Event:
    """Insert or update the event. Refused conflict when moving it to another program would give
    someone two active appointments there (the database refuses; nothing changes)."""
    try:
        row = await _upsert(con, event)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "appointments_person_active":
            raise
        raise Refused(
            Code.CONFLICT, "people booked through this event already hold appointments in that program"
        ) from None
    return Event.from_row(row)


async def _upsert(con: asyncpg.Connection, event: Event) -> asyncpg.Record:
    return await con.fetchrow(
        queries.UPSERT_EVENT,
        event.event_id,
        event.name,
        event.rate_per_s,
        event.opens_at,
        event.prequeue_opens_at,
        event.closes_at,
        event.paused,
        event.admission_ttl_s,
        None if event.site_ids is None else list(event.site_ids),
        event.one_place_per_person,
        event.abandon_after_s,
        event.max_active,
        event.rate_mode,
        event.rate_min,
        event.rate_max,
        event.target_queue_depth,
        event.target_latency_s,
        event.pow_difficulty,
        event.program_id,
        event.bookings_frozen,
        event.freeze_reason,
    )


async def unknown_sites(con: asyncpg.Connection, site_ids: list[str]) -> list[str]:
    """The ids among ``site_ids`` that name no site, in the order given."""
    return [r["site_id"] for r in await con.fetch(queries.UNKNOWN_SITES, site_ids)]


async def count_events(con: asyncpg.Connection) -> int:
    return int(await con.fetchval(queries.COUNT_EVENTS))
