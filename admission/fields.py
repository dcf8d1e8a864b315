"""Fields more than one request body of the booking API shares, each checked the same way everywhere:
an email address (booking, waitlist, a lost manage link) and a birth date (booking, eligibility)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, Field

# One address: no blank or control character, and none of what a mail parser reads as a list, a group,
# a comment or a quoted part (``a,b@c.d`` is two recipients, the first at the relay's own domain).
_ADDRESS_PART = r'[^@\s\x00-\x1f\x7f,;:<>()\[\]"\\]+'
_EMAIL = re.compile(rf"^{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


def _birth_date(value: date) -> date:
    if not date(1900, 1, 1) <= value <= date.today():
        raise ValueError("must be a past date after 1900")
    return value


EmailAddress = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
