"""The claim page when the event has published eligibility rules (issues 9 and 10 together): the
booking form asks the rule set's questions, says why not in plain words, and books with the decision."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_claim_page import WAITING, form, offered
from tests.helpers import admin_headers, person, running_worker
from tests.shared.test_rules import rule_set

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
IN_REGION: dict[str, Any] = {
    "attributes": {"region": {"type": "enum", "values": ["A", "B"], "label": {"en": "Region", "es": "Región"},
                              "help": {"en": "Where you live", "es": "Donde vive"}}},
    "rules": [{"id": "region", "expr": 'region == "A"', "reason": "outside_region",
               "text": {"en": "Only residents of region A.", "es": "Solo residentes de la región A."}}],
    "examples": [],
}  # fmt: skip


async def publish(api: TestClient, body: dict[str, Any]) -> None:
    resp = await api.post("/admin/v1/events/ev/rules", json=body, headers=admin_headers())
    assert resp.status == 201, await resp.text()
    resp = await api.post("/admin/v1/events/ev/rules/1/publish", json={"reason": "t"}, headers=admin_headers())
    assert resp.status == 200, await resp.text()


async def claimed_form(api: TestClient, claim_url: str, lang: str = "en") -> tuple[str, str]:
    """Open the claim link and claim: (the page's form token, the booking form's HTML)."""
    parts = urlsplit(claim_url)
    csrf = CSRF.search(await (await api.get(f"{parts.path}?{parts.query}")).text())
    assert csrf is not None
    resp = await api.post("/claim", data={**form(csrf.group(1)), "lang": lang})
    assert resp.status == 200
    return csrf.group(1), await resp.text()


async def test_the_person_who_waited_can_book_from_the_claim_page_under_published_rules(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    async with running_worker(settings):
        _slot, claim_url = await offered(api, settings, codec, pool)
        # rules published after the person joined the waitlist: everyone 18 or over (the waiting person is)
        await publish(api, rule_set(attributes={}, examples=[],
                                    rules=[{"id": "adult", "expr": "age >= 18", "reason": "too_young",
                                            "text": {"en": "Adults only.", "es": "Solo adultos."}}]))  # fmt: skip
        csrf, _html = await claimed_form(api, claim_url)
        resp = await api.post("/claim/book", data=form(csrf, **person(WAITING)), allow_redirects=False)
        assert resp.status == 303, (resp.status, await resp.text())
    row = await pool.fetchrow("SELECT decision_id, rule_version FROM appointments WHERE status = 'confirmed' "
                              "ORDER BY created_at DESC LIMIT 1")  # fmt: skip
    assert row is not None and row["decision_id"] is not None and row["rule_version"] == 1


async def test_the_claim_page_asks_the_rules_questions_says_why_not_and_books_once_eligible(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    async with running_worker(settings):
        slot, claim_url = await offered(api, settings, codec, pool)
        await publish(api, IN_REGION)
        csrf, html = await claimed_form(api, claim_url, lang="es")
        assert 'name="a_region"' in html and "Región" in html and "Donde vive" in html  # the schema, in Spanish
        assert "<script" not in html  # the page stays script-free (its policy allows none)

        resp = await api.post("/claim/book", data=form(csrf, **person(WAITING), a_region="B"), allow_redirects=False)
        text = await resp.text()
        assert resp.status == 403 and "Only residents of region A." in text  # why not, in plain words
        assert 'name="a_region"' in text and '<option value="B" selected>' in text  # answer again
        held = "SELECT count(*) FROM holds WHERE slot_id = $1 AND status = 'active'"
        assert await pool.fetchval(held, uuid.UUID(slot)) == 1  # the place is still held for them
        stored = await pool.fetchrow("SELECT outcome, credential FROM eligibility_decisions")
        assert stored is not None and stored["outcome"] == "ineligible"

        # a form made elsewhere is still refused, rules or not
        bad = await api.post("/claim/book", data=form("0" * 64, **person(WAITING), a_region="A"), allow_redirects=False)
        assert bad.status == 401

        resp = await api.post("/claim/book", data=form(csrf, **person(WAITING), a_region="A"), allow_redirects=False)
        assert resp.status == 303, (resp.status, await resp.text())
    eligible = await pool.fetchval("SELECT decision_id FROM eligibility_decisions WHERE outcome = 'eligible'")
    booked = await pool.fetch(
        "SELECT decision_id FROM appointments WHERE status = 'confirmed' AND slot_id = $1", uuid.UUID(slot)
    )
    assert [r["decision_id"] for r in booked] == [eligible]
