"""Operator endpoints for supply: appointment types, weekly schedules, date overrides, slot
generation, CSV imports, closing a day, and check-in (``/admin/v1``, role ``supply``; each change is
audited with its actor in the transaction that makes it).

A schedule or override change regenerates the affected future slots at once and answers the
regeneration report: slots created and withdrawn, and every slot with bookings or holds that no
longer fits (kept, never dropped silently).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import date
from typing import Any

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from admission.admin import SiteIn, upsert_site
from admission.keys import AVAILABILITY, POOL, WAITLIST
from shared import appointments, closures, seats, supply
from shared.errors import NotFound, ValidationFailed
from shared.http import json_response, path_uuid, read_json
from shared.staff import Role, actor_of, audit_admin, requires
from shared.statuses import AppointmentStatus

_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}


def minute_of(hhmm: str) -> int:
    if not _HHMM.match(hhmm):
        raise ValueError(f"{hhmm!r} is not a time of day HH:MM (00:00 to 24:00)")
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_hours(raw: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """[["09:00", "12:00"], ...] → sorted minute pairs; refuses empty or overlapping intervals."""
    intervals = sorted((minute_of(a), minute_of(b)) for a, b in raw)
    for i, (a, b) in enumerate(intervals):
        if b <= a:
            raise ValueError(f"{hhmm(a)}-{hhmm(b)} ends before it starts")
        following = intervals[i + 1] if i + 1 < len(intervals) else None
        if following is not None and following[0] < b:
            raise ValueError(f"{hhmm(a)}-{hhmm(b)} overlaps {hhmm(following[0])}-{hhmm(following[1])}")
    return intervals


class TypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    duration_minutes: int = Field(ge=1, le=1440)
    seats_per_slot: int = Field(default=1, ge=1, le=100_000)
    buffer_minutes: int = Field(default=0, ge=0, le=1440)
    min_notice_minutes: int = Field(default=0, ge=0, le=525_600)
    max_advance_days: int = Field(default=60, ge=1, le=730)
    cancel_cutoff_minutes: int = Field(default=0, ge=0, le=525_600)
    no_show_grace_minutes: int = Field(default=30, ge=0, le=10_080)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weekly: dict[str, list[tuple[str, str]]]

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        unknown = set(value) - set(WEEKDAYS)
        if unknown:
            raise ValueError(f"weekdays are mon..sun, not {sorted(unknown)}")
        for hours in value.values():
            parse_hours(hours)
        return value

    def intervals(self) -> dict[int, list[tuple[int, int]]]:
        return {WEEKDAYS[d]: parse_hours(h) for d, h in self.weekly.items() if h}


class OverrideIn(BaseModel):
    """``hours`` replace the weekly hours on that local date; an empty list closes the day."""

    model_config = ConfigDict(extra="forbid")
    type_id: str | None = Field(default=None, pattern=_ID)
    hours: list[tuple[str, str]]
    note: str | None = Field(default=None, max_length=500)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        parse_hours(value)
        return value


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    type_id: str | None = Field(default=None, pattern=_ID)


class ClosureIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    day: date
    reason: str = Field(min_length=1, max_length=500)
    type_id: str | None = Field(default=None, pattern=_ID)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not re.match(_ID, value):
        raise NotFound(f"no such {name.removesuffix('_id').replace('_', ' ')}")
    return value


# --- appointment types ---------------------------------------------------------------------------


def _type_json(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k != "updated_at"}


@requires(Role.SUPPLY)
async def put_type(request: web.Request) -> web.Response:
    """Create or change an appointment type. Existing slots keep their length; regenerate to apply."""
    type_id = _path_id(request, "type_id")
    body = await read_json(request, TypeIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        row = await supply.upsert_type(con, type_id, body.model_dump())
        await audit_admin(con, actor_of(request), "appointment_type_saved",
                          detail={"type_id": type_id, **body.model_dump(mode="json")})  # fmt: skip
    return json_response(_type_json(row))


@requires(Role.SUPPLY)
async def list_types(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as con:
        rows = await supply.list_types(con)
    return json_response({"appointment_types": [_type_json(r) for r in rows]})


# --- schedules and overrides ---------------------------------------------------------------------


def _weekly_json(weekly: dict[int, list[tuple[int, int]]]) -> dict[str, Any]:
    names = {v: k for k, v in WEEKDAYS.items()}
    return {names[day]: [[hhmm(a), hhmm(b)] for a, b in hours] for day, hours in weekly.items()}


@requires(Role.SUPPLY)
async def put_schedule(request: web.Request) -> web.Response:
    site_id, type_id = _path_id(request, "site_id"), _path_id(request, "type_id")
    body = await read_json(request, ScheduleIn)
    now = seats.utcnow()
    async with request.app[POOL].acquire() as con, con.transaction():
        report = await supply.set_schedule(con, site_id, type_id, body.intervals(), now)
        await audit_admin(con, actor_of(request), "schedule_set",
                          detail={"site_id": site_id, "type_id": type_id, "weekly": body.weekly})  # fmt: skip
        weekly = await supply.weekly(con, site_id, type_id)
    request.app[AVAILABILITY].changed(site_id)
    return json_response(
        {"site_id": site_id, "type_id": type_id, "weekly": _weekly_json(weekly), "regenerated": report.to_json()}
    )


@requires(Role.SUPPLY)
async def get_schedule(request: web.Request) -> web.Response:
    site_id, type_id = _path_id(request, "site_id"), _path_id(request, "type_id")
    async with request.app[POOL].acquire() as con:
        await supply.require_site(con, site_id)
        weekly = _weekly_json(await supply.weekly(con, site_id, type_id))
        overrides = await supply.overrides(con, site_id, type_id)
    return json_response(
        {
            "site_id": site_id,
            "type_id": type_id,
            "weekly": weekly,
            "overrides": [
                {"day": o["day"].isoformat(), "type_id": o["type_id"] or None, "note": o["note"],
                 "hours": [[hhmm(a), hhmm(b)] for a, b in o["intervals"]]}
                for o in overrides
            ],
        }
    )  # fmt: skip


def _day(request: web.Request) -> date:
    try:
        return date.fromisoformat(request.match_info["day"])
    except ValueError:
        raise NotFound("the day must be YYYY-MM-DD") from None


@requires(Role.SUPPLY)
async def put_override(request: web.Request) -> web.Response:
    site_id, day = _path_id(request, "site_id"), _day(request)
    body = await read_json(request, OverrideIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        reports = await supply.set_override(
            con, site_id, day, body.type_id, parse_hours(body.hours), body.note, seats.utcnow()
        )
        detail = {"site_id": site_id, "day": day.isoformat(), **body.model_dump(mode="json")}
        await audit_admin(con, actor_of(request), "override_set", detail=detail)
    request.app[AVAILABILITY].changed(site_id)
    return json_response(
        {"site_id": site_id, "day": day.isoformat(), **body.model_dump(), "regenerated": [r.to_json() for r in reports]}
    )


@requires(Role.SUPPLY)
async def delete_override(request: web.Request) -> web.Response:
    site_id, day = _path_id(request, "site_id"), _day(request)
    type_id = request.query.get("type_id") or None
    async with request.app[POOL].acquire() as con, con.transaction():
        reports = await supply.delete_override(con, site_id, day, type_id, seats.utcnow())
        await audit_admin(con, actor_of(request), "override_deleted",
                          detail={"site_id": site_id, "day": day.isoformat(), "type_id": type_id})  # fmt: skip
    request.app[AVAILABILITY].changed(site_id)
    return json_response(
        {"site_id": site_id, "day": day.isoformat(), "deleted": True, "regenerated": [r.to_json() for r in reports]}
    )


@requires(Role.SUPPLY)
async def post_generate(request: web.Request) -> web.Response:
    """Generate (or re-align) the site's slots for a range of local days; safe to repeat."""
    site_id = _path_id(request, "site_id")
    body = await read_json(request, GenerateIn) if request.can_read_body else GenerateIn()
    now = seats.utcnow()
    async with request.app[POOL].acquire() as con, con.transaction():
        reports = await supply.generate(con, site_id, body.type_id, body.from_, body.to, now)
        await audit_admin(con, actor_of(request), "slots_generated",
                          detail={"site_id": site_id, **body.model_dump(mode="json", by_alias=True)})  # fmt: skip
    request.app[AVAILABILITY].changed(site_id)
    return json_response({"regenerated": [r.to_json() for r in reports]})


