"""Site and slot search for admitted visitors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from admission import queries
from admission.keys import METRICS, POOL, admission_of
from shared.booking import local_iso, utc_iso
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

    @field_validator("from_", "to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0088 * 2 * math.asin(math.sqrt(a))


async def list_sites(request: web.Request) -> web.Response:
    """Sites within the token's scope, nearest first when a position is given."""
    q = validate(SiteQuery, dict(request.query))
    admission = admission_of(request)
    async with request.app[POOL].acquire() as con:
        rows = await con.fetch(queries.LIST_SITES)
    sites: list[dict[str, Any]] = []
    for row in rows:
        if not admission.allows_site(row["site_id"]):
            continue
        site = dict(row)
        site["distance_km"] = None
        if q.lat is not None and q.lng is not None:
            site["distance_km"] = round(haversine_km(q.lat, q.lng, row["lat"], row["lng"]), 2)
            if q.radius_km is not None and site["distance_km"] > q.radius_km:
                continue
        sites.append(site)
    if q.lat is not None and q.lng is not None:
        sites.sort(key=lambda s: s["distance_km"])
    return json_response({"sites": sites})


def slot_place_and_time(row: Any) -> dict[str, Any]:
    """Where and when, in UTC and the site's zone, from a row with slot and site columns."""
    return {
        "slot_id": str(row["slot_id"]),
        "site_id": row["site_id"],
        "starts_at": utc_iso(row["starts_at"]),
        "ends_at": utc_iso(row["ends_at"]),
        "local_starts_at": local_iso(row["starts_at"], row["timezone"]),
        "timezone": row["timezone"],
    }


def slot_json(row: Any) -> dict[str, Any]:
    return {**slot_place_and_time(row), "capacity": row["capacity"], "remaining": row["capacity"] - row["booked"]}


async def list_slots(request: web.Request) -> web.Response:
    q = validate(SlotQuery, dict(request.query))
    admission = admission_of(request)
    if not admission.allows_site(q.site_id):
        request.app[METRICS].token_verify.labels(admission.event_id, "scope").inc()
        raise TokenScope("this admission does not cover that site")
    start = q.from_ or datetime.now(UTC)
    end = q.to or start + timedelta(days=7)
    end = min(end, start + MAX_SLOT_WINDOW)
    async with request.app[POOL].acquire() as con:
        if await con.fetchval(queries.GET_SITE, q.site_id) is None:
            raise NotFound(f"no site {q.site_id!r}")
        rows = await con.fetch(queries.SEARCH_SLOTS, q.site_id, start, end, MAX_SLOTS)
    return json_response({"slots": [slot_json(r) for r in rows]})
