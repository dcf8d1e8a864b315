"""The booking API's OpenAPI document is valid, matches the routes exactly, and describes real answers.

A real flow drives every documented operation through the real app, database and worker (supply,
search, hold, book: 201, 202 and 409, attempts, manage, waitlist, claim, closing a day); every JSON
body it sends is checked against the operation's request schema, and every answer against the
schema the document gives for that path, method, status and content type, with no undocumented
top-level keys. A negative control shows the same check refuses a wrong answer.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import jsonschema
import pydantic
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from admission import (
    admin,
    appointments,
    changes,
    eligibility,
    holds,
    identity,
    manage,
    rules,
    supply,
    support,
    waitlist,
)  # fmt: skip
from admission.app import create_app
from shared.booking import attempt_id_for
from shared.persons import PersonVault, person_key_of
from shared.settings import Settings
from shared.tokens import Ticket, TokenCodec
from tests.helpers import admin_headers, admission_token, person, run_burst, running_worker, serve

Json = Any


async def spec_of(api: TestClient) -> dict[str, Any]:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    spec: dict[str, Any] = await resp.json()
    return spec


async def test_the_document_is_valid_openapi(api: TestClient) -> None:
    validate(await spec_of(api))


async def test_paths_match_the_routes_exactly(api: TestClient) -> None:
    spec = await spec_of(api)
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical), route.method)
        for route in api.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert documented == served


# --- checking exchanges against the document -------------------------------------------------------


def checker(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {**schema, "components": spec["components"]}, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].removeprefix("#/components/").split("/")
        node = spec["components"][section][name]
    return node


def documented_keys(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = resolve(spec, schema)
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        keys |= documented_keys(spec, part)
    return keys


def check_answer(
    spec: dict[str, Any],
    template: str,
    method: str,
    status: int,
    content_type: str,
    body: Json,
    headers: dict[str, str],
) -> None:
    """Raise unless the document describes this answer exactly (status, content type, body, headers)."""
    operation = spec["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template} answered an undocumented {status}"
    response = resolve(spec, operation["responses"][str(status)])
    assert content_type in response.get("content", {}), f"{method} {template} {status}: {content_type}"
    schema = response["content"][content_type].get("schema")
    if schema is None:
        return
    checker(spec, schema).validate(body)
    if isinstance(body, dict):
        undocumented = set(body) - documented_keys(spec, schema)
        assert not undocumented, f"{method} {template} {status}: undocumented keys {undocumented}"
    if 200 <= status < 300:
        missing = set(response.get("headers", {})) - set(headers)
        assert not missing, f"{method} {template} {status}: headers {missing} missing"
    if status == 503:
        assert "Retry-After" in headers


class Documented:
    """A test client whose every exchange is checked against the document as it happens: the answer
    by :func:`check_answer`, and a JSON body the request schema refuses must be refused (400) too."""

    def __init__(self, client: TestClient, spec: dict[str, Any]) -> None:
        self.client = client
        self.spec = spec
        self.answered: set[tuple[str, str, int]] = set()
        # literal paths first, so /api/v1/waitlist/claims is not taken for /api/v1/waitlist/{entry_id}
        self._templates: list[str] = sorted(spec["paths"], key=lambda p: p.count("{"))

    def template(self, method: str, path: str) -> str:
        for template in self._templates:
            pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, path) and method.lower() in self.spec["paths"][template]:
                return template
        raise AssertionError(f"{method} {path} is not documented")

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Json = None,
        data: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> tuple[int, Json]:
        template = self.template(method, path)
        documented_body = True
        if json is not None:
            body = self.spec["paths"][template][method.lower()]["requestBody"]["content"]["application/json"]
            documented_body = checker(self.spec, body["schema"]).is_valid(json)
        resp = await self.client.request(
            method, path, json=json, data=data, headers=headers, params=params, allow_redirects=allow_redirects
        )
        answer: Json = await resp.json(content_type=None) if "json" in resp.content_type else await resp.text()
        if 300 <= resp.status < 400:  # a page's redirect: no body to speak of
            operation = self.spec["paths"][template][method.lower()]
            assert str(resp.status) in operation["responses"], (
                f"{method} {template} answered an undocumented {resp.status}"
            )
            missing = set(resolve(self.spec, operation["responses"][str(resp.status)]).get("headers", {})) - set(
                resp.headers
            )
            assert not missing, f"{method} {template} {resp.status}: headers {missing} missing"
            self.answered.add((template, method.upper(), resp.status))
            return resp.status, resp.headers["Location"]
        check_answer(self.spec, template, method, resp.status, resp.content_type, answer, dict(resp.headers))
        assert documented_body or resp.status == 400, f"{method} {path} accepted a body its schema refuses: {json}"
        self.answered.add((template, method.upper(), resp.status))
        return resp.status, answer


def auth(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


# --- the flow ---------------------------------------------------------------------------------------

FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}
MANAGE_CSRF: list[str] = []


def form_of(**fields: str) -> str:
    return urlencode(fields)


def urlsplit_form(form: str) -> list[tuple[str, str]]:
    return parse_qsl(form)


async def manage_flow(client: Documented, url: str, appointment_id: str, slot_id: str) -> None:
    credential = url.partition("?c=")[2]
    own = f"/api/v1/appointments/{appointment_id}"
    assert (await client.call("GET", own, headers=auth(credential)))[0] == 200
    assert (await client.call("GET", f"{own}/calendar.ics", headers=auth(credential)))[0] == 200
    assert (await client.call("GET", "/manage"))[0] == 200
    assert (await client.call("GET", "/manage", params={"c": "k1.forged"}))[0] == 401
    status, location = await client.call("GET", "/manage", params={"c": credential}, allow_redirects=False)
    assert status == 303 and location == f"/manage/{appointment_id}"  # the jar keeps the cookie from here on
    status, text = await client.call("GET", location)
    assert status == 200
    MANAGE_CSRF[:] = re.findall(r'name="csrf" value="([0-9a-f]+)"', text)[:1]
    assert (await client.call("GET", f"{location}/reschedule"))[0] == 200
    assert (await client.call("GET", f"{location}/calendar.ics"))[0] == 200
    assert (await client.call("GET", "/manage.css"))[0] == 200
    stay = form_of(csrf=MANAGE_CSRF[0], slot_id=slot_id)
    status, _ = await client.call("POST", f"{location}/reschedule", data=stay, headers=FORM_TYPE, allow_redirects=False)
    assert status == 303
    status, text = await client.call("GET", location)
    MANAGE_CSRF[:] = re.findall(r'name="csrf" value="([0-9a-f]+)"', text)[:1]
    lost = {"event_id": "ev", "id_number": "ID-000001", "email": "person1@example.org"}
    assert (await client.call("POST", "/api/v1/manage-links", json=lost))[0] == 202
    assert (await client.call("POST", "/api/v1/manage-links", json={**lost, "email": "x"}))[0] == 400
    assert (await client.call("POST", "/manage", data=form_of(**lost), headers=FORM_TYPE))[0] == 200


SITE = "sg-1"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


async def set_up_supply(api: Documented, pool: asyncpg.Pool, day: date) -> str:
    """Event, site, type and weekly hours through the admin API (two slots on ``day``, 10:00 and
    10:30 UTC), plus a one-off slot the next day; returns the one-off slot's id."""
    await pool.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
    admin = admin_headers()
    site = {"site_id": SITE, "name": "One", "region": "R", "timezone": "UTC", "lat": 52.5, "lng": 13.4}
    assert (await api.call("POST", "/admin/v1/sites", json=site))[0] == 401
    assert (await api.call("POST", "/admin/v1/sites", json=site, headers=admin))[0] == 201
    kind = {"name": "Group", "duration_minutes": 30, "seats_per_slot": 1}
    assert (await api.call("PUT", "/admin/v1/appointment-types/group", json=kind, headers=admin))[0] == 200
    assert (await api.call("GET", "/admin/v1/appointment-types", headers=admin))[0] == 200
    weekly = {"weekly": {WEEKDAYS[day.weekday()]: [["10:00", "11:00"]]}}
    status, stored = await api.call("PUT", f"/admin/v1/sites/{SITE}/schedules/group", json=weekly, headers=admin)
    assert status == 200 and stored["regenerated"]["created"] >= 2
    week_later = (day + timedelta(days=7)).isoformat()
    override = {"type_id": "group", "hours": [["10:00", "10:30"]], "note": "short day"}
    path = f"/admin/v1/sites/{SITE}/overrides/{week_later}"
    assert (await api.call("PUT", path, json=override, headers=admin))[0] == 200
    assert (await api.call("GET", f"/admin/v1/sites/{SITE}/schedules/group", headers=admin))[0] == 200
    assert (await api.call("DELETE", path, params={"type_id": "group"}, headers=admin))[0] == 200
    generate = f"/admin/v1/sites/{SITE}/generate"
    assert (await api.call("POST", generate, json={"type_id": "group"}, headers=admin))[0] == 200
    assert (await api.call("POST", generate, headers=admin))[0] == 200  # no body: every type
    sites_csv = "site_id,name,region,timezone,lat,lng\nsg-2,Two,R,Europe/Lisbon,38.7,-9.1\n"
    assert (await api.call("POST", "/admin/v1/import/sites", data=sites_csv, headers=admin))[0] == 201
    status, refused = await api.call("POST", "/admin/v1/import/sites", data="site_id,name\nx,y\n", headers=admin)
    assert status == 400 and refused["code"] == "validation_error"
    hours_csv = "site_id,type_id,weekday,start,end\nsg-2,group,mon,09:00,10:00\n"
    assert (await api.call("POST", "/admin/v1/import/schedules", data=hours_csv, headers=admin))[0] == 201
    next_day = f"{day + timedelta(days=1)}T10:00:00"  # no offset: wall time at the site
    one_off = {"site_id": SITE, "starts_at": next_day, "duration_minutes": 30, "capacity": 1}
    status, created = await api.call("POST", "/admin/v1/slots", json=one_off, headers=admin)
    assert status == 201
    slot_id: str = created["slot_ids"][0]
    assert (await api.call("GET", f"/admin/v1/slots/{slot_id}", headers=admin))[0] == 200
    return slot_id


