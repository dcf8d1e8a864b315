"""The queue page's eligibility step (waitingroom/eligibility.py), over real HTTP: the edge renders the
published rule set's questions for a visitor holding a place, in their language, and forwards their
answers to the booking API with the ticket from the cookie, as JSON (the page script) or as a plain
form (no JavaScript), then shows the decision and its reasons.

Edge and booking API run on real ports with real PostgreSQL and Redis; the browser run is in
tests/e2e/test_eligibility_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from html import unescape
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from admission.app import create_app as create_api
from shared.settings import Settings
from surgegate.embedded import free_port
from tests.helpers import admin_headers
from waitingroom.app import create_app as create_edge
from waitingroom.eligibility import Step, render_step
from waitingroom.events import Event

RULES: dict[str, Any] = {
    "attributes": {
        "region": {
            "type": "enum",
            "values": ["north", "south"],
            "label": {"en": "Region where you live", "es": "Región donde vive"},
            "help": {"en": "As written on your health card.", "es": "Como figura en su tarjeta sanitaria."},
        },
        "health_worker": {
            "type": "bool",
            "label": {"en": "Do you work in health care?", "es": "¿Trabaja en el sector sanitario?"},
        },
    },
    "rules": [
        {
            "id": "age_or_health",
            "expr": "age >= 65 || health_worker",
            "reason": "too_young",
            "text": {
                "en": "You must be 65 or older, or work in health care.",
                "es": "Debe tener 65 años o más, o trabajar en el sector sanitario.",
            },
        },
        {
            "id": "north_only",
            "expr": "region == 'north'",
            "reason": "wrong_region",
            "text": {
                "en": "This program is for people who live in the north region.",
                "es": "Este programa es para personas que viven en la región norte.",
            },
        },
    ],
    "examples": [
        {"birth_date": "1950-01-01", "attributes": {"region": "north", "health_worker": False}, "eligible": True},
        {
            "birth_date": "2000-01-01",
            "attributes": {"region": "south", "health_worker": False},
            "eligible": False,
            "reasons": ["too_young", "wrong_region"],
        },
    ],
}


@dataclass
class Stack:
    settings: Settings
    edge: str
    api: str


@pytest.fixture
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    live = replace(settings, edge_port=free_port(), api_port=free_port())
    runners = []
    for app, port in ((create_edge(live, run_ticker=False), live.edge_port), (create_api(live), live.api_port)):
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    try:
        async with aiohttp.ClientSession() as s:
            resp = await s.put(f"{live.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                               json={"name": "Vaccination", "rate_per_s": 0})  # fmt: skip
            assert resp.status == 200, await resp.text()
        yield Stack(live, live.edge_url, live.api_url)
    finally:
        for runner in runners:
            await runner.cleanup()


async def publish(stack: Stack, rules: dict[str, Any] = RULES) -> int:
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{stack.api}/admin/v1/events/ev/rules", json=rules, headers=admin_headers())
        assert resp.status == 201, await resp.text()
        version = int((await resp.json())["rule_version"])
        resp = await s.post(f"{stack.api}/admin/v1/events/ev/rules/{version}/publish", headers=admin_headers())
        assert resp.status == 200, await resp.text()
    return version


def visitor(language: str = "en") -> aiohttp.ClientSession:
    # unsafe: the cookie jar keeps cookies of an IP address (the edge listens on 127.0.0.1)
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept-Language": language})


async def join(stack: Stack, browser: aiohttp.ClientSession) -> None:
    resp = await browser.post(f"{stack.edge}/api/v1/events/ev/join", json={})
    assert resp.status == 201, await resp.text()


async def page(stack: Stack, browser: aiohttp.ClientSession) -> str:
    resp = await browser.get(f"{stack.edge}/e/ev")
    assert resp.status == 200
    return await resp.text()


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|ul)>', html, re.S)
    return "" if match is None else unescape(re.sub(r"<[^>]+>", " ", match.group(1))).strip()


ANSWERS = {"id_number": "AB-1", "birth_date": "1950-03-01", "a_region": "north", "a_health_worker": "no"}


async def test_the_step_is_asked_only_with_a_published_rule_set_and_a_place(stack: Stack) -> None:
    async with visitor() as browser:
        await join(stack, browser)
        assert 'id="eligibility"' not in await page(stack, browser)  # no rule set published: no step
        await publish(stack)
        html = await page(stack, browser)
        assert 'id="eligibility-form"' in html and 'action="/e/ev/eligibility"' in html
        assert "Region where you live" in html and "As written on your health card." in html
        assert '<option value="north">' in html and 'type="radio" name="a_health_worker"' in html
        assert 'aria-describedby="el_region_help"' in html and 'id="el_id_token"' not in html
    async with visitor() as stranger:  # no place in the queue: hidden (the page script joins, then shows it)
        assert re.search(r'<section id="eligibility"[^>]* hidden>', await page(stack, stranger))
    async with visitor("es") as spanish:
        await join(stack, spanish)
        html = await page(stack, spanish)
        assert "Región donde vive" in html and "Compruebe si puede reservar" in html and "Fecha de nacimiento" in html
        # the event names an identity provider: the form asks for the ID token too
        provider = {"issuer": "https://id.example.test", "audience": "sg", "jwks_url": "https://id.example.test/k"}
        async with aiohttp.ClientSession() as s:
            resp = await s.put(f"{stack.api}/admin/v1/events/ev/identity", json=provider, headers=admin_headers())
            assert resp.status == 200
        assert 'name="id_token"' in await page(stack, spanish)


async def test_without_javascript_the_form_shows_the_decision_and_its_reasons(stack: Stack) -> None:
    await publish(stack)
    async with visitor() as browser:
        await join(stack, browser)
        resp = await browser.post(f"{stack.edge}/e/ev/eligibility", data=ANSWERS, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/e/ev"
        html = await page(stack, browser)
        assert text_of(html, "eligibility-outcome") == "You are eligible: you can book an appointment."
        assert 'data-eligible="true"' in html and "valid until" in text_of(html, "eligibility-next")
        # a second check, with answers that do not qualify: each reason in plain words, and what to do
        wrong = {**ANSWERS, "birth_date": "2001-01-01", "a_region": "south"}
        resp = await browser.post(f"{stack.edge}/e/ev/eligibility", data=wrong, allow_redirects=False)
        assert resp.status == 303
        html = await page(stack, browser)
        assert text_of(html, "eligibility-outcome").startswith("You are not eligible")
        reasons = text_of(html, "eligibility-reasons")
        assert "65 or older" in reasons and "north region" in reasons
        assert "contact support with this reference" in text_of(html, "eligibility-next")
        assert "AB-1" not in html  # the id number is never echoed into the page
    async with visitor("es") as spanish:
        await join(stack, spanish)
        wrong = {**ANSWERS, "birth_date": "2001-01-01"}
        await spanish.post(f"{stack.edge}/e/ev/eligibility", data=wrong, allow_redirects=False)
        html = await page(stack, spanish)
        assert text_of(html, "eligibility-outcome").startswith("No es elegible")
        assert "Debe tener 65 años" in text_of(html, "eligibility-reasons")


async def test_a_refused_form_renders_the_page_again_saying_what_to_do(stack: Stack) -> None:
    await publish(stack)
    async with visitor() as browser:
        await join(stack, browser)
        missing = {k: v for k, v in ANSWERS.items() if k != "a_region"}  # not answered: the API refuses it
        resp = await browser.post(f"{stack.edge}/e/ev/eligibility", data=missing, allow_redirects=False)
        assert resp.status == 400
        html = await resp.text()
        assert "Some answers are missing or not valid" in text_of(html, "eligibility-error")
        assert 'value="1950-03-01"' in html and "AB-1" not in html  # answers kept, the id number not echoed
        assert 'id="position"' in html  # the whole queue page, not a bare error


async def test_the_page_script_evaluates_through_the_edge_with_the_ticket_cookie(stack: Stack) -> None:
    version = await publish(stack)
    body = {"person": {"id_number": "AB-1", "birth_date": "1950-03-01"},
            "attributes": {"region": "north", "health_worker": False}}  # fmt: skip
    async with visitor() as browser:
        resp = await browser.post(f"{stack.edge}/api/v1/events/ev/eligibility:evaluate", json=body)
        assert resp.status == 401 and (await resp.json())["code"] == "ticket_invalid"  # no place, no check
        await join(stack, browser)
        resp = await browser.post(f"{stack.edge}/api/v1/events/ev/eligibility:evaluate", json=body)
        assert resp.status == 200, await resp.text()
        decision = await resp.json()
        assert decision["eligible"] is True and decision["rule_version"] == version
        assert resp.headers["Cache-Control"] == "no-store"
        # the decision is kept for the page: rendered again without JavaScript
        assert f'data-decision-id="{decision["decision_id"]}"' in await page(stack, browser)
        resp = await browser.post(f"{stack.edge}/api/v1/events/ev/eligibility:evaluate", json={"person": {}})
        assert resp.status == 400 and (await resp.json())["code"] == "validation_error"  # the API's answer


async def test_an_unreachable_booking_api_is_a_503(settings: Settings) -> None:
    live = replace(settings, edge_port=free_port(), api_port=free_port())  # nothing listens on api_port
    runner = web.AppRunner(create_edge(live, run_ticker=False), shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", live.edge_port).start()
    try:
        async with aiohttp.ClientSession() as s:
            await s.put(f"{live.edge_url}/admin/v1/events/ev", headers=admin_headers(),
                        json={"name": "Vaccination", "rate_per_s": 0})  # fmt: skip
        async with visitor() as browser:
            await browser.post(f"{live.edge_url}/api/v1/events/ev/join", json={})
            resp = await browser.post(f"{live.edge_url}/api/v1/events/ev/eligibility:evaluate", json={})
            assert resp.status == 503 and (await resp.json())["code"] == "overloaded"
    finally:
        await runner.cleanup()


def test_inputs_follow_the_attribute_types_and_verified_ones_are_not_asked() -> None:
    attributes = {
        "visits": {"type": "int", "label": {"en": "Visits", "es": "Visitas"}},
        "since": {"type": "date", "label": {"en": "Since", "es": "Desde"}},
        "jobs": {"type": "list", "label": {"en": "Jobs", "es": "Trabajos"}},
        "name": {"type": "string", "label": {"en": "Name <b>", "es": "Nombre"}},
        "resident": {"type": "bool", "source": "verified", "label": {"en": "Resident", "es": "Residente"}},
    }
    event = Event("ev", "E", 1, None, None, None, False, 900, None)
    html = render_step(event, Step(3, attributes, identity=True), "en")
    assert 'name="a_visits" data-type="int"' in html and 'type="number"' in html
    assert 'name="a_since" data-type="date"' in html and 'type="date"' in html
    assert 'name="a_jobs" data-type="list"' in html and "Separate several with commas." in html
    assert "Name &lt;b&gt;" in html  # labels are text, never markup
    assert 'name="a_resident"' not in html and "from your verified identity" in html and "Resident" in html
    assert 'name="id_token"' in html  # the event needs an ID token
    assert 'id="el_id_token"' not in render_step(event, Step(3, {"visits": attributes["visits"]}, False), "en")


def test_a_form_stands_for_the_json_the_api_takes() -> None:
    from multidict import MultiDict

    from waitingroom.eligibility import evaluate_body

    attributes = {
        "visits": {"type": "int"}, "worker": {"type": "bool"}, "jobs": {"type": "list"}, "region": {"type": "enum"},
        "resident": {"type": "bool", "source": "verified"},
    }  # fmt: skip
    answers = {"a_visits": "3", "a_worker": "no", "a_jobs": "nurse, , porter", "a_region": "north", "a_resident": "yes"}
    form = MultiDict({"id_number": " AB-1 ", "birth_date": "1950-03-01", **answers, "id_token": "a.b.c"})
    assert evaluate_body(form, Step(1, attributes, identity=True)) == {
        "person": {"id_number": "AB-1", "birth_date": "1950-03-01"},
        "attributes": {"visits": 3, "worker": False, "jobs": ["nurse", "porter"], "region": "north"},
        "id_token": "a.b.c",
    }  # a verified attribute typed into the form is not sent: only the token proves it
    odd = evaluate_body(MultiDict({"a_visits": "three"}), Step(1, {"visits": {"type": "int"}}, identity=False))
    assert odd["attributes"] == {"visits": "three"} and "id_token" not in odd  # the API names what is wrong
