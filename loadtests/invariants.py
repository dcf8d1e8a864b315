"""Check, after a load test, what must hold whatever the load: ``python -m loadtests.invariants DSN``.

No slot holds more confirmed appointments than it has seats; no person holds two confirmed
appointments for one event; no admission made two appointments. Prints each broken one (slot ids and
event ids only, never a person) and exits 1 if any, else prints a summary line and exits 0.
Read-only: safe to run against production.
"""

from __future__ import annotations

import asyncio
import sys

from loadtests import queries
from shared.db import connect


async def broken_invariants(dsn: str) -> tuple[list[str], int]:
    """The broken invariants (empty when all hold) and the number of confirmed appointments."""
    con = await connect(dsn)
    try:
        broken = [f"slot {r['what']} overbooked: {r['confirmed']} confirmed for {r['capacity']} seats"
                  for r in await con.fetch(queries.OVERBOOKED_SLOTS)]  # fmt: skip
        broken += [f"a person holds {r['confirmed']} confirmed appointments for event {r['what']}"
                   for r in await con.fetch(queries.PERSONS_BOOKED_TWICE)]  # fmt: skip
        broken += [f"an admission made {r['confirmed']} appointments for event {r['what']}"
                   for r in await con.fetch(queries.ADMISSIONS_BOOKED_TWICE)]  # fmt: skip
        return broken, int(await con.fetchval(queries.CONFIRMED_APPOINTMENTS))
    finally:
        await con.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m loadtests.invariants DSN", file=sys.stderr)
        return 2
    broken, confirmed = asyncio.run(broken_invariants(argv[0]))
    for line in broken:
        print(f"INVARIANT BROKEN: {line}")
    if not broken:
        print(f"invariants hold over {confirmed} confirmed appointments: no overbooking, one per person and admission")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
