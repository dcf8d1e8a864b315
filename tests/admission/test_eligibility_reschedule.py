"""A reschedule is an eligibility check like a booking's (shared/appointments.py ``_recheck``): the
decision's stored inputs under the version published at the move's commit, on the new slot's date."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared import locks, rule_versions
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_eligibility import api, book, born, create, evaluate, monotonic, move, seed, stricter, ticket
from tests.admission.test_manage import auth, credential_of, csrf_of, open_page
from tests.booking_worker.test_eligibility_race import until
from tests.helpers import admin_headers, admission_token, assert_problem, person, running_worker, seats_of

__all__ = ["api", "monotonic"]  # fixtures


def madrid_day(starts: datetime) -> date:
    return starts.astimezone(ZoneInfo("Europe/Madrid")).date()


async def booked(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec, birth_date: str, slot_id: str,
    token: str = "",
) -> dict[str, Any]:  # fmt: skip
    decision = await evaluate(api, ticket(codec), 1, birth_date)
    async with running_worker(settings):
        status, body = await book(api, token or admission_token(codec), slot_id, 1, decision["decision_id"])
    assert status == 201, body
    # Long past its validity: a reschedule re-checks the booked decision all the same.
    await pool.execute("UPDATE eligibility_decisions SET valid_until = now() - interval '1 day'")
    return body


async def reschedule(api: TestClient, body: dict[str, Any], slot_id: str, **headers: str) -> tuple[int, Any]:
    resp = await api.post(
        f"/api/v1/appointments/{body['appointment_id']}/reschedule", json={"slot_id": slot_id},
        headers=auth(credential_of(body["manage_url"])) | headers,
    )  # fmt: skip
    return resp.status, await resp.json()


async def test_a_move_to_an_earlier_date_re_evaluates_age_on_it(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    later, earlier, after_birthday = now + timedelta(days=6), now + timedelta(days=1), now + timedelta(days=5)
    a, b, c = [await seed(pool, starts=s) for s in (later, earlier, after_birthday)]
    await create(api)
    await move(api, "1/publish")
    birth = born(madrid_day(later), 65, days=-1)  # 65 from the day before the later slot (4 days on)
    mine = await booked(api, settings, pool, codec, birth, a)

    status, body = await reschedule(api, mine, b, **{"Accept-Language": "es"})
    assert_problem(status, body, 403, "ineligible")
    assert body["reasons"] == [{"code": "too_young", "text": "Solo mayores de 65 o personal sanitario."}]
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((1, 0), (0, 0))  # nothing moved
    assert await pool.fetchval("SELECT slot_id::text FROM appointments") == a

    status, body = await reschedule(api, mine, c)
    assert status == 200, body
    assert await pool.fetchval("SELECT slot_id::text FROM appointments") == c
    row = await pool.fetchrow("SELECT detail FROM audit_log WHERE action = 'rescheduled'")
    assert row["detail"] == {"from_slot_id": a, "via": "manage_link", "rule_version": 1}


async def test_a_move_is_checked_under_the_version_published_at_its_commit(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = [await seed(pool, starts=now + timedelta(days=d)) for d in (2, 3)]
    await create(api)
    await create(api, stricter())
    await move(api, "1/publish")
    token = admission_token(codec)
    mine = await booked(api, settings, pool, codec, born(date.today(), 68), a, token)
    await move(api, "2/publish", reason="70 and over")

    status, body = await reschedule(api, mine, b)  # by the manage link
    assert_problem(status, body, 403, "ineligible")
    assert body["reasons"] == [{"code": "too_young", "text": "Only people 65 or over, or health workers."}]
    resp = await api.post(  # by the admission that booked it, idem
        f"/api/v1/appointments/{mine['appointment_id']}/reschedule", json={"slot_id": b},
        headers=auth(token),
    )  # fmt: skip
    assert_problem(resp.status, await resp.json(), 403, "ineligible")
    location, cookie = await open_page(api, mine["manage_url"])  # by the manage page: the reason in words
    csrf = await csrf_of(await api.get(location, headers={"Cookie": cookie}))
    page = await api.post(
        f"{location}/reschedule", data={"slot_id": b, "csrf": csrf, "lang": "en"}, headers={"Cookie": cookie}
    )
    assert page.status == 403 and "Only people 65 or over, or health workers." in await page.text()
    assert (await seats_of(pool, a), await seats_of(pool, b)) == ((1, 0), (0, 0))
    assert await pool.fetchval("SELECT rule_version FROM appointments") == 1

    # Support moves it all the same: its reason stands as the override, the audit row says what.
    resp = await api.post(
        f"/admin/v1/support/appointments/{mine['appointment_id']}/reschedule",
        json={"slot_id": b, "reason": "the doctor asked"}, headers=admin_headers(),
    )  # fmt: skip
    assert resp.status == 200, await resp.json()
    assert await pool.fetchval("SELECT rule_version FROM appointments") == 2
    row = await pool.fetchrow("SELECT detail FROM audit_log WHERE action = 'rescheduled'")
    assert row["detail"] == {
        "from_slot_id": a, "reason": "the doctor asked", "rule_version": 2, "eligibility_overridden": ["too_young"],
    }  # fmt: skip

    # Rolled back: the person may move again, the version recorded is the one published now.
    await move(api, "rollback", reason="wrong")
    status, body = await reschedule(api, mine, a)
    assert status == 200, body
    assert await pool.fetchval("SELECT rule_version FROM appointments") == 1


async def test_a_replay_flags_what_to_review_once_and_support_clears_it_with_a_reason(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    slot_id = await seed(pool, starts=now + timedelta(days=2))
    await create(api)  # v1: 65+
    await create(api, stricter())  # v2: 70+
    await move(api, "1/publish")
    mine = await booked(api, settings, pool, codec, born(date.today(), 68), slot_id)
    appointment_id = mine["appointment_id"]
    decision_id = str(await pool.fetchval("SELECT decision_id FROM appointments"))
    flagged_url = "/admin/v1/events/ev/eligibility/flagged"
    assert (await (await api.get(flagged_url, headers=admin_headers())).json())["reviews"] == []

    async def replay(a: int, b: int) -> Any:
        resp = await api.post("/admin/v1/events/ev/rules/replay", json={"from_version": a, "to_version": b},
                              headers=admin_headers())  # fmt: skip
        return await resp.json()

    assert (await replay(1, 1))["newly_flagged"] == 0  # the control: a version agrees with itself
    assert await pool.fetchval("SELECT count(*) FROM appointment_reviews") == 0
    report = await replay(1, 2)
    assert report["appointments_to_review"] == [{"appointment_id": appointment_id, "decision_id": decision_id}]
    assert report["newly_flagged"] == 1
    assert (await replay(1, 2))["newly_flagged"] == 0  # idempotent: flagged once
    [flag] = (await (await api.get(flagged_url, headers=admin_headers())).json())["reviews"]
    assert (flag["appointment_id"], flag["from_version"], flag["to_version"], flag["reasons"], flag["open"]) == (
        appointment_id, 1, 2, ["too_young"], True,
    )  # fmt: skip
    assert flag["status"] == "confirmed" and flag["slot_id"] == slot_id  # never cancelled by the replay

    # Visible in the support look-up and the decision view.
    found = await (await api.post("/admin/v1/support/lookup", json={"id_number": person(1)["id_number"]},
                                  headers=admin_headers())).json()  # fmt: skip
    assert [r["to_version"] for r in found["appointments"][0]["reviews"]] == [2]
    view = await (await api.get(f"/admin/v1/eligibility/decisions/{decision_id}", headers=admin_headers())).json()
    assert [(r["appointment_id"], r["open"]) for r in view["reviews"]] == [(appointment_id, True)]

    # Support clears it with a reason (mandatory), audited; cleared once, kept as history.
    clear = f"/admin/v1/support/appointments/{appointment_id}/clear-review"
    resp = await api.post(clear, json={}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 400, "validation_error")
    resp = await api.post(clear, json={"reason": "doctor's note: high risk"}, headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["cleared"] == ["1->2"]
    resp = await api.post(clear, json={"reason": "again"}, headers=admin_headers())
    assert_problem(resp.status, await resp.json(), 404, "not_found")
    assert (await (await api.get(flagged_url, headers=admin_headers())).json())["reviews"] == []
    [kept] = (await (await api.get(flagged_url + "?all=true", headers=admin_headers())).json())["reviews"]
    assert (kept["open"], kept["clear_reason"], kept["cleared_by"]) == (False, "doctor's note: high risk", "owner")
    audit = await pool.fetchrow("SELECT actor, detail FROM audit_log WHERE action = 'review_cleared'")
    assert (audit["actor"], audit["detail"]) == ("owner", {"reason": "doctor's note: high risk", "replays": ["1->2"]})
    assert (await replay(1, 2))["newly_flagged"] == 0  # a reviewed flag is not raised again by the same replay


async def waiting_on_locks(watcher: asyncpg.Connection) -> int:
    """Sessions of this test's database waiting on a lock (the server may host other databases)."""
    return int(
        await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    )


