"""Rule-set versions of an event and their states: create, publish, shadow, roll back, list, diff.

What a caller can rely on:

* **Versions are immutable.** :func:`create_version` compiles the rule set (:mod:`shared.rules`:
  unknown attributes, type errors and non-boolean rules refused 400 naming the rule), runs its
  examples and stores the version as ``draft`` with a number (1, 2, … per event), its content
  digest and each example's result. Nothing of a version that failed to compile is stored.
* **One pointer per event** (``rule_pointers``): the published and the shadow version. Every move
  (:func:`publish`, :func:`shadow`, :func:`rollback`) holds the event's ``RULES_POINTER`` advisory
  lock alone (the booking shares it: :mod:`shared.eligibility`), changes states and pointer
  together, and records the move with its actor and reason (``rule_moves``) and an audit row, in the
  caller's transaction. Publishing a version whose examples failed is refused 409
  ``examples_failed`` naming the example. Rollback republishes the version the current one replaced
  (again: the one before that).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from shared import locks, queries
from shared.errors import Code, NotFound, Refused
from shared.locks import LockNamespace
from shared.rules import RuleSetSpec, compile_rule_set, run_examples
from shared.rules import diff as diff_specs
from shared.statuses import RuleState


async def _require_event(con: asyncpg.Connection, event_id: str) -> None:
    if not await con.fetchval(queries.ELIG_EVENT_EXISTS, event_id):
        raise NotFound(f"no event {event_id}")


async def _audit(con: asyncpg.Connection, action: str, event_id: str, actor: str, detail: dict[str, Any]) -> None:
    await con.execute(queries.INSERT_AUDIT, action, event_id, None, None, None, actor, detail)


async def create_version(
    con: asyncpg.Connection, event_id: str, spec: RuleSetSpec, *, actor: str, today: date
) -> dict[str, Any]:
    """Compile, run the examples, store a new ``draft`` version; audited ``rules_created``."""
    await _require_event(con, event_id)
    compiled = compile_rule_set(spec)  # ValidationFailed naming the rule: nothing stored
    results = run_examples(compiled, today)
    passed = all(r["passed"] for r in results)
    await con.execute(queries.ELIG_ENSURE_POINTER, event_id)
    await con.fetchrow(queries.ELIG_LOCK_POINTER, event_id)  # version numbers are taken one at a time
    # (the row lock, not the advisory one: creating a version changes nothing a booking reads)
    version: int = await con.fetchval(queries.ELIG_NEXT_VERSION, event_id)
    await con.execute(
        queries.ELIG_INSERT_VERSION, event_id, version, compiled.digest, spec.model_dump(mode="json"),
        results, passed, actor,
    )  # fmt: skip
    await con.execute(queries.ELIG_INSERT_MOVE, event_id, version, None, RuleState.DRAFT, None, actor, None)
    await _audit(con, "rules_created", event_id, actor, {"rule_version": version, "digest": compiled.digest})
    return {
        "rule_version": version,
        "digest": compiled.digest,
        "state": RuleState.DRAFT,
        "examples_passed": passed,
        "examples": results,
    }


async def _version_row(con: asyncpg.Connection, event_id: str, version: int) -> Any:
    row = await con.fetchrow(queries.ELIG_VERSION, event_id, version)
    if row is None:
        raise NotFound(f"event {event_id} has no rule version {version}")
    return row


async def _move(
    con: asyncpg.Connection,
    event_id: str,
    version: int,
    to: RuleState,
    *,
    actor: str,
    reason: str | None,
    replaced: int | None = None,
) -> None:
    row = await _version_row(con, event_id, version)
    if row["state"] == to:
        return
    await con.execute(queries.ELIG_SET_STATE, event_id, version, to)
    await con.execute(queries.ELIG_INSERT_MOVE, event_id, version, row["state"], to, replaced, actor, reason)


async def _locked_pointer(con: asyncpg.Connection, event_id: str) -> Any:
    """The pointer, with the event's RULES_POINTER lock held alone until the transaction ends."""
    await _require_event(con, event_id)
    await locks.xact_lock(con, LockNamespace.RULES_POINTER, event_id)
    await con.execute(queries.ELIG_ENSURE_POINTER, event_id)
    return await con.fetchrow(queries.ELIG_LOCK_POINTER, event_id)


def _failed_example(row: Any) -> str | None:
    for result in json.loads(row["examples"]) if isinstance(row["examples"], str) else row["examples"]:
        if not result["passed"]:
            return str(result["example"])
    return None


