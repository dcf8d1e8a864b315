"""An event's identity provider (role ``rules``): ``GET``/``PUT``/``DELETE /admin/v1/events/{event_id}/identity``.

``PUT`` names the OpenID Connect provider whose ID tokens prove an event's verified attributes and
the minimum assurance level (:mod:`shared.identity`); each change is audited with its actor in the
transaction that makes it (``event_identity_set`` / ``event_identity_removed``). Every API process
sees a change within :data:`shared.identity.CACHE_S`.
"""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from admission.keys import POOL
from shared import identity
from shared.errors import NotFound
from shared.http import json_response, read_json
from shared.identity import DEFAULT_ALGORITHMS, IdentityConfig, check_levels
from shared.staff import Role, actor_of, audit_admin, requires

_EVENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    issuer: str = Field(min_length=1, max_length=500)
    audience: str = Field(min_length=1, max_length=500)
    jwks_url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://")
    acr_values: list[str] = Field(default_factory=list, max_length=20)
    min_acr: str | None = Field(default=None, max_length=200)
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS), min_length=1, max_length=10)

    @model_validator(mode="after")
    def _levels(self) -> IdentityIn:
        check_levels(self.acr_values, self.min_acr, self.algorithms)
        return self


def _event_id(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not _EVENT_ID.match(event_id):
        raise NotFound("no such event")
    return event_id


@requires(Role.RULES)
async def get_identity(request: web.Request) -> web.Response:
    event_id = _event_id(request)
    async with request.app[POOL].acquire() as con:
        config = await identity.load(con, event_id)
    if config is None:
        raise NotFound(f"event {event_id!r} has no identity provider")
    return json_response(config.as_json())


@requires(Role.RULES)
async def put_identity(request: web.Request) -> web.Response:
    """Create or replace the event's identity provider."""
    event_id = _event_id(request)
    body = await read_json(request, IdentityIn)
    wanted = IdentityConfig(event_id=event_id, issuer=body.issuer, audience=body.audience, jwks_url=body.jwks_url,
                            acr_values=tuple(body.acr_values), min_acr=body.min_acr,
                            algorithms=tuple(body.algorithms))  # fmt: skip
    actor = actor_of(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        config = await identity.store(con, wanted, actor.audit_name())
        await audit_admin(con, actor, "event_identity_set", event_id=event_id, detail=config.as_json())
    return json_response(config.as_json())


@requires(Role.RULES)
async def delete_identity(request: web.Request) -> web.Response:
    """Answer the removed configuration. The event no longer requires identity (a rule set's verified
    attributes then refuse everyone)."""
    event_id = _event_id(request)
    actor = actor_of(request)
    async with request.app[POOL].acquire() as con, con.transaction():
        removed = await identity.remove(con, event_id)
        await audit_admin(con, actor, "event_identity_removed", event_id=event_id, detail=removed.as_json())
    return json_response(removed.as_json())
