"""Eligibility rule sets as data: their schema, compiling them once, evaluating a person against them.

A rule set declares the attributes it asks for (typed, labelled in en/es, ``declared`` by the person
or ``verified`` from an identity token), its rules (each a CEL boolean expression with a reason code
and a denial text in en/es) and examples. Expressions are CEL, evaluated by the maintained
``common-expression-language`` package (``cel``, the Rust cel interpreter): no expression language
of our own, no ``eval``. We chose it over ``cel-python`` (``celpy``) because both parse and
evaluate standard CEL but neither exposes CEL's static type checker to Python; ``cel`` is typed
(``py.typed``), an order of magnitude faster per evaluation, and lists the identifiers an expression
references without running it, which is what refusing unknown attributes needs.

What :func:`compile_rule_set` guarantees before a version is stored (else ValidationFailed naming the
rule, never evaluated live):

* every expression parses;
* every identifier it references is a declared attribute, ``age`` or ``birth_date`` (names bound by
  comprehension macros such as ``occupations.exists(o, o == "nurse")`` excepted);
* it is boolean and free of type errors: evaluated over *probe* inputs (each attribute at several
  values of its declared type: 0 and 150, true and false, each enum value, an empty list and a
  one-element one...), it returns a bool every time. Without a static checker this is how types are
  checked; a rule that still errors on some real input counts as ``error`` in the decision and the
  person is not eligible under it (fail closed), counted in
  ``surgegate_eligibility_errors_total``.

What an expression sees: every declared attribute (``int`` → int, ``bool``, ``string`` and ``enum`` →
string, ``date`` → timestamp at 00:00 UTC of that day, ``list`` → list of strings), ``birth_date``
(timestamp) and ``age``: whole years on the local date the decision is for (:func:`age_on`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import cel
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.errors import ValidationFailed
from shared.statuses import DecisionOutcome

AttributeType = Literal["int", "bool", "string", "enum", "date", "list"]
BUILT_IN = ("age", "birth_date")  # what every expression sees besides the declared attributes
_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_CODE = r"^[a-z][a-z0-9_]{0,63}$"
# CEL's reserved words and literals cannot be attribute names.
_RESERVED = frozenset(
    (
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "type",
        "timestamp",
        "duration",
    )
)
# A comprehension macro's bound name: `xs.exists(x, …)`, `xs.all(x, …)`, `xs.map(x, …)`...
_BINDER = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
MAX_LIST = 50  # items of a list attribute
MAX_STRING = 200
# Comprehensions nested deeper than this are refused: each level multiplies the work by a list's
# length (four levels over a 50-item list are 6 million steps, six are hours), and an evaluation runs
# on the API's event loop and inside the booking transaction. Two cover "any of mine in any of theirs".
MAX_NESTING = 2
# The rest of the per-evaluation bound (README, "Eligibility"): a rule's size, its `+` (each can copy a
# list or string into a longer one), and how many rules a version has. Measured worst within them:
# see the README.
MAX_EXPR_CHARS = 500
MAX_TOKENS = 64
MAX_CONCATENATIONS = 4
MAX_RULES = 32


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    en: str = Field(min_length=1, max_length=500)
    es: str = Field(min_length=1, max_length=500)

    def in_language(self, language: str) -> str:
        return self.es if language == "es" else self.en


class AttributeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: AttributeType
    source: Literal["declared", "verified"] = "declared"
    values: list[str] | None = Field(default=None, min_length=1, max_length=100)  # enum only
    label: Text
    help: Text | None = None
    # A verified attribute's claim in the ID token (a dotted path: "address.region"); default its name.
    claim: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_:-]*(\.[A-Za-z_][A-Za-z0-9_:-]*)*$", max_length=200
    )

    @model_validator(mode="after")
    def _values_for_enums_only(self) -> AttributeSpec:
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("values are given for an enum attribute, and only for one")
        return self


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_NAME)
    expr: str = Field(min_length=1, max_length=MAX_EXPR_CHARS)
    reason: str = Field(pattern=_CODE)
    text: Text


class ExampleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=100)
    birth_date: date
    on: date | None = None  # the local date age is computed on (default: the day the version was created)
    attributes: dict[str, Any] = Field(default_factory=dict)
    eligible: bool
    reasons: list[str] = Field(default_factory=list)


class RuleSetSpec(BaseModel):
    """The body of ``POST /admin/v1/events/{event_id}/rules`` (JSON or YAML)."""

    model_config = ConfigDict(extra="forbid")
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict, max_length=50)
    rules: list[RuleSpec] = Field(min_length=1, max_length=MAX_RULES)
    examples: list[ExampleSpec] = Field(default_factory=list, max_length=200)

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, AttributeSpec]) -> dict[str, AttributeSpec]:
        for name in value:
            if not re.match(_NAME, name) or name in _RESERVED or name in BUILT_IN:
                raise ValueError(f"{name!r} cannot be an attribute name (lowercase, not age, birth_date or a CEL word)")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, value: list[RuleSpec]) -> list[RuleSpec]:
        ids = [r.id for r in value]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        return value

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: the same content always has the same digest."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()

    def example_label(self, index: int) -> str:
        name = self.examples[index].name
        return f"examples[{index}]" + ("" if name is None else f" ({name})")


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def age_on(birth: date, on: date) -> int:
    """Whole years from ``birth`` to ``on``. Someone born on 29 February turns a year older on
    1 March in a year without one (the day after 28 February: they have not reached "29 February"
    yet on the 28th), and on 29 February in leap years; this is the reading of most civil codes."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _timestamp(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- inputs ----------------------------------------------------------------------------------------


