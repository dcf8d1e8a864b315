"""The queue page in real headless Chromium: join -> wait -> admitted -> book -> confirmation; the
same page with JavaScript off (form join, self-refresh); the pre-queue countdown in Spanish. Every
test also fails on a Content-Security-Policy violation (the policy must not break the page), and
the page refuses to be framed.

Edge, API and worker run in-process on real ports (the page calls the API cross-origin, as under
`surgegate up`); Chromium is Debian's, driven by Playwright with ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app as create_api
from shared.settings import Settings
from surgegate.embedded import free_port
from tests.helpers import FakeClock, admin_headers, running_worker, seed_site_and_slot
from waitingroom.app import create_app as create_edge

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("CI") != "true",
        reason="Debian chromium is not installed (.ci/run installs it; in CI its absence fails the test)",
    ),
]


def csp_refusals(page: Page) -> list[str]:
    """What Chromium refuses to load or run on ``page`` under the Content-Security-Policy, as it
    reports it on the console (with or without JavaScript), from now on."""
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Settings]:
    edge_port, api_port = free_port(), free_port()
    live = replace(settings, edge_port=edge_port, api_port=api_port, booking_wait_s=5.0,
                   org_name="Regional Health Service")  # fmt: skip
    runners = []
    for app, port in ((create_edge(live), edge_port), (create_api(live), api_port)):
        # A request the closed browser left open must not hold teardown for aiohttp's default 60 s.
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    try:
        async with running_worker(live):
            yield live
    finally:
        for runner in runners:
            await runner.cleanup()


async def add_site(pool: asyncpg.Pool, site_id: str, name: str, lat: float, lng: float, *, slot: bool) -> None:
    """Another site (and, with ``slot``, one slot tomorrow) beside the one seed_site_and_slot made."""
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, hours=2)
    async with pool.acquire() as con:
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng)"
            " VALUES ($1, $2, 'R', 'Europe/Berlin', $3, $4)",
            site_id, name, lat, lng,
        )  # fmt: skip
        if slot:
            await con.execute(
                "INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity) VALUES ($1, $2, $3, $4, 2)",
                uuid.uuid4(), site_id, starts, starts + timedelta(minutes=15),
            )  # fmt: skip


async def test_queue_page_join_wait_admit_book(stack: Settings, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """On a phone: wait, be admitted, order the sites by distance, see a site with no time left, get
    each bad field marked (the page's own check, then the server's errors[]), book, see the
    confirmation (what, where, when, calendar) with focus on its heading — and a reload still shows it."""
    import aiohttp
    from playwright.async_api import async_playwright

    await seed_site_and_slot(pool, site_id="berlin", capacity=3)
    await add_site(pool, "munich", "Munich Centre", 48.14, 11.58, slot=True)
    await add_site(pool, "zurich", "Zurich Annex", 47.37, 8.54, slot=False)
    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{stack.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                           json={"name": "Cohort 4 opening", "rate_per_s": 0.5})  # fmt: skip
        assert resp.status == 200
    # SURGEGATE_SCREENSHOT_DIR=docs refreshes the committed screenshots; by default they go to tmp.
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 390, "height": 844},  # a phone, in Munich
                                            geolocation={"latitude": 48.13, "longitude": 11.57},
                                            permissions=["geolocation"])  # fmt: skip
        page = await context.new_page()
        refused = csp_refusals(page)
        served = await page.goto(f"{stack.edge_url}/e/ev")
        assert served is not None and "frame-ancestors 'none'" in served.headers["content-security-policy"]
        await page.wait_for_selector("text=You are in the queue.")
        assert await page.text_content("#position") == "1"
        assert await page.text_content("header.org") == "Regional Health Service"
        assert (await page.text_content("#updated") or "").startswith("Last updated")
        assert await page.get_attribute("#queue", "aria-live") is None  # the figures are not read out
        await page.screenshot(path=str(shots / "queue-waiting.png"))
        await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
        await page.wait_for_selector("#book-heading:focus")  # (no wait_for_function: the CSP forbids eval)
        assert await page.text_content("#announce") == "It's your turn! You can book now."
        await page.wait_for_selector("#slot option", state="attached")  # (the CSP forbids wait_for_function)
        assert "Time left to book:" in (await page.text_content("#expires") or "")
        assert "Central European" in (await page.text_content("#zone-note") or "")
        assert await page.locator("#slot optgroup").count() == 1  # one day, labelled with its weekday
        weekday = await page.get_attribute("#slot optgroup", "label") or ""
        assert weekday.split()[0].rstrip(",") in {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                                  "Saturday", "Sunday"}, weekday  # fmt: skip
        assert await page.input_value("#site") == "berlin"  # by name until the browser shares a location
        await page.click("#near-me")
        await page.wait_for_selector("#site option:first-child[value=munich]", state="attached")
        assert await page.input_value("#site") == "munich"
        assert "km" in (await page.text_content("#site option:first-child") or "")
        await page.select_option("#site", "zurich")
        await page.wait_for_selector("#no-slots:not([hidden])")
        assert await page.is_disabled("#book")
        await page.select_option("#site", "berlin")
        await page.wait_for_selector("#no-slots", state="hidden")
        await page.click("#book")  # nothing filled in: each field is marked, focus on the first
        assert await page.get_attribute("#id_number", "aria-invalid") == "true"
        assert await page.text_content("#email-error") == "Email: this is required."
        assert await page.evaluate("document.activeElement.id") == "id_number"
        await page.fill("#id_number", "BR-0001")
        await page.fill("#name", "Browser Person")
        await page.fill("#email", "not-an-email")  # only the server knows: its errors[] marks the field
        await page.fill("#birth_date", "1975-05-05")
        await page.click("#book")
        await page.wait_for_selector("#email-error:not([hidden])")
        assert await page.get_attribute("#email", "aria-invalid") == "true"
        assert await page.get_attribute("#id_number", "aria-invalid") is None
        assert "name@example.org" in (await page.text_content("#email-error") or "")
        assert await page.text_content("#error") == "Some details need fixing: see the marked fields."
        await page.fill("#email", "browser@example.org")
        await page.screenshot(path=str(shots / "queue-admitted-form.png"), full_page=True)
        await page.click("#book")
        await page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        await page.wait_for_selector("#done-heading:focus")
        assert await page.text_content("#announce") == "You're booked."
        shown = {k: await page.text_content(f"#{k}") or "" for k in ("what", "where", "when", "confirmation")}
        assert await page.is_visible("#manage-link")  # the 201's manage_url
        manage = await page.get_attribute("#manage-link", "href") or ""
        calendar = await page.get_attribute("#calendar-link", "href") or ""
        await page.screenshot(path=str(shots / "queue-booked.png"))
        await page.reload()  # the confirmation stays: the edge knows what this admission booked
        await page.wait_for_selector("#done:not([hidden])")
        assert await page.is_hidden("#booking") and await page.is_hidden("#queue")
        assert await page.text_content("#where") == "Site"
        await page.wait_for_selector("#when:has-text('Central European')")
        reloaded = await page.get_attribute("#manage-link", "href") or ""  # signed again by the edge
        await page.screenshot(path=str(shots / "queue-confirmation.png"))
        await browser.close()
    assert refused == []
    row = await pool.fetchrow("SELECT appointment_id, status, slot_id FROM appointments")
    assert row["status"] == "confirmed"
    assert await pool.fetchval("SELECT booked FROM slots WHERE slot_id = $1", row["slot_id"]) == 1
    assert shown["what"] == "Cohort 4 opening" and shown["where"] == "Site"
    assert "Central European" in shown["when"] and "Europe/Berlin" in shown["when"]
    assert shown["confirmation"] == "We've emailed you a confirmation with these details."
    assert calendar == f"{stack.api_url}/api/v1/appointments/{row['appointment_id']}/calendar.ics"
    assert manage.startswith(f"{stack.api_url}/manage?c=") and reloaded.startswith(f"{stack.api_url}/manage?c=")


async def test_the_turn_counts_down_warns_and_offers_to_rejoin(stack: Settings, pool: asyncpg.Pool) -> None:
    """A 10-second admission: the time left shows at once, with the one-minute warning (an alert),
    and when it runs out the page says so in plain words and offers to join again."""
    from playwright.async_api import async_playwright

    await seed_site_and_slot(pool, site_id="berlin", capacity=3)
    await put_event(stack, rate_per_s=5, admission_ttl_s=10)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
        assert "Time left to book: 0:" in (await page.text_content("#expires") or "")
        await page.wait_for_selector("#expiry-warning:not([hidden])")
        assert await page.get_attribute("#expiry-warning", "role") == "alert"
        await page.wait_for_selector("text=Your turn has expired", timeout=20_000)
        assert await page.is_hidden("#booking")
        assert await page.is_visible("#join") and (await page.text_content("#join") or "").strip() == "Join again"
        assert await page.text_content("#announce") == "Your turn has expired."
        assert "token" not in (await page.text_content("main") or "").lower()
        async with page.expect_navigation():
            await page.click("#join")  # a new place at the back, let in again at this rate
        await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
        await browser.close()
    assert refused == []


async def put_event(stack: Settings, **fields: object) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{stack.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                           json={"name": "Cohort 4 opening", **fields})  # fmt: skip
        assert resp.status == 200


async def test_an_event_that_closes_while_waiting_says_so(stack: Settings) -> None:
    """The page polls, the event closes (410 event_closed): it says so and stops, not "Joining…"."""
    from playwright.async_api import async_playwright

    closes = datetime.now(UTC) + timedelta(seconds=4)
    await put_event(stack, rate_per_s=1, paused=True, closes_at=closes.isoformat())  # polled every second
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        await page.wait_for_selector("text=You are in the queue.")
        await page.wait_for_selector("#state:has-text('This event is closed')", timeout=30_000)
        assert await page.text_content("#announce") == "This event is closed."
        assert await page.is_hidden("#join-form")
        await page.reload()  # and a reload says the same, from the server
        assert (await page.text_content("#state") or "").startswith("This event is closed")
        await browser.close()
    assert refused == []


async def test_without_javascript_the_page_still_works(stack: Settings, tmp_path: Path) -> None:
    """No script at all: the visitor joins with the form, the page refreshes itself, and says when
    it is their turn (booking then asks for JavaScript)."""
    from playwright.async_api import async_playwright

    await put_event(stack, rate_per_s=0.4)
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
        page = await context.new_page()
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        # by keyboard alone: Tab to the button, Enter submits the form (a plain post, then 303 back)
        for _ in range(10):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement && document.activeElement.id") == "join":
                break
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        await page.wait_for_selector("text=You are in the queue.")
        assert await page.text_content("#position") == "1"
        # The refresh is the told poll_after_ms but never under 10 s (WCAG 2.2.1: no 1-second reloads);
        # "Check now" is there in between.
        refresh = await page.get_attribute('meta[http-equiv="refresh"]', "content")
        assert refresh is not None and int(refresh) >= 10
        assert await page.is_visible("noscript a") and await page.text_content("noscript a") == "Check now"
        await page.screenshot(path=str(shots / "queue-no-js-waiting.png"))
        # no script runs, yet the page refreshes itself (meta refresh) until it is their turn
        await page.wait_for_selector("text=It's your turn!", timeout=30_000)
        assert "Booking needs JavaScript" in (await page.content())
        await page.screenshot(path=str(shots / "queue-no-js-admitted.png"))
        await browser.close()
    assert refused == []


async def test_pre_queue_countdown_in_spanish(stack: Settings, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from playwright.async_api import async_playwright

    opens = datetime.now(UTC) + timedelta(minutes=20)
    await put_event(stack, rate_per_s=1, opens_at=opens.isoformat())
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(locale="es-ES", viewport={"width": 390, "height": 844})
        page = await context.new_page()
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        await page.wait_for_selector("text=Tiene un lugar en la prefila.")
        eta = await page.text_content("#eta") or ""
        assert eta.startswith("La fila abre en") and "min" in eta
        assert "al azar" in (await page.text_content("#note") or "")
        assert await page.get_attribute("html", "lang") == "es"
        await page.screenshot(path=str(shots / "queue-prequeue-es.png"))
        await browser.close()
    assert refused == []


async def test_proof_of_work_is_solved_in_a_web_worker(stack: Settings, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    await put_event(stack, rate_per_s=0.01, pow_difficulty=12)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        await page.wait_for_selector("text=You are in the queue.", timeout=20_000)  # joined only with a valid proof
        assert await page.text_content("#position") == "1"
        await browser.close()
    assert refused == []  # the Web Worker is allowed


async def test_an_expired_turn_offers_to_join_again(settings: Settings, clock: FakeClock, tmp_path: Path) -> None:
    """Time is the injected clock's: the admission lapses when the test says so, not after a sleep."""
    from playwright.async_api import async_playwright

    port = free_port()
    live = replace(settings, edge_port=port)
    runner = web.AppRunner(create_edge(live, clock=clock))  # its ticker runs, on the injected clock
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    try:
        await put_event(live, rate_per_s=5, admission_ttl_s=10)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
            page = await context.new_page()
            refused = csp_refusals(page)
            await page.goto(f"{live.edge_url}/e/ev")
            async with page.expect_navigation():
                await page.click("#join")
            clock.advance(1)  # the serving position reaches them on the next tick
            await page.wait_for_selector("text=It's your turn!", timeout=30_000)  # via the page's self-refresh
            clock.advance(11)  # the admission lapses unused (ttl 10 s)
            await page.reload()
            await page.wait_for_selector("text=Your turn has expired")
            assert await page.is_visible("#join") and (await page.text_content("#join") or "").strip() == "Join again"
            await page.screenshot(path=str(shots / "queue-expired.png"))
            await browser.close()
        assert refused == []
    finally:
        await runner.cleanup()


