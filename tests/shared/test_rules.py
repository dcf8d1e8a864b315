"""Rule sets: age on a local date (birthdays, 29 February), what compiling refuses, evaluation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared.eligibility import local_today
from shared.errors import ValidationFailed
from shared.rules import (
    ERROR,
    FAILED,
    HELD,
    MAX_RULES,
    RuleSetSpec,
    age_on,
    coerce_attributes,
    compile_rule_set,
    evaluate,
    run_examples,
)


def rule_set(**changes: Any) -> dict[str, Any]:
    """Over 65, or a health worker; and living in region A."""
    body: dict[str, Any] = {
        "attributes": {
            "region": {"type": "enum", "values": ["A", "B"], "label": {"en": "Region", "es": "Región"}},
            "occupations": {"type": "list", "label": {"en": "Occupations", "es": "Ocupaciones"}},
        },
        "rules": [
            {"id": "age_or_worker", "expr": 'age >= 65 || occupations.exists(o, o in ["nurse", "doctor"])',
             "reason": "too_young", "text": {"en": "Only people 65 or over, or health workers.",
                                              "es": "Solo mayores de 65 o personal sanitario."}},
            {"id": "region", "expr": 'region == "A"', "reason": "outside_region",
             "text": {"en": "Only residents of region A.", "es": "Solo residentes de la región A."}},
        ],
        "examples": [
            {"name": "old in A", "birth_date": "1950-01-01", "on": "2026-01-01",
             "attributes": {"region": "A", "occupations": []}, "eligible": True},
            {"name": "young nurse in B", "birth_date": "2000-01-01", "on": "2026-01-01",
             "attributes": {"region": "B", "occupations": ["nurse"]}, "eligible": False, "reasons": ["outside_region"]},
        ],
    }  # fmt: skip
    body.update(changes)
    return body


def spec(**changes: Any) -> RuleSetSpec:
    return RuleSetSpec.model_validate(rule_set(**changes))


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(1961, 6, 15), date(2026, 6, 14), 64),  # the day before the birthday
        (date(1961, 6, 15), date(2026, 6, 15), 65),  # the birthday
        (date(1960, 2, 29), date(2025, 2, 28), 64),  # born 29 Feb, a year without one: not yet on the 28th
        (date(1960, 2, 29), date(2025, 3, 1), 65),  # ... one year older on 1 March
        (date(1960, 2, 29), date(2024, 2, 29), 64),  # a leap year: on the 29th itself
        (date(1960, 2, 29), date(2024, 2, 28), 63),
    ],
)
def test_age_in_whole_years_on_the_local_date(birth: date, on: date, age: int) -> None:
    assert age_on(birth, on) == age


def test_today_is_the_latest_local_date_of_the_events_sites() -> None:
    # 12:00 UTC on 1 March: already 2 March at a site on UTC+14.
    noon = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert local_today(("Europe/Madrid",), noon) == date(2026, 3, 1)
    assert local_today(("Europe/Madrid", "Pacific/Kiritimati"), noon) == date(2026, 3, 2)
    assert local_today((), noon) == date(2026, 3, 1)


def test_boundaries_of_a_rule_set_with_age_region_and_occupations() -> None:
    compiled = compile_rule_set(spec())
    a = {"region": "A", "occupations": []}
    assert evaluate(compiled, date(1961, 6, 15), a, date(2026, 6, 14)).reasons == ("too_young",)
    assert evaluate(compiled, date(1961, 6, 15), a, date(2026, 6, 15)).eligible
    assert not evaluate(compiled, date(1961, 2, 28), {**a, "region": "B"}, date(2026, 6, 15)).eligible
    worker = evaluate(compiled, date(2001, 1, 1), {**a, "occupations": ["teacher", "doctor"]}, date(2026, 6, 15))
    assert worker.eligible and worker.explanation == {"age_or_worker": HELD, "region": HELD}
    # Born 29 Feb 1961: 65 on 1 March 2026 (no 29 February that year), not on 28 February.
    assert evaluate(compiled, date(1960, 2, 29), a, date(2025, 2, 28)).reasons == ("too_young",)
    assert evaluate(compiled, date(1960, 2, 29), a, date(2025, 3, 1)).eligible
    both = evaluate(compiled, date(2001, 1, 1), {"region": "B", "occupations": []}, date(2026, 6, 15))
    assert both.reasons == ("too_young", "outside_region")
    assert both.explanation == {"age_or_worker": FAILED, "region": FAILED}


def test_examples_run_and_report_each_result() -> None:
    compiled = compile_rule_set(spec())
    assert [r["passed"] for r in run_examples(compiled, date(2026, 1, 1))] == [True, True]
    wrong = spec(examples=[{"name": "wrong", "birth_date": "2000-01-01", "attributes": {"region": "A",
                 "occupations": []}, "eligible": True}])  # fmt: skip
    [result] = run_examples(compile_rule_set(wrong), date(2026, 1, 1))
    assert result == {"example": "examples[0] (wrong)", "passed": False, "eligible": False, "reasons": ["too_young"]}


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("age >= ", "rule 'bad' does not compile"),
        ("income > 3", "rule 'bad' names unknown attribute(s): income"),
        ('age > "sixty"', "rule 'bad' has a type error"),
        ("age + 1", "rule 'bad' is not a boolean expression"),
        ('region == "A" ? 1 : 2', "rule 'bad' is not a boolean expression"),
        ("occupations.exists(o, o > 3)", "rule 'bad' has a type error"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(expr: str, says: str) -> None:
    bad = {"id": "bad", "expr": expr, "reason": "bad", "text": {"en": "x", "es": "x"}}
    with pytest.raises(ValidationFailed) as refused:
        compile_rule_set(spec(rules=[bad]))
    assert refused.value.detail.startswith(says), refused.value.detail
    assert refused.value.errors[0]["loc"] == ["rules", "0", "expr"]


def test_a_rule_that_errs_on_a_real_input_fails_closed() -> None:
    # Indexing past the end errs only for lists of three or more: no probe (lists of up to two) reaches it.
    late = {"id": "late", "expr": 'size(occupations) < 3 || occupations[5] == "x"', "reason": "odd",
            "text": {"en": "x", "es": "x"}}  # fmt: skip
    compiled = compile_rule_set(spec(rules=[late], examples=[]))
    got = evaluate(compiled, date(1950, 1, 1), {"region": "A", "occupations": ["a", "b", "c"]}, date(2026, 1, 1))
    assert (got.eligible, got.explanation, got.reasons) == (False, {"late": ERROR}, ("odd",))


def test_the_digest_is_of_the_content() -> None:
    assert spec().digest() == spec().digest()
    assert spec().digest() != spec(examples=[]).digest()


# Rules whose one evaluation would take seconds to minutes over a 50-item list: each is refused at
# creation by one of the bounds (README, "Eligibility"). Measured before the bounds: the first ~13 s,
# the list-literal one ~3 min, the concatenation chain ~10 s at 40 terms.
COSTLY = {
    "map in map": ("occupations.map(a, occupations.map(b, occupations + occupations)).size() > 0",
                   "nests comprehensions more than 2 deep"),
    "lists in the innermost body": ("occupations.all(a, occupations.all(b, [occupations, occupations] == []))",
                                    "uses [, occupations inside a comprehension nested 2 deep"),
    "concatenation chain": ("size(" + " + ".join(["occupations"] * 6) + ") > 0", "uses + more than 4 times"),
    "too many tokens": (" || ".join(["age == 1"] * 22), "is too large (87 tokens; at most 64)"),
    "a map's body builds lists": ("occupations.map(a, occupations + [a]).size() > 0",
                                  "uses +, [, occupations inside a comprehension nested 2 deep, or a map's"),
    "a regex per pair": ("occupations.all(a, occupations.all(b, a.matches(b)))", "uses matches inside"),
}  # fmt: skip


@pytest.mark.parametrize(("expr", "says"), COSTLY.values(), ids=COSTLY.keys())
def test_a_rule_whose_evaluation_could_cost_too_much_is_refused(expr: str, says: str) -> None:
    bad = {"id": "bad", "expr": expr, "reason": "bad", "text": {"en": "x", "es": "x"}}
    with pytest.raises(ValidationFailed) as refused:
        compile_rule_set(spec(rules=[bad], examples=[]))
    assert refused.value.detail.startswith("rule 'bad' ") and says in refused.value.detail, refused.value.detail


def test_what_the_cost_bounds_still_allow() -> None:
    """The control: "any of mine in any of theirs", a map over one list, string tests."""
    fine = [
        "occupations.exists(a, occupations.exists(b, a != b && a.startsWith(b)))",
        'occupations.map(o, o == "nurse").exists(x, x) || age >= 65',
        'size(occupations + ["x"]) > 1 && region + "!" != "B!"',
    ]
    rules = [{"id": f"r{i}", "expr": e, "reason": "r", "text": {"en": "x", "es": "x"}} for i, e in enumerate(fine)]
    compile_rule_set(spec(rules=rules, examples=[]))


def test_a_version_has_at_most_max_rules_and_each_expression_at_most_500_characters() -> None:
    one = {"id": "r", "expr": "age >= 0", "reason": "r", "text": {"en": "x", "es": "x"}}
    many = [{**one, "id": f"r{i}"} for i in range(MAX_RULES + 1)]
    with pytest.raises(ValueError, match="at most 32 items"):
        spec(rules=many)
    with pytest.raises(ValueError, match="at most 500 characters"):
        spec(rules=[{**one, "expr": "age >= 0" + " " * 500}])


LIST_LIMITS = "must be a list of at most 50 strings of at most 200 characters each"


@pytest.mark.parametrize("occupations", [["x"] * 51, ["x" * 201]], ids=["51 items", "201 characters"])
def test_an_input_past_the_lengths_is_refused_naming_the_attribute(occupations: list[str]) -> None:
    with pytest.raises(ValidationFailed) as refused:
        coerce_attributes(spec(), {"region": "A", "occupations": occupations})
    assert refused.value.errors == [{"loc": ["attributes", "occupations"], "msg": LIST_LIMITS}]
