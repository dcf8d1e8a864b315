"""Eligibility rule sets and decisions for staff (``/admin/v1``).

Role ``rules``: create a version (JSON, or YAML with ``Content-Type: application/yaml``), list with
history, show one, diff two, shadow, publish, roll back, the shadow report and replay. Role
``support``: read a decision (no inputs) and override it with a reason. Every change is audited with
the actor (and the reason given) in its own transaction. Handlers parse, call one service, render.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admission.keys import POOL, RULEBOOK, SETTINGS, VAULT
from shared import eligibility_review, rule_versions, seats
from shared.errors import ValidationFailed
from shared.http import json_response, parse_json, path_uuid, read_json, validate
from shared.rules import RuleSetSpec
from shared.staff import Role, actor_of, requires

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class _PlainYAML(yaml.SafeLoader):  # type: ignore[misc]  # yaml has no types here
    """``safe_load`` without aliases: a few lines of anchors and aliases can stand for billions of
    values once the body is validated, hashed and stored (a "billion laughs"). A rule set needs none."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", mark)
        return super().compose_node(parent, index)


class MoveIn(BaseModel):
    """The body of publish, shadow and rollback: optional, but the reason is what the audit keeps."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_version: int = Field(ge=1)
    to_version: int = Field(ge=1)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    eligible: bool
    reason: str = Field(min_length=1, max_length=500)


def _version(request: web.Request, name: str = "version") -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise ValidationFailed(
            f"{name} is not a version number", [{"loc": ["path", name], "msg": "a positive integer"}]
        )
    return int(raw)


def _query_version(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise ValidationFailed(
            f"{name} is required: a version number", [{"loc": ["query", name], "msg": "a positive integer"}]
        )
    return int(raw)


async def _rule_set(request: web.Request) -> RuleSetSpec:
    raw = await request.read()
    if request.content_type in YAML_TYPES:
        try:
            # A SafeLoader without aliases: plain data, never objects.
            data = yaml.load(raw.decode("utf-8"), Loader=_PlainYAML)  # noqa: S506
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError):
            # ValueError: a date that does not exist (2025-02-29); RecursionError: nested past Python's stack
            raise ValidationFailed("the body is not valid YAML") from None
    else:
        data = parse_json(raw) if raw else None
    return validate(RuleSetSpec, data)


async def _reason(request: web.Request) -> str | None:
    if not await request.read():
        return None
    return (await read_json(request, MoveIn)).reason


@requires(Role.RULES)
async def create_rules(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    spec = await _rule_set(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        created = await rule_versions.create_version(
            con, event_id, spec, actor=actor_of(request).audit_name(), today=seats.utcnow().date()
        )
    return json_response(created, status=201)


@requires(Role.RULES)
async def list_rules(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as con:
        return json_response(await rule_versions.list_versions(con, request.match_info["event_id"]))


@requires(Role.RULES)
async def get_rules(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as con:
        return json_response(await rule_versions.get_version(con, request.match_info["event_id"], _version(request)))


@requires(Role.RULES)
async def diff_rules(request: web.Request) -> web.Response:
    old, new = _query_version(request, "from"), _query_version(request, "to")
    async with request.app[POOL].acquire() as con:
        return json_response(await rule_versions.diff_versions(con, request.match_info["event_id"], old, new))


async def _move(request: web.Request, move: Callable[..., Awaitable[dict[str, Any]]], *version: int) -> web.Response:
    """Move the event's pointer or a version's state (audited with the actor and the reason), then
    let this process's rulebook see it at once (the others within its refresh)."""
    event_id, reason = request.match_info["event_id"], await _reason(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        done = await move(con, event_id, *version, actor=actor_of(request).audit_name(), reason=reason)
    request.app[RULEBOOK].changed(event_id)
    return json_response(done)


@requires(Role.RULES)
async def publish_rules(request: web.Request) -> web.Response:
    return await _move(request, rule_versions.publish, _version(request))


@requires(Role.RULES)
async def shadow_rules(request: web.Request) -> web.Response:
    return await _move(request, rule_versions.shadow, _version(request))


@requires(Role.RULES)
async def rollback_rules(request: web.Request) -> web.Response:
    return await _move(request, rule_versions.rollback)


@requires(Role.RULES)
async def shadow_report(request: web.Request) -> web.Response:
    version = _query_version(request, "version")
    async with request.app[POOL].acquire() as con:
        return json_response(await eligibility_review.shadow_report(con, request.match_info["event_id"], version))


@requires(Role.RULES)
async def replay(request: web.Request) -> web.Response:
    body = await read_json(request, ReplayIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        report = await eligibility_review.replay(
            con, request.app[VAULT], request.match_info["event_id"], body.from_version, body.to_version,
            actor=actor_of(request).audit_name(), now=seats.utcnow(),
        )  # fmt: skip
    return json_response(report)


def _decision_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request, "decision_id", "decision")


@requires(Role.SUPPORT)
async def support_decision(request: web.Request) -> web.Response:
    decision_id = _decision_id(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        return json_response(
            await eligibility_review.support_view(con, decision_id, actor=actor_of(request).audit_name())
        )


@requires(Role.SUPPORT)
async def override_decision(request: web.Request) -> web.Response:
    decision_id = _decision_id(request)
    body = await read_json(request, OverrideIn)
    async with request.app[POOL].acquire() as con, con.transaction():
        created = await eligibility_review.override(
            con, decision_id, eligible=body.eligible, reason=body.reason, actor=actor_of(request).audit_name(),
            now=seats.utcnow(), ttl_s=request.app[SETTINGS].eligibility_decision_ttl_s,
        )  # fmt: skip
    return json_response(created, status=201)
