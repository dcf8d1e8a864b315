"""The operator console in real headless Chromium (Debian's, driven by Playwright): sign in with a
staff key, watch an event's figures move after joins, pause it after a confirmation (and not after a
cancel), freeze its bookings by keyboard alone, and see a booking refused 503 bookings_frozen; every
step fails on a Content-Security-Policy violation. SURGEGATE_SCREENSHOT_DIR=docs refreshes the
committed screenshots (docs/console-*.png)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from shared.staff import OWNER, Role, add_staff
from shared.tokens import TokenCodec
from tests.e2e import test_browser
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, csp_refusals
from tests.helpers import admin_headers, admission_token, booking_headers, person, seed_site_and_slot

stack = test_browser.stack  # the same in-process edge, API and worker on real ports

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("CI") != "true",
        reason="Debian chromium is not installed (.ci/run installs it; in CI its absence fails the test)",
    ),
]


async def test_console_sign_in_watch_pause_and_freeze(
    stack: Settings, pool: asyncpg.Pool, codec: TokenCodec, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    slot_id = await seed_site_and_slot(pool, site_id="berlin", capacity=3, event_id="other")
    async with pool.acquire() as con, con.transaction():
        key = await add_staff(con, "olga", [Role.OPERATOR], actor=OWNER)
    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{stack.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                           json={"name": "Cohort 4 opening", "rate_per_s": 0.05})  # fmt: skip
        assert resp.status == 200
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/admin")
        await page.fill("#key", key)
        await page.keyboard.press("Enter")
        card = "#event-ev"
        await page.wait_for_selector(f"{card} .fig-joined")
        assert "sg_" not in page.url  # the key never goes into a URL
        assert await page.evaluate("sessionStorage.length") == 1

        # joins move the figures, live
        for _ in range(3):
            async with aiohttp.ClientSession() as visitor:  # no cookie: each join is a new place
                assert (await visitor.post(f"{stack.edge_url}/api/v1/events/ev/join")).status == 201
        # (selectors, not wait_for_function: the page's policy forbids the eval that it needs)
        await page.wait_for_selector(f"{card} .fig-joined:text-is('3')", timeout=15_000)
        await page.wait_for_selector(f"{card} .spark-joined polyline", state="attached", timeout=15_000)
        # the booking side's figures render too (nothing booked here: zeros, no latency yet)
        await page.wait_for_selector(f"{card} .fig-booked:text-is('0')")
        await page.wait_for_selector(f"{card} .fig-latency:text-is('– / –')")  # noqa: RUF001 (the page shows an en dash)
        await page.wait_for_selector(f"{card} .fig-invites:text-is('0 / 0 / 0')")
        # a booking of the other event; refused tokens at the real API; two notifications waiting
        async with aiohttp.ClientSession() as s:
            resp = await s.post(f"{stack.api_url}/api/v1/appointments", json={"slot_id": slot_id, "person": person(5)},
                                headers=booking_headers(admission_token(codec, event_id="other")))  # fmt: skip
            assert resp.status == 201, await resp.text()
            expired = {"Authorization": "Bearer " + admission_token(codec, event_id="ev", ttl=-60)}
            for headers in (expired, expired, {}):
                assert (await s.get(f"{stack.api_url}/api/v1/sites", headers=headers)).status == 401
        # due 3 minutes ago, each waiting for a retry in an hour (so no dispatcher takes them meanwhile)
        waiting = ("SELECT 'probe', '\\x00'::bytea, now() - interval '3 minutes', now() + interval '1 hour'"
                   " FROM generate_series(1, 2)")  # fmt: skip
        await pool.execute(f"INSERT INTO notifications (kind, sealed, due_at, next_attempt_at) {waiting}")
        await page.wait_for_selector("#event-other .fig-booked:text-is('1')", timeout=15_000)
        await page.wait_for_selector(f"{card} .fig-token_failures:text-is('2: expired 2')", timeout=15_000)
        await page.wait_for_selector(f"{card} .spark-token_failures polyline", state="attached")
        await page.wait_for_selector("#fig-unknown-failures:text-is('1: missing 1')", timeout=15_000)
        await page.wait_for_selector("#fig-notifications-oldest:text-is('3 min')", timeout=15_000)
        assert int(await page.text_content("#fig-notifications-due") or "0") >= 2  # ours (and the booking's, if unsent)
        await page.screenshot(path=str(shots / "console-live.png"), full_page=True)

        # pause: cancelled with Escape changes nothing; confirmed, the event is paused
        await page.click(f"{card} .pause")
        await page.wait_for_selector("#confirm[open]")
        assert "Pause admissions of ev?" in (await page.text_content("#confirm-text") or "")
        await page.keyboard.press("Escape")
        await page.wait_for_selector("text=Cancelled: nothing changed.")
        assert await pool.fetchval("SELECT paused FROM events WHERE event_id = 'ev'") is False
        await page.click(f"{card} .pause")
        await page.wait_for_selector("#confirm[open]")
        await page.screenshot(path=str(shots / "console-confirm.png"))
        await page.click("#confirm-ok")
        await page.wait_for_selector(f"{card} .badge.paused", timeout=15_000)
        assert await pool.fetchval("SELECT paused FROM events WHERE event_id = 'ev'") is True

        # freeze the bookings of the other event, by keyboard alone
        other = "#event-other"
        await page.focus(f"{other} .freeze input")
        await page.keyboard.type("eligibility rules changed")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#confirm[open]")
        await page.keyboard.press("Tab")  # from Cancel (the focused, safe choice) to Confirm
        await page.keyboard.press("Enter")
        await page.wait_for_selector(f"{other} .badge.frozen", timeout=15_000)
        await page.wait_for_selector("#actions li >> text=eligibility rules changed", timeout=15_000)
        await page.screenshot(path=str(shots / "console-frozen.png"), full_page=True)
        await browser.close()
    assert refused == []
    row = await pool.fetchrow("SELECT bookings_frozen, freeze_reason FROM events WHERE event_id = 'other'")
    assert tuple(row) == (True, "eligibility rules changed")
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{stack.api_url}/api/v1/appointments", json={"slot_id": slot_id, "person": person(1)},
                            headers=booking_headers(admission_token(codec, event_id="other")))  # fmt: skip
        body = await resp.json()
    assert (resp.status, body["code"]) == (503, "bookings_frozen") and "Retry-After" in resp.headers
    audited = await pool.fetch("SELECT actor, detail FROM audit_log WHERE action = 'event_updated' ORDER BY audit_id")
    assert [(r["actor"], dict(r["detail"])) for r in audited] == [
        ("staff:olga", {"paused": True}),
        ("staff:olga", {"bookings_frozen": True, "freeze_reason": "eligibility rules changed"}),
    ]