# --- CSV imports ---------------------------------------------------------------------------------

MAX_IMPORT_ERRORS = 50


async def _csv_rows(request: web.Request, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    raw = await request.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV must be UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValidationFailed(f"the CSV header lacks {', '.join(missing)} (needs {', '.join(required)})")
    try:
        return [
            (reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)})
            for row in reader
        ]
    except csv.Error as exc:
        raise ValidationFailed(f"the CSV could not be read: {exc}") from None


def _line_errors(errors: list[dict[str, object]]) -> None:
    if errors:
        raise ValidationFailed(f"{len(errors)} line(s) of the CSV are invalid; nothing was imported",
                               errors[:MAX_IMPORT_ERRORS])  # fmt: skip


@requires(Role.SUPPLY)
async def import_sites(request: web.Request) -> web.Response:
    """``site_id,name,region,timezone,lat,lng`` — all rows or none (idempotent on site_id)."""
    rows = await _csv_rows(request, ["site_id", "name", "region", "timezone", "lat", "lng"])
    sites: list[SiteIn] = []
    errors: list[dict[str, object]] = []
    for line, row in rows:
        try:
            sites.append(SiteIn.model_validate({k: row.get(k) for k in SiteIn.model_fields}))
        except pydantic.ValidationError as exc:
            problems = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
            errors.append({"loc": ["line", line], "msg": "; ".join(problems)})
    _line_errors(errors)
    async with request.app[POOL].acquire() as con, con.transaction():
        for site in sites:
            await upsert_site(con, site)
        await audit_admin(con, actor_of(request), "sites_imported", detail={"site_ids": [x.site_id for x in sites]})
    request.app[AVAILABILITY].cache.invalidate(("sites",))
    return json_response({"imported": len(sites)}, status=201)


