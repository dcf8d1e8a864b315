"""After "Book", end to end, with real parts only (issue 9's browser test): on a phone, join the queue,
be admitted, book, see the confirmation (and again after a reload); the worker's dispatcher delivers
the confirmation email to a real SMTP server (aiosmtpd) with its calendar file; the manage link taken
from that email opens in Chromium on a clean address; rescheduling there brings a new email whose
calendar file updates the same event (same UID, SEQUENCE 1, the new time), and the old time's
reminders are withdrawn.

Edge, booking API and a supervised worker (with its dispatcher, as ``surgegate worker`` runs it) run
in-process on real ports; Chromium is Debian's, driven by Playwright with ``executable_path``. Every
wait is on an event (a selector, a URL, a message arriving), polled against a deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from icalendar import Calendar

from booking_worker.dispatcher import message_id
from shared.settings import Settings
from surgegate.embedded import free_port
from surgegate.mailsink import MailSink
from tests.booking_worker.test_dispatcher import Sink
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, csp_refusals, pytestmark  # noqa: F401 (the same markers)
from tests.e2e.test_manage_browser import PHONE
from tests.helpers import Processes, admin_headers, seed_typed_slots, serving_processes

MAIL_WAIT_S = 30.0
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[Sink]:
    """A real SMTP server (aiosmtpd) keeping what it receives."""
    sink = Sink(MailSink(tmp_path / "mail"), free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
async def processes(settings: Settings, mail: Sink) -> AsyncIterator[Processes]:
    """Edge, booking API and a supervised worker whose dispatcher sends to ``mail``."""
    live = replace(settings, smtp_url=f"smtp://127.0.0.1:{mail.port}", org_name="Regional Health Service")
    async with serving_processes(live) as running:
        yield running


async def delivered(pool: asyncpg.Pool, mail: Sink, settings: Settings, kind: str) -> EmailMessage:
    """The email of the appointment's one ``kind`` notification, once the SMTP server has received it
    (by its Message-ID, derived from the notification id); polled until a deadline."""
    notification_id = await pool.fetchval(
        "SELECT notification_id FROM notifications WHERE kind = $1 AND channel = 'email'", kind
    )
    assert notification_id is not None, f"no {kind} notification queued"
    wanted = message_id(notification_id, settings.secret_keys[-1][1], "localhost")
    deadline = time.monotonic() + MAIL_WAIT_S
    while True:
        found = [m for m in list(mail.messages) if m["Message-ID"] == wanted]
        if found:
            assert len(found) == 1, f"{kind} delivered {len(found)} times"
            return found[0]
        assert time.monotonic() < deadline, f"no {kind} email within {MAIL_WAIT_S} s: {mail.subjects()}"
        await asyncio.sleep(0.05)


def calendar_event(message: EmailMessage) -> Any:
    (ics,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics.get_filename() == "appointment.ics"
    calendar = Calendar.from_ical(ics.get_content())
    assert str(calendar["method"]) == ics.get_param("method") == "PUBLISH"  # RFC 6047: the two agree
    (event,) = calendar.walk("VEVENT")
    return event


def manage_link(message: EmailMessage, api_url: str) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    (url,) = re.findall(r"https?://\S+/manage\?c=\S+", text.get_content())
    assert url.startswith(f"{api_url}/manage?c=")
    return url


async def starts_of(pool: asyncpg.Pool, slot: str) -> datetime:
    starts: datetime = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    return starts


async def test_book_on_a_phone_then_reschedule_from_the_emailed_link(
    processes: Processes, pool: asyncpg.Pool, mail: Sink
) -> None:
    from playwright.async_api import async_playwright

    live = processes.settings
    first, second = await seed_typed_slots(pool, count=2, capacity=2)
    await pool.execute("UPDATE sites SET name = 'Impfzentrum Mitte', address = 'Karl-Marx-Allee 1, Berlin'")
    async with aiohttp.ClientSession() as s:
        resp = await s.put(f"{processes.edge}/admin/v1/events/ev", headers=admin_headers(),
                           json={"name": "Cohort 4 opening", "rate_per_s": 5})  # fmt: skip
        assert resp.status == 200

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**PHONE, locale="en-GB")
            page = await context.new_page()
            refused = csp_refusals(page)
            # --- the queue page: join, be admitted, book ---------------------------------------------
            await page.goto(f"{processes.edge}/e/ev")
            await page.wait_for_selector("#booking:not([hidden])", timeout=15_000)
            await page.wait_for_selector(f"#slot option[value='{first}']", state="attached")
            await page.select_option("#slot", first)
            await page.fill("#id_number", "PH-0001")
            await page.fill("#name", "Phone Person")
            await page.fill("#email", "phone@example.org")
            await page.fill("#birth_date", "1980-02-03")
            await page.click("#book")
            await page.wait_for_selector("#done:not([hidden])", timeout=15_000)
            shown = {k: await page.text_content(f"#{k}") or "" for k in ("what", "where", "when")}
            assert shown["what"] == "Cohort 4 opening — Group"  # the event and the appointment type
            assert "Impfzentrum Mitte" in shown["where"]
            booked_at = (await starts_of(pool, first)).astimezone(BERLIN)
            assert "Europe/Berlin" in shown["when"] and f"{booked_at:%A}" in shown["when"]
            assert f"{booked_at:%I:%M}" in shown["when"], shown["when"]  # (the page says 06:00 AM)
            assert (await page.get_attribute("#manage-link", "href") or "").startswith(f"{live.api_url}/manage?c=")
            # --- a reload still shows it -------------------------------------------------------------
            await page.reload()
            await page.wait_for_selector("#done:not([hidden])")
            assert await page.is_hidden("#booking")
            assert await page.text_content("#what") == shown["what"]
            assert await page.text_content("#where") == shown["where"]
            await page.wait_for_selector("#when:has-text('Europe/Berlin')")
            assert await page.is_visible("#manage-link")

            appointment = await pool.fetchrow("SELECT appointment_id, slot_id, status FROM appointments")
            assert appointment["status"] == "confirmed" and str(appointment["slot_id"]) == first
            appointment_id = str(appointment["appointment_id"])

            # --- the confirmation email, delivered by the worker's dispatcher ------------------------
            confirmation = await delivered(pool, mail, live, "confirmation")
            assert confirmation["To"] == "phone@example.org"
            booked = calendar_event(confirmation)
            assert str(booked["uid"]) == f"{appointment_id}@surgegate"
            assert booked["sequence"] == 0
            assert booked["dtstart"].params["TZID"] == "Europe/Berlin"
            assert booked.decoded("dtstart") == await starts_of(pool, first)
            link = manage_link(confirmation, live.api_url)

            # --- the emailed manage link, opened in Chromium -----------------------------------------
            opened = await page.goto(link)
            assert opened is not None and opened.request.redirected_from is not None  # traded for the cookie
            assert opened.request.redirected_from.url == link
            assert page.url == f"{live.api_url}/manage/{appointment_id}"  # the credential is gone
            assert "c=" not in page.url
            assert await page.locator("h1").inner_text() == "Your appointment"
            await page.click("a:has-text('Choose another time')")
            await page.wait_for_url(f"**/manage/{appointment_id}/reschedule**")
            await page.check(f"input[type=radio][value='{second}']")
            await page.click("button:has-text('Move my appointment to this time')")
            await page.wait_for_url(f"**/manage/{appointment_id}?done=rescheduled**")
            assert "has a new time" in await page.locator("[role=status]").inner_text()
            moved_to = (await starts_of(pool, second)).astimezone(BERLIN)
            now_shown = await page.locator("time").inner_text()  # the manage page: the new time
            assert f"{moved_to:%A}" in now_shown and f"{moved_to:%H:%M}" in now_shown, now_shown
            assert refused == []
        finally:
            await browser.close()

    # --- the reschedule email: the same calendar event, updated ----------------------------------------
    moved = await pool.fetchrow("SELECT slot_id, sequence, status FROM appointments")
    assert (str(moved["slot_id"]), moved["sequence"], moved["status"]) == (second, 1, "confirmed")
    rescheduled = await delivered(pool, mail, live, "reschedule")
    assert rescheduled["To"] == "phone@example.org"
    assert rescheduled["Message-ID"] != confirmation["Message-ID"]
    updated = calendar_event(rescheduled)
    assert str(updated["uid"]) == str(booked["uid"])
    assert updated["sequence"] == 1
    assert updated["dtstart"].params["TZID"] == "Europe/Berlin"
    new_starts = await starts_of(pool, second)
    assert updated.decoded("dtstart") == new_starts != booked.decoded("dtstart")
    assert manage_link(rescheduled, live.api_url)
    # The old time's reminders are withdrawn; the new time's are queued, due before the new time.
    reminders = await pool.fetch(
        "SELECT kind, appointment_sequence, status, due_at FROM notifications"
        " WHERE kind IN ('reminder_24h', 'reminder_1h') ORDER BY appointment_sequence, kind"
    )
    old = {(r["kind"], r["status"]) for r in reminders if r["appointment_sequence"] == 0}
    assert old == {("reminder_24h", "cancelled"), ("reminder_1h", "cancelled")}
    new = {(r["kind"], r["status"], r["due_at"]) for r in reminders if r["appointment_sequence"] == 1}
    assert {(k, s) for k, s, _ in new} == {("reminder_24h", "queued"), ("reminder_1h", "queued")}
    assert {k: d for k, _, d in new} == {
        "reminder_24h": new_starts - timedelta(hours=24),
        "reminder_1h": new_starts - timedelta(hours=1),
    }
