"""Keeping less: after the retention period no recoverable person detail is left anywhere in the
database, while counts, person_ref and the audit go on working.

"Anywhere" is every text, bytea, jsonb and array column of every table (information_schema), searched
for the people's name, email and birth date and for every ciphertext that held them; the negative
controls show the same search finding those ciphertexts before erasure and finding plaintext in each
kind of column."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import InvalidToken

from admission.app import create_app as create_api
from booking_worker.periodic import erase_person_details
from shared import audit as audit_chain
from shared import queries, retention
from shared.persons import PersonVault
from shared.reports import ReportQuery, build_report, kind_of
from shared.settings import Settings, SettingsError
from shared.tokens import TokenCodec
from tests.helpers import TEST_KEYS, admission_token, booking_headers, running_worker, seed_typed_slots, serve

# Strings found nowhere else in the schema or the test data, so any hit is theirs.
ZELDA = {"id_number": "ZQ-731904", "name": "Zelda Quastfeld", "email": "zelda.quastfeld@example.org",
         "birth_date": "1931-07-29"}  # fmt: skip
OTTO = {"id_number": "OW-448120", "name": "Otto Wrenfield", "email": "otto.wrenfield@example.net",
        "birth_date": "1944-11-03"}  # fmt: skip
DETAILS = [p[field] for p in (ZELDA, OTTO) for field in ("name", "email", "birth_date")]

COLUMNS = """
SELECT table_name, column_name, data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'ARRAY')
  -- a partition's rows are searched through its partitioned table
  AND table_name NOT IN (SELECT relname::text FROM pg_class WHERE relispartition)
ORDER BY table_name, column_name
"""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def find(pool: asyncpg.Pool, needles: list[str | bytes]) -> set[tuple[str, str, str]]:
    """(table, column, needle) for every needle found in any row: bytea columns searched for the
    needle's bytes (as written, lower and upper case), every other kind as text, case-insensitively."""
    found: set[tuple[str, str, str]] = set()
    async with pool.acquire() as con:
        for col in await con.fetch(COLUMNS):
            table, column = _quoted(col["table_name"]), _quoted(col["column_name"])
            for needle in needles:
                text = needle.decode() if isinstance(needle, bytes) else needle
                if col["data_type"] == "bytea":
                    forms = list({text.encode(), text.lower().encode(), text.upper().encode()})
                    where = f"position(f IN {column}) > 0"
                    sql = f"SELECT EXISTS (SELECT 1 FROM {table}, unnest($1::bytea[]) f WHERE {where})"
                    hit = await con.fetchval(sql, forms)
                else:
                    sql = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE strpos(lower({column}::text), lower($1)) > 0)"
                    hit = await con.fetchval(sql, text)
                if hit:
                    found.add((col["table_name"], col["column_name"], text[:24]))
    return found


async def ciphertexts(pool: asyncpg.Pool) -> list[bytes]:
    rows = await pool.fetch(
        "SELECT person_sealed AS c FROM appointments UNION ALL SELECT person_sealed FROM waitlist_entries"
        " UNION ALL SELECT sealed FROM notifications"
    )
    return [bytes(r["c"]) for r in rows if r["c"] is not None]


