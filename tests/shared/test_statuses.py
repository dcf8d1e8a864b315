"""The status enums equal the CHECK constraints of a migrated database, both ways."""

from __future__ import annotations

import re
from enum import StrEnum

import asyncpg
import pytest

from shared.statuses import COLUMNS, AppointmentStatus

# A CHECK on one text column, as PostgreSQL prints it back: (status = ANY (ARRAY['a'::text, ...])).
_VALUE = re.compile(r"'([^']*)'::text")


async def check_values(pool: asyncpg.Pool, table: str, column: str) -> set[str]:
    rows = await pool.fetch(
        """
        SELECT pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
        WHERE c.contype = 'c' AND c.conrelid = $1::regclass AND a.attname = $2 AND cardinality(c.conkey) = 1
        """,
        table,
        column,
    )
    assert len(rows) == 1, f"expected one CHECK on {table}.{column}, found {[r['def'] for r in rows]}"
    return set(_VALUE.findall(rows[0]["def"]))


@pytest.mark.parametrize(("table", "column"), sorted(COLUMNS))
async def test_enum_equals_the_check_constraint(pool: asyncpg.Pool, table: str, column: str) -> None:
    assert {m.value for m in COLUMNS[(table, column)]} == await check_values(pool, table, column)


async def test_negative_control_a_member_the_schema_lacks_is_caught(pool: asyncpg.Pool) -> None:
    extended = StrEnum("Extended", {**{m.name: m.value for m in AppointmentStatus}, "ARCHIVED": "archived"})
    assert {m.value for m in extended} != await check_values(pool, "appointments", "status")
