"""``surgegate staff add|list|revoke``: named staff credentials, managed in the database directly.

Straight to PostgreSQL, like ``migrate``, not through an admin endpoint: whoever may mint
credentials already holds the database (which holds every credential's consequences), and no
network endpoint exists that hands out keys. The audit row of each change names the database role
that made it (``db:ROLE``, as PostgreSQL authenticated it). ``add`` prints the key alone on the last
line of its output, once: only its SHA-256 is kept. A revoked key stops working on every process at
the next request (keys are looked up per request, see shared/staff.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from shared.db import connect
from shared.settings import Settings
from shared.staff import ALL_ROLES, Actor, Role, StaffExists, add_staff, list_staff, revoke_staff
from surgegate.options import SharedOptions


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    shared.add("--database-url", help="PostgreSQL DSN (default SURGEGATE_DATABASE_URL)")
    common = shared.parser
    p = sub.add_parser(
        "staff", parents=[common], help="named staff keys with roles: add, list, revoke (in the database)"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", parents=[common], help="create a staff member; prints the key once, on the last line")
    a.add_argument("name")
    a.add_argument("--role", action="append", required=True, choices=[str(r) for r in Role], dest="roles",
                   help="a role to grant (repeat for several)")  # fmt: skip
    actions.add_parser("list", parents=[common], help="staff members, their roles and whether revoked (never keys)")
    r = actions.add_parser("revoke", parents=[common], help="revoke a member's key on every process at once")
    r.add_argument("name")
    p.set_defaults(func=shared.wrap(run))


async def _db_actor(con: asyncpg.Connection) -> Actor:
    return Actor(str(await con.fetchval("SELECT current_user")), ALL_ROLES, kind="db")


async def _run(args: argparse.Namespace, dsn: str) -> int:
    con = await connect(dsn)
    try:
        if args.action == "list":
            for m in await list_staff(con):
                state = f"revoked {m.revoked_at.isoformat()}" if m.revoked_at else "active"
                print(f"{m.name}\t{','.join(m.roles)}\t{state}\tsince {m.created_at.isoformat()}")
            return 0
        async with con.transaction():
            actor = await _db_actor(con)
            if args.action == "revoke":
                if not await revoke_staff(con, args.name, actor=actor):
                    print(f"surgegate staff: no active staff member {args.name!r}", file=sys.stderr)
                    return 1
                print(f"revoked {args.name}")
                return 0
            key = await add_staff(con, args.name, [Role(r) for r in args.roles], actor=actor)
    except StaffExists:
        print(f"surgegate staff: {args.name!r} exists (names are never reused, revoked or not)", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"surgegate staff: {exc}", file=sys.stderr)
        return 2
    finally:
        await con.close()
    print(f"added {args.name} ({', '.join(sorted(set(args.roles)))}); the key, shown only now:")
    print(key)
    return 0


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    dsn = args.database_url or settings.require_database()
    return asyncio.run(_run(args, dsn))
