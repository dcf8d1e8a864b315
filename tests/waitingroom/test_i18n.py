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


def test_every_refusal_code_has_words_on_the_page_in_every_language() -> None:
    """The page says each refusal in the visitor's language (queue.js looks up ``code_<code>``)."""
    from shared.errors import CATALOGUE

    for language, strings in STRINGS.items():
        missing = [code.value for code in CATALOGUE if not strings.get(f"code_{code.value}", "").strip()]
        assert missing == [], (language, missing)
    assert STRINGS["es"]["code_slot_full"] != STRINGS["en"]["code_slot_full"]  # translated, not copied


def test_no_jargon_on_the_page() -> None:
    """Plain words: a person's turn expires; "token", "admission" and "ticket" are the system's words."""
    for language, strings in STRINGS.items():
        for key, text in strings.items():
            assert not {"token", "ticket", "idempotency"} & set(text.lower().split()), (language, key)


def test_the_appointment_time_names_weekday_date_and_zone() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from waitingroom.i18n import local_when

    at = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    assert local_when(at, "en") == "Monday 23 November 2026, 09:00 (CET, Europe/Madrid)"
    assert local_when(at, "es") == "lunes 23 de noviembre de 2026, 09:00 (CET, Europe/Madrid)"
    assert "CEST" in local_when(at.replace(month=7, day=1), "en")  # the zone's name follows DST
