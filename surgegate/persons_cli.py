"""``surgegate persons ...``: the stored person details themselves, straight in PostgreSQL (like
``migrate``: it needs the database and the seal keys, the admin API offers neither).

* ``reencrypt``: seal every ciphertext under the current key of SURGEGATE_PERSON_SEAL_KEYS (what the
  worker's daily job does), so the keys before it can be removed. Exit 1 if some ciphertext opens
  under none of the configured keys (a key removed too early: put it back and run again).
* ``erase``: erase now what SURGEGATE_RETENTION_DAYS says is due (what the worker does hourly).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from shared import retention, seats
from shared.db import create_pool
from shared.persons import PersonVault
from shared.settings import Settings
from surgegate.options import SharedOptions


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    shared.add("--database-url", help="PostgreSQL DSN (default SURGEGATE_DATABASE_URL)")
    common = shared.parser
    p = sub.add_parser(
        "persons", parents=[common], help="stored person details: re-encrypt under the current key, erase what is due"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "reencrypt", parents=[common], help="seal every person record under the current SURGEGATE_PERSON_SEAL_KEYS key"
    )
    actions.add_parser("erase", parents=[common], help="erase the details SURGEGATE_RETENTION_DAYS says are due")
    p.set_defaults(func=shared.wrap(cmd_persons))


def cmd_persons(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.database_url:
        settings = dataclasses.replace(settings, database_url=args.database_url)
    return asyncio.run(_run(settings, args.action))


async def _run(settings: Settings, action: str) -> int:
    vault = PersonVault.from_settings(settings)
    pool = await create_pool(settings.require_database(), min_size=1, max_size=2)
    try:
        if action == "reencrypt":
            done = await retention.reseal_all(pool, vault)
            print(f"re-encrypted {done.resealed}; unreadable under every configured key: {done.unreadable}")
            return 1 if done.unreadable else 0
        erased = await retention.erase_due(pool, seats.utcnow(), settings.retention_days)
        print(
            f"erased {erased.appointments} appointments, {erased.waitlist_entries} waitlist entries, "
            f"{erased.notifications} messages ({erased.batches} audited batches)"
        )
        return 0
    finally:
        await pool.close()
