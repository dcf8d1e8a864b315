"""The manage page in real headless Chromium on a phone viewport: open the link from a confirmation,
land on a clean address, reschedule with the keyboard only, then cancel. Fails on any
Content-Security-Policy violation too. The booking API and worker run in-process on a real port;
Chromium is Debian's, driven by Playwright with ``executable_path``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app as create_api
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import free_port
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, csp_refusals, pytestmark  # noqa: F401 (the same markers)
from tests.helpers import admission_token, booking_headers, person, running_worker, seed_typed_slots

if TYPE_CHECKING:
    from playwright.async_api import Page

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture
async def api_url(settings: Settings) -> AsyncIterator[Settings]:
    port = free_port()
    live = replace(settings, api_port=port)
    runner = web.AppRunner(create_api(live), shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with running_worker(live):
            yield live
    finally:
        await runner.cleanup()


async def tab_to(page: Page, selector: str, text: str, *, limit: int = 40) -> None:
    """Press Tab until the focused element matches ``selector`` and says ``text`` (its label's, for an input)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        found = await page.evaluate(
            "([selector, text]) => { const a = document.activeElement;"
            " return a.matches(selector) && (a.closest('label') || a).textContent.includes(text); }",
            [selector, text],
        )
        if found:
            return
    raise AssertionError(f"Tab never reached {selector} {text!r}")


async def test_open_reschedule_by_keyboard_and_cancel_on_a_phone(
    api_url: Settings, pool: asyncpg.Pool, codec: TokenCodec
) -> None:
    import aiohttp
    from playwright.async_api import async_playwright

    live = api_url
    a, b = await seed_typed_slots(pool, count=2, capacity=1, cancel_cutoff_minutes=60)
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{live.api_url}/api/v1/appointments", json={"slot_id": a, "person": person(1)},
                            headers=booking_headers(admission_token(codec)))  # fmt: skip
        confirmation = await resp.json()
    assert resp.status == 201, confirmation
    appointment_id = confirmation["appointment_id"]

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**PHONE, locale="en-GB")
            page = await context.new_page()
            refused = csp_refusals(page)
            await page.goto(confirmation["manage_url"])
            assert page.url == f"{live.api_url}/manage/{appointment_id}"  # the credential is gone from the address
            assert await page.locator("h1").inner_text() == "Your appointment"
            assert "Europe/Berlin" in await page.locator("time").inner_text()
            # phone first: nothing wider than the screen
            assert await page.evaluate("() => document.documentElement.scrollWidth") <= 390

            await tab_to(page, "a", "Choose another time")
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"**/manage/{appointment_id}/reschedule**")
            await tab_to(page, "input[type=radio]", ":")  # the first free time
            await page.keyboard.press("Space")
            await tab_to(page, "button", "Move my appointment to this time")
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"**/manage/{appointment_id}?done=rescheduled**")
            assert "has a new time" in await page.locator("[role=status]").inner_text()
            moved_to = await pool.fetchval("SELECT slot_id FROM appointments WHERE appointment_id = $1",
                                           uuid.UUID(appointment_id))  # fmt: skip
            assert str(moved_to) == b

            await tab_to(page, "button", "Cancel my appointment")
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"**/manage/{appointment_id}?done=cancelled**")
            assert "is cancelled" in await page.locator("body").inner_text()
            status = await pool.fetchval("SELECT status FROM appointments WHERE appointment_id = $1",
                                         uuid.UUID(appointment_id))  # fmt: skip
            assert status == "cancelled"
            assert "c=" not in "".join(await page.evaluate("() => [location.href, document.referrer]"))
            assert refused == []
        finally:
            await browser.close()
