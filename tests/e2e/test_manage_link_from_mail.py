"""A manage link and a claim link clicked where people click them: in a mail reader, another site.

Opening a URL with ``page.goto`` is a navigation the browser starts itself; a click on a link in a
web mail is a cross-site navigation, and its redirect stays cross-site: a ``SameSite=Strict`` cookie
set by the first hop is not sent to the clean address it redirects to. Real Chromium, the booking
API on 127.0.0.1 and the "mail reader" on localhost (another site)."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import free_port
from tests.admission.test_claim_page import offered
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401 (the same markers)
from tests.e2e.test_manage_browser import PHONE, api_url  # noqa: F401 (fixture)
from tests.helpers import admission_token, booking_headers, person, seed_typed_slots

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.fixture
async def mail_reader() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A page on another site (localhost) with the link ``links["href"]`` to click."""
    links: dict[str, str] = {}

    async def inbox(_request: web.Request) -> web.Response:
        return web.Response(text=f'<!doctype html><a id="link" href="{html.escape(links["href"])}">Manage</a>',
                            content_type="text/html")  # fmt: skip

    app = web.Application()
    app.router.add_get("/", inbox)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "localhost", port).start()
    try:
        yield f"http://localhost:{port}/", links
    finally:
        await runner.cleanup()


async def click_from_mail(page: Page, inbox: str) -> None:
    await page.goto(inbox)
    async with page.expect_navigation(url="**/manage/**"):
        await page.click("#link")
    await page.wait_for_load_state()


async def test_a_manage_link_clicked_in_a_mail_reader_opens_the_appointment(
    api_url: Settings,  # noqa: F811
    pool: asyncpg.Pool,
    codec: TokenCodec,
    mail_reader: tuple[str, dict[str, str]],
) -> None:
    from playwright.async_api import async_playwright

    live = api_url
    assert live.api_url.startswith("http://127.0.0.1:")  # and the mail reader on localhost: two sites
    (slot,) = await seed_typed_slots(pool, count=1)
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{live.api_url}/api/v1/appointments", json={"slot_id": slot, "person": person(1)},
                            headers=booking_headers(admission_token(codec)))  # fmt: skip
        confirmation = await resp.json()
    assert resp.status == 201, confirmation
    inbox, links = mail_reader
    links["href"] = confirmation["manage_url"]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**PHONE, locale="en-GB")
            page = await context.new_page()
            await click_from_mail(page, inbox)
            assert page.url == f"{live.api_url}/manage/{confirmation['appointment_id']}"
            # the appointment and its actions, not "open the link from your email again"
            assert await page.locator("button", has_text="Cancel my appointment").count() == 1, await page.content()
        finally:
            await browser.close()


async def test_a_claim_link_clicked_in_a_mail_reader_opens_the_offer(
    api_url: Settings,  # noqa: F811
    api: TestClient,
    settings: Settings,
    pool: asyncpg.Pool,
    codec: TokenCodec,
    mail_reader: tuple[str, dict[str, str]],
) -> None:
    from playwright.async_api import async_playwright

    live = api_url
    _slot, claim_url = await offered(api, settings, codec, pool)  # the live server's worker books
    inbox, links = mail_reader
    links["href"] = f"{live.api_url}/claim?{urlsplit(claim_url).query}"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(**PHONE, locale="en-GB")).new_page()
            await page.goto(inbox)
            async with page.expect_navigation(url=f"{live.api_url}/claim"):
                await page.click("#link")
            assert await page.locator("button", has_text="Claim this place").count() == 1, await page.content()
        finally:
            await browser.close()
