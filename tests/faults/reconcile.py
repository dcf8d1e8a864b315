"""Reconciliation: what the clients were told against what the database holds, after a fault.

:func:`reconcile` returns one line per problem (an empty list: everything holds). It reads the
tables directly and checks each rule itself, so it does not lean on the schema's own guards (the
unique indexes and the capacity CHECK); the negative controls in ``test_faults.py`` plant breaches
with those guards dropped and see each one reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import asyncpg

from tests.faults.load import Booker

APPOINTMENTS = "SELECT appointment_id::text AS id, token_id, slot_id, event_id, person_ref, status FROM appointments"
SLOTS = "SELECT slot_id, capacity, booked FROM slots"
ATTEMPTS = "SELECT token_id, status, code, appointment_id::text AS appointment_id FROM booking_attempts"


async def reconcile(con: asyncpg.Connection, bookers: Sequence[Booker]) -> list[str]:
    """Every rule of the fault suite, checked against the database ``con`` is connected to:

    * every client was told a final outcome;
    * every client told "confirmed" (a 201, or a confirmed status poll) has exactly one appointment,
      the one it was told, still confirmed; no client told a refusal has one; no appointment exists
      that no client was told about;
    * each attempt's stored outcome is the one its client was told, and no attempt is left pending;
    * each slot's ``booked`` equals its confirmed appointments and is at most its capacity;
    * one person holds at most one confirmed appointment per event.
    """
    appointments = await con.fetch(APPOINTMENTS)
    slots = await con.fetch(SLOTS)
    attempts = await con.fetch(ATTEMPTS)
    problems: list[str] = []

    undecided = [b for b in bookers if not b.decided]
    if undecided:
        problems.append(f"{len(undecided)} clients were never told a final outcome")

    by_token = defaultdict(list)
    for row in appointments:
        by_token[row["token_id"]].append(row)
    told = {b.token_id: b for b in bookers}
    for b in bookers:
        rows = by_token.get(b.token_id, [])
        if b.told == "confirmed":
            if len(rows) != 1:
                problems.append(f"token {b.token_id} was told confirmed and has {len(rows)} appointments")
            elif rows[0]["id"] != b.appointment_id or rows[0]["status"] != "confirmed":
                problems.append(
                    f"token {b.token_id} was told appointment {b.appointment_id}; the database holds "
                    f"{rows[0]['id']} ({rows[0]['status']})"
                )
        elif rows:
            problems.append(f"token {b.token_id} was told {b.told} ({b.code}) and has {len(rows)} appointments")
    strays = [row["id"] for row in appointments if row["token_id"] not in told]
    if strays:
        problems.append(f"{len(strays)} appointments belong to no client: {strays[:5]}")

    problems += _attempts(attempts, told)
    problems += _seats(slots, appointments)
    return problems


def _attempts(attempts: Sequence[asyncpg.Record], told: dict[str, Booker]) -> list[str]:
    problems = []
    pending = [row for row in attempts if row["status"] == "pending"]
    if pending:
        problems.append(f"{len(pending)} attempts are still pending")
    for row in attempts:
        b = told.get(row["token_id"])
        if b is None:
            problems.append(f"an attempt of token {row['token_id']} belongs to no client")
        elif b.decided and row["status"] != "pending" and (row["status"], row["code"]) != (b.told, b.code):
            problems.append(
                f"token {b.token_id} was told {b.told} ({b.code}); its attempt is {row['status']} ({row['code']})"
            )
    return problems


def _seats(slots: Sequence[asyncpg.Record], appointments: Sequence[asyncpg.Record]) -> list[str]:
    problems = []
    confirmed = [row for row in appointments if row["status"] == "confirmed"]
    per_slot = Counter(row["slot_id"] for row in confirmed)
    for slot in slots:
        held = per_slot[slot["slot_id"]]
        if slot["booked"] != held:
            problems.append(f"slot {slot['slot_id']}: booked = {slot['booked']}, confirmed appointments = {held}")
        if slot["booked"] > slot["capacity"]:
            problems.append(f"slot {slot['slot_id']}: booked = {slot['booked']} > capacity {slot['capacity']}")
    per_person = Counter((row["event_id"], bytes(row["person_ref"])) for row in confirmed)
    doubled = [n for n in per_person.values() if n > 1]
    if doubled:
        problems.append(f"{len(doubled)} people hold more than one confirmed appointment in one event")
    return problems