async def publish(
    con: asyncpg.Connection, event_id: str, version: int, *, actor: str, reason: str | None, rollback: bool = False
) -> dict[str, Any]:
    """Make ``version`` the published one (the previous one retired); audited ``rules_published``.
    Refused 409 ``examples_failed`` (naming the example) when one of its examples failed."""
    pointer = await _locked_pointer(con, event_id)
    row = await _version_row(con, event_id, version)
    failed = _failed_example(row)
    if failed is not None:
        raise Refused(Code.EXAMPLES_FAILED, f"rule version {version}: {failed} does not give its expected outcome")
    current: int | None = pointer["published_version"]
    if current == version:
        return {"rule_version": version, "state": RuleState.PUBLISHED, "previous": current}
    replaced = current
    if rollback:
        # The version restored replaces what it replaced before, so repeated rollbacks walk back.
        replaced = await con.fetchval(queries.ELIG_REPLACED_BY, event_id, version)
    if current is not None:
        await _move(con, event_id, current, RuleState.RETIRED, actor=actor, reason=reason)
    await _move(con, event_id, version, RuleState.PUBLISHED, actor=actor, reason=reason, replaced=replaced)
    shadow = None if pointer["shadow_version"] == version else pointer["shadow_version"]
    await con.execute(queries.ELIG_SET_POINTER, event_id, version, shadow)
    action = "rules_rolled_back" if rollback else "rules_published"
    await _audit(con, action, event_id, actor, {"rule_version": version, "previous": current, "reason": reason})
    return {"rule_version": version, "state": RuleState.PUBLISHED, "previous": current}


async def shadow(
    con: asyncpg.Connection, event_id: str, version: int, *, actor: str, reason: str | None
) -> dict[str, Any]:
    """Evaluate ``version`` beside the published one on every live evaluation (the previous shadow
    goes back to draft); audited ``rules_shadowed``. The published version cannot be its own shadow."""
    pointer = await _locked_pointer(con, event_id)
    await _version_row(con, event_id, version)
    if pointer["published_version"] == version:
        raise Refused(Code.CONFLICT, f"rule version {version} is the published one")
    previous = pointer["shadow_version"]
    if previous is not None and previous != version:
        await _move(con, event_id, previous, RuleState.DRAFT, actor=actor, reason=reason)
    await _move(con, event_id, version, RuleState.SHADOW, actor=actor, reason=reason)
    await con.execute(queries.ELIG_SET_POINTER, event_id, pointer["published_version"], version)
    await _audit(con, "rules_shadowed", event_id, actor, {"rule_version": version, "reason": reason})
    return {"rule_version": version, "state": RuleState.SHADOW}


async def rollback(con: asyncpg.Connection, event_id: str, *, actor: str, reason: str | None) -> dict[str, Any]:
    """Publish again the version the current one replaced; 409 ``conflict`` when there is none."""
    pointer = await _locked_pointer(con, event_id)
    current = pointer["published_version"]
    previous = None if current is None else await con.fetchval(queries.ELIG_REPLACED_BY, event_id, current)
    if previous is None:
        raise Refused(Code.CONFLICT, "there is no previously published version to roll back to")
    return await publish(con, event_id, previous, actor=actor, reason=reason, rollback=True)


def _version_json(row: Any, moves: list[Any] | None = None, *, body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_version": row["version"],
        "digest": row["digest"],
        "state": row["state"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "examples_passed": row["examples_passed"],
    }
    if moves is not None:
        out["history"] = [
            {"from": m["from_state"], "to": m["to_state"], "actor": m["actor"], "reason": m["reason"],
             "at": m["at"].isoformat()}
            for m in moves
        ]  # fmt: skip
    if body:
        out["rules"] = row["body"]
        out["examples"] = row["examples"]
    return out


async def list_versions(con: asyncpg.Connection, event_id: str) -> dict[str, Any]:
    await _require_event(con, event_id)
    pointer = await con.fetchrow(queries.ELIG_POINTER, event_id)
    moves = await con.fetch(queries.ELIG_MOVES, event_id)
    versions = [
        _version_json(row, [m for m in moves if m["version"] == row["version"]])
        for row in await con.fetch(queries.ELIG_VERSIONS, event_id)
    ]
    return {
        "event_id": event_id,
        "published": None if pointer is None else pointer["published_version"],
        "shadow": None if pointer is None else pointer["shadow_version"],
        "versions": versions,
    }


async def get_version(con: asyncpg.Connection, event_id: str, version: int) -> dict[str, Any]:
    row = await _version_row(con, event_id, version)
    moves = [m for m in await con.fetch(queries.ELIG_MOVES, event_id) if m["version"] == version]
    return _version_json(row, moves, body=True)


async def diff_versions(con: asyncpg.Connection, event_id: str, old: int, new: int) -> dict[str, Any]:
    a = RuleSetSpec.model_validate((await _version_row(con, event_id, old))["body"])
    b = RuleSetSpec.model_validate((await _version_row(con, event_id, new))["body"])
    return {"from": old, "to": new, **diff_specs(a, b)}