def _coerce(spec: AttributeSpec, value: Any) -> Any:
    """The CEL value of one attribute; ValueError (never echoing the value) when it is not of its type."""
    kind = spec.type
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and -(10**9) < value < 10**9:
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "string" and isinstance(value, str) and len(value) <= MAX_STRING:
        return value
    if kind == "enum" and isinstance(value, str) and spec.values is not None and value in spec.values:
        return value
    if kind == "date" and isinstance(value, str):
        try:
            return _timestamp(date.fromisoformat(value))
        except ValueError:
            pass
    if (
        kind == "list"
        and isinstance(value, list)
        and len(value) <= MAX_LIST
        and all(isinstance(v, str) and len(v) <= MAX_STRING for v in value)
    ):
        return list(value)
    expected = {
        "enum": f"one of {spec.values}",
        "date": "a date YYYY-MM-DD",
        "string": f"a string of at most {MAX_STRING} characters",
        "list": f"a list of at most {MAX_LIST} strings of at most {MAX_STRING} characters each",
    }
    raise ValueError(expected.get(kind, f"a value of type {kind}"))


def coerce_attributes(
    spec: RuleSetSpec, given: Mapping[str, Any], *, where: tuple[str, ...] = ("attributes",)
) -> dict[str, Any]:
    """The declared attributes as CEL values. Refuses (400, naming each attribute, never its value)
    an attribute missing, unknown, or not of its declared type."""
    errors: list[dict[str, object]] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in spec.attributes:
            errors.append({"loc": [*where, name], "msg": "this rule set asks for no such attribute"})
    for name, attribute in spec.attributes.items():
        if name not in given:
            errors.append({"loc": [*where, name], "msg": "required"})
            continue
        try:
            values[name] = _coerce(attribute, given[name])
        except ValueError as exc:
            errors.append({"loc": [*where, name], "msg": f"must be {exc}"})
    if errors:
        raise ValidationFailed("the attributes do not match the rule set", errors)
    return values


# --- compiling -------------------------------------------------------------------------------------


def _probes(spec: RuleSetSpec) -> Iterator[dict[str, Any]]:
    """Inputs covering each declared type's edges, for the type check (see the module docstring)."""
    samples: dict[str, list[Any]] = {}
    for name, a in spec.attributes.items():
        by_type: dict[str, list[Any]] = {
            "int": [0, 150, -1],
            "bool": [False, True],
            "string": ["", "x"],
            "enum": list(a.values or []),
            "date": [_timestamp(date(1900, 1, 1)), _timestamp(date(2100, 12, 31))],
            "list": [[], ["x"], ["x", "y"]],
        }
        samples[name] = by_type[a.type]
    rounds = max([2, *(len(v) for v in samples.values())])
    for i in range(rounds):
        probe = {name: values[i % len(values)] for name, values in samples.items()}
        probe["age"] = [0, 120][i % 2]
        probe["birth_date"] = _timestamp(date(1900, 1, 1) if i % 2 else date(2020, 2, 29))
        yield probe
        # The same round with the ints and bools flipped, so `a || b` reaches its right side too.
        yield {k: (not v if isinstance(v, bool) else v) for k, v in probe.items()}