async def post(api: TestClient, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post(path, json=body, headers=booking_headers(token))
    payload: dict[str, Any] = await resp.json()
    assert resp.status in (200, 201, 202), payload
    return payload


async def people_in_the_database(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> str:
    """Through the real API and worker: Zelda books the day's only seat, Otto joins the waitlist
    for that day, Zelda cancels and the freed seat is offered to Otto (a message). Returns the slot."""
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    starts = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    day = str(starts.astimezone(ZoneInfo("Europe/Berlin")).date())
    zelda = admission_token(codec)
    async with running_worker(settings):
        booked = await post(api, "/api/v1/appointments", zelda, {"slot_id": slot, "person": ZELDA})
    await post(api, "/api/v1/waitlist", admission_token(codec),
               {"site_id": "site-a", "type_id": "group", "day": day, "person": OTTO})  # fmt: skip
    resp = await api.delete(f"/api/v1/appointments/{booked['appointment_id']}", headers=booking_headers(zelda))
    assert resp.status == 200
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'waitlist_offer'") == 1
    return slot


async def slot_end(pool: asyncpg.Pool, slot: str) -> datetime:
    ends: datetime = await pool.fetchval("SELECT ends_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    return ends


async def test_erasure_leaves_no_recoverable_person_detail(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    slot = await people_in_the_database(api, settings, codec, pool)
    sealed = await ciphertexts(pool)
    # Zelda's appointment, Otto's entry, and the messages: Zelda's confirmation, reminders (queued,
    # then withdrawn by her cancel) and cancellation, the offer to Otto.
    messages = await pool.fetchval("SELECT count(*) FROM notifications")
    assert messages >= 3 and len(sealed) == 2 + messages
    vault = PersonVault.from_settings(settings)
    assert {vault.open(c)["email"] for c in sealed} == {ZELDA["email"], OTTO["email"]}
    # Negative control: before erasure the search finds every ciphertext, in the columns that hold them.
    before = await find(pool, [*DETAILS, *sealed])
    assert {(t, c) for t, c, _ in before} == {
        ("appointments", "person_sealed"), ("waitlist_entries", "person_sealed"), ("notifications", "sealed")
    }  # fmt: skip
    assert len(before) == len(sealed)  # and nothing else: no detail was ever stored in plaintext

    # One day short of the retention period nothing goes (the message was queued now, the slot is
    # later); past it, everything.
    ends = await slot_end(pool, slot)
    early = await retention.erase_due(
        pool, datetime.now(UTC) + timedelta(days=settings.retention_days - 1), settings.retention_days
    )
    assert early.total == 0 and len(await ciphertexts(pool)) == len(sealed)
    now = ends + timedelta(days=settings.retention_days + 2)
    erased = await erase_person_details({"pool": pool, "settings": settings}, now)
    assert erased == len(sealed)

    assert await find(pool, [*DETAILS, *sealed]) == set()
    assert await ciphertexts(pool) == []
    # What stays: the rows (counts), who is who (person_ref), when the details went, and the audit.
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'cancelled') AS cancelled,"
        " bool_and(erased_at = $1) AS stamped, bool_and(person_ref = $2) AS same_person FROM appointments",
        now, vault.ref(ZELDA["id_number"]),
    )  # fmt: skip
    assert dict(row) == {"n": 1, "cancelled": 1, "stamped": True, "same_person": True}
    assert await pool.fetchval("SELECT count(*) FROM waitlist_entries WHERE erased_at IS NOT NULL") == 1
    audit = await pool.fetch("SELECT action, actor, detail FROM audit_log ORDER BY audit_id")
    actions = [a["action"] for a in audit]
    assert actions.index("booked") < actions.index("cancelled")
    assert audit[-1]["action"] == "person_details_erased" and audit[-1]["actor"] == "system"
    assert audit[-1]["detail"] == {
        "appointments": 1, "waitlist_entries": 1, "notifications": messages, "eligibility_decisions": 0,
        "retention_days": settings.retention_days,
        "before": (now - timedelta(days=settings.retention_days)).isoformat(),
    }  # fmt: skip

    # Safe to run again: nothing left to erase, no further audit row.
    assert (await retention.erase_due(pool, now, settings.retention_days)).total == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'person_details_erased'") == 1

    # A report and the audit's proof still work on what is left.
    async with pool.acquire() as con:
        query = ReportQuery.model_validate({"group_by": "site"})
        report = await build_report(con, kind_of("bookings"), query, min_cell=1)
        assert [row["count"] for row in report.rows] == [1]
        async with con.transaction():
            assert (await audit_chain.seal(con, margin_s=0)) is not None
        verified = await audit_chain.verify(con, audit_chain.AuditKeys.from_seeds(()))
    assert verified.intact and verified.unsealed == 0 and verified.rows == len(audit)


async def test_the_search_sees_every_kind_of_column(pool: asyncpg.Pool, clean: None) -> None:
    """Negative control of the search itself: plaintext put in a text, a jsonb and a bytea column is found."""
    await seed_typed_slots(pool, count=1)
    await pool.execute("UPDATE sites SET name = $1", f"Clinic of {ZELDA['name']}")
    await pool.execute(queries.INSERT_AUDIT, "probe", None, None, None, None, "test", {"x": OTTO["email"].upper()})
    await pool.execute(
        "INSERT INTO notifications (kind, sealed) VALUES ('probe', $1)", f"to {OTTO['birth_date']}".encode()
    )
    assert {(t, c, n) for t, c, n in await find(pool, DETAILS)} == {
        ("sites", "name", ZELDA["name"]), ("audit_log", "detail", OTTO["email"][:24]),
        ("notifications", "sealed", OTTO["birth_date"]),
    }  # fmt: skip
    columns = {(r["table_name"], r["column_name"]) for r in await pool.fetch(COLUMNS)}
    assert {("appointments", "person_sealed"), ("booking_attempts", "job"), ("idempotency_keys", "response_body"),
            ("waitlist_entries", "person_sealed"), ("notifications", "sealed")} <= columns  # fmt: skip


async def test_batches_on_several_workers_erase_each_row_once(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    """Five appointments erased by two runs at once in batches of two: every row once, the audit's
    counts add up to five (no row counted twice), one audit row per batch that erased something."""
    slots = await seed_typed_slots(pool, count=1, capacity=5)
    vault = PersonVault.from_settings(settings)
    async with pool.acquire() as con:
        for i in range(5):
            await con.execute(
                queries.INSERT_APPOINTMENT, uuid.uuid4(), "ev", uuid.UUID(slots[0]), f"t{i}",
                vault.ref(f"X{i}"), vault.seal({"name": f"N{i}"}), "en",
            )  # fmt: skip
    now = await slot_end(pool, slots[0]) + timedelta(days=settings.retention_days + 1)
    runs = await asyncio.gather(*(retention.erase_due(pool, now, settings.retention_days, batch=2) for _ in range(2)))
    assert sum(r.appointments for r in runs) == 5
    rows = await pool.fetch("SELECT detail FROM audit_log WHERE action = 'person_details_erased'")
    assert sum(r["detail"]["appointments"] for r in rows) == 5
    assert len(rows) == sum(r.batches for r in runs)
    assert await pool.fetchval("SELECT count(*) FROM appointments WHERE person_sealed IS NULL") == 5


async def test_a_waiting_rebooking_claim_is_kept_and_a_recent_message_too(
    settings: Settings, pool: asyncpg.Pool, clean: None
) -> None:
    """What is not yet due stays: an entry for any day still waiting, a message queued within the period."""
    await seed_typed_slots(pool, count=1)
    vault = PersonVault.from_settings(settings)
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO waitlist_entries (entry_id, event_id, site_id, type_id, day, priority, person_ref, person_sealed,"
        " joined_at) VALUES ($1, 'ev', 'site-a', 'group', NULL, 0, $2, $3, $4)",
        uuid.uuid4(), vault.ref("W1"), vault.seal({"name": "w"}), now - timedelta(days=400),
    )  # fmt: skip
    await pool.execute("INSERT INTO notifications (kind, sealed) VALUES ('x', $1)", vault.seal({"name": "m"}))
    erased = await retention.erase_due(pool, now + timedelta(days=settings.retention_days - 1), settings.retention_days)
    assert erased.total == 0
    erased = await retention.erase_due(pool, now + timedelta(days=settings.retention_days + 1), settings.retention_days)
    assert (erased.waitlist_entries, erased.notifications) == (0, 1)


# --- rotating the seal key ------------------------------------------------------------------------

KEY_A = "person-key-A-0123456789abcdef"
KEY_B = "seal-key-B-fedcba9876543210"
IDA = {"id_number": "IV-550013", "name": "Ida Vantongeren", "email": "ida.vantongeren@example.com",
       "birth_date": "1958-02-17"}  # fmt: skip


def persons_cli(
    settings: Settings, *argv: str, seal_keys: str = "", retention_days: str = ""
) -> subprocess.CompletedProcess[str]:
    """``surgegate persons ...`` as a process of its own, configured only by its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
    env |= {"SURGEGATE_DATABASE_URL": str(settings.database_url), "SURGEGATE_PERSON_KEY": KEY_A,
            "SURGEGATE_PERSON_SEAL_KEYS": seal_keys, "SURGEGATE_RETENTION_DAYS": retention_days}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "surgegate", "persons", *argv], env=env, capture_output=True, text=True, timeout=60
    )


async def every_ciphertext(pool: asyncpg.Pool) -> list[bytes]:
    """Every stored ciphertext, the pending attempts' jobs' included."""
    rows = await pool.fetch("SELECT job->>'person_sealed' AS c FROM booking_attempts WHERE status = 'pending'")
    return [*await ciphertexts(pool), *(r["c"].encode() for r in rows)]


async def test_rotating_the_seal_key(settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> None:
    """Sealed under A; B added and everything re-encrypted; A removed: everything still opens, and
    who is who (person_ref, keyed by the person key, which does not rotate) has not changed."""
    under_a = dataclasses.replace(settings, person_key=KEY_A)
    async with serve(create_api(under_a)) as api:
        await people_in_the_database(api, under_a, codec, pool)
    async with serve(create_api(dataclasses.replace(under_a, booking_wait_s=0.0))) as api:
        slot = await pool.fetchval("SELECT slot_id FROM slots")
        resp = await api.post("/api/v1/appointments", json={"slot_id": str(slot), "person": IDA},
                              headers=booking_headers(admission_token(codec)))  # fmt: skip
        assert resp.status == 202  # accepted, not executed: its stored job holds Ida's ciphertext
    sealed = await every_ciphertext(pool)
    n = len(sealed)  # 3 records of people, the pending job, and the messages queued for them
    assert n == 4 + await pool.fetchval("SELECT count(*) FROM notifications") - 1
    vault_a = PersonVault.from_settings(under_a)
    details = [vault_a.open(c) for c in sealed]
    only_b = dataclasses.replace(under_a, person_seal_keys=(("b", KEY_B),))
    vault_b = PersonVault.from_settings(only_b)
    for token in sealed:  # negative control: B alone opens nothing sealed under A
        with pytest.raises(InvalidToken):
            vault_b.open(token)

    done = await asyncio.to_thread(persons_cli, settings, "reencrypt", seal_keys=f"a:{KEY_A},b:{KEY_B}")
    assert (done.returncode, done.stdout.strip()) == (0, f"re-encrypted {n}; unreadable under every configured key: 0")
    resealed = await every_ciphertext(pool)
    assert set(resealed).isdisjoint(sealed)
    assert [vault_b.open(c) for c in resealed] == details  # A is gone and everything opens
    assert vault_b.ref(ZELDA["id_number"]) == await pool.fetchval("SELECT person_ref FROM appointments")
    audit = await pool.fetch("SELECT detail FROM audit_log WHERE action = 'person_details_resealed'")
    assert sum(a["detail"]["resealed"] for a in audit) == n
    # Again: nothing left to re-encrypt, nothing rewritten.
    again = await asyncio.to_thread(persons_cli, settings, "reencrypt", seal_keys=f"a:{KEY_A},b:{KEY_B}")
    assert again.stdout.strip() == "re-encrypted 0; unreadable under every configured key: 0"
    assert await every_ciphertext(pool) == resealed

    # A ciphertext under A alone, once A is gone: refused, and the command says so (exit 1).
    late = vault_a.seal({"name": "late"})
    await pool.execute("INSERT INTO notifications (kind, sealed) VALUES ('late', $1)", late)
    with pytest.raises(InvalidToken):
        vault_b.open(late)
    refused = await asyncio.to_thread(persons_cli, settings, "reencrypt", seal_keys=f"b:{KEY_B}")
    assert (refused.returncode, refused.stdout.strip()) == (
        1,
        "re-encrypted 0; unreadable under every configured key: 1",
    )
    assert ZELDA["name"] not in refused.stdout + refused.stderr


def test_the_seal_keys_follow_the_signing_keys_convention() -> None:
    """The last listed key seals, all open; without a list the person key seals (as before rotation)."""
    listed = Settings(person_key=KEY_A, person_seal_keys=(("a", KEY_A), ("b", KEY_B)))
    old, new = PersonVault.from_settings(Settings(person_key=KEY_A)), PersonVault.from_settings(listed)
    token = new.seal({"n": 1})
    assert PersonVault(KEY_A.encode(), seal_keys=[KEY_B.encode()]).open(token) == {"n": 1}
    with pytest.raises(InvalidToken):
        old.open(token)
    assert new.open(old.seal({"n": 2})) == {"n": 2}
    assert old.ref("AB1") == new.ref("AB1")
    with pytest.raises(SettingsError, match="SURGEGATE_PERSON_SEAL_KEYS must be comma-separated kid:secret"):
        Settings.from_env({"SURGEGATE_PERSON_SEAL_KEYS": "b:short"})


async def test_two_reencryptions_at_once_rewrite_each_ciphertext_once(
    settings: Settings, pool: asyncpg.Pool, clean: None
) -> None:
    """Two runs at once (two workers, or a worker and the command), in batches of three: each
    ciphertext is rewritten once (the second run waits for the first's rows, then finds them current)."""
    await seed_typed_slots(pool, count=1)
    vault_a = PersonVault(KEY_A.encode())
    for i in range(7):
        await pool.execute("INSERT INTO notifications (kind, sealed) VALUES ('x', $1)", vault_a.seal({"i": i}))
    both = PersonVault(KEY_A.encode(), seal_keys=[KEY_B.encode(), KEY_A.encode()])
    runs = await asyncio.gather(*(retention.reseal_all(pool, both, batch=3) for _ in range(2)))
    assert sum(r.resealed for r in runs) == 7
    only_b = PersonVault(KEY_A.encode(), seal_keys=[KEY_B.encode()])
    rows = await pool.fetch("SELECT sealed FROM notifications ORDER BY notification_id")
    assert [only_b.open(bytes(r["sealed"]))["i"] for r in rows] == list(range(7))


def test_a_derived_person_key_keeps_opening_and_the_retention_setting() -> None:
    """A person key never set (derived from the first signing key) cannot be listed, so it keeps
    opening once seal keys are listed, and seals no more; a retention of 0 days is refused at start."""
    derived = Settings(secret_keys=TEST_KEYS)
    listed = dataclasses.replace(derived, person_seal_keys=(("b", KEY_B),))
    old, new = PersonVault.from_settings(derived), PersonVault.from_settings(listed)
    assert new.open(old.seal({"n": 1})) == {"n": 1}
    with pytest.raises(InvalidToken):
        old.open(new.seal({"n": 2}))
    assert Settings.from_env({"SURGEGATE_RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(SettingsError, match="SURGEGATE_RETENTION_DAYS must be a whole number above 0, not '0'"):
        Settings.from_env({"SURGEGATE_RETENTION_DAYS": "0"})


async def test_the_erase_command(settings: Settings, pool: asyncpg.Pool) -> None:
    """``surgegate persons erase`` erases what is due now, under SURGEGATE_RETENTION_DAYS."""
    (slot,) = await seed_typed_slots(pool, count=1)
    vault = PersonVault(KEY_A.encode())
    long_ago = datetime.now(UTC) - timedelta(days=40)
    await pool.execute("UPDATE slots SET starts_at = $1, ends_at = $2", long_ago, long_ago + timedelta(minutes=30))
    await pool.execute(queries.INSERT_APPOINTMENT, uuid.uuid4(), "ev", uuid.UUID(slot), "t", vault.ref("E1"),
                       vault.seal({"name": "e"}), "en")  # fmt: skip
    kept = await asyncio.to_thread(persons_cli, settings, "erase")  # 90 days: not yet
    assert kept.returncode == 0
    assert kept.stdout.strip() == "erased 0 appointments, 0 waitlist entries, 0 messages (0 audited batches)"
    done = await asyncio.to_thread(persons_cli, settings, "erase", retention_days="30")
    assert done.returncode == 0
    assert done.stdout.strip() == "erased 1 appointments, 0 waitlist entries, 0 messages (1 audited batches)"
    assert await pool.fetchval("SELECT person_sealed FROM appointments") is None
