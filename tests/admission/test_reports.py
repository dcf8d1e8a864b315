"""``GET /admin/v1/reports/{kind}`` against seeded rows: the counts, small cells suppressed with their
complements (the negative control recovers a hidden cell from a total without them), CSV, bad
``group_by`` (also an injection attempt) 400, and the reporting role required (403 without it)."""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from admission.app import create_app
from shared import reports
from shared.reports import suppress
from shared.settings import Settings
from shared.staff import ALL_ROLES, STAFF, Actor, Role, StaffDirectory
from tests.helpers import admin_headers, serve

D1 = datetime.now(UTC).date() + timedelta(days=10)
D2 = D1 + timedelta(days=1)
SITES = {"a": ("North", "UTC"), "b": ("North", "Europe/Berlin"), "c": ("South", "America/New_York")}
# (site, local day) → bookings in event ev (ev2 books 5 more at a on D2): d1 a=2 b=7 c=6, d2 a=8 b=9 c=5
BOOKINGS = {("a", D1): 2, ("b", D1): 7, ("c", D1): 6, ("a", D2): 3, ("b", D2): 9, ("c", D2): 5}
EV2_AT_A_D2 = 5


async def seed(pool: asyncpg.Pool) -> dict[tuple[str, date], uuid.UUID]:
    """Events, sites, slots and appointments; b's D2 bookings: 6 cancelled, 3 no-shows. Returns the slots."""
    slots: dict[tuple[str, date], uuid.UUID] = {}
    async with pool.acquire() as con, con.transaction():
        for event in ("ev", "ev2"):
            await con.execute(
                "INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s, program_id)"
                " VALUES ($1, 'E', 1, 900, $1)",
                event,
            )
        await con.execute("INSERT INTO appointment_types (type_id, name, duration_minutes) VALUES ('shot', 'S', 15)")
        for site, (region, zone) in SITES.items():
            await con.execute(
                "INSERT INTO sites (site_id, name, region, timezone, lat, lng) VALUES ($1, 'S', $2, $3, 1, 2)",
                site,
                region,
                zone,
            )
            for day in (D1, D2):
                # 00:30 local: at b (Berlin) that is the day before in UTC; at c (New York) the same day
                starts = datetime.combine(day, time(0, 30), ZoneInfo(zone))
                slot = uuid.uuid4()
                slots[site, day] = slot
                await con.execute(
                    "INSERT INTO slots (slot_id, site_id, type_id, starts_at, ends_at, capacity)"
                    " VALUES ($1, $2, 'shot', $3, $4, 100)",
                    slot,
                    site,
                    starts,
                    starts + timedelta(minutes=15),
                )
        statuses = {("b", D2): ["cancelled"] * 6 + ["no_show"] * 3}
        plan = [(("ev", key), n) for key, n in BOOKINGS.items()] + [(("ev2", ("a", D2)), EV2_AT_A_D2)]
        for (event, key), n in plan:
            for i in range(n):
                status = statuses.get(key, ["confirmed"] * n)[i]
                await con.execute(
                    "INSERT INTO appointments (appointment_id, event_id, slot_id, token_id, person_ref, person_sealed,"
                    " status) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    uuid.uuid4(),
                    event,
                    slots[key],
                    uuid.uuid4().hex,
                    os.urandom(32),
                    b"sealed",
                    status,
                )
    return slots


async def seed_waitlist(pool: asyncpg.Pool, slot: uuid.UUID) -> None:
    """Two offers of a seat at site a, three recipients each; one offer claimed."""
    async with pool.acquire() as con, con.transaction():
        for n in range(2):
            offer = uuid.uuid4()
            entries = [uuid.uuid4() for _ in range(3)]
            for entry in entries:
                await con.execute(
                    "INSERT INTO waitlist_entries (entry_id, event_id, site_id, type_id, day, person_ref,"
                    " person_sealed) VALUES ($1, 'ev', 'a', 'shot', $2, $3, 'x')",
                    entry,
                    D1,
                    os.urandom(32),
                )
            await con.execute(
                "INSERT INTO waitlist_offers (offer_id, slot_id, expires_at, status, claimed_by)"
                " VALUES ($1, $2, $3, $4, $5)",
                offer,
                slot,
                datetime.now(UTC) + timedelta(hours=1),
                "claimed" if n == 0 else "lapsed",
                entries[0] if n == 0 else None,
            )
            for entry in entries:
                await con.execute(
                    "INSERT INTO waitlist_offer_recipients (offer_id, entry_id) VALUES ($1, $2)", offer, entry
                )