async def claim_tokens(pool: asyncpg.Pool, settings: Settings) -> list[str]:
    vault = PersonVault(person_key_of(settings))
    rows = await pool.fetch("SELECT sealed FROM notifications WHERE kind = 'waitlist_offer' ORDER BY notification_id")
    return [str(vault.open(bytes(r["sealed"]))["claim_token"]) for r in rows]


async def eligibility_flow(client: Documented, codec: TokenCodec) -> None:
    admin, rules_path = admin_headers(), "/admin/v1/events/ev/rules"
    assert (await client.call("POST", rules_path, json=RULE_SET, headers=admin))[0] == 201
    stricter = {**RULE_SET, "rules": [{**RULE_SET["rules"][0], "expr": 'region == "A" && age >= 70'}]}
    assert (await client.call("POST", rules_path, json=stricter, headers=admin))[0] == 201
    assert (await client.call("POST", rules_path, json={"rules": []}, headers=admin))[0] == 400
    assert (await client.call("POST", f"{rules_path}/1/publish", json={"reason": "go"}, headers=admin))[0] == 200
    assert (await client.call("POST", f"{rules_path}/2/shadow", headers=admin))[0] == 200
    ticket = codec.sign_ticket(Ticket(event_id="ev", visitor_id="v", seq=1, issued_at=time.time()))
    evaluate = {"person": {"id_number": "ID-9", "birth_date": "1960-01-02"}, "attributes": {"region": "A"}}
    status, decision = await client.call("POST", "/api/v1/events/ev/eligibility:evaluate", json=evaluate,
                                         headers=auth(ticket))  # fmt: skip
    assert status == 200 and decision["eligible"] is True
    assert (await client.call("POST", "/api/v1/events/ev/eligibility:evaluate", json=evaluate))[0] == 401
    mine = f"/api/v1/events/ev/eligibility/decisions/{decision['decision_id']}"
    assert (await client.call("GET", mine, headers=auth(ticket)))[0] == 200
    support_path = f"/admin/v1/eligibility/decisions/{decision['decision_id']}"
    assert (await client.call("GET", support_path, headers=admin))[0] == 200
    override = {"eligible": False, "reason": "document checked"}
    assert (await client.call("POST", f"{support_path}/override", json=override, headers=admin))[0] == 201
    assert (await client.call("GET", rules_path, headers=admin))[0] == 200
    assert (await client.call("GET", f"{rules_path}/2", headers=admin))[0] == 200
    assert (await client.call("GET", f"{rules_path}/diff", params={"from": "1", "to": "2"}, headers=admin))[0] == 200
    report = await client.call("GET", f"{rules_path}/shadow-report", params={"version": "2"}, headers=admin)
    assert report[0] == 200 and report[1]["flips"]["to_ineligible"]["count"] == 1
    assert (await client.call("POST", f"{rules_path}/2/publish", headers=admin))[0] == 200
    assert (await client.call("POST", f"{rules_path}/rollback", json={"reason": "wrong"}, headers=admin))[0] == 200
    replay = {"from_version": 1, "to_version": 2}
    assert (await client.call("POST", f"{rules_path}/replay", json=replay, headers=admin))[0] == 200
    flagged = await client.call("GET", "/admin/v1/events/ev/eligibility/flagged", params={"all": "true"}, headers=admin)
    assert flagged[0] == 200 and [r["open"] for r in flagged[1]["reviews"]] == [False]  # cleared above
    clear = f"/admin/v1/support/appointments/{uuid.uuid4()}/clear-review"
    assert (await client.call("POST", clear, json={"reason": "reviewed"}, headers=admin))[0] == 404
    assert (await client.call("POST", clear, json={}, headers=admin))[0] == 400


