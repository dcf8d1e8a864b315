"""One id number, one person: every written form of a number maps to one ref, and a form that is not
that number (a look-alike from another script, an invisible character) is refused, never a person
of its own. The look-alikes are built from Unicode character names, so this file stays ASCII."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ValidationFailed
from shared.persons import PersonVault, canonical_id_number
from shared.settings import DEFAULT_ID_NUMBER_PATTERN, Settings, SettingsError

PLAIN = "AB-123 456"
DIGIT_NAMES = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def u(name: str) -> str:
    return unicodedata.lookup(name)


def digits_of(script: str) -> Callable[[str], str]:
    """Write the ASCII digits of a text in another script's digits (``ARABIC-INDIC DIGIT ONE``...)."""
    return lambda text: "".join(u(f"{script} DIGIT {DIGIT_NAMES[int(c)]}") if c.isdigit() else c for c in text)


def letters_and_digits(letter: str, digit: str) -> Callable[[str], str]:
    """Write ASCII letters and digits as ``{letter} X`` and ``{digit} DIGIT N`` characters."""

    def write(text: str) -> str:
        out = []
        for c in text:
            if c.isalpha():
                out.append(u(f"{letter} {c}"))
            elif c.isdigit():
                out.append(u(f"{digit} DIGIT {DIGIT_NAMES[int(c)]}"))
            else:
                out.append(c)
        return "".join(out)

    return write


def separated_by(name: str) -> Callable[[str], str]:
    return lambda text: text.replace("-", u(name)).replace(" ", u(name))


# Every one of these is the plain number, written some other way: one person.
SAME_NUMBER: dict[str, Callable[[str], str]] = {
    "lower case": str.lower,
    "full-width": letters_and_digits("FULLWIDTH LATIN CAPITAL LETTER", "FULLWIDTH"),
    "mathematical bold": letters_and_digits("MATHEMATICAL BOLD CAPITAL", "MATHEMATICAL BOLD"),
    "mathematical double-struck": letters_and_digits(
        "MATHEMATICAL DOUBLE-STRUCK CAPITAL", "MATHEMATICAL DOUBLE-STRUCK"
    ),
    "mathematical monospace": letters_and_digits("MATHEMATICAL MONOSPACE CAPITAL", "MATHEMATICAL MONOSPACE"),
    "arabic-indic digits": digits_of("ARABIC-INDIC"),
    "extended arabic-indic digits": digits_of("EXTENDED ARABIC-INDIC"),
    "devanagari digits": digits_of("DEVANAGARI"),
    "bengali digits": digits_of("BENGALI"),
    "thai digits": digits_of("THAI"),
    "no separators": lambda text: text.replace("-", "").replace(" ", ""),
    "en dash": separated_by("EN DASH"),
    "hyphen": separated_by("HYPHEN"),
    "full-width hyphen-minus": separated_by("FULLWIDTH HYPHEN-MINUS"),
    "no-break space": separated_by("NO-BREAK SPACE"),
    "ideographic space": separated_by("IDEOGRAPHIC SPACE"),
    "dots and slashes": lambda text: text.replace("-", ".").replace(" ", "/"),
}

# Each of these looks like the plain number (or part of it) but is not it: refused.
LOOK_ALIKES: dict[str, str] = {
    "cyrillic A": PLAIN.replace("A", u("CYRILLIC CAPITAL LETTER A")),
    "greek Alpha and Beta": PLAIN.replace("A", u("GREEK CAPITAL LETTER ALPHA")).replace(
        "B", u("GREEK CAPITAL LETTER BETA")
    ),
    "cherokee letter that looks like A": PLAIN.replace("A", u("CHEROKEE LETTER GO")),
    "zero width space": PLAIN.replace(" ", u("ZERO WIDTH SPACE")),
    "soft hyphen": PLAIN.replace("-", u("SOFT HYPHEN")),
    "combining acute accent": PLAIN.replace("A", "A" + u("COMBINING ACUTE ACCENT")),
    "vulgar fraction": PLAIN + u("VULGAR FRACTION ONE HALF"),
    "underscore": PLAIN.replace("-", "_"),
    "separators only": " - . / ",
    "too long": "A" * 65,
}


def vault(pattern: str = DEFAULT_ID_NUMBER_PATTERN) -> PersonVault:
    return PersonVault(b"k" * 32, pattern)


@pytest.mark.parametrize("form", SAME_NUMBER, ids=list(SAME_NUMBER))
def test_every_written_form_of_one_number_is_one_person(form: str) -> None:
    written = SAME_NUMBER[form](PLAIN)
    assert written != PLAIN
    assert canonical_id_number(written) == "AB123456"
    assert vault().ref(written) == vault().ref(PLAIN)


@pytest.mark.parametrize("form", LOOK_ALIKES, ids=list(LOOK_ALIKES))
def test_a_look_alike_is_refused_naming_the_field_never_the_value(form: str) -> None:
    written = LOOK_ALIKES[form]
    with pytest.raises(ValidationFailed) as refused:
        vault().ref(written, field=("person", "id_number"))
    assert refused.value.errors == [{"loc": ["person", "id_number"], "msg": refused.value.errors[0]["msg"]}]
    assert refused.value.detail == "person.id_number is not a valid id number"
    said = refused.value.detail + str(refused.value.errors)
    if canonical_id_number(written):  # (nothing to echo when only separators were sent)
        assert written not in said and canonical_id_number(written) not in said


@given(st.text(alphabet="abcxyzABCXYZ0123456789 -./", max_size=40))
def test_an_ascii_number_keeps_the_form_it_had_before(written: str) -> None:
    """Refs stored before this normalisation was introduced still match: for ASCII input it is the
    old rule (upper case, separators dropped)."""
    assert canonical_id_number(written) == "".join(c for c in written.upper() if c.isalnum())


@given(st.text(max_size=30))
def test_the_canonical_form_is_a_fixed_point(written: str) -> None:
    """Also for forms a custom pattern might accept (other scripts): writing a canonical form again
    gives the same person."""
    once = canonical_id_number(written)
    assert canonical_id_number(once) == once


def test_the_pattern_says_which_numbers_a_program_accepts() -> None:
    digits_only = vault("[0-9]{9}")
    arabic = digits_of("ARABIC-INDIC")("123 456 789")
    assert digits_only.ref(arabic) == digits_only.ref("123-456-789")
    for refused in ("12345678", "1234567890", "O12345678"):  # a letter O is not a zero here
        with pytest.raises(ValidationFailed):
            digits_only.ref(refused)


def test_the_pattern_is_a_setting_checked_at_start() -> None:
    assert Settings.from_env({}).id_number_pattern == DEFAULT_ID_NUMBER_PATTERN
    assert Settings.from_env({"SURGEGATE_ID_NUMBER_PATTERN": "[0-9]{9}"}).id_number_pattern == "[0-9]{9}"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"SURGEGATE_ID_NUMBER_PATTERN": "[A-"})
    assert str(refused.value) == "SURGEGATE_ID_NUMBER_PATTERN must be a regular expression, not '[A-'"