async def test_the_page_refuses_to_be_framed(stack: Settings) -> None:
    """frame-ancestors 'none': a page of another origin that frames the queue page gets an empty frame."""
    from playwright.async_api import async_playwright

    await put_event(stack, rate_per_s=1)
    framing = web.Application()

    async def frames_the_queue_page(request: web.Request) -> web.Response:
        body = f'<!doctype html><iframe id="f" src="{stack.edge_url}/e/ev"></iframe>'
        return web.Response(text=body, content_type="text/html")

    framing.router.add_get("/", frames_the_queue_page)
    runner = web.AppRunner(framing)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            refused = csp_refusals(page)
            async with page.expect_response(f"{stack.edge_url}/e/ev") as served:
                await page.goto(f"http://localhost:{port}/")  # another origin than the edge's 127.0.0.1
            assert (await served.value).status == 200  # served, but not shown in the frame
            assert await page.frame_locator("#f").locator("#queue").count() == 0
            await browser.close()
        assert any("frame-ancestors" in text for text in refused), refused
    finally:
        await runner.cleanup()


async def test_an_invite_link_skips_the_queue_to_the_booking_form(
    stack: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """``/e/ev/invite#TOKEN``: the page posts the fragment, drops it from the address bar, shows the
    booking form at once (no queue place taken), and books; the same link a second time is refused."""
    import aiohttp
    from playwright.async_api import async_playwright

    await seed_site_and_slot(pool, site_id="berlin", capacity=3)
    await put_event(stack, rate_per_s=0.001)  # the queue would take hours
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{stack.edge_url}/admin/v1/events/ev/invites", headers=admin_headers(),
                            json={"count": 1, "expires_at": "2100-01-01T00:00:00Z", "label": "staff"})  # fmt: skip
        assert resp.status == 201
        [link] = (await resp.json())["links"]
    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        refused = csp_refusals(page)
        await page.goto(link)
        await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
        assert "#" not in page.url
        await page.wait_for_selector("#slot option", state="attached")  # (the CSP forbids wait_for_function)
        await page.fill("#id_number", "INV-0001")
        await page.fill("#name", "Invited Person")
        await page.fill("#email", "invited@example.org")
        await page.fill("#birth_date", "1980-02-02")
        await page.screenshot(path=str(shots / "invite-admitted-form.png"))
        await page.click("#book")
        await page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        again = await browser.new_page()
        await again.goto(link)
        await again.wait_for_selector("#error:not([hidden])", timeout=15_000)
        assert "already been used" in (await again.text_content("#error") or "")
        await browser.close()
    assert refused == []
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE status = 'confirmed'") == 1
    async with aiohttp.ClientSession() as s:
        resp = await s.get(f"{stack.edge_url}/admin/v1/events/ev", headers=admin_headers())
        assert (await resp.json())["stats"]["joined"] == 0  # nobody took a queue place
