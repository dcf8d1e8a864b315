"""The refusal catalogue: every code once, with a status and a message, and the HTTP layer reads it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.errors import CATALOGUE, Code, NotFound, Refused, TokenScope, status_of
from shared.http import refusal_problem

REPO = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("shared", "admission", "booking_worker", "waitingroom", "surgegate")


def test_every_code_has_one_entry_with_a_status_and_a_message() -> None:
    assert set(CATALOGUE) == set(Code)
    for code, refusal in CATALOGUE.items():
        assert 400 <= refusal.status < 600, code
        assert refusal.message and refusal.message[0].islower(), code
        assert re.fullmatch(r"[a-z][a-z_]*", code.value), code


def test_the_contract_codes_are_all_in_the_catalogue() -> None:
    # The error codes the README promises (its list of codes) exist with those names.
    promised = {
        "not_found", "validation_error", "ticket_invalid", "token_invalid", "token_expired", "token_scope",
        "admission_used", "slot_full", "already_booked", "hold_expired", "ineligible", "event_closed",
        "rate_limited", "overloaded", "unauthorized", "forbidden", "idempotency_conflict",
        "idempotency_in_progress",
    }  # fmt: skip
    assert promised <= {c.value for c in Code}


def test_no_refusal_code_is_spelled_outside_the_catalogue() -> None:
    """Code strings live in shared/errors.py only: elsewhere code says Code.X (or a named subclass)."""
    values = "|".join(sorted((c.value for c in Code), key=len, reverse=True))
    raising = re.compile(rf"""(Refused|code\s*==|code=)\(?\s*["']({values})["']""")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for package in CODE_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if path.name != "errors.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if raising.search(line)
    ]
    assert offenders == []


def test_the_problem_body_takes_status_and_detail_from_the_catalogue() -> None:
    resp = refusal_problem(Refused(Code.SLOT_FULL))
    body = json.loads(resp.text or "")
    assert resp.status == 409 == status_of("slot_full")
    assert body == {
        "type": "https://surgegate.dev/problems/slot-full",
        "title": "Slot full",
        "status": 409,
        "detail": CATALOGUE[Code.SLOT_FULL].message,
        "code": "slot_full",
    }
    assert refusal_problem(NotFound("no such hold")).status == 404
    assert json.loads(refusal_problem(TokenScope()).text or "")["detail"] == CATALOGUE[Code.TOKEN_SCOPE].message
    assert status_of("not_a_code") == 400


def _documented_codes(document: dict[str, object]) -> list[tuple[str, int, str]]:
    """(where, status, code) for every problem code an OpenAPI document lists under a status."""
    found: list[tuple[str, int, str]] = []

    def walk(node: object, where: str, status: int | None) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "enum" and where.endswith("/code") and status is not None:
                    found.extend((where, status, code) for code in value)
                else:
                    walk(value, f"{where}/{key}", int(key) if key.isdigit() and len(key) == 3 else status)
        elif isinstance(node, list):
            for item in node:
                walk(item, where, status)

    walk(document.get("paths", {}), "paths", None)
    responses = document.get("components", {}).get("responses", {})  # type: ignore[union-attr]
    for name, response in responses.items():
        refs = json.dumps(document.get("paths", {}))
        statuses = {int(s) for s in re.findall(rf'"(\d{{3}})": {{"\$ref": "#/components/responses/{name}"}}', refs)}
        for status in statuses:
            walk(response, f"components/responses/{name}", status)
    return found


def test_the_openapi_documents_give_each_code_its_catalogue_status() -> None:
    for name in ("admission/openapi.json", "waitingroom/openapi.json"):
        document = json.loads((REPO / name).read_text())
        for where, status, code in _documented_codes(document):
            assert code in {c.value for c in Code}, f"{name} {where}: {code} is not in the catalogue"
            assert status_of(code) == status, f"{name} {where}: {code} is {status_of(code)}, documented {status}"