@requires(Role.SUPPLY)
async def import_schedules(request: web.Request) -> web.Response:
    """``site_id,type_id,weekday,start,end`` (weekday mon..sun or 1..7; one row per interval). Every
    (site, type) in the file gets exactly the file's weekly hours, then its slots are regenerated."""
    rows = await _csv_rows(request, ["site_id", "type_id", "weekday", "start", "end"])
    weekly: dict[tuple[str, str], dict[int, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    errors: list[dict[str, object]] = []
    for line, row in rows:
        day = row["weekday"].lower()[:3]
        weekday = WEEKDAYS.get(day) or (int(day) if day.isdigit() and 1 <= int(day) <= 7 else None)
        if not re.match(_ID, row["site_id"]) or not re.match(_ID, row["type_id"]) or weekday is None:
            errors.append({"loc": ["line", line], "msg": "site_id, type_id or weekday is invalid"})
            continue
        weekly[(row["site_id"], row["type_id"])][weekday].append((row["start"], row["end"]))
    parsed: dict[tuple[str, str], dict[int, list[tuple[int, int]]]] = {}
    for key, days in weekly.items():
        try:
            parsed[key] = {d: parse_hours(h) for d, h in days.items()}
        except ValueError as exc:
            errors.append({"loc": ["site_id", key[0], "type_id", key[1]], "msg": str(exc)})
    _line_errors(errors)
    async with request.app[POOL].acquire() as con, con.transaction():
        reports = await supply.import_schedules(con, parsed, seats.utcnow())
        await audit_admin(con, actor_of(request), "schedules_imported",
                          detail={"schedules": [{"site_id": k[0], "type_id": k[1]} for k in parsed]})  # fmt: skip
    request.app[AVAILABILITY].changed(*{k[0] for k in parsed})
    return json_response({"imported": len(parsed), "regenerated": [r.to_json() for r in reports]}, status=201)


# --- closing a day, check-in ---------------------------------------------------------------------


@requires(Role.SUPPLY)
async def close_day(request: web.Request) -> web.Response:
    """Close a site for a local day (see :func:`shared.closures.close_day`), in one transaction."""
    site_id = _path_id(request, "site_id")
    body = await read_json(request, ClosureIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        closed = await closures.close_day(
            con, site_id=site_id, day=body.day, reason=body.reason, type_id=body.type_id,
            waitlist=request.app[WAITLIST], now=seats.utcnow(),
            actor=actor_of(request).audit_name(),
        )  # fmt: skip
    request.app[AVAILABILITY].changed(site_id)
    return json_response(
        {
            "site_id": site_id,
            "day": body.day.isoformat(),
            "cancelled": closed.cancelled,
            "waitlisted": closed.waitlisted,
            "notifications_queued": closed.cancelled,
            "slots_withdrawn": closed.slots_withdrawn,
            "slots_kept": [str(s) for s in closed.slots_kept],
            "offers_made": closed.offers_made,
        }
    )


@requires(Role.SUPPLY)
async def check_in(request: web.Request) -> web.Response:
    """Mark a confirmed appointment completed (the person came)."""
    appointment_id = path_uuid(request, "appointment_id", "appointment")
    async with request.app[POOL].acquire() as con, con.transaction():
        await appointments.check_in(con, appointment_id, now=seats.utcnow(), actor=actor_of(request).audit_name())
    return json_response({"appointment_id": str(appointment_id), "status": AppointmentStatus.COMPLETED})
