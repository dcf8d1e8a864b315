"""The reminder opt-out link (admission/reminders.py) through the booking API: a GET shows a page
and changes nothing (mail scanners prefetch links); the page's button, or a mail client's one-click
POST, opts out; a browser gets pages, the one-click client its JSON."""

from __future__ import annotations

import re

import asyncpg
from aiohttp.test_utils import TestClient

from admission.pages import PAGE_HEADERS
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.helpers import admission_token, booking_headers, person, running_worker, seed_typed_slots

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def booked(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> str:
    (slot,) = await seed_typed_slots(pool, count=1)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot, "person": person(1)},
                              headers=booking_headers(admission_token(codec)))  # fmt: skip
        body = await resp.json()
    assert resp.status == 201, body
    return str(body["appointment_id"])


async def reminders_queued(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM notifications WHERE kind LIKE 'reminder%' AND status = 'queued'")
    return n


async def opted_out(pool: asyncpg.Pool) -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM reminder_opt_outs")
    return n


async def test_the_page_asks_and_only_its_button_opts_out(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    link = f"/api/v1/reminders/unsubscribe/{codec.sign_unsubscribe(await booked(api, settings, codec, pool))}"
    assert await reminders_queued(pool) == 2

    # A scanner, a preview, a person: GET after GET, HEAD too — nothing changes.
    for headers in ({}, HTML, {"Accept": "*/*"}):
        page = await api.get(link, headers=headers)
        assert page.status == 200 and page.content_type == "text/html"
    assert (await api.head(link)).status == 200
    assert await opted_out(pool) == 0 and await reminders_queued(pool) == 2

    text = await page.text()
    for name, value in PAGE_HEADERS.items():
        assert page.headers[name] == value
    assert '<html lang="en">' in text and "Stop reminders for your appointment?" in text
    assert "<script" not in text
    (form,) = re.findall(r'<form method="post" action="([^"]+)">', text)
    assert form == link
    assert 'name="List-Unsubscribe" value="One-Click"' in text

    # The button: the form's fields, as a browser posts them.
    done = await api.post(link, data={"List-Unsubscribe": "One-Click", "lang": "en"}, headers=HTML)
    assert done.status == 200 and done.content_type == "text/html"
    assert "you will get no more reminders" in await done.text()
    assert done.headers["Cache-Control"] == "no-store"
    assert await opted_out(pool) == 1 and await reminders_queued(pool) == 0
    again = await api.post(link, data={"List-Unsubscribe": "One-Click", "lang": "en"}, headers=HTML)
    assert again.status == 200 and await opted_out(pool) == 1  # safe to repeat


async def test_spanish_from_accept_language_or_the_form(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    link = f"/api/v1/reminders/unsubscribe/{codec.sign_unsubscribe(await booked(api, settings, codec, pool))}"
    page = await api.get(link, headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    text = await page.text()
    assert '<html lang="es">' in text and "¿Dejar de recibir recordatorios de su cita?" in text
    assert 'name="lang" value="es"' in text
    chosen = await api.get(link, params={"lang": "en"}, headers={"Accept-Language": "es"})
    assert "Stop reminders" in await chosen.text()
    done = await api.post(link, data={"List-Unsubscribe": "One-Click", "lang": "es"}, headers=HTML)
    assert done.status == 200 and "no recibirá más recordatorios" in await done.text()


async def test_the_one_click_client_keeps_its_json(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    link = f"/api/v1/reminders/unsubscribe/{codec.sign_unsubscribe(await booked(api, settings, codec, pool))}"
    resp = await api.post(
        link, data="List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )  # RFC 8058, no Accept
    assert resp.status == 200 and await resp.json() == {"reminders": "off"}
    assert await opted_out(pool) == 1 and await reminders_queued(pool) == 0


async def test_a_link_that_is_not_ours(api: TestClient, codec: TokenCodec, settings: Settings) -> None:
    forged = "/api/v1/reminders/unsubscribe/k1.forged"
    page = await api.get(forged)
    assert page.status == 401 and page.content_type == "text/html"
    assert "This link is not valid." in await page.text() and "<form" not in await page.text()
    browser = await api.post(forged, data={"lang": "es"}, headers=HTML)
    assert browser.status == 401 and "Este enlace no es válido." in await browser.text()
    client = await api.post(forged, data="List-Unsubscribe=One-Click")
    assert client.status == 401 and client.content_type == "application/problem+json"
    # Signed, but for no appointment we hold.
    gone = f"/api/v1/reminders/unsubscribe/{codec.sign_unsubscribe('00000000-0000-4000-8000-000000000000')}"
    assert (await api.get(gone)).status == 200  # the page itself reveals nothing about the appointment
    assert (await api.post(gone, headers=HTML)).status == 404
    assert (await api.post(gone)).status == 404
