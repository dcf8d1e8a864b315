"""The queue page's eligibility step in real headless Chromium: a visitor answers the published rule
set's questions while waiting, reads why they are not eligible, cannot book until an answer makes them
eligible, then books with that decision; and the same step with JavaScript off (a plain form).

Edge, API and worker run in-process on real ports (as tests/e2e/test_browser.py); every test fails on
a Content-Security-Policy violation.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from admission.app import create_app as create_api
from shared.settings import Settings
from surgegate.embedded import free_port
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, csp_refusals
from tests.helpers import admin_headers, running_worker, seed_site_and_slot
from tests.waitingroom.test_eligibility import RULES
from waitingroom.app import create_app as create_edge

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("CI") != "true",
        reason="Debian chromium is not installed (.ci/run installs it; in CI its absence fails the test)",
    ),
]


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Settings]:
    edge_port, api_port = free_port(), free_port()
    live = replace(settings, edge_port=edge_port, api_port=api_port, booking_wait_s=5.0)
    runners = []
    for app, port in ((create_edge(live), edge_port), (create_api(live), api_port)):
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    try:
        await seed_site_and_slot(pool, site_id="berlin", capacity=3)
        await put_event(live, rate_per_s=0)  # nobody is admitted until the test says so
        async with aiohttp.ClientSession() as s:
            resp = await s.post(f"{live.api_url}/admin/v1/events/ev/rules", json=RULES, headers=admin_headers())
            assert resp.status == 201, await resp.text()
            resp = await s.post(f"{live.api_url}/admin/v1/events/ev/rules/1/publish", headers=admin_headers())
            assert resp.status == 200, await resp.text()
        async with running_worker(live):
            yield live
    finally:
        for runner in runners:
            await runner.cleanup()


async def put_event(stack: Settings, **fields: object) -> None:
    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{stack.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                           json={"name": "Vaccination, cohort 4", **fields})  # fmt: skip
        assert resp.status == 200


async def test_a_waiting_visitor_checks_eligibility_then_books_with_the_decision(
    stack: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    shots = Path(os.environ.get("SURGEGATE_SCREENSHOT_DIR", tmp_path))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        await page.wait_for_selector("text=You are in the queue.")
        await page.wait_for_selector("#eligibility-form")
        # while waiting: answers that do not qualify
        await page.fill("#el_id_number", "BR-0001")
        await page.fill("#el_birth_date", "2001-05-05")
        await page.select_option("#el_region", "south")
        await page.check("input[name=a_health_worker][value=no]")
        await page.click("#eligibility-check")
        await page.wait_for_selector("#eligibility-reasons li")
        assert (await page.text_content("#eligibility-outcome") or "").startswith("You are not eligible")
        reasons = await page.text_content("#eligibility-reasons") or ""
        assert "65 or older" in reasons and "north region" in reasons
        assert "contact support" in (await page.text_content("#eligibility-next") or "")
        assert await page.text_content("#state") == "You are in the queue."  # still waiting, place kept
        await page.screenshot(path=str(shots / "queue-eligibility-refused.png"), full_page=True)

        # admitted: the booking form shows, but booking waits for an eligible answer
        await put_event(stack, rate_per_s=1)
        await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
        await page.wait_for_selector("#slot option", state="attached")  # (the CSP forbids wait_for_function)
        await page.fill("#id_number", "BR-0001")
        await page.fill("#name", "Browser Person")
        await page.fill("#email", "browser@example.org")
        await page.fill("#birth_date", "2001-05-05")
        await page.click("#book")
        await page.wait_for_selector("text=Check your eligibility above before booking.")
        assert await pool.fetchval("SELECT count(*) FROM booking_attempts") == 0  # nothing was sent

        # a corrected answer (checked now with the admission): eligible, and the booking goes through
        await page.check("input[name=a_health_worker][value=yes]")
        await page.select_option("#el_region", "north")
        await page.click("#eligibility-check")
        await page.wait_for_selector("text=You are eligible: you can book an appointment.")
        assert await page.is_hidden("#error")  # "check your eligibility first" is gone
        await page.screenshot(path=str(shots / "queue-eligibility-eligible.png"), full_page=True)
        await page.click("#book")
        await page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        await browser.close()
    assert refused == []
    row = await pool.fetchrow("SELECT status, decision_id, rule_version FROM appointments")
    assert row["status"] == "confirmed" and row["rule_version"] == 1
    decided = await pool.fetch("SELECT decision_id, outcome FROM eligibility_decisions ORDER BY created_at")
    assert [d["outcome"] for d in decided] == ["ineligible", "eligible"]
    assert row["decision_id"] == decided[1]["decision_id"]  # booked with the eligible decision


async def test_without_javascript_the_step_is_a_form(stack: Settings, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(java_script_enabled=False, locale="es-ES")
        page = await context.new_page()
        refused = csp_refusals(page)
        await page.goto(f"{stack.edge_url}/e/ev")
        async with page.expect_navigation():
            await page.click("#join")
        await page.wait_for_selector("text=Región donde vive")
        await page.fill("#el_id_number", "NJ-0001")
        await page.fill("#el_birth_date", "1950-05-05")
        await page.select_option("#el_region", "north")
        await page.check("input[name=a_health_worker][value=no]")
        async with page.expect_navigation():
            await page.click("#eligibility-check")
        await page.wait_for_selector("text=Es elegible: puede reservar una cita.")
        assert await page.text_content("#state") == "Está en la fila."
        await browser.close()
    assert refused == []
