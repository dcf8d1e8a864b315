"""What a message says (booking_worker/messages.py): text messages are one short line each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from booking_worker.messages import SMS_FIELD_MAX, Facts, render, render_sms
from shared.notifications import NotificationKind
from shared.statuses import Language

STARTS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
FACTS = Facts(STARTS, STARTS + timedelta(minutes=15), "Europe/Berlin", "Impfzentrum Mitte",
              "Karl-Marx-Allee 1, 10178 Berlin", "COVID-19 booster")  # fmt: skip
MANAGE = "https://book.example.org/manage?c=k1.eyJhIjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAwIn0.sig"
CLAIM = "https://book.example.org/claim?c=k1.claim-token"
OFFER: dict[str, Any] = {
    "claim_url": CLAIM, "local_starts_at": "2026-11-23T09:00:00+01:00", "expires_at": "2026-11-22T10:30:00+01:00",
}  # fmt: skip
# What a text message may be before its link: one standard SMS (160 GSM-7 characters), whatever the names.
LINE_MAX = 160


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", list(NotificationKind))
def test_each_text_message_is_one_short_line(kind: NotificationKind, language: Language) -> None:
    payload = OFFER if kind == NotificationKind.WAITLIST_OFFER else {}
    long = Facts(FACTS.starts_at, FACTS.ends_at, FACTS.timezone, "Centro de Salud " * 10, "x" * 300, "Vacuna " * 20)
    for facts in (FACTS, long):
        # The dispatcher passes a manage link for messages about a live appointment.
        given = None if kind in (NotificationKind.WAITLIST_OFFER, NotificationKind.OFFER_TAKEN) else MANAGE
        text = render_sms(kind, language, payload, facts, manage_url=given)
        assert "\n" not in text and "<" not in text
        line, _, link = text.partition(" https://")
        assert len(line) <= LINE_MAX, line
        assert "Karl-Marx-Allee" not in text and "x" * 50 not in text  # no address: the email has it
        if kind == NotificationKind.WAITLIST_OFFER:
            assert text.endswith(CLAIM)
        elif kind == NotificationKind.OFFER_TAKEN:
            assert link == ""
        else:
            assert text.endswith(MANAGE)
    # The email keeps its full text (several lines, the address).
    assert "\n" in render(kind, language, payload, FACTS, manage_url=MANAGE).text


def test_what_when_where_then_the_link() -> None:
    text = render_sms(NotificationKind.CONFIRMATION, Language.EN, {}, FACTS, manage_url=MANAGE)
    assert text == f"Booked: COVID-19 booster, Mon 23 Nov 09:00 CET, Impfzentrum Mitte. {MANAGE}"
    es = render_sms(NotificationKind.REMINDER_1H, Language.ES, {}, FACTS)
    assert es == "Recordatorio: COVID-19 booster en 1 hora, lun 23 nov 09:00 CET, Impfzentrum Mitte."
    offer = render_sms(NotificationKind.WAITLIST_OFFER, Language.EN, OFFER, Facts())
    assert offer == f"Seat free: Mon 23 Nov 09:00 UTC+01:00. Claim it by Sun 22 Nov 10:30 UTC+01:00: {CLAIM}"
    long = render_sms(NotificationKind.CANCELLATION, Language.EN, {}, Facts(STARTS, None, "Europe/Berlin",
                      "A\nvery long site name that goes on and on and on", None, None))  # fmt: skip
    where = long.split(", ")[-1]
    assert len(where) <= SMS_FIELD_MAX + 1 and where.endswith("….") and "\n" not in long
