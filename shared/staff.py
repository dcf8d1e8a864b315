"""Who is calling an admin endpoint, and with which roles: the one place admin credentials are checked.

Every admin handler of both services is wrapped in ``@requires(Role.X)`` (which calls
:func:`require_role`): 401 ``unauthorized`` without a credential this directory knows, 403
``forbidden`` when the credential lacks the role. The handler reads who acted with
``actor_of(request)``, for the audit row written in the same transaction (:meth:`Actor.audit_name`;
never a person's identity). The role a handler requires is readable from the route table
(``handler.required_role``), so a test can walk every admin route.

Credentials today: the bootstrap owner token(s), ``SURGEGATE_ADMIN_TOKEN``, holding every role.
Named staff keys and identity-provider tokens plug into :class:`StaffDirectory.authenticate`.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from shared.errors import Code, Refused, Unauthorized
from shared.http import bearer


class Role(StrEnum):
    OPERATOR = "operator"  # events: rate, pause, freeze
    SUPPLY = "supply"  # sites, schedules, slots, closures, check-in
    RULES = "rules"  # eligibility versions: publish, rollback, replay
    SUPPORT = "support"  # look a person up, override with a reason, cancel for someone
    AUDITOR = "auditor"  # read and verify the audit
    REPORTING = "reporting"  # aggregates only


ALL_ROLES = frozenset(Role)


@dataclass(frozen=True)
class Actor:
    name: str  # the staff member's name, or "owner" for the bootstrap token
    roles: frozenset[Role]
    kind: str = "staff"  # staff | owner | idp

    def audit_name(self) -> str:
        """How the audit log names this actor: ``staff:NAME``, ``owner``, ``idp:SUBJECT``."""
        return "owner" if self.kind == "owner" else f"{self.kind}:{self.name}"


class StaffDirectory:
    """Turns a bearer credential into an :class:`Actor` (None: unknown)."""

    def __init__(self, owner_tokens: tuple[str, ...]) -> None:
        self._owner_tokens = owner_tokens

    async def authenticate(self, credential: str) -> Actor | None:
        if any(hmac.compare_digest(credential.encode(), t.encode()) for t in self._owner_tokens):
            return Actor("owner", ALL_ROLES, kind="owner")
        return None


STAFF = web.AppKey("staff", StaffDirectory)


async def require_role(request: web.Request, role: Role) -> Actor:
    """The caller, if its credential holds ``role``; else 401 ``unauthorized`` / 403 ``forbidden``."""
    given = bearer(request)
    actor = None if given is None else await request.app[STAFF].authenticate(given)
    if actor is None:
        raise Unauthorized("an admin bearer token is required")
    if role not in actor.roles:
        raise Refused(Code.FORBIDDEN, f"this credential lacks the {role} role")
    return actor


ACTOR = web.RequestKey("actor", Actor)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Decorate an admin handler: the caller must hold ``role``; ``actor_of(request)`` says who it is."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            request[ACTOR] = await require_role(request, role)
            return await handler(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded

    return wrap


def actor_of(request: web.Request) -> Actor:
    actor: Actor = request[ACTOR]
    return actor


def required_role(handler: object) -> Role | None:
    """The role an admin handler was declared with (None: it declares none)."""
    role = getattr(handler, "required_role", None)
    return role if isinstance(role, Role) else None
