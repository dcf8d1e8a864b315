"""Reports: counts of bookings, cancellations, no-shows and waitlist offers and claims, grouped by
event, region, site, day and appointment type, with small cells suppressed. Never a row per person.

What a caller can rely on:

* Everything is counted in SQL (``shared/queries.py``, section "reports"); no statement selects a
  person's reference or details, so nothing about one person leaves the database but a count.
* ``group_by`` names come from :data:`DIMENSIONS` only; the SQL is composed from this module's
  constants, never from request text, so a bad name is a :class:`ValidationFailed`, not SQL.
* Small cells: a count from 1 to ``min_cell - 1`` is published as suppressed (``count`` None). The
  cells of a report add up to the counts a coarser report publishes (a day's sites add up to the
  day's total, a site's days to the site's total, all of them to the grand total); where exactly one
  cell of such a group is suppressed, the smallest other cell of the group is suppressed too, again
  and again until no group has a single suppressed cell, so no total minus the published others gives
  a suppressed count. Zero is never suppressed (no row stands for it). This is the usual greedy
  heuristic for one table, not an optimal solution across tables. Sites are grouped within their
  region as well (a region's total minus its published sites reveals nothing either). A cell alone
  along a dimension (a site with bookings on one day only) equals a coarser report's total,
  published there when it is not small, and differences between reports over other filters (two
  date ranges, one event against all) are not protected; the threshold and coarse groups limit what
  they tell.
* Read-only; safe to repeat; the caller owns the connection (no transaction is opened).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared import queries
from shared.errors import NotFound, ValidationFailed

# What a report may be grouped by → the column of the REPORT_* statements (a quoted identifier).
DIMENSIONS: dict[str, str] = {
    "event": '"event"',
    "region": '"region"',
    "site": '"site"',
    "day": '"day"',
    "type": '"type"',
}
# A dimension each of whose values lies within one value of another (a site within its region): its
# cells also add up to the outer one's totals, so for suppression they are grouped within it too.
NESTED: dict[str, str] = {"site": "region"}
# Columns a kind always groups by, on top of the caller's choice.
_FIXED: dict[str, str] = {"step": '"step"', "outcome": '"outcome"', "reason": '"reason"'}


@dataclass(frozen=True)
class ReportKind:
    """One report: the statement yielding one row per counted thing (None: not recorded yet), the
    dimensions it may be grouped by, the columns it always groups by, and which of those hold
    different measures (their cells never add up together: the waitlist's offers and claims)."""

    sql: str | None
    dimensions: tuple[str, ...] = tuple(DIMENSIONS)
    always: tuple[str, ...] = ()
    measures: tuple[str, ...] = ()  # a subset of ``always``
    missing: str = ""  # why ``sql`` is None


KINDS: dict[str, ReportKind] = {
    "bookings": ReportKind(queries.REPORT_BOOKINGS),
    "cancellations": ReportKind(queries.REPORT_CANCELLATIONS),
    "no-shows": ReportKind(queries.REPORT_NO_SHOWS),
    "waitlist": ReportKind(queries.REPORT_WAITLIST, always=("step",), measures=("step",)),
    # Eligibility evaluations by outcome and reason combination: one row per decision, so outcomes
    # and reasons add up to the decisions (they are not measures).
    "eligibility": ReportKind(queries.REPORT_ELIGIBILITY, ("event", "day"), always=("outcome", "reason")),
}


class ReportQuery(BaseModel):
    """The query string of a report: ``group_by=site,day&event_id=&from=&to=`` (local dates, inclusive)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    group_by: tuple[str, ...] = ()
    event_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    @field_validator("group_by", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            unknown = [name for name in value if name not in DIMENSIONS]
            if unknown:  # the value itself is not echoed
                raise ValueError(f"group by any of {', '.join(DIMENSIONS)}, comma-separated")
            if len(set(value)) != len(value):
                raise ValueError("a dimension is named twice")
        return value

    @model_validator(mode="after")
    def _window(self) -> ReportQuery:
        if self.from_ and self.to and self.from_ > self.to:
            raise ValueError("from is after to")
        return self


@dataclass(frozen=True)
class Report:
    columns: tuple[str, ...]  # the group's columns, in order
    rows: list[dict[str, Any]]  # each: the group's values, "count" (None: suppressed), "suppressed"


def kind_of(name: str) -> ReportKind:
    """The report called ``name``; NotFound for an unknown one and for one with nothing recorded."""
    kind = KINDS.get(name)
    if kind is None:
        raise NotFound(f"no such report; reports: {', '.join(KINDS)}")
    if kind.sql is None:
        raise NotFound(kind.missing)
    return kind


def report_sql(kind: ReportKind, group_by: Sequence[str]) -> str:
    """The counting statement: every column taken from :data:`DIMENSIONS` or ``_FIXED`` by name."""
    assert kind.sql is not None
    columns = ", ".join(f"counted.{({**_FIXED, **DIMENSIONS})[c]}" for c in (*kind.always, *group_by))
    grouped = f"{columns}, " if columns else ""
    tail = f" GROUP BY {columns} ORDER BY {columns}" if columns else ""
    # Only this module's and shared/queries.py's constants reach the text (the names were looked up above).
    return f"SELECT {grouped}count(*) AS count FROM ({kind.sql}) counted WHERE {queries.REPORT_FILTER}{tail}"  # noqa: S608


def suppress(
    keys: Sequence[tuple[Any, ...]], counts: Sequence[int], additive: Sequence[int], min_cell: int,
    *, complementary: bool = True,
) -> list[bool]:  # fmt: skip
    """Which cells to suppress. ``keys`` are the cells' group values; ``additive`` the positions in a
    key along which cells add up to a published total (a position left out, e.g. the waitlist's step,
    separates tables). ``complementary=False`` gives primary suppression alone (the tests' negative
    control: there a total minus the others reveals a hidden cell).

    Afterwards no group of two or more cells (cells whose keys differ at one additive position only)
    holds exactly one suppressed cell. A complement is the smallest other cell of the group, preferring
    one that is not alone along another position (a cell alone there equals a coarser report's total,
    which is published when it is not small)."""
    hidden = [0 < count < min_cell for count in counts]
    groups: list[list[int]] = []
    alone: set[int] = set()  # cells alone in their group along some position
    for position in additive:
        by_rest: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            by_rest[key[:position] + key[position + 1 :]].append(i)
        groups.extend(by_rest.values())
        alone.update(members[0] for members in by_rest.values() if len(members) == 1)
    changed = complementary
    while changed:
        changed = False
        for members in groups:
            shown = [i for i in members if not hidden[i]]
            candidates = [i for i in shown if counts[i] > 0]  # hiding a zero hides nothing
            if len(members) - len(shown) == 1 and candidates:
                hidden[min(candidates, key=lambda i: (i in alone, counts[i], i))] = True
                changed = True
    return hidden


async def build_report(
    con: asyncpg.Connection, kind: ReportKind, query: ReportQuery, min_cell: int, *, complementary: bool = True
) -> Report:
    """Count, then suppress small cells (see the module's docstring)."""
    group_by = query.group_by
    not_here = [name for name in group_by if name not in kind.dimensions]
    if not_here:
        raise ValidationFailed(f"this report is grouped by any of {', '.join(kind.dimensions)}")
    # the outer dimension of a nested one, counted along (it splits no cell) but not published
    context = tuple(
        outer
        for inner, outer in NESTED.items()
        if inner in group_by and outer not in group_by and outer in kind.dimensions
    )
    columns = (*kind.always, *group_by, *context)
    records = await con.fetch(report_sql(kind, (*group_by, *context)), query.event_id, query.from_, query.to)
    keys = [tuple(_value(record[i]) for i in range(len(columns))) for record in records]
    counts = [int(record["count"]) for record in records]
    additive = [i for i, name in enumerate(columns) if name not in kind.measures and name not in context]
    hidden = suppress(keys, counts, additive, min_cell, complementary=complementary)
    columns = columns[: len(columns) - len(context)]
    rows = [
        {**dict(zip(columns, key, strict=False)), "count": None if hide else count, "suppressed": hide}
        for key, count, hide in zip(keys, counts, hidden, strict=True)
    ]
    if not columns and rows and counts[0] == 0:
        rows = []  # nothing at all was counted: no row, as for every other empty group
    return Report(columns, rows)


def _value(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date) else None if value is None else str(value)


# Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(report: Report) -> str:
    """The report as CSV (a header row, then one row per cell; a suppressed count is empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*report.columns, "count", "suppressed"])
    for row in report.rows:
        values = ["" if row[c] is None else _cell(str(row[c])) for c in report.columns]
        count = row["count"]
        writer.writerow([*values, "" if count is None else count, "true" if row["suppressed"] else "false"])
    return out.getvalue()


def _cell(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_START) else text
