"""Dates in words, in the languages people book in (en, es): the one table of weekday and month names
that the queue page, the manage and claim pages and the messages all use, and the long form of an
appointment's time the pages show ("Monday 23 November 2026, 09:00 (CET, Europe/Berlin)")."""

from __future__ import annotations

from datetime import datetime

WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}
MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"),
}  # fmt: skip


def local_when(moment: datetime, language: str) -> str:
    """Weekday, date, local time and the zone's name of an aware datetime already in the site's zone:
    "Monday 23 November 2026, 09:00 (CET, Europe/Berlin)" / "lunes 23 de noviembre de 2026, 09:00 (…)"."""
    weekday, month = WEEKDAYS[language][moment.weekday()], MONTHS[language][moment.month - 1]
    zone = f"{moment.tzname()}, {moment.tzinfo}" if moment.tzname() else str(moment.tzinfo)
    if language == "es":
        return f"{weekday} {moment.day} de {month} de {moment.year}, {moment:%H:%M} ({zone})"
    return f"{weekday} {moment.day} {month} {moment.year}, {moment:%H:%M} ({zone})"
