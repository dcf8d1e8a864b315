"""Looking back at eligibility decisions: support's view and override, the shadow report, replay.

* :func:`support_view`: a decision as support sees it: version, per-rule explanation, reason codes,
  input hash, never the inputs themselves. :func:`override` stores a *new* decision of kind
  ``override`` naming the staff member and their mandatory reason (the original stays as it was);
  audited ``eligibility_override``.
* :func:`shadow_report`: of the live evaluations that ran a shadow version beside the published one,
  how many agreed and how many flipped (eligible → ineligible and back), by reason, with sample ids.
* :func:`replay`: every evaluation made under version A whose inputs are still held, evaluated again
  under version B on the same local date: who flips, and the confirmed appointments booked under A
  that B refuses, listed for review (never cancelled); audited ``eligibility_replayed``.

Every function runs in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from cryptography.fernet import InvalidToken

from shared import queries
from shared.eligibility import Inputs, compiled_version, run
from shared.errors import NotFound, ValidationFailed
from shared.persons import PersonVault
from shared.statuses import DecisionKind, DecisionOutcome

SAMPLES = 10  # decision ids shown per flip kind


def _at(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def decision_json(row: Any) -> dict[str, Any]:
    """A decision without its inputs: what support and an ombudsman may read."""
    return {
        "decision_id": str(row["decision_id"]),
        "event_id": row["event_id"],
        "rule_version": row["rule_version"],
        "eligible": row["outcome"] == DecisionOutcome.ELIGIBLE,
        "reasons": list(row["reasons"]),
        "explanation": row["explanation"],
        "kind": row["kind"],
        "input_hash": bytes(row["input_hash"]).hex(),
        "override": None
        if row["kind"] != DecisionKind.OVERRIDE
        else {"overrides": str(row["overrides"]), "actor": row["actor"], "reason": row["override_reason"]},
        "valid_until": _at(row["valid_until"]),
        "decided_at": _at(row["created_at"]),
    }


async def support_view(con: asyncpg.Connection, decision_id: uuid.UUID, *, actor: str) -> dict[str, Any]:
    row = await con.fetchrow(queries.ELIG_DECISION, decision_id)
    if row is None:
        raise NotFound("no such decision")
    await con.execute(
        queries.INSERT_AUDIT, "eligibility_decision_read", row["event_id"], None, None, None, actor,
        {"decision_id": str(decision_id)},
    )  # fmt: skip
    return decision_json(row)


async def override(
    con: asyncpg.Connection,
    decision_id: uuid.UUID,
    *,
    eligible: bool,
    reason: str,
    actor: str,
    now: datetime,
    ttl_s: int,
) -> dict[str, Any]:
    """A new decision for the same person and event, marked override with ``actor`` and ``reason``."""
    row = await con.fetchrow(queries.ELIG_DECISION, decision_id)
    if row is None:
        raise NotFound("no such decision")
    new_id = uuid.uuid4()
    outcome = DecisionOutcome.ELIGIBLE if eligible else DecisionOutcome.INELIGIBLE
    reasons = [] if eligible else (list(row["reasons"]) or ["override"])
    valid_until = now + timedelta(seconds=ttl_s)
    await con.execute(
        queries.ELIG_INSERT_DECISION, new_id, row["event_id"], row["rule_version"], outcome, reasons,
        row["explanation"], DecisionKind.OVERRIDE, row["input_hash"], row["person_ref"], None, row["as_of"],
        row["credential"], None, None, None, decision_id, actor, reason, valid_until,
    )  # fmt: skip
    await con.execute(
        queries.INSERT_AUDIT, "eligibility_override", row["event_id"], None, None, None, actor,
        {"decision_id": str(new_id), "overrides": str(decision_id), "eligible": eligible, "reason": reason},
    )  # fmt: skip
    created = await con.fetchrow(queries.ELIG_DECISION, new_id)
    return decision_json(created)


def _flip(before: str, after: str | None) -> str | None:
    if after is None or before == after:
        return None
    return "to_ineligible" if before == DecisionOutcome.ELIGIBLE else "to_eligible"


async def shadow_report(con: asyncpg.Connection, event_id: str, version: int) -> dict[str, Any]:
    """Agreements and flips between the published answers and shadow ``version``'s (stored decisions)."""
    rows = await con.fetch(queries.ELIG_SHADOWED, event_id, version)
    flips: dict[str, list[str]] = {"to_ineligible": [], "to_eligible": []}
    by_reason: Counter[str] = Counter()
    agree = 0
    for row in rows:
        kind = _flip(row["outcome"], row["shadow_outcome"])
        if kind is None:
            agree += 1
            continue
        flips[kind].append(str(row["decision_id"]))
        changed = set(row["reasons"]) ^ set(row["shadow_reasons"] or [])
        by_reason.update(changed)
    return {
        "event_id": event_id,
        "shadow_version": version,
        "evaluations": len(rows),
        "agree": agree,
        "flips": {kind: {"count": len(ids), "samples": ids[:SAMPLES]} for kind, ids in flips.items()},
        "flips_by_reason": dict(sorted(by_reason.items())),
    }


async def replay(
    con: asyncpg.Connection, vault: PersonVault, event_id: str, old: int, new: int, *, actor: str
) -> dict[str, Any]:
    """Evaluate again under ``new`` every held evaluation made under ``old`` (see the module docstring)."""
    compiled = await compiled_version(con, event_id, new)
    await compiled_version(con, event_id, old)  # 404 for an unknown version
    flips: list[dict[str, Any]] = []
    refused_refs: set[bytes] = set()
    unreadable = 0
    rows = await con.fetch(queries.ELIG_REPLAYABLE, event_id, old)
    for row in rows:
        try:
            evaluation = run(compiled, Inputs.opened(vault, row["inputs_sealed"]), row["as_of"])
        except (InvalidToken, ValidationFailed, KeyError, ValueError):
            unreadable += 1
            continue
        if not evaluation.eligible:
            refused_refs.add(bytes(row["person_ref"]))
        kind = _flip(row["outcome"], evaluation.outcome)
        if kind is not None:
            flips.append({"decision_id": str(row["decision_id"]), "flip": kind, "reasons": list(evaluation.reasons)})
    review = []
    for appointment in await con.fetch(queries.ELIG_BOOKED_UNDER, event_id, old):
        decision = (
            None
            if appointment["decision_id"] is None
            else await con.fetchrow(queries.ELIG_DECISION, appointment["decision_id"])
        )
        if decision is not None and bytes(decision["person_ref"]) in refused_refs:
            review.append(
                {"appointment_id": str(appointment["appointment_id"]), "decision_id": str(decision["decision_id"])}
            )
    report = {
        "event_id": event_id,
        "from_version": old,
        "to_version": new,
        "replayed": len(rows) - unreadable,
        "unreadable": unreadable,
        "flips": flips,
        "appointments_to_review": review,
    }
    await con.execute(
        queries.INSERT_AUDIT, "eligibility_replayed", event_id, None, None, None, actor,
        {"from_version": old, "to_version": new, "flips": len(flips),
         "appointments_to_review": [r["appointment_id"] for r in review]},
    )  # fmt: skip
    return report
