from __future__ import annotations

import pytest

from waitingroom.i18n import STRINGS, eta_minutes, pick_language


@pytest.mark.parametrize(
    ("header", "language"),
    [(None, "en"), ("", "en"), ("es", "es"), ("es-MX,es;q=0.9,en;q=0.8", "es"), ("en-US,es;q=0.5", "en"),
     ("fr-FR,fr;q=0.9,es;q=0.7", "es"), ("de", "en"), ("es;q=bogus, en", "en")],
)  # fmt: skip
def test_language_follows_accept_language(header: str | None, language: str) -> None:
    assert pick_language(header) == language


def test_every_language_has_every_string() -> None:
    assert {k for k in STRINGS["es"]} == {k for k in STRINGS["en"]}
    for language, strings in STRINGS.items():
        for key, text in strings.items():
            assert text.count("{") == STRINGS["en"][key].count("{"), (language, key)


def test_eta_is_a_range() -> None:
    assert eta_minutes(30) is None
    assert eta_minutes(300) == (4, 7)
    lo, hi = eta_minutes(3600) or (0, 0)
    assert lo < 60 < hi