async def publish_during_a_move(api: TestClient, pool: asyncpg.Pool, body: dict[str, Any], slot_id: str) -> int:
    """Publish version 2 in a transaction left open while the move starts; commit once the move
    either waits on a lock or has answered. Returns the move's status."""
    async with pool.acquire() as publisher, pool.acquire() as watcher:
        publishing = publisher.transaction()
        await publishing.start()
        await rule_versions.publish(publisher, "ev", 2, actor="test", reason="during a move")
        moving = asyncio.create_task(reschedule(api, body, slot_id))

        async def waiting_or_done() -> bool:
            return moving.done() or await waiting_on_locks(watcher) > 0

        await until(waiting_or_done)
        answered_before_the_publish = moving.done()
        await publishing.commit()
        status, _ = await moving
    assert answered_before_the_publish == (status == 200)
    return status


async def test_a_move_waits_for_a_publish_in_flight_and_is_checked_under_it(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a, b = [await seed(pool, starts=now + timedelta(days=d)) for d in (2, 3)]
    await create(api)
    await create(api, stricter())
    await move(api, "1/publish")
    mine = await booked(api, settings, pool, codec, born(date.today(), 68), a)
    assert await publish_during_a_move(api, pool, mine, b) == 403  # it waited, then read version 2
    assert await pool.fetchval("SELECT slot_id::text FROM appointments") == a


async def test_negative_control_a_move_without_the_pointer_lock_does_not_wait_for_the_publish(
    api: TestClient, settings: Settings, pool: asyncpg.Pool, codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_lock(con: asyncpg.Connection, namespace: locks.LockNamespace, key: str) -> None:
        return None

    now = datetime.now(UTC).replace(microsecond=0)
    a, b = [await seed(pool, starts=now + timedelta(days=d)) for d in (2, 3)]
    await create(api)
    await create(api, stricter())
    await move(api, "1/publish")
    mine = await booked(api, settings, pool, codec, born(date.today(), 68), a)
    monkeypatch.setattr(locks, "xact_lock_shared", no_lock)
    assert await publish_during_a_move(api, pool, mine, b) == 200  # moved under version 1 mid-publish