# One lexical token: a string literal (whole), a name, a number, or an operator / bracket. Counting
# them bounds a rule's syntax tree (every node is at least one token).
_TOKEN = re.compile(
    r"""[rRbB]*(?:'\'\'\'.*?\'\'\'|\"\"\".*?\"\"\"|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?|0[xX][0-9a-fA-F]+"
    r"|&&|\|\||[=!<>]=|[-+*/%<>!?:.,()\[\]{}]",
    re.DOTALL,
)
# A comprehension's weight in the nesting: ``map`` and ``filter`` build a list, and the interpreter
# copies the list built so far at every step (quadratic in the list's length), so each counts as two
# levels: one may hold no other comprehension nor sit inside one, and its body is an innermost one.
_WEIGHT = {"all": 1, "exists": 1, "exists_one": 1, "map": 2, "filter": 2}
# Not in the innermost body of a two-deep nesting (it runs list length² times, 2,500 for 50 items):
# what builds or walks a whole value there (a list's name, a list or map literal, `+`, a regex).
_NOT_INNERMOST = frozenset(("[", "{", "+", "matches"))


@dataclass(frozen=True)
class Shape:
    """What bounds a rule's cost, read from its text (string literals skipped)."""

    nesting: int  # how deep comprehensions nest: ``xs.all(x, ys.exists(y, x == y))`` is 2, ``xs.map(x, x)`` is 2
    tokens: int  # lexical tokens (names, literals, operators): an upper bound on the syntax tree's nodes
    concatenations: int  # ``+`` operators: each can copy and grow a list or string
    innermost: frozenset[str]  # names and operators used where the nesting is deepest (2)


def shape(expr: str) -> Shape:
    """The :class:`Shape` of ``expr``."""
    tokens = [m.group(0) for m in _TOKEN.finditer(expr)]
    stack: list[int] = []  # one per open parenthesis: its macro's weight (0: not a macro's)
    deepest = 0
    innermost: set[str] = set()
    for i, lexeme in enumerate(tokens):
        if lexeme == "(":
            macro = tokens[i - 1] if i >= 2 and tokens[i - 2] == "." else ""
            stack.append(_WEIGHT.get(macro, 0))
            deepest = max(deepest, sum(stack))
        elif lexeme == ")" and stack:
            stack.pop()
        elif sum(stack) >= MAX_NESTING:
            innermost.add(lexeme)
    return Shape(deepest, len(tokens), tokens.count("+"), frozenset(innermost))


def macro_nesting(expr: str) -> int:
    """How deep comprehension macros nest in ``expr`` (``all``, ``exists``, ``exists_one`` one level each,
    ``map``, ``filter`` two), string literals skipped: ``xs.all(x, ys.exists(y, x == y))`` is 2."""
    return shape(expr).nesting


def _cost_problem(rule: RuleSpec, spec: RuleSetSpec) -> str | None:
    """Why ``rule`` could cost too much per evaluation, or None (README, "Eligibility": the bounds)."""
    found = shape(rule.expr)
    if found.nesting > MAX_NESTING:
        return (
            f"rule {rule.id!r} nests comprehensions more than {MAX_NESTING} deep (all, exists and exists_one count "
            "one level, map and filter two)"
        )
    if found.tokens > MAX_TOKENS:
        return f"rule {rule.id!r} is too large ({found.tokens} tokens; at most {MAX_TOKENS})"
    if found.concatenations > MAX_CONCATENATIONS:
        return f"rule {rule.id!r} uses + more than {MAX_CONCATENATIONS} times"
    lists = {n for n, a in spec.attributes.items() if a.type == "list"}
    heavy = sorted(found.innermost & (_NOT_INNERMOST | lists))
    if heavy:
        return (
            f"rule {rule.id!r} uses {', '.join(heavy)} inside a comprehension nested {MAX_NESTING} deep, or a map's "
            "or filter's body (it would run for every pair of items): use only the bound names there"
        )
    return None


def _rule_problem(rule: RuleSpec, program: cel.Program, spec: RuleSetSpec) -> str | None:
    """Why ``rule`` cannot be stored, or None."""
    costly = _cost_problem(rule, spec)
    if costly is not None:
        return costly
    bound = set(_BINDER.findall(rule.expr))
    unknown = sorted(set(program.variables()) - set(spec.attributes) - set(BUILT_IN) - bound)
    if unknown:
        return f"rule {rule.id!r} names unknown attribute(s): {', '.join(unknown)}"
    for probe in _probes(spec):
        try:
            result = program.execute(probe)
        except Exception as exc:  # cel raises TypeError, RuntimeError, ValueError alike for type errors
            return f"rule {rule.id!r} has a type error: {str(exc).split('. ')[0]}"
        if not isinstance(result, bool):
            return f"rule {rule.id!r} is not a boolean expression (it gives {type(result).__name__})"
    return None


@dataclass(frozen=True)
class Compiled:
    """A rule set ready to evaluate: each rule's compiled program (compiled once, reused)."""

    spec: RuleSetSpec
    digest: str
    programs: tuple[tuple[RuleSpec, cel.Program], ...]

    def text_of(self, reason: str, language: str = "en") -> str:
        for rule in self.spec.rules:
            if rule.reason == reason:
                return rule.text.in_language(language)
        return reason.replace("_", " ")


def compile_rule_set(spec: RuleSetSpec) -> Compiled:
    """Compile every rule and check it (see the module docstring); ValidationFailed naming each bad rule."""
    programs: list[tuple[RuleSpec, cel.Program]] = []
    errors: list[dict[str, object]] = []
    for i, rule in enumerate(spec.rules):
        try:
            program = cel.compile(rule.expr)
        except Exception:  # cel raises ValueError with the parser's message
            errors.append({"loc": ["rules", str(i), "expr"], "msg": f"rule {rule.id!r} does not compile"})
            continue
        problem = _rule_problem(rule, program, spec)
        if problem is not None:
            errors.append({"loc": ["rules", str(i), "expr"], "msg": problem})
        programs.append((rule, program))
    if errors:
        first = str(errors[0]["msg"])
        raise ValidationFailed(first, errors)
    return Compiled(spec, spec.digest(), tuple(programs))


_COMPILED: dict[str, Compiled] = {}  # digest → compiled: versions are immutable, so this never goes stale


def compiled_from_body(body: Mapping[str, Any] | str) -> Compiled:
    """The compiled rule set of a stored version's body, compiled at most once per process."""
    data = json.loads(body) if isinstance(body, str) else body
    spec = RuleSetSpec.model_validate(data)
    digest = spec.digest()
    found = _COMPILED.get(digest)
    if found is None:
        found = _COMPILED[digest] = compile_rule_set(spec)
    return found


# --- evaluating ------------------------------------------------------------------------------------

HELD, FAILED, ERROR = "held", "failed", "error"


@dataclass(frozen=True)
class Evaluation:
    eligible: bool
    reasons: tuple[str, ...]  # the reason codes of the rules that failed (or erred), in rule order, once each
    explanation: dict[str, str]  # rule id → held | failed | error

    @property
    def outcome(self) -> DecisionOutcome:
        return DecisionOutcome.ELIGIBLE if self.eligible else DecisionOutcome.INELIGIBLE

    @property
    def errors(self) -> int:
        return sum(1 for v in self.explanation.values() if v == ERROR)


def evaluate(compiled: Compiled, birth_date: date, attributes: Mapping[str, Any], on: date) -> Evaluation:
    """Every rule on these inputs (``attributes`` already coerced); a rule that errs fails closed."""
    context = {**attributes, "age": age_on(birth_date, on), "birth_date": _timestamp(birth_date)}
    explanation: dict[str, str] = {}
    reasons: list[str] = []
    for rule, program in compiled.programs:
        try:
            verdict = HELD if program.execute(context) is True else FAILED
        except Exception:  # a type error no probe found: never a crash, never a pass
            verdict = ERROR
        explanation[rule.id] = verdict
        if verdict != HELD and rule.reason not in reasons:
            reasons.append(rule.reason)
    return Evaluation(not reasons, tuple(reasons), explanation)


def run_examples(compiled: Compiled, default_on: date) -> list[dict[str, Any]]:
    """Each example's result: ``{"example", "passed", "eligible", "reasons", "problem"?}``."""
    results: list[dict[str, Any]] = []
    for i, example in enumerate(compiled.spec.examples):
        label = compiled.spec.example_label(i)
        try:
            values = coerce_attributes(compiled.spec, example.attributes, where=("examples", str(i), "attributes"))
        except ValidationFailed as exc:
            msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors)  # type: ignore[call-overload]
            results.append({"example": label, "passed": False, "problem": msgs})
            continue
        got = evaluate(compiled, example.birth_date, values, example.on or default_on)
        passed = got.eligible == example.eligible and sorted(got.reasons) == sorted(example.reasons)
        results.append({"example": label, "passed": passed, "eligible": got.eligible, "reasons": list(got.reasons)})
    return results


def diff(old: RuleSetSpec, new: RuleSetSpec) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: attributes and rules added, removed or changed (by name/id)."""

    def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, list[str]]:
        return {
            "added": sorted(set(b) - set(a)),
            "removed": sorted(set(a) - set(b)),
            "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k]),
        }

    rules_a = {r.id: r.model_dump(mode="json") for r in old.rules}
    rules_b = {r.id: r.model_dump(mode="json") for r in new.rules}
    changed_exprs = {
        k: {"from": rules_a[k]["expr"], "to": rules_b[k]["expr"]}
        for k in set(rules_a) & set(rules_b)
        if rules_a[k]["expr"] != rules_b[k]["expr"]
    }
    return {
        "attributes": compare(
            {k: v.model_dump(mode="json") for k, v in old.attributes.items()},
            {k: v.model_dump(mode="json") for k, v in new.attributes.items()},
        ),
        "rules": {**compare(rules_a, rules_b), "expressions": changed_exprs},
        "examples": {"from": len(old.examples), "to": len(new.examples)},
    }