async def test_a_real_flow_answers_what_the_document_says(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    spec = await spec_of(api)
    client = Documented(api, spec)
    day = datetime.now(UTC).date() + timedelta(days=3)
    one_off = await set_up_supply(client, pool, day)
    a, b, c, d, e, f = (admission_token(codec) for _ in range(6))

    # search
    assert (await client.call("GET", "/api/v1/sites"))[0] == 401
    assert (await client.call("GET", "/api/v1/sites", headers=auth(a)))[0] == 200
    assert (await client.call("GET", "/api/v1/sites", params={"lat": "52", "lng": "13"}, headers=auth(a)))[0] == 200
    window = {"site_id": SITE, "type_id": "group", "from": f"{day}T00:00:00Z", "to": f"{day}T23:59:59Z"}
    status, found = await client.call("GET", "/api/v1/slots", params=window, headers=auth(a))
    assert status == 200 and len(found["slots"]) == 2
    first, second = (s["slot_id"] for s in found["slots"])
    scoped = admission_token(codec, scope=["elsewhere"])
    assert (await client.call("GET", "/api/v1/slots", params=window, headers=auth(scoped)))[0] == 403
    near = {"lat": "52.5", "lng": "13.4", "type_id": "group"}
    assert (await client.call("GET", "/api/v1/slots/next", params=near, headers=auth(a)))[0] == 200
    assert (await client.call("GET", "/api/v1/slots/next", params={"lat": "x"}, headers=auth(a)))[0] == 400

    # the waitlist is for full days only
    wait = {"site_id": SITE, "type_id": "group", "day": day.isoformat(), "person": person(3)}
    assert (await client.call("POST", "/api/v1/waitlist", json=wait, headers=auth(c)))[0] == 409

    # a booking that outlasts the API's wait: 202, then the attempt's status until the worker is done
    async with serve(create_app(replace(settings, booking_wait_s=0.05))) as impatient:
        slow = Documented(impatient, spec)
        body = {"slot_id": second, "person": person(2)}
        status, pending = await slow.call("POST", "/api/v1/appointments", json=body, headers=auth(b, "b-1"))
        assert status == 202
        assert (await slow.call("GET", pending["status_url"], headers=auth(b)))[1]["status"] == "pending"
        client.answered |= slow.answered
    await run_burst(settings)
    status, attempt = await client.call("GET", pending["status_url"], headers=auth(b))
    assert attempt["status"] == "confirmed"
    b_appointment = attempt["appointment_id"]

    async with running_worker(settings):
        # hold, look, release, hold again, book from the hold
        assert (await client.call("POST", "/api/v1/holds", json={"slot_id": first}, headers=auth(a)))[0] == 201
        status, hold = await client.call("POST", "/api/v1/holds", json={"slot_id": first}, headers=auth(a, "a-h"))
        assert status == 201
        assert (await client.call("GET", f"/api/v1/holds/{hold['hold_id']}", headers=auth(a)))[0] == 200
        assert (await client.call("DELETE", f"/api/v1/holds/{hold['hold_id']}", headers=auth(a)))[0] == 200
        assert (await client.call("GET", f"/api/v1/holds/{uuid.uuid4()}", headers=auth(a)))[0] == 404
        status, hold = await client.call("POST", "/api/v1/holds", json={"slot_id": first}, headers=auth(a))
        assert status == 201
        booking = {"hold_id": hold["hold_id"], "person": person(1)}
        status, booked = await client.call("POST", "/api/v1/appointments", json=booking, headers=auth(a, "a-1"))
        assert status == 201
        again = await client.call("POST", "/api/v1/appointments", json=booking, headers=auth(a, "a-1"))
        assert again == (201, booked)
        other = {**booking, "person": person(9)}
        assert (await client.call("POST", "/api/v1/appointments", json=other, headers=auth(a, "a-1")))[0] == 409
        assert (await client.call("POST", "/api/v1/appointments", json=booking, headers=auth(a)))[0] == 400

        # the day is full: a booking is refused and its attempt says why; holds too
        status, refused = await client.call(
            "POST", "/api/v1/appointments", json={"slot_id": first, "person": person(4)}, headers=auth(f, "f-1")
        )
        assert status == 409 and refused["code"] == "slot_full"
        f_attempt = attempt_id_for(codec.verify_admission(f).token_id, "f-1")
        status, attempt = await client.call("GET", f"/api/v1/attempts/{f_attempt}", headers=auth(f))
        assert (attempt["status"], attempt["code"]) == ("rejected", "slot_full")
        assert (await client.call("POST", "/api/v1/holds", json={"slot_id": first}, headers=auth(f)))[0] == 409
        assert (await client.call("POST", "/api/v1/holds", json={"slot": first}, headers=auth(f)))[0] == 400

        # waitlist: join, a second person joins and leaves
        status, entry = await client.call("POST", "/api/v1/waitlist", json=wait, headers=auth(c, "c-1"))
        assert status == 201 and entry["position"] == 1
        status, entry = await client.call(
            "POST", "/api/v1/waitlist", json={**wait, "person": person(5)}, headers=auth(d)
        )
        assert (await client.call("DELETE", f"/api/v1/waitlist/{entry['entry_id']}", headers=auth(d)))[0] == 200

        # reschedule away: the freed seat is offered to the waitlist, claimed, and booked from the claim
        move = {"slot_id": one_off}
        path = f"/api/v1/appointments/{booked['appointment_id']}"
        assert (await client.call("POST", f"{path}/reschedule", json=move, headers=auth(a, "a-r")))[0] == 200
        (claim,) = await claim_tokens(pool, settings)
        assert (await client.call("POST", "/api/v1/waitlist/claims", json={"claim": "k1.forged"}))[0] == 401
        # the claim page: the link's token for a cookie, the offer, Claim (a hold), then the booking form
        assert (await client.call("GET", "/claim", params={"c": claim}, allow_redirects=False))[0] == 303
        status, offer_page = await client.call("GET", "/claim")
        assert status == 200
        claim_form = form_of(csrf=re.findall(r'name="csrf" value="([0-9a-f]+)"', offer_page)[0])
        assert (await client.call("POST", "/claim", data=claim_form, headers=FORM_TYPE))[0] == 200
        status, again_claimed = await client.call("POST", "/api/v1/waitlist/claims", json={"claim": claim})
        assert status == 201 and again_claimed["hold_id"] in await pool.fetchval(  # the winner's repeat: the same hold
            "SELECT array_agg(hold_id::text) FROM holds WHERE status = 'active'"
        )
        page_booking = form_of(**dict(urlsplit_form(claim_form)), **person(3))
        status, went = await client.call("POST", "/claim/book", data=page_booking, headers=FORM_TYPE,
                                         allow_redirects=False)  # fmt: skip
        assert status == 303 and went.startswith(f"{settings.api_url}/manage?c=")

    # the manage link: its credential on the appointment's own routes, the page and its forms, lost links
    await manage_flow(client, booked["manage_url"], booked["appointment_id"], one_off)

    # manage: read, cancel (twice is harmless), and a change to a cancelled appointment is refused
    assert (await client.call("GET", path, headers=auth(a)))[0] == 200
    status, ics = await client.call("GET", f"{path}/calendar.ics", headers=auth(a))
    assert status == 200 and "BEGIN:VCALENDAR" in str(ics)
    unsubscribe = f"/api/v1/reminders/unsubscribe/{codec.sign_unsubscribe(booked['appointment_id'])}"
    status, ask = await client.call("GET", unsubscribe, headers={"Accept-Language": "es"})
    assert status == 200 and "recordatorios" in str(ask)
    assert (await client.call("POST", unsubscribe))[1] == {"reminders": "off"}
    status, done = await client.call("POST", unsubscribe, data=form_of(lang="en"),
                                     headers={**FORM_TYPE, "Accept": "text/html"})  # fmt: skip
    assert status == 200 and "no more reminders" in str(done)
    assert (await client.call("GET", "/api/v1/reminders/unsubscribe/k1.forged"))[0] == 401
    assert (await client.call("POST", "/api/v1/reminders/unsubscribe/k1.forged"))[0] == 401
    assert (await client.call("GET", f"/api/v1/appointments/{uuid.uuid4()}", headers=auth(a)))[0] == 404
    assert (await client.call("DELETE", path, headers=auth(a)))[1]["late"] is False
    status, again_cancelled = await client.call("DELETE", path, headers=auth(a))
    assert again_cancelled == {"appointment_id": booked["appointment_id"], "status": "cancelled"}
    status, refused = await client.call("POST", f"{path}/reschedule", json=move, headers=auth(a))
    assert status == 409 and refused["code"] == "appointment_not_active"
    assert (await client.call("GET", path, headers=auth(a)))[1]["status"] == "cancelled"

    # support: look a person up, move (here: where it is) and cancel their appointment for them
    async with running_worker(settings):
        sixth = {"slot_id": one_off, "person": person(6)}
        status, booked_6 = await client.call("POST", "/api/v1/appointments", json=sixth, headers=auth(e, "e-1"))
    assert status == 201
    lookup = {"id_number": person(6)["id_number"].lower(), "event_id": "ev"}
    await pool.execute(  # as a replay flags one (tests/admission/test_eligibility_reschedule.py does it for real)
        "INSERT INTO appointment_reviews (appointment_id, event_id, from_version, to_version, reasons, flagged_at,"
        " flagged_by) VALUES ($1, 'ev', 1, 2, '{too_young}', now(), 'owner')", uuid.UUID(booked_6["appointment_id"])
    )  # fmt: skip
    assert (await client.call("POST", "/admin/v1/support/lookup", json=lookup))[0] == 401
    status, found = await client.call("POST", "/admin/v1/support/lookup", json=lookup, headers=admin_headers())
    assert status == 200 and [x["appointment_id"] for x in found["appointments"]] == [booked_6["appointment_id"]]
    assert (await client.call("POST", "/admin/v1/support/lookup", json={}, headers=admin_headers()))[0] == 400
    on_behalf = f"/admin/v1/support/appointments/{booked_6['appointment_id']}"
    assert found["appointments"][0]["reviews"][0]["open"] is True
    reviewed = {"reason": "reviewed: stays"}
    assert (await client.call("POST", f"{on_behalf}/clear-review", json=reviewed, headers=admin_headers()))[0] == 200
    stay = {"slot_id": one_off, "reason": "checked with the site"}
    assert (await client.call("POST", f"{on_behalf}/reschedule", json=stay, headers=admin_headers()))[0] == 200
    called = {"reason": "called: cannot come"}
    assert (await client.call("POST", f"{on_behalf}/cancel", json=called, headers=admin_headers()))[0] == 200
    assert (await client.call("POST", f"{on_behalf}/cancel", json=called, headers=admin_headers()))[0] == 409
    assert (await client.call("POST", f"{on_behalf}/cancel", json={}, headers=admin_headers()))[0] == 400

    # operators: check-in (twice is refused), close the day
    check_in = f"/admin/v1/appointments/{b_appointment}/check-in"
    assert (await client.call("POST", check_in, headers=admin_headers()))[0] == 200
    assert (await client.call("POST", check_in, headers=admin_headers()))[0] == 409
    closure = {"day": day.isoformat(), "reason": "flooded"}
    closures = f"/admin/v1/sites/{SITE}/closures"
    status, closed = await client.call("POST", closures, json=closure, headers=admin_headers())
    assert status == 200 and closed["cancelled"] == 1

    # reports: a handful of bookings, every cell below the threshold; and as CSV
    by_site_day = {"group_by": "site,day"}
    status, counted = await client.call(
        "GET", "/admin/v1/reports/bookings", params=by_site_day, headers=admin_headers()
    )
    assert status == 200 and counted["rows"] and all(row["suppressed"] for row in counted["rows"])
    as_csv = {**admin_headers(), "Accept": "text/csv"}
    status, text = await client.call("GET", "/admin/v1/reports/waitlist", params=by_site_day, headers=as_csv)
    assert status == 200 and text.startswith("step,site,day,count,suppressed")
    # auditors: the audit log, a page at a time
    status, page = await client.call("GET", "/admin/v1/audit", params={"limit": "2"}, headers=admin_headers())
    assert status == 200 and len(page["entries"]) == 2 and page["next"] is not None
    rest = {"limit": "1000", "cursor": page["next"]}
    assert (await client.call("GET", "/admin/v1/audit", params=rest, headers=admin_headers()))[1]["next"] is None
    assert (await client.call("GET", "/admin/v1/audit", params={"cursor": "x"}, headers=admin_headers()))[0] == 400

    # eligibility: versions, decisions (with a queue ticket), support's view, shadow report and replay
    await eligibility_flow(client, codec)

    # rules: the event's identity provider (issue 10)
    provider = {"issuer": "https://id.example.test", "audience": "sg", "jwks_url": "https://id.example.test/certs",
                "acr_values": ["low", "high"], "min_acr": "high"}  # fmt: skip
    where = "/admin/v1/events/ev/identity"
    assert (await client.call("PUT", where, json=provider, headers=admin_headers()))[0] == 200
    assert (await client.call("GET", where, headers=admin_headers()))[0] == 200
    assert (await client.call("DELETE", where, headers=admin_headers()))[0] == 200
    assert (await client.call("GET", where, headers=admin_headers()))[0] == 404

    # probes and the document itself
    for probe in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.call("GET", probe))[0] == 200

    # the page's cancel (the appointment is cancelled already: nothing more happens)
    page = f"/manage/{booked['appointment_id']}"
    csrf = re.findall(r'name="csrf" value="([0-9a-f]+)"', (await client.call("GET", page))[1])  # none: cancelled
    assert csrf == []
    token = form_of(csrf=MANAGE_CSRF[0])  # the session's token (the cookie is renewed by a reschedule, so is this)
    page_cancel = f"{page}/cancel"
    status, said = await client.call("POST", page_cancel, data=token, headers=FORM_TYPE, allow_redirects=False)
    assert status == 303, said

    # every documented operation answered at least once with success (a form's 303 is one), and checked
    succeeded = {(template, method) for template, method, status in client.answered if status < 400}
    documented = {(template, method.upper()) for template, ops in spec["paths"].items() for method in ops}
    assert documented - succeeded == set()

    # negative control: the same check refuses answers that differ from the document
    confirmation = dict(booked)
    wrong: list[tuple[str, str, int, str, Json]] = [
        ("/api/v1/appointments", "POST", 201, "application/json", {**confirmation, "status": "pending"}),
        ("/api/v1/appointments", "POST", 201, "application/json", {**confirmation, "slot_id": "soon"}),
        ("/api/v1/appointments", "POST", 201, "application/json",
         {k: v for k, v in confirmation.items() if k != "appointment_id"}),
        ("/api/v1/appointments", "POST", 201, "application/json", {**confirmation, "manage_url": "/x"}),
        ("/api/v1/appointments", "POST", 201, "application/problem+json", confirmation),
        ("/api/v1/appointments", "POST", 418, "application/json", confirmation),
        ("/api/v1/holds/{hold_id}", "DELETE", 409, "application/problem+json", {**refused, "code": "slot_full"}),
    ]  # fmt: skip
    for template, method, status, content_type, body in wrong:
        with pytest.raises((AssertionError, jsonschema.ValidationError)):
            check_answer(spec, template, method, status, content_type, body, {})
    check_answer(spec, "/api/v1/appointments", "POST", 201, "application/json", confirmation, {})


