"""Operator supply API: appointment types, weekly schedules with regeneration reports, date
overrides, CSV imports, check-in and no-shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp.test_utils import TestClient

from booking_worker.periodic import extend_schedules, mark_no_shows
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admin_headers, admission_token, assert_problem, book, running_worker, seed_typed_slots

SITES_CSV = """site_id,name,region,timezone,lat,lng
nyc-1,Midtown,New York,America/New_York,40.75,-73.98
syd-1,CBD,NSW,Australia/Sydney,-33.87,151.21
"""


async def put(api: TestClient, path: str, body: object) -> tuple[int, dict[str, object]]:
    resp = await api.put(path, json=body, headers=admin_headers())
    return resp.status, await resp.json()


async def test_types_schedules_and_regeneration_report(api: TestClient, pool: asyncpg.Pool, clean: None) -> None:
    resp = await api.post("/admin/v1/import/sites", data=SITES_CSV, headers=admin_headers())
    assert resp.status == 201 and (await resp.json())["imported"] == 2
    status, kind = await put(api, "/admin/v1/appointment-types/shot",
                             {"name": "Shot", "duration_minutes": 20, "buffer_minutes": 10, "seats_per_slot": 3,
                              "max_advance_days": 7})  # fmt: skip
    assert status == 200 and kind["seats_per_slot"] == 3
    week = {d: [["09:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    status, body = await put(api, "/admin/v1/sites/syd-1/schedules/shot", {"weekly": week})
    assert status == 200, body
    report = body["regenerated"]
    assert isinstance(report, dict) and report["created"] > 30 and report["kept_with_bookings"] == []
    rows = await pool.fetch("SELECT starts_at, ends_at, capacity FROM slots WHERE site_id = 'syd-1'")
    local = {r["starts_at"].astimezone(ZoneInfo("Australia/Sydney")).strftime("%H:%M") for r in rows}
    assert local <= {"09:00", "09:30", "10:00", "10:30", "11:00", "11:30"}
    assert all(r["ends_at"] - r["starts_at"] == timedelta(minutes=20) and r["capacity"] == 3 for r in rows)
    # the hourly job is idempotent
    assert await extend_schedules({"pool": pool}) == 0
    resp = await api.get("/admin/v1/sites/syd-1/schedules/shot", headers=admin_headers())
    assert (await resp.json())["weekly"]["mon"] == [["09:00", "12:00"]]
    resp = await api.get("/admin/v1/appointment-types", headers=admin_headers())
    assert [t["type_id"] for t in (await resp.json())["appointment_types"]] == ["shot"]


async def test_schedule_change_reports_booked_slots_instead_of_dropping_them(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    await seed_typed_slots(pool, count=0)
    await pool.execute("UPDATE appointment_types SET max_advance_days = 3, min_notice_minutes = 0")
    week = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    status, body = await put(api, "/admin/v1/sites/site-a/schedules/group", {"weekly": week})
    assert status == 200, body
    slot = str(await pool.fetchval("SELECT slot_id FROM slots WHERE starts_at > now() + interval '1 day'"
                                   " ORDER BY starts_at LIMIT 1"))  # fmt: skip
    async with running_worker(settings):
        assert (await book(api, admission_token(codec), 1, slot_id=slot))[0] == 201
    status, body = await put(api, "/admin/v1/sites/site-a/schedules/group", {"weekly": {}})
    report = body["regenerated"]
    assert isinstance(report, dict)
    assert [k["slot_id"] for k in report["kept_with_bookings"]] == [slot]
    assert report["withdrawn"] > 0
    left = await pool.fetch("SELECT slot_id FROM slots WHERE withdrawn_at IS NULL")
    assert [str(r["slot_id"]) for r in left] == [slot]


async def test_override_closes_a_day_and_special_hours(api: TestClient, pool: asyncpg.Pool, clean: None) -> None:
    await seed_typed_slots(pool, count=0)
    week = {d: [["09:00", "11:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    await put(api, "/admin/v1/sites/site-a/schedules/group", {"weekly": week})
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=3)).date()

    async def local_hours() -> list[str]:
        rows = await pool.fetch("SELECT starts_at FROM slots WHERE withdrawn_at IS NULL ORDER BY starts_at")
        return [r["starts_at"].astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M")
                for r in rows if r["starts_at"].astimezone(ZoneInfo("Europe/Berlin")).date() == day]  # fmt: skip

    assert await local_hours() == ["09:00", "09:30", "10:00", "10:30"]
    status, body = await put(api, f"/admin/v1/sites/site-a/overrides/{day}", {"hours": [["23:00", "24:00"]]})
    assert status == 200, body
    assert await local_hours() == ["23:00", "23:30"]
    status, body = await put(api, f"/admin/v1/sites/site-a/overrides/{day}", {"hours": []})
    assert status == 200, body
    assert await local_hours() == []
    resp = await api.delete(f"/admin/v1/sites/site-a/overrides/{day}", headers=admin_headers())
    assert resp.status == 200
    assert await local_hours() == ["09:00", "09:30", "10:00", "10:30"]
    for bad in ({"hours": [["10:00", "09:00"]]}, {"hours": [["25:00", "26:00"]]},
                {"hours": [["09:00", "11:00"], ["10:00", "12:00"]]}):  # fmt: skip
        status, body = await put(api, f"/admin/v1/sites/site-a/overrides/{day}", bad)
        assert_problem(status, body, 400, "validation_error")


async def test_csv_import_is_all_or_nothing(api: TestClient, pool: asyncpg.Pool, clean: None) -> None:
    bad = SITES_CSV + "bad id!,X,Y,Not/AZone,100,0\n"
    resp = await api.post("/admin/v1/import/sites", data=bad, headers=admin_headers())
    body = await resp.json()
    assert_problem(resp.status, body, 400, "validation_error")
    assert body["errors"][0]["loc"] == ["line", 4]
    assert await pool.fetchval("SELECT count(*) FROM sites") == 0
    resp = await api.post("/admin/v1/import/sites", data="a,b\n1,2\n", headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    await api.post("/admin/v1/import/sites", data=SITES_CSV, headers=admin_headers())
    await put(api, "/admin/v1/appointment-types/shot", {"name": "Shot", "duration_minutes": 30})
    schedules = "site_id,type_id,weekday,start,end\nnyc-1,shot,mon,09:00,12:00\nnyc-1,shot,Tuesday,13:00,15:00\n"
    resp = await api.post("/admin/v1/import/schedules", data=schedules, headers=admin_headers())
    body = await resp.json()
    assert resp.status == 201 and body["imported"] == 1, body
    weekdays = await pool.fetch("SELECT weekday, intervals FROM schedules ORDER BY weekday")
    assert [(r["weekday"], r["intervals"]) for r in weekdays] == [(1, [[540, 720]]), (2, [[780, 900]])]
    unknown = "site_id,type_id,weekday,start,end\nnope,shot,mon,09:00,12:00\n"
    resp = await api.post("/admin/v1/import/schedules", data=unknown, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    resp = await api.post("/admin/v1/import/sites", data=SITES_CSV)
    assert resp.status == 401


async def test_check_in_and_no_show(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    a, b = await seed_typed_slots(pool, count=2, capacity=1)
    async with running_worker(settings):
        _, came = await book(api, admission_token(codec), 1, slot_id=a)
        _, absent = await book(api, admission_token(codec), 2, slot_id=b)
    resp = await api.post(f"/admin/v1/appointments/{came['appointment_id']}/check-in", headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["status"] == "completed"
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'checked_in'") == "owner"
    resp = await api.post(f"/admin/v1/appointments/{came['appointment_id']}/check-in", headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 409, "appointment_not_active")
    resp = await api.post(f"/admin/v1/appointments/{uuid.uuid4()}/check-in", headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    ctx = {"pool": pool, "metrics": Metrics()}
    assert await mark_no_shows(ctx, datetime.now(UTC)) == 0  # not over yet
    assert await mark_no_shows(ctx, datetime.now(UTC) + timedelta(days=3)) == 1
    statuses = await pool.fetch("SELECT appointment_id, status FROM appointments ORDER BY status")
    assert {str(r["appointment_id"]): r["status"] for r in statuses} == {
        came["appointment_id"]: "completed",
        absent["appointment_id"]: "no_show",
    }
    # seats stay taken (the time was used), and neither is active any more
    assert await pool.fetchval("SELECT sum(booked) FROM slots") == 2
