"""The queue page as served: complete without JavaScript, in the visitor's language, escaped."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from tests.helpers import FakeClock, admin_headers, serve
from waitingroom.app import create_app
from waitingroom.keys import ROOM
from waitingroom.page import MIN_NO_JS_REFRESH_S, no_js_refresh_s


@pytest.fixture
async def edge(settings: Settings, clock: FakeClock) -> AsyncIterator[TestClient]:
    limited = replace(settings, join_limit_per_min=6, join_limit_burst=2)
    async with serve(create_app(limited, clock=clock, run_ticker=False)) as client:
        yield client


async def put(edge: TestClient, event_id: str = "ev", **fields: object) -> None:
    body = {"name": "Cohort <4>", "rate_per_s": 1, **fields}
    assert (await edge.put(f"/admin/v1/events/{event_id}", json=body, headers=admin_headers())).status == 200


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert match, element_id
    return html.unescape(match.group(1))


async def test_without_javascript_join_wait_and_be_admitted(edge: TestClient, clock: FakeClock) -> None:
    await put(edge)
    page = await (await edge.get("/e/ev")).text()
    assert 'action="/e/ev/join"' in page and "Join the queue" in page and "Cohort &lt;4&gt;" in page
    assert "<script>" not in page.split("<main>")[1].split('<script type="application/json"')[0]
    resp = await edge.post("/e/ev/join", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/e/ev" and "sg_ticket_ev" in resp.cookies
    edge.session.cookie_jar.clear()
    await edge.post("/e/ev/join", allow_redirects=False)  # a second visitor
    page = await (await edge.get("/e/ev")).text()
    assert text_of(page, "state") == "You are in the queue."
    assert (text_of(page, "position"), text_of(page, "ahead")) == ("2", "1")
    assert '<noscript><meta http-equiv="refresh" content="' in page  # the refresh fallback
    assert "refreshes itself every" in page
    assert 'id="join-form" method="post" action="/e/ev/join" hidden' in page
    clock.advance(3)
    await edge.app[ROOM].tick()
    page = await (await edge.get("/e/ev")).text()
    assert text_of(page, "state") == "It's your turn!"
    assert "Booking needs JavaScript" in page and 'http-equiv="refresh"' not in page


async def test_spanish_by_accept_language(edge: TestClient) -> None:
    await put(edge)
    resp = await edge.get("/e/ev", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    page = await resp.text()
    assert resp.headers["Content-Language"] == "es" and '<html lang="es">' in page
    assert "Unirse a la fila" in page and "Su lugar en la fila" in page
    assert '"state_waiting": "Est\\u00e1 en la fila."' in page  # the catalog handed to the script


async def test_pre_queue_shows_a_countdown_and_the_lottery(edge: TestClient, clock: FakeClock) -> None:
    opens = datetime.fromtimestamp(clock.now, UTC) + timedelta(minutes=30)
    await put(edge, opens_at=opens.isoformat())
    await edge.post("/e/ev/join", allow_redirects=False)
    page = await (await edge.get("/e/ev")).text()
    assert text_of(page, "state") == "You have a place in the pre-queue."
    assert text_of(page, "eta") == "The queue opens in 30 min."
    assert "random place" in text_of(page, "note")
    assert text_of(page, "position") == "\u2013"  # an en dash: no position before the draw


async def test_refused_and_expired(edge: TestClient, clock: FakeClock) -> None:
    await put(edge, admission_ttl_s=10)
    for _ in range(2):
        edge.session.cookie_jar.clear()
        assert (await edge.post("/e/ev/join", allow_redirects=False)).status == 303
    edge.session.cookie_jar.clear()
    refused = await edge.post("/e/ev/join", allow_redirects=False)
    assert refused.status == 429 and "Retry-After" in refused.headers
    page = await refused.text()
    assert text_of(page, "error") == "Too many tries from your network. Wait a moment and try again."
    assert "Join the queue" in page
    # the last visitor admitted, lets the admission lapse, and is offered to join again
    edge.session.cookie_jar.clear()
    clock.advance(30)
    assert (await edge.post("/e/ev/join", allow_redirects=False)).status == 303
    clock.advance(2)
    await edge.app[ROOM].tick()
    assert text_of(await (await edge.get("/e/ev")).text(), "state") == "It's your turn!"
    clock.advance(11)
    page = await (await edge.get("/e/ev")).text()
    assert text_of(page, "state").startswith("Your turn has expired")
    assert 'id="join-form" method="post" action="/e/ev/join" >' in page and "Join again" in page


async def test_a_malformed_form_is_a_400_page_not_a_500(edge: TestClient) -> None:
    """Found by fuzzing the OpenAPI document: multipart without a boundary used to raise."""
    await put(edge)
    resp = await edge.post("/e/ev/join", data=b"person_id=", headers={"Content-Type": "multipart/form-data"},
                           allow_redirects=False)  # fmt: skip
    assert resp.status == 400
    assert "the form could not be read" in text_of(await resp.text(), "error")


async def test_an_unknown_event_is_an_html_page_saying_so(edge: TestClient) -> None:
    resp = await edge.get("/e/nope")
    assert resp.status == 404 and resp.content_type == "text/html"
    page = await resp.text()
    assert "<h1>No such event</h1>" in page and 'href="/"' in page and '"code"' not in page
    spanish = await (await edge.get("/e/nope", headers={"Accept-Language": "es"})).text()
    assert "No existe este evento" in spanish and '<html lang="es">' in spanish


async def test_a_closed_event_says_so_and_offers_no_join(edge: TestClient, clock: FakeClock) -> None:
    closes = datetime.fromtimestamp(clock.now, UTC) + timedelta(minutes=1)
    await put(edge, closes_at=closes.isoformat())
    clock.advance(120)
    page = await (await edge.get("/e/ev")).text()  # a first visit: no ticket
    assert text_of(page, "state").startswith("This event is closed")
    assert 'data-state="closed"' in page and 'id="join-form" method="post" action="/e/ev/join" hidden' in page


async def test_the_organisation_the_update_time_and_the_privacy_notice(settings: Settings, clock: FakeClock) -> None:
    named = replace(settings, org_name="Ministry of Health <North>", retention_days=30)
    async with serve(create_app(named, clock=clock, run_ticker=False)) as edge:
        await put(edge)
        page = await (await edge.get("/e/ev")).text()
    assert page.count("Ministry of Health &lt;North&gt;") == 2  # header and footer, escaped
    assert text_of(page, "updated") == f"Last updated {datetime.fromtimestamp(clock.now, UTC):%H:%M:%S} UTC"
    privacy = text_of(page, "privacy")
    assert "erased 30 days after your appointment" in privacy and "ID number" in privacy
    assert 'aria-describedby="privacy birth_date-error"' in page  # read out with the fields it explains


async def test_without_an_organisation_name_none_is_shown(edge: TestClient) -> None:
    await put(edge)
    page = await (await edge.get("/e/ev")).text()
    assert '<header class="org" hidden>' in page


async def test_the_no_js_page_refreshes_as_told_but_never_faster_than_every_10_s(
    edge: TestClient, clock: FakeClock
) -> None:
    """WCAG 2.2.1: no reload every second; the told poll_after_ms when it is longer."""
    await put(edge, rate_per_s=0)
    await edge.post("/e/ev/join", allow_redirects=False)
    status = await (await edge.get("/api/v1/events/ev/status")).json()
    page = await (await edge.get("/e/ev")).text()
    refresh = int(re.search(r'<meta http-equiv="refresh" content="(\d+)">', page).group(1))  # type: ignore[union-attr]
    assert refresh == max(MIN_NO_JS_REFRESH_S, round(status["poll_after_ms"] / 1000)) and refresh >= 10
    assert f"every {refresh} s" in page and ">Check now</a>" in page
    assert no_js_refresh_s(1000) == 10 and no_js_refresh_s(25_000) == 25


async def test_a_refusal_on_the_form_is_in_the_page_language(edge: TestClient, clock: FakeClock) -> None:
    closes = datetime.fromtimestamp(clock.now, UTC) + timedelta(minutes=1)
    await put(edge, closes_at=closes.isoformat())
    clock.advance(120)
    resp = await edge.post("/e/ev/join", headers={"Accept-Language": "es"}, allow_redirects=False)
    assert resp.status == 410
    assert text_of(await resp.text(), "error") == "Este evento está cerrado: ya no admite a nadie en su fila."
