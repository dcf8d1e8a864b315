"""Operator endpoints of the booking API: sites and slots (``/admin/v1``, role ``supply``: see shared/staff.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from admission import queries
from admission.availability import slot_json
from admission.keys import POOL
from shared.errors import NotFound, ValidationFailed
from shared.http import json_response, path_uuid, read_json
from shared.seats import utcnow
from shared.staff import Role, actor_of, audit_admin, requires

_SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SLOTS_PER_CALL = 5000


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    site_id: str = Field(pattern=_SITE_ID.pattern)
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(min_length=1, max_length=100)
    timezone: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    # Street address, shown in messages and the calendar file's LOCATION with the name.
    address: str | None = Field(default=None, max_length=500)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone (e.g. Europe/Berlin)") from None
        return value


class SlotsIn(BaseModel):
    """``starts_at`` with an offset is absolute; without one it is wall time at the site."""

    model_config = ConfigDict(extra="forbid")
    site_id: str = Field(pattern=_SITE_ID.pattern)
    starts_at: datetime
    duration_minutes: int = Field(ge=1, le=24 * 60)
    capacity: int = Field(ge=0, le=100_000)
    count: int = Field(default=1, ge=1, le=MAX_SLOTS_PER_CALL)
    every_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)

    @model_validator(mode="after")
    def _every(self) -> SlotsIn:
        if self.count > 1 and self.every_minutes is None:
            raise ValueError("every_minutes is required when count > 1")
        return self


async def create_slots(
    con: asyncpg.Connection, spec: SlotsIn, timezone: str, *, id_seed: str | None = None
) -> list[str]:
    """Insert ``spec.count`` slots; ``id_seed`` makes the ids deterministic (idempotent seeding)."""
    start = spec.starts_at if spec.starts_at.tzinfo else spec.starts_at.replace(tzinfo=ZoneInfo(timezone))
    # Step in absolute time: arithmetic on a zoned datetime is wall-clock arithmetic in Python,
    # which across a DST change yields instants that do not exist or slots that end before they start.
    start = start.astimezone(UTC)
    step = timedelta(minutes=spec.every_minutes or spec.duration_minutes)
    ids: list[str] = []
    for i in range(spec.count):
        starts = start + i * step
        slot_id = (
            uuid.uuid5(uuid.NAMESPACE_URL, f"{id_seed}/{spec.site_id}/{starts.isoformat()}")
            if id_seed
            else uuid.uuid4()
        )
        await con.execute(
            queries.INSERT_SLOT,
            slot_id,
            spec.site_id,
            starts,
            starts + timedelta(minutes=spec.duration_minutes),
            spec.capacity,
        )
        ids.append(str(slot_id))
    return ids


async def upsert_site(con: asyncpg.Connection, site: SiteIn) -> dict[str, Any]:
    row = await con.fetchrow(
        queries.UPSERT_SITE,
        site.site_id,
        site.name,
        site.region,
        site.timezone,
        site.lat,
        site.lng,
        site.address or None,
    )
    return dict(row)


@requires(Role.SUPPLY)
async def post_site(request: web.Request) -> web.Response:
    site = await read_json(request, SiteIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        row = await upsert_site(con, site)
        await audit_admin(con, actor_of(request), "site_saved", detail={"site_id": site.site_id})
    return json_response(row, status=201)


@requires(Role.SUPPLY)
async def post_slots(request: web.Request) -> web.Response:
    spec = await read_json(request, SlotsIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        site = await con.fetchrow(queries.GET_SITE, spec.site_id)
        if site is None:
            raise ValidationFailed(f"no site {spec.site_id!r}; create it first")
        ids = await create_slots(con, spec, site["timezone"])
        await audit_admin(
            con, actor_of(request), "slots_created", detail={**spec.model_dump(mode="json"), "slots": len(ids)}
        )
    return json_response({"slot_ids": ids}, status=201)


@requires(Role.SUPPLY)
async def get_slot(request: web.Request) -> web.Response:
    """A slot's capacity and bookings, read from the primary (never a cache)."""
    slot_id = path_uuid(request, "slot_id", "slot")
    async with request.app[POOL].acquire() as con:
        row = await con.fetchrow(queries.GET_SLOT, slot_id, utcnow())
    if row is None:
        raise NotFound("no such slot")
    return json_response({**slot_json(row), "booked": row["booked"]})
