"""Site and slot search for admitted visitors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from admission import queries
from admission.auth import token_failed
from admission.availability import bookable, remaining
from admission.keys import AVAILABILITY, READS, admission_of
from shared.errors import NotFound, TokenScope
from shared.http import json_response, validate

MAX_SLOT_WINDOW = timedelta(days=31)
MAX_SLOTS = 2000


class SiteQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lng: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    radius_km: float | None = Field(default=None, gt=0, le=20_000, allow_inf_nan=False)


class SlotQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    site_id: str = Field(min_length=1, max_length=64)
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    type_id: str | None = Field(default=None, min_length=1, max_length=64)
    # time of day at the site, "HH:MM": slots starting at or after / before it
    time_from: time | None = None
    time_to: time | None = None
    available: bool = False  # only slots with a seat left

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class NextQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    radius_km: float = Field(default=50, gt=0, le=20_000, allow_inf_nan=False)
    type_id: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=10, ge=1, le=100)


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(a))


async def _sites(request: web.Request) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with (await request.app[READS].pool()).acquire() as con:  # may lag: the replica, if any
            return [dict(r) for r in await con.fetch(queries.LIST_SITES)]

    sites: list[dict[str, Any]] = await request.app[AVAILABILITY].cache.get(("sites",), load)
    return sites


def _near(sites: list[dict[str, Any]], lat: float, lng: float, radius_km: float | None) -> list[dict[str, Any]]:
    found = []
    for row in sites:
        distance = round(haversine_km(lat, lng, row["lat"], row["lng"]), 2)
        if radius_km is None or distance <= radius_km:
            found.append({**row, "distance_km": distance})
    return sorted(found, key=lambda s: s["distance_km"])


async def list_sites(request: web.Request) -> web.Response:
    """Sites within the token's scope, nearest first when a position is given."""
    q = validate(SiteQuery, dict(request.query))
    admission = admission_of(request)
    sites = [s for s in await _sites(request) if admission.allows_site(s["site_id"])]
    if q.lat is not None and q.lng is not None:
        sites = _near(sites, q.lat, q.lng, q.radius_km)
    else:
        sites = [{**s, "distance_km": None} for s in sites]
    return json_response({"sites": sites})


async def list_slots(request: web.Request) -> web.Response:
    """Bookable slots of a site (within each type's booking window), from the availability cache."""
    q = validate(SlotQuery, dict(request.query))
    admission = admission_of(request)
    if not admission.allows_site(q.site_id):
        token_failed(request.app, admission.event_id, "scope")
        raise TokenScope("this admission does not cover that site")
    now = datetime.now(UTC)
    start = q.from_ or now
    end = min(q.to or start + timedelta(days=7), start + MAX_SLOT_WINDOW)
    if not any(s["site_id"] == q.site_id for s in await _sites(request)):
        raise NotFound(f"no site {q.site_id!r}")
    reads = await request.app[READS].pool()
    rows = await request.app[AVAILABILITY].slots_between(reads, q.site_id, start, end, now)
    found = []
    for row in rows:
        if q.type_id is not None and row["type_id"] != q.type_id:
            continue
        local = row["local_time"]
        if (q.time_from is not None and local < q.time_from) or (q.time_to is not None and local >= q.time_to):
            continue
        if not bookable(row, now) or (q.available and remaining(row) < 1):
            continue
        found.append(row["json"])
        if len(found) >= MAX_SLOTS:
            break
    return json_response({"slots": found})


async def next_available(request: web.Request) -> web.Response:
    """The earliest bookable slot with a seat at each site near a point, soonest first."""
    q = validate(NextQuery, dict(request.query))
    admission = admission_of(request)
    now = datetime.now(UTC)
    sites = [s for s in _near(await _sites(request), q.lat, q.lng, q.radius_km) if admission.allows_site(s["site_id"])]
    found = []
    reads = await request.app[READS].pool()
    for site in sites[:200]:
        for row in await request.app[AVAILABILITY].site_slots(reads, site["site_id"], now):
            if (q.type_id is None or row["type_id"] == q.type_id) and remaining(row) > 0 and bookable(row, now):
                found.append({**row["json"], "site": {k: site[k] for k in ("site_id", "name", "distance_km")}})
                break
    found.sort(key=lambda s: (s["starts_at"], s["site"]["distance_km"]))
    return json_response({"slots": found[: q.limit]})
