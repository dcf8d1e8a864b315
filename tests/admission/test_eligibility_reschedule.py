"""A reschedule is an eligibility check like a booking's (shared/appointments.py ``_recheck``): the
decision's stored inputs under the version published at the move's commit, on the new slot's date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_eligibility import api, book, born, create, evaluate, monotonic, move, seed, stricter, ticket
from tests.admission.test_manage import auth, credential_of, csrf_of, open_page
from tests.helpers import admin_headers, admission_token, assert_problem, running_worker, seats_of

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