# --- request bodies: the document allows what the models accept ------------------------------------

SLOT, HOLD = str(uuid.uuid4()), str(uuid.uuid4())
PERSON = {"id_number": "X-1", "name": "Ana", "email": "ana@example.org", "birth_date": "1980-02-29"}
RULE_SET: dict[str, Any] = {
    "attributes": {"region": {"type": "enum", "values": ["A", "B"], "label": {"en": "Region", "es": "Región"}}},
    "rules": [{"id": "region", "expr": 'region == "A"', "reason": "outside", "text": {"en": "A only", "es": "Solo A"}}],
    "examples": [{"birth_date": "1950-01-02", "attributes": {"region": "A"}, "eligible": True, "reasons": []}],
}
MOVES: list[Json] = [{"reason": "wrong rule"}, {}, {"reason": None}, {"reason": ""}, {"reason": "r", "x": 1}]

BODIES: dict[tuple[str, str], tuple[type[pydantic.BaseModel], list[Json]]] = {
    ("/api/v1/appointments", "post"): (appointments.BookingIn, [
        {"slot_id": SLOT, "person": PERSON}, {"hold_id": HOLD, "person": PERSON},
        {"slot_id": SLOT, "hold_id": None, "person": PERSON}, {"slot_id": SLOT, "hold_id": HOLD, "person": PERSON},
        {"person": PERSON}, {"slot_id": None, "hold_id": None, "person": PERSON}, {"slot_id": SLOT},
        {"slot_id": SLOT, "person": {**PERSON, "email": "ana"}}, {"slot_id": SLOT, "person": {**PERSON, "age": 3}},
        {"slot_id": SLOT, "person": {**PERSON, "id_number": ""}}, {"slot_id": SLOT, "person": PERSON, "x": 1},
        {"slot_id": SLOT, "person": {k: v for k, v in PERSON.items() if k != "birth_date"}},
    ]),
    ("/api/v1/holds", "post"): (holds.HoldIn, [{"slot_id": SLOT}, {}, {"slot_id": SLOT, "x": 1}, {"slot_id": 5}]),
    ("/api/v1/appointments/{appointment_id}/reschedule", "post"): (changes.RescheduleIn, [
        {"slot_id": SLOT}, {"hold_id": HOLD}, {}, {"slot_id": SLOT, "hold_id": HOLD}, {"hold_id": None},
    ]),
    ("/api/v1/waitlist", "post"): (waitlist.WaitlistIn, [
        {"site_id": "s", "type_id": "t", "day": "2030-01-02", "person": PERSON},
        {"site_id": "s", "type_id": "t", "day": "2030-01-02"}, {"site_id": "", "type_id": "t", "day": "2030-01-02",
                                                                 "person": PERSON},
        {"site_id": "s", "type_id": "t", "day": "soon", "person": PERSON},
    ]),
    ("/api/v1/waitlist/claims", "post"): (waitlist.ClaimIn, [{"claim": "k1.x"}, {"claim": ""}, {}]),
    ("/api/v1/manage-links", "post"): (manage.LinkIn, [
        {"event_id": "ev", "id_number": "ID-1", "email": "a@example.org"}, {"event_id": "ev", "id_number": "ID-1"},
        {"event_id": "ev", "id_number": "ID-1", "email": "not-an-email"},
        {"event_id": "", "id_number": "ID-1", "email": "a@example.org"},
        {"event_id": "ev", "id_number": "ID-1", "email": "a@example.org", "name": "A"},
    ]),
    ("/admin/v1/sites", "post"): (admin.SiteIn, [
        {"site_id": "s-1", "name": "S", "region": "R", "timezone": "UTC", "lat": 1, "lng": 2},
        {"site_id": "s 1", "name": "S", "region": "R", "timezone": "UTC", "lat": 1, "lng": 2},
        {"site_id": "s-1", "name": "S", "region": "R", "timezone": "UTC", "lat": 91, "lng": 2},
        {"site_id": "s-1", "name": "S", "region": "R", "timezone": "UTC", "lat": 1},
    ]),
    ("/admin/v1/slots", "post"): (admin.SlotsIn, [
        {"site_id": "s", "starts_at": "2030-01-02T09:00:00", "duration_minutes": 15, "capacity": 2},
        {"site_id": "s", "starts_at": "2030-01-02T09:00:00+01:00", "duration_minutes": 15, "capacity": 2,
         "count": 4, "every_minutes": 15},
        {"site_id": "s", "starts_at": "2030-01-02T09:00:00", "duration_minutes": 15, "capacity": 2, "count": 4},
        {"site_id": "s", "starts_at": "2030-01-02T09:00:00", "duration_minutes": 0, "capacity": 2},
        {"site_id": "s", "starts_at": "2030-01-02T09:00:00", "duration_minutes": 15, "capacity": -1},
    ]),
    ("/admin/v1/appointment-types/{type_id}", "put"): (supply.TypeIn, [
        {"name": "T", "duration_minutes": 10}, {"name": "T", "duration_minutes": 10, "seats_per_slot": 8},
        {"name": "T"}, {"name": "T", "duration_minutes": 10, "max_advance_days": 0},
        {"name": "T", "duration_minutes": 10, "colour": "red"},
    ]),
    ("/admin/v1/sites/{site_id}/schedules/{type_id}", "put"): (supply.ScheduleIn, [
        {"weekly": {"mon": [["09:00", "12:00"], ["13:00", "24:00"]], "sun": []}}, {"weekly": {}},
        {"weekly": {"monday": [["09:00", "12:00"]]}}, {"weekly": {"mon": [["9", "12:00"]]}},
        {"weekly": {"mon": [["09:00", "12:00", "13:00"]]}}, {},
    ]),
    ("/admin/v1/sites/{site_id}/overrides/{day}", "put"): (supply.OverrideIn, [
        {"hours": []}, {"hours": [["08:00", "09:00"]], "type_id": "t", "note": None}, {"type_id": "t"},
        {"hours": [], "type_id": "t t"}, {"hours": [["25:00", "26:00"]]},
    ]),
    ("/admin/v1/sites/{site_id}/generate", "post"): (supply.GenerateIn, [
        {}, {"from": "2030-01-01", "to": "2030-02-01", "type_id": None}, {"from": "soon"}, {"days": 3},
    ]),
    ("/admin/v1/support/lookup", "post"): (support.LookupIn, [
        {"id_number": "ID-1"}, {"id_number": "ID-1", "event_id": "ev"}, {"id_number": "ID-1", "event_id": None},
        {}, {"id_number": ""}, {"id_number": "x" * 65}, {"id_number": "ID-1", "event_id": "Ev 1"},
        {"id_number": "ID-1", "name": "Ana"}, {"id_number": 5},
    ]),
    ("/admin/v1/support/appointments/{appointment_id}/cancel", "post"): (support.ReasonIn, [
        {"reason": "asked by phone"}, {}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501},
        {"reason": "r", "late": True},
    ]),
    ("/admin/v1/support/appointments/{appointment_id}/clear-review", "post"): (support.ReasonIn, [
        {"reason": "reviewed: stays"}, {}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "r", "cancel": True},
    ]),
    ("/admin/v1/support/appointments/{appointment_id}/reschedule", "post"): (support.MoveIn, [
        {"slot_id": SLOT, "reason": "r"}, {"slot_id": SLOT}, {"reason": "r"}, {"slot_id": "x", "reason": "r"},
        {"slot_id": SLOT, "reason": " "}, {"hold_id": HOLD, "reason": "r"},
    ]),
    ("/admin/v1/sites/{site_id}/closures", "post"): (supply.ClosureIn, [
        {"day": "2030-01-02", "reason": "storm"}, {"day": "2030-01-02", "reason": "storm", "type_id": "t"},
        {"day": "2030-01-02"}, {"day": "2030-01-02", "reason": ""},
    ]),
    ("/admin/v1/events/{event_id}/identity", "put"): (identity.IdentityIn, [
        {"issuer": "i", "audience": "a", "jwks_url": "https://id.example.test/certs"},
        {"issuer": "i", "audience": "a", "jwks_url": "https://id.example.test/certs", "acr_values": ["low", "high"],
         "min_acr": "high", "algorithms": ["ES256", "EdDSA"]},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "min_acr": None, "algorithms": ["RS256"]},
        {"issuer": "i", "audience": "a"}, {"issuer": "", "audience": "a", "jwks_url": "https://x/certs"},
        {"issuer": "i", "audience": "a", "jwks_url": "ftp://x/certs"},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "algorithms": ["HS256"]},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "algorithms": []},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "acr_values": ["a", "a"]},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "acr_values": [""]},
        {"issuer": "i", "audience": "a", "jwks_url": "https://x/certs", "scope": "openid"},
    ]),
    ("/api/v1/events/{event_id}/eligibility:evaluate", "post"): (eligibility.EvaluateIn, [
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}, "attributes": {"region": "A"}},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}}, {"attributes": {}},
        {"person": {"id_number": "", "birth_date": "1950-01-02"}}, {"person": {"id_number": "ID-1"}},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02", "name": "Ana"}},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}, "x": 1},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}, "id_token": "a.b.c"},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}, "id_token": None},
        {"person": {"id_number": "ID-1", "birth_date": "1950-01-02"}, "id_token": "x" * 16_385},
    ]),
    ("/admin/v1/events/{event_id}/rules", "post"): (rules.RuleSetSpec, [
        RULE_SET, {**RULE_SET, "examples": []}, {**RULE_SET, "rules": []}, {"attributes": {}},
        {**RULE_SET, "rules": [{"id": "Bad Id", "expr": "true", "reason": "r", "text": {"en": "a", "es": "b"}}]},
        {**RULE_SET, "rules": [{"id": "r", "expr": "true", "reason": "r", "text": {"en": "a"}}]},
        {**RULE_SET, "attributes": {"region": {"type": "float", "label": {"en": "a", "es": "b"}}}},
        {**RULE_SET, "examples": [{"birth_date": "1950-01-02", "eligible": True}]},
        {**RULE_SET, "examples": [{"birth_date": "1950-01-02"}]}, {**RULE_SET, "x": 1},
        {**RULE_SET, "attributes": {"region": {**RULE_SET["attributes"]["region"], "source": "verified",
                                                "claim": "address.region"}}},
        {**RULE_SET, "attributes": {"region": {**RULE_SET["attributes"]["region"], "claim": "address..region"}}},
    ]),
    ("/admin/v1/events/{event_id}/rules/rollback", "post"): (rules.MoveIn, MOVES),
    ("/admin/v1/events/{event_id}/rules/{version}/publish", "post"): (rules.MoveIn, MOVES),
    ("/admin/v1/events/{event_id}/rules/{version}/shadow", "post"): (rules.MoveIn, MOVES),
    ("/admin/v1/events/{event_id}/rules/replay", "post"): (rules.ReplayIn, [
        {"from_version": 1, "to_version": 2}, {"from_version": 0, "to_version": 2}, {"from_version": 1},
        {"from_version": 1, "to_version": 2, "x": 1},
    ]),
    ("/admin/v1/eligibility/decisions/{decision_id}/override", "post"): (rules.OverrideIn, [
        {"eligible": True, "reason": "proof seen"}, {"eligible": True}, {"eligible": False, "reason": ""},
        {"reason": "r"}, {"eligible": True, "reason": "x" * 501},
    ]),
}  # fmt: skip


def model_accepts(model: type[pydantic.BaseModel], body: Json) -> bool:
    try:
        model.model_validate(body)
    except pydantic.ValidationError:
        return False
    return True


async def test_request_schemas_accept_exactly_what_the_handlers_accept(api: TestClient) -> None:
    spec = await spec_of(api)
    json_bodies = {
        (path, method)
        for path, ops in spec["paths"].items()
        for method, operation in ops.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert json_bodies == set(BODIES)  # every JSON request body is covered here
    for (path, method), (model, bodies) in BODIES.items():
        schema = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        valid = checker(spec, schema)
        for body in bodies:
            assert valid.is_valid(body) == model_accepts(model, body), (path, body)
        assert any(model_accepts(model, b) for b in bodies) and not all(model_accepts(model, b) for b in bodies)
