"""Small-cell suppression (shared/reports.py): no published total minus the published cells reveals a
suppressed one; the negative control (primary suppression alone) shows that attack succeeding."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.reports import KINDS, Report, ReportQuery, report_sql, suppress, to_csv

Key = tuple[Any, ...]


def recovered(
    keys: Sequence[Key], counts: Sequence[int], hidden: Sequence[bool], additive: Sequence[int], min_cell: int
) -> dict[Key, int]:
    """The attack: for every group of cells that adds up to a total a coarser report publishes (the
    total is published when it is not itself small), a single hidden cell is the total minus the others."""
    found: dict[Key, int] = {}
    for position in additive:
        groups: dict[Key, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            groups[key[:position] + key[position + 1 :]].append(i)
        for members in groups.values():
            total = sum(counts[i] for i in members)
            secret = [i for i in members if hidden[i]]
            if len(secret) == 1 and not 0 < total < min_cell:
                found[keys[secret[0]]] = total - sum(counts[i] for i in members if not hidden[i])
    return found


# site by day: d1 has a=2 (small), b=7, c=6; d2 has a=8, b=9, c=5
KEYS = [("a", "d1"), ("a", "d2"), ("b", "d1"), ("b", "d2"), ("c", "d1"), ("c", "d2")]
COUNTS = [2, 8, 7, 9, 6, 5]


def test_the_complementary_cells_are_suppressed_so_no_total_reveals_the_small_one() -> None:
    hidden = suppress(KEYS, COUNTS, [0, 1], 5)
    assert {k for k, h in zip(KEYS, hidden, strict=True) if h} == {("a", "d1"), ("c", "d1"), ("a", "d2"), ("c", "d2")}
    assert recovered(KEYS, COUNTS, hidden, [0, 1], 5) == {}


def test_negative_control_without_complementary_cells_the_day_total_reveals_the_small_one() -> None:
    hidden = suppress(KEYS, COUNTS, [0, 1], 5, complementary=False)
    assert [k for k, h in zip(KEYS, hidden, strict=True) if h] == [("a", "d1")]
    assert recovered(KEYS, COUNTS, hidden, [0, 1], 5) == {("a", "d1"): 2}  # day d1: 15 - 7 - 6


def test_a_measure_column_separates_tables() -> None:
    keys = [("claimed", "a"), ("offered", "a")]
    assert suppress(keys, [1, 6], [1], 5) == [True, False]  # offers and claims do not add up
    assert suppress(keys, [1, 6], [0, 1], 5) == [True, True]  # as if they did


def test_zero_and_the_threshold_itself_are_published() -> None:
    assert suppress([("a",), ("b",)], [5, 0], [0], 5) == [False, False]
    assert suppress([("a",), ("b",)], [4, 0], [0], 5) == [True, False]  # a zero hides nothing
    assert suppress([("a",), ("b",)], [4, 9], [0], 1) == [False, False]  # threshold 1: nothing is small


cells = st.dictionaries(
    st.tuples(st.sampled_from("abcd"), st.sampled_from("xyz"), st.sampled_from("pq")),
    st.integers(min_value=1, max_value=12),
    max_size=24,
)


@given(cells, st.integers(min_value=1, max_value=8))
def test_no_group_of_cells_holds_a_single_suppressed_one(table: dict[Key, int], min_cell: int) -> None:
    keys, counts = list(table), list(table.values())
    hidden = suppress(keys, counts, [0, 1, 2], min_cell)
    assert all(h for h, c in zip(hidden, counts, strict=True) if c < min_cell)
    for position in (0, 1, 2):
        groups: dict[Key, list[bool]] = defaultdict(list)
        for key, h in zip(keys, hidden, strict=True):
            groups[key[:position] + key[position + 1 :]].append(h)
        assert all(sum(g) != 1 for g in groups.values() if len(g) > 1)


def test_a_complement_alone_along_another_dimension_is_avoided() -> None:
    # (a, x) is small; (c, x) is the smallest other cell of day x, but it is site c's only cell, so
    # the site's total (group_by=site) would publish it: (b, x) is chosen though it is larger.
    keys = [("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("b", "y")]
    hidden = suppress(keys, [2, 9, 6, 8, 7], [0, 1], 5)
    assert [k for k, h in zip(keys, hidden, strict=True) if h] == [("a", "x"), ("b", "x"), ("a", "y"), ("b", "y")]


def test_sql_is_composed_from_the_whitelist_only() -> None:
    assert '"site"' in report_sql(KINDS["bookings"], ("site", "day"))
    for bad in ("site;drop table appointments", 'day") --', "person_ref", "SITE", "site,site"):
        with pytest.raises(ValueError):
            ReportQuery.model_validate({"group_by": bad})
    with pytest.raises(KeyError):  # even a name that slipped past validation is never interpolated
        report_sql(KINDS["bookings"], ("person_ref",))


def test_csv_has_a_header_empty_suppressed_counts_and_no_formulas() -> None:
    report = Report(
        ("region", "day"),
        [
            {"region": "=HYPERLINK(1)", "day": "2030-01-02", "count": None, "suppressed": True},
            {"region": "North, upper", "day": None, "count": 12, "suppressed": False},
        ],
    )
    rows = list(csv.reader(io.StringIO(to_csv(report), newline="")))
    assert rows == [
        ["region", "day", "count", "suppressed"],
        ["'=HYPERLINK(1)", "2030-01-02", "", "true"],
        ["North, upper", "", "12", "false"],
    ]