async def report(api: TestClient, kind: str, **params: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/admin/v1/reports/{kind}", params=params, headers=admin_headers())
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"rows"}
    rows: list[dict[str, Any]] = body["rows"]
    return rows


def table(rows: list[dict[str, Any]], *columns: str) -> dict[tuple[Any, ...], int | None]:
    for row in rows:  # aggregates only: the group's columns, the count, whether it is suppressed
        assert set(row) == {*columns, "count", "suppressed"}
        assert (row["count"] is None) == row["suppressed"]
    return {tuple(row[c] for c in columns): row["count"] for row in rows}


async def test_counts_by_site_and_local_day_with_small_cells_and_their_complements_suppressed(
    api: TestClient, pool: asyncpg.Pool
) -> None:
    await seed(pool)
    d1, d2 = D1.isoformat(), D2.isoformat()
    by_day = table(await report(api, "bookings", group_by="day"), "day")
    assert by_day == {(d1,): 15, (d2,): 22}  # b's slots start the day before in UTC: counted on the local day
    cells = table(await report(api, "bookings", group_by="site,day"), "site", "day")
    # a on d1 (2) is small; b on d1 (the other North site that day) hides it from the day's and the
    # region's totals; a and b on d2 hide those from the sites' totals, and each other from d2's
    assert cells == {("a", d1): None, ("a", d2): None, ("b", d1): None, ("b", d2): None, ("c", d1): 6, ("c", d2): 5}

    # the negative control: without complementary cells the same total reveals it
    async with pool.acquire() as con:
        naive = await reports.build_report(
            con, reports.KINDS["bookings"], reports.ReportQuery(group_by=("site", "day")), 5, complementary=False
        )
    published = {(r["site"], r["day"]): r["count"] for r in naive.rows}
    assert published[("a", d1)] is None
    assert by_day[(d1,)] - published[("b", d1)] - published[("c", d1)] == 2

    assert table(await report(api, "bookings", group_by="region"), "region") == {("North",): 26, ("South",): 11}
    assert table(await report(api, "bookings", group_by="type"), "type") == {("shot",): 37}
    assert table(await report(api, "bookings")) == {(): 37}
    assert table(await report(api, "bookings", group_by="event,site", event_id="ev2"), "event", "site") == {
        ("ev2", "a"): 5
    }
    window = table(await report(api, "bookings", group_by="site", **{"from": d2, "to": d2}), "site")
    assert window == {("a",): 8, ("b",): 9, ("c",): 5}
    assert await report(api, "bookings", **{"from": (D2 + timedelta(days=1)).isoformat()}) == []
    assert table(await report(api, "cancellations", group_by="site"), "site") == {("b",): 6}
    assert table(await report(api, "no-shows", group_by="site,day"), "site", "day") == {("b", d2): None}


async def test_waitlist_offers_and_claims_are_separate_measures(api: TestClient, pool: asyncpg.Pool) -> None:
    slots = await seed(pool)
    await seed_waitlist(pool, slots["a", D1])
    rows = table(await report(api, "waitlist", group_by="site,day"), "step", "site", "day")
    # one claim is small; six offers are not, and do not add up with claims, so they stay published
    assert rows == {("claimed", "a", D1.isoformat()): None, ("offered", "a", D1.isoformat()): 6}
    assert table(await report(api, "waitlist", event_id="ev2"), "step") == {}


