"""Looking back at eligibility decisions: support's view and override, the shadow report, replay.

* :func:`support_view`: a decision as support sees it: version, per-rule explanation, reason codes,
  input hash, never the inputs themselves. :func:`override` stores a *new* decision of kind
  ``override`` naming the staff member and their mandatory reason (the original stays as it was);
  audited ``eligibility_override``.
* :func:`shadow_report`: of the live evaluations that ran a shadow version beside the published one,
  how many agreed and how many flipped (eligible → ineligible and back), by reason, with sample ids.
* :func:`replay`: every evaluation made under version A whose inputs are still held, evaluated again
  under version B on the same local date: who flips, and the confirmed appointments booked under A
  that B refuses, listed and **flagged** for review (``appointment_reviews``, never cancelled; the
  same replay again flags nothing new); audited ``eligibility_replayed``.
* :func:`flagged`: an event's flagged appointments; :func:`clear_flag`: support clears an
  appointment's open flags with a reason, audited ``review_cleared``. The flags also show in the
  support look-up and in :func:`support_view`.

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


def review_json(row: Any) -> dict[str, Any]:
    """A replay's flag on an appointment (``open`` until support clears it, with a reason)."""
    answer = {
        "appointment_id": str(row["appointment_id"]),
        "event_id": row["event_id"],
        "from_version": row["from_version"],
        "to_version": row["to_version"],
        "decision_id": None if row["decision_id"] is None else str(row["decision_id"]),
        "reasons": list(row["reasons"]),
        "flagged_at": _at(row["flagged_at"]),
        "flagged_by": row["flagged_by"],
        "open": row["cleared_at"] is None,
        "cleared_at": _at(row["cleared_at"]),
        "cleared_by": row["cleared_by"],
        "clear_reason": row["clear_reason"],
    }
    if "status" in row.keys():  # noqa: SIM118  (asyncpg's Record has no __contains__ for keys)
        answer.update(status=row["status"], slot_id=str(row["slot_id"]), site_id=row["site_id"],
                      starts_at=_at(row["starts_at"]))  # fmt: skip
    return answer


async def reviews_of(
    con: asyncpg.Connection, appointment_ids: list[uuid.UUID], decision_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The flags (open and cleared) of these appointments, or of those booked with ``decision_id``."""
    return [review_json(row) for row in await con.fetch(queries.REVIEWS_OF, appointment_ids, decision_id)]


async def support_view(con: asyncpg.Connection, decision_id: uuid.UUID, *, actor: str) -> dict[str, Any]:
    """The decision (no inputs) and the review flags of appointments booked with it; audited."""
    row = await con.fetchrow(queries.ELIG_DECISION, decision_id)
    if row is None:
        raise NotFound("no such decision")
    await con.execute(
        queries.INSERT_AUDIT, "eligibility_decision_read", row["event_id"], None, None, None, actor,
        {"decision_id": str(decision_id)},
    )  # fmt: skip
    return {**decision_json(row), "reviews": await reviews_of(con, [], decision_id)}


async def flagged(con: asyncpg.Connection, event_id: str, *, include_cleared: bool = False) -> dict[str, Any]:
    """The event's appointments flagged by a replay (open flags only unless ``include_cleared``),
    oldest flag first, with each appointment's status, slot and time. Reads only."""
    rows = await con.fetch(queries.REVIEWS_OF_EVENT, event_id, include_cleared)
    return {"event_id": event_id, "reviews": [review_json(row) for row in rows]}


async def clear_flag(
    con: asyncpg.Connection, appointment_id: uuid.UUID, *, reason: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Clear the appointment's open review flags (reviewed: it stays booked), audited
    ``review_cleared`` with the actor and reason. 404 when it has no open flag (so a repeat says so)."""
    cleared = await con.fetch(queries.REVIEW_CLEAR, appointment_id, now, actor, reason)
    if not cleared:
        raise NotFound("this appointment has no open review flag")
    replays = [f"{r['from_version']}->{r['to_version']}" for r in cleared]
    await con.execute(
        queries.INSERT_AUDIT, "review_cleared", cleared[0]["event_id"], None, appointment_id, None, actor,
        {"reason": reason, "replays": replays},
    )  # fmt: skip
    return {"appointment_id": str(appointment_id), "cleared": replays}


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
    con: asyncpg.Connection, vault: PersonVault, event_id: str, old: int, new: int, *, actor: str, now: datetime
) -> dict[str, Any]:
    """Evaluate again under ``new`` every held evaluation made under ``old`` (see the module docstring),
    flagging the appointments to review. Safe to repeat: ``newly_flagged`` counts only new flags."""
    compiled = await compiled_version(con, event_id, new)
    await compiled_version(con, event_id, old)  # 404 for an unknown version
    flips: list[dict[str, Any]] = []
    refused_refs: dict[bytes, list[str]] = {}
    unreadable = 0
    rows = await con.fetch(queries.ELIG_REPLAYABLE, event_id, old)
    for row in rows:
        try:
            evaluation = run(compiled, Inputs.opened(vault, row["inputs_sealed"]), row["as_of"])
        except (InvalidToken, ValidationFailed, KeyError, ValueError):
            unreadable += 1
            continue
        if not evaluation.eligible:
            refused_refs[bytes(row["person_ref"])] = list(evaluation.reasons)
        kind = _flip(row["outcome"], evaluation.outcome)
        if kind is not None:
            flips.append({"decision_id": str(row["decision_id"]), "flip": kind, "reasons": list(evaluation.reasons)})
    review = []
    newly_flagged = 0
    for appointment in await con.fetch(queries.ELIG_BOOKED_UNDER, event_id, old):
        decision = (
            None
            if appointment["decision_id"] is None
            else await con.fetchrow(queries.ELIG_DECISION, appointment["decision_id"])
        )
        if decision is None or bytes(decision["person_ref"]) not in refused_refs:
            continue
        review.append(
            {"appointment_id": str(appointment["appointment_id"]), "decision_id": str(decision["decision_id"])}
        )
        flag = await con.fetchval(
            queries.REVIEW_FLAG, appointment["appointment_id"], event_id, old, new, decision["decision_id"],
            refused_refs[bytes(decision["person_ref"])], now, actor,
        )  # fmt: skip
        newly_flagged += flag is not None
    report = {
        "event_id": event_id,
        "from_version": old,
        "to_version": new,
        "replayed": len(rows) - unreadable,
        "unreadable": unreadable,
        "flips": flips,
        "appointments_to_review": review,
        "newly_flagged": newly_flagged,
    }
    await con.execute(
        queries.INSERT_AUDIT, "eligibility_replayed", event_id, None, None, None, actor,
        {"from_version": old, "to_version": new, "flips": len(flips),
         "appointments_to_review": [r["appointment_id"] for r in review], "newly_flagged": newly_flagged},
    )  # fmt: skip
    return report
