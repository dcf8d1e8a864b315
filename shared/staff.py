"""Who is calling an admin endpoint, and with which roles: the one place admin credentials are checked.

Every admin handler of both services is wrapped in ``@requires(Role.X)`` (which calls
:func:`require_role`): 401 ``unauthorized`` without a credential this directory knows, 403
``forbidden`` when the credential lacks the role. The handler reads who acted with
``actor_of(request)``, for the audit row written in the same transaction (:meth:`Actor.audit_name`;
never a person's identity). The role a handler requires is readable from the route table
(``handler.required_role``), so a test can walk every admin route.

Credentials, in the order :meth:`StaffDirectory.authenticate` tries them:

- the bootstrap owner token(s), ``SURGEGATE_ADMIN_TOKEN``: every role, audited as ``owner``;
- named staff keys (``sg_`` + 256 random bits, made by ``surgegate staff add``): looked up in
  PostgreSQL on every admin request, by the SHA-256 of the key. No cache, so ``staff revoke`` takes
  effect on every process with the next request (admin requests are few; one indexed read each).
  SHA-256, not a slow password hash: a slow hash protects guessable secrets; a 256-bit random key
  cannot be guessed from its hash by any number of fast tries, and a fast, unsalted hash lets the
  database find the key by an index instead of trying every row;
- bearer JWTs of the configured identity provider (:mod:`shared.idp`), audited as ``idp:SUBJECT``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from shared import queries
from shared.errors import Code, Refused, Unauthorized
from shared.http import bearer

if TYPE_CHECKING:
    from shared.idp import IdentityProvider


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
    kind: str = "staff"  # staff | owner | idp | db (the `surgegate staff` CLI, as a database role)

    def audit_name(self) -> str:
        """How the audit log names this actor: ``staff:NAME``, ``owner``, ``idp:SUBJECT``, ``db:ROLE``."""
        return "owner" if self.kind == "owner" else f"{self.kind}:{self.name}"


OWNER = Actor("owner", ALL_ROLES, kind="owner")

KEY_PREFIX = "sg_"
STAFF_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # as the staff table's CHECK


def new_key() -> str:
    """A new staff key: 256 random bits, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> bytes:
    """What the staff table keeps of a key (see the module docstring for why SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).digest()


class StaffDirectory:
    """Turns a bearer credential into an :class:`Actor` (None: unknown, revoked or invalid).

    Staff keys need the database: :meth:`use_pool` gives it once the app's pool is open (until
    then, and on an app without one, only the owner token and identity-provider tokens work).
    """

    def __init__(self, owner_tokens: tuple[str, ...], *, idp: IdentityProvider | None = None) -> None:
        self._owner_tokens = owner_tokens
        self._idp = idp
        self._pool: asyncpg.Pool | None = None

    def use_pool(self, pool: asyncpg.Pool | None) -> None:
        self._pool = pool

    async def close(self) -> None:
        if self._idp is not None:
            await self._idp.close()

    async def authenticate(self, credential: str) -> Actor | None:
        if any(hmac.compare_digest(credential.encode(), t.encode()) for t in self._owner_tokens):
            return OWNER
        if credential.startswith(KEY_PREFIX):
            if self._pool is None:
                return None
            async with self._pool.acquire() as con:
                row = await con.fetchrow(queries.STAFF_BY_KEY, key_hash(credential))
            return None if row is None else Actor(row["name"], frozenset(Role(r) for r in row["roles"]))
        if self._idp is not None and credential.count(".") == 2:  # a JWS compact serialisation
            return await self._idp.verify(credential)
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


async def audit_admin(
    con: asyncpg.Connection,
    actor: Actor,
    action: str,
    *,
    event_id: str | None = None,
    slot_id: Any = None,
    appointment_id: Any = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an admin change by ``actor``; call it inside the transaction that makes the change."""
    await con.execute(
        queries.INSERT_AUDIT, action, event_id, slot_id, appointment_id, None, actor.audit_name(), detail or {}
    )


# --- managing staff (the `surgegate staff` CLI, straight to the database) -------------------------


class StaffExists(Exception):
    """The name is taken (also by a revoked member: names in the audit must keep meaning one person)."""


@dataclass(frozen=True)
class StaffMember:
    name: str
    roles: tuple[Role, ...]
    created_at: datetime
    revoked_at: datetime | None


async def add_staff(con: asyncpg.Connection, name: str, roles: Iterable[Role], *, actor: Actor) -> str:
    """Create a staff member; returns the key (shown once: only its hash is kept). Audited by ``actor``.
    Raises :class:`StaffExists` or ValueError (bad name, no role). Call inside a transaction."""
    if not STAFF_NAME.match(name):
        raise ValueError("a staff name is 1-64 lowercase letters, digits, '.', '_' or '-' (first a letter or digit)")
    wanted = sorted(set(roles))
    if not wanted:
        raise ValueError("give at least one role")
    key = new_key()
    try:
        await con.execute(queries.INSERT_STAFF, name, [str(r) for r in wanted], key_hash(key))
    except asyncpg.UniqueViolationError:
        raise StaffExists(name) from None
    await audit_admin(con, actor, "staff_added", detail={"name": name, "roles": [str(r) for r in wanted]})
    return key


async def revoke_staff(con: asyncpg.Connection, name: str, *, actor: Actor) -> bool:
    """Revoke a member's key at once (every process looks keys up per request). False: no such active
    member. Audited by ``actor``. Call inside a transaction."""
    revoked = await con.fetchval(queries.REVOKE_STAFF, name)
    if revoked:
        await audit_admin(con, actor, "staff_revoked", detail={"name": name})
    return bool(revoked)


async def list_staff(con: asyncpg.Connection) -> list[StaffMember]:
    return [
        StaffMember(r["name"], tuple(Role(x) for x in r["roles"]), r["created_at"], r["revoked_at"])
        for r in await con.fetch(queries.LIST_STAFF)
    ]


def required_role(handler: object) -> Role | None:
    """The role an admin handler was declared with (None: it declares none)."""
    role = getattr(handler, "required_role", None)
    return role if isinstance(role, Role) else None