async def test_csv_parses_with_a_header_and_says_the_same(api: TestClient, pool: asyncpg.Pool) -> None:
    await seed(pool)
    headers = {**admin_headers(), "Accept": "text/csv"}
    resp = await api.get("/admin/v1/reports/bookings", params={"group_by": "site,day"}, headers=headers)
    assert resp.status == 200 and resp.content_type == "text/csv"
    parsed = list(csv.DictReader(io.StringIO(await resp.text(), newline="")))
    assert parsed and list(parsed[0]) == ["site", "day", "count", "suppressed"]
    as_json = await report(api, "bookings", group_by="site,day")
    assert [
        {"site": r["site"], "day": r["day"], "count": int(r["count"]) if r["count"] else None,
         "suppressed": r["suppressed"] == "true"}
        for r in parsed
    ] == as_json  # fmt: skip


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "person_ref"},
        {"group_by": "site;DROP TABLE appointments"},
        {"group_by": 'site") , count(*) FROM appointments --'},
        {"group_by": "site,site"},
        {"groupby": "site"},
        {"from": "2030-02-01", "to": "2030-01-01"},
        {"from": "soon"},
        {"event_id": "EV'; --"},
    ],
)
async def test_bad_queries_are_400_and_change_nothing(
    api: TestClient, pool: asyncpg.Pool, params: dict[str, str]
) -> None:
    await seed(pool)
    resp = await api.get("/admin/v1/reports/bookings", params=params, headers=admin_headers())
    body = await resp.json()
    assert (resp.status, body["code"]) == (400, "validation_error")
    assert "DROP" not in await resp.text()  # the value is not echoed
    assert await pool.fetchval("SELECT count(*) FROM appointments") == sum(BOOKINGS.values()) + EV2_AT_A_D2


async def test_unknown_reports_are_404(api: TestClient) -> None:
    for kind in ("people", "bookings;select"):
        resp = await api.get(f"/admin/v1/reports/{kind}", headers=admin_headers())
        assert (resp.status, (await resp.json())["code"]) == (404, "not_found")


class Staff(StaffDirectory):
    """Two named credentials besides the owner: one with every role but reporting, one with reporting only."""

    async def authenticate(self, credential: str) -> Actor | None:
        if credential == "everything-but-reporting":
            return Actor("ops", ALL_ROLES - {Role.REPORTING})
        if credential == "reporting-only":
            return Actor("analyst", frozenset({Role.REPORTING}))
        return await super().authenticate(credential)


@pytest.fixture
async def staffed_api(settings: Settings) -> AsyncIterator[TestClient]:
    app = create_app(settings)
    app[STAFF] = Staff(settings.admin_tokens)
    async with serve(app) as client:
        yield client


async def test_the_reporting_role_is_required(staffed_api: TestClient) -> None:
    path = "/admin/v1/reports/bookings"
    resp = await staffed_api.get(path, headers={"Authorization": "Bearer everything-but-reporting"})
    assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
    assert (await staffed_api.get(path)).status == 401
    assert (await staffed_api.get(path, headers={"Authorization": "Bearer reporting-only"})).status == 200
    assert (await staffed_api.get(path, headers=admin_headers())).status == 200


async def test_sites_are_suppressed_within_their_region(api: TestClient, pool: asyncpg.Pool) -> None:
    await seed(pool)
    d1 = {"from": D1.isoformat(), "to": D1.isoformat()}
    regions = table(await report(api, "bookings", group_by="region", **d1), "region")
    assert regions == {("North",): 9, ("South",): 6}
    sites = table(await report(api, "bookings", group_by="site", **d1), "site")
    # a (2) is small; its complement is b, the other North site, though c (South) is smaller
    assert sites == {("a",): None, ("b",): None, ("c",): 6}

    # the negative control: sites suppressed as one group, without their regions: c complements a,
    # and North's total minus b gives a
    naive = suppress([("a",), ("b",), ("c",)], [2, 7, 6], [0], 5)
    assert naive == [True, False, True]
    assert regions[("North",)] - 7 == 2
