"""Hostile input to the issue 9 and 10 routes: every bad body a clear 4xx problem, never a 500 and
never work out of proportion to the request (real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncpg
import pytest
import yaml
from aiohttp.test_utils import TestClient

from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_eligibility import EVENT, seed
from tests.helpers import (
    admin_headers,
    admission_token,
    assert_problem,
    booking_headers,
    person,
    running_worker,
    seed_typed_slots,
)
from tests.shared.test_rules import rule_set

YAML = {**admin_headers(), "Content-Type": "application/yaml"}

# Four lines of anchors and aliases: 9**4 values once expanded (a real bomb uses a few more lines).
BOMB = """
a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
"""


def with_bomb(body: str) -> bytes:
    """``body`` (a rule set in YAML) with the bomb's anchors in an example's free-form attributes."""
    lines = "".join(f"    {line}\n" for line in BOMB.strip().splitlines())
    return (body + "- birth_date: 1950-01-01\n  eligible: false\n  attributes:\n" + lines).encode()


async def test_yaml_aliases_are_refused_a_body_without_them_is_stored(api: TestClient, pool: asyncpg.Pool) -> None:
    await seed(pool)
    plain = yaml.safe_dump(rule_set(), sort_keys=False)  # examples last, items at the key's indentation
    assert yaml.safe_load(with_bomb(plain))["examples"][-1]["attributes"]["d"][0][0][0] == ["x"] * 9
    resp = await api.post(f"/admin/v1/events/{EVENT}/rules", data=with_bomb(plain), headers=YAML)
    body = await resp.json()
    assert_problem(resp.status, body, 400, "validation_error")
    assert await pool.fetchval("SELECT count(*) FROM rule_versions") == 0
    # the control: the same rule set written out without aliases is stored
    resp = await api.post(f"/admin/v1/events/{EVENT}/rules", data=plain.encode(), headers=YAML)
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    "raw",
    [
        b"rules: 2025-02-29\n",  # a date that does not exist
        b"examples:\n  - birth_date: 2023-02-29\n    eligible: true\nrules: []\n",
        b"[" * 3000,  # nested past Python's stack
        b"- " * 3000 + b"x\n",
    ],
)
async def test_yaml_that_cannot_be_read_is_a_400(api: TestClient, pool: asyncpg.Pool, raw: bytes) -> None:
    await seed(pool)
    resp = await api.post(f"/admin/v1/events/{EVENT}/rules", data=raw, headers=YAML)
    assert_problem(resp.status, await resp.json(), 400, "validation_error")


def rule(expr: str) -> dict[str, object]:
    return {"id": "r", "expr": expr, "reason": "x", "text": {"en": "x", "es": "x"}}


@pytest.mark.parametrize(
    ("expr", "status"),
    [
        ('occupations.all(a, occupations.all(b, occupations.all(c, a + b + c != "")))', 400),
        ("occupations.map(a, occupations.filter(b, occupations.exists(c, c == b))).size() >= 0", 400),
        ('occupations.exists(a, occupations.exists(b, a != b && a == "nurse"))', 201),
        # string literals are skipped: a "(" or ".all(" inside one nests nothing
        ('occupations.exists(a, occupations.exists(b, a == ".all(x, " || b == "(.exists(y, "))', 201),
    ],
)
async def test_comprehensions_nested_past_two_are_refused(
    api: TestClient, pool: asyncpg.Pool, expr: str, status: int
) -> None:
    """Each nested comprehension multiplies the work by a list's length (50 items): three levels are
    125,000 steps per person and rule, six are hours on the API's event loop. Two are allowed."""
    await seed(pool)
    resp = await api.post(f"/admin/v1/events/{EVENT}/rules", json=rule_set(rules=[rule(expr)], examples=[]),
                          headers=admin_headers())  # fmt: skip
    body = await resp.json()
    if status == 400:
        assert_problem(resp.status, body, 400, "validation_error")
        assert "rule 'r' nests comprehensions more than 2 deep" in body["detail"]
    else:
        assert resp.status == 201, body


@pytest.mark.parametrize(
    ("email", "status"),
    [
        ("postmaster,me@example.org", 400),  # two recipients: "postmaster" (the relay's own domain) and me
        ("me@example.org,", 400),
        ("<me@example.org>", 400),
        ("me@example.org;you", 400),
        ('"me@example.org', 400),
        ("me\x00@example.org", 400),
        ("me\x7f@example.org", 400),
        ("o'brien+flu@example.org", 201),  # the control: what addresses really hold still books
    ],
)
async def test_an_email_that_names_more_or_other_recipients_is_refused(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, email: str, status: int
) -> None:
    """The booked email is the confirmation's ``To`` (and the envelope's recipients, which SMTP
    clients take from it): one address, nothing a mail parser reads as a list, a group or a comment."""
    (slot,) = await seed_typed_slots(pool, count=1)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot, "person": {**person(1), "email": email}},
                              headers=booking_headers(admission_token(codec)))  # fmt: skip
        body = await resp.json()
    assert resp.status == status, body
    if status == 400:
        assert body["errors"][0]["loc"] == ["person", "email"] and email not in str(body)
