"""What each notification says, in English and Spanish: a subject, plain text and simple HTML.

Rendered when the message is sent, from the sealed payload and the appointment as it stands then
(:class:`Facts`). The calendar file goes with a confirmation and a reschedule.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.notifications import NotificationKind
from shared.statuses import Language
from shared.wording import WEEKDAYS  # keyed "en"/"es": a Language (StrEnum) finds its entry

K = NotificationKind

# (subject, body) per kind and language; {when}, {where}, {manage}, {claim}, {expires}, {reason} fill in.
_TEXT: dict[Language, dict[NotificationKind, tuple[str, str]]] = {
    Language.EN: {
        K.CONFIRMATION: ("Your appointment is booked", "Your appointment is booked.\n\nWhen: {when}\nWhere: {where}"),
        K.RESCHEDULE: (
            "Your appointment has moved",
            "Your appointment has a new time.\n\nWhen: {when}\nWhere: {where}",
        ),
        K.CANCELLATION: ("Your appointment is cancelled", "Your appointment on {when} at {where} is cancelled."),
        K.REMINDER_24H: (
            "Reminder: your appointment tomorrow",
            "A reminder: your appointment is on {when} at {where}.",
        ),
        K.REMINDER_1H: ("Reminder: your appointment in an hour", "A reminder: your appointment is at {when}, {where}."),
        K.SITE_CLOSED: (
            "Your appointment is cancelled by the site",
            "The site closed on the day of your appointment ({reason}). You are first on its waiting list: "
            "an offer with a link to claim a seat will follow.",
        ),
        K.WAITLIST_OFFER: (
            "A seat is free for you",
            "A seat is free on {when}. Claim it before {expires}: {claim}\n"
            "Others got this offer too; the first to claim it gets it.",
        ),
        K.OFFER_TAKEN: (
            "The seat was taken",
            "Someone claimed the seat you were offered first. You stay on the waiting list.",
        ),
        K.MANAGE_LINK: ("Your appointment link", "Here is the link to see, change or cancel your appointment."),
    },
    Language.ES: {
        K.CONFIRMATION: ("Su cita está reservada", "Su cita está reservada.\n\nCuándo: {when}\nDónde: {where}"),
        K.RESCHEDULE: ("Su cita ha cambiado", "Su cita tiene una nueva hora.\n\nCuándo: {when}\nDónde: {where}"),
        K.CANCELLATION: ("Su cita está cancelada", "Su cita del {when} en {where} está cancelada."),
        K.REMINDER_24H: ("Recordatorio: su cita de mañana", "Le recordamos su cita el {when} en {where}."),
        K.REMINDER_1H: ("Recordatorio: su cita en una hora", "Le recordamos su cita a las {when}, {where}."),
        K.SITE_CLOSED: (
            "El centro ha cancelado su cita",
            "El centro cerró el día de su cita ({reason}). Usted es el primero en su lista de espera: "
            "recibirá una oferta con un enlace para reservar.",
        ),
        K.WAITLIST_OFFER: (
            "Hay una plaza libre para usted",
            "Hay una plaza libre el {when}. Resérvela antes de {expires}: {claim}\n"
            "Otras personas recibieron esta oferta; la primera que la reserve se la queda.",
        ),
        K.OFFER_TAKEN: (
            "La plaza ya está ocupada",
            "Otra persona reservó antes la plaza ofrecida. Sigue en la lista de espera.",
        ),
        K.MANAGE_LINK: ("El enlace de su cita", "Este es el enlace para ver, cambiar o cancelar su cita."),
    },
}
_MANAGE = {Language.EN: "See, change or cancel it: {url}", Language.ES: "Verla, cambiarla o cancelarla: {url}"}
_UNSUBSCRIBE = {
    Language.EN: "No more reminders: {url}",
    Language.ES: "No recibir más recordatorios: {url}",
}


# Text messages: one line each — what, when, where, then the link (manage or claim) if there is one.
# {what} the appointment type, {when} the short local time (:func:`short_when`), {where} the site.
_SMS: dict[Language, dict[NotificationKind, str]] = {
    Language.EN: {
        K.CONFIRMATION: "Booked: {what}, {when}, {where}.",
        K.RESCHEDULE: "Moved: {what}, now {when}, {where}.",
        K.CANCELLATION: "Cancelled: {what}, {when}, {where}.",
        K.REMINDER_24H: "Reminder: {what} tomorrow, {when}, {where}.",
        K.REMINDER_1H: "Reminder: {what} in 1 hour, {when}, {where}.",
        K.SITE_CLOSED: "Cancelled by the site: {what}, {when}, {where}. You are first on its waitlist.",
        K.WAITLIST_OFFER: "Seat free: {when}. Claim it by {expires}:",
        K.OFFER_TAKEN: "The offered seat was taken. You stay on the waitlist.",
        K.MANAGE_LINK: "Your appointment link:",
    },
    Language.ES: {
        K.CONFIRMATION: "Reservada: {what}, {when}, {where}.",
        K.RESCHEDULE: "Cambiada: {what}, ahora {when}, {where}.",
        K.CANCELLATION: "Cancelada: {what}, {when}, {where}.",
        K.REMINDER_24H: "Recordatorio: {what} mañana, {when}, {where}.",
        K.REMINDER_1H: "Recordatorio: {what} en 1 hora, {when}, {where}.",
        K.SITE_CLOSED: "Cancelada por el centro: {what}, {when}, {where}. Es el primero en su lista de espera.",
        K.WAITLIST_OFFER: "Plaza libre: {when}. Resérvela antes de {expires}:",
        K.OFFER_TAKEN: "La plaza ofrecida ya está ocupada. Sigue en la lista de espera.",
        K.MANAGE_LINK: "El enlace de su cita:",
    },
}
_SMS_WHAT = {Language.EN: "Appointment", Language.ES: "Cita"}
_SHORT_WEEKDAYS = {
    Language.EN: ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    Language.ES: ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
}
_SHORT_MONTHS = {
    Language.EN: ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    Language.ES: ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
}
# A site's or type's name longer than this is cut (with …) in a text message.
SMS_FIELD_MAX = 32


@dataclass(frozen=True)
class Facts:
    """The appointment as it stands when the message is sent (None for a waitlist message)."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    timezone: str | None = None
    site_name: str | None = None
    address: str | None = None
    type_name: str | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def local_when(moment: datetime, timezone: str, language: Language) -> str:
    """``Sunday 29 March 2026, 10:00 CEST`` (weekday, date, wall time and the zone's abbreviation)."""
    local = moment.astimezone(ZoneInfo(timezone))
    weekday = WEEKDAYS[language][local.weekday()]
    return f"{weekday} {local:%Y-%m-%d}, {local:%H:%M} {local.tzname()}"


def _iso_when(value: Any, language: Language) -> str:
    """An ISO time from a payload, in the offset it was written with (the site's, for local times)."""
    if not isinstance(value, str):
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return f"{WEEKDAYS[language][moment.weekday()]} {moment:%Y-%m-%d}, {moment:%H:%M} (UTC{moment:%z})"


def short_when(moment: datetime, language: Language) -> str:
    """``Mon 23 Nov 09:00 CET`` in the zone ``moment`` carries (the site's)."""
    return (
        f"{_SHORT_WEEKDAYS[language][moment.weekday()]} {moment.day} {_SHORT_MONTHS[language][moment.month - 1]} "
        f"{moment:%H:%M} {moment.tzname() or ''}"
    ).strip()


def _short_iso(value: Any, language: Language) -> str:
    if not isinstance(value, str):
        return ""
    return short_when(datetime.fromisoformat(value.replace("Z", "+00:00")), language)  # e.g. "… 09:00 UTC+01:00"


def _claim_link(payload: dict[str, Any]) -> str:
    if payload.get("claim_url"):  # the claim page (admission/claim_page.py)
        return str(payload["claim_url"])
    if payload.get("claim_token"):
        return f"{payload.get('claim_endpoint', '')}?claim={payload['claim_token']}"
    return ""


def _cut(text: str) -> str:
    text = " ".join(text.split())  # one line, whatever the name holds
    return text if len(text) <= SMS_FIELD_MAX else text[: SMS_FIELD_MAX - 1].rstrip() + "…"


def render_sms(
    kind: NotificationKind,
    language: Language,
    payload: dict[str, Any],
    facts: Facts,
    *,
    manage_url: str | None = None,
) -> str:
    """The text message of ``kind``: one line — what, when, where — then the manage (or claim) link
    when there is one. No address, no reason, no opt-out line: :func:`render` (email) has them."""
    if facts.starts_at is not None and facts.timezone is not None:
        when = short_when(facts.starts_at.astimezone(ZoneInfo(facts.timezone)), language)
    else:
        when = _short_iso(payload.get("local_starts_at") or payload.get("starts_at"), language)
    line = _SMS[language][kind].format(
        what=_cut(facts.type_name or _SMS_WHAT[language]), when=when,
        where=_cut(facts.site_name or str(payload.get("site_id", ""))),
        expires=_short_iso(payload.get("expires_at"), language),
    )  # fmt: skip
    link = _claim_link(payload) if kind == K.WAITLIST_OFFER else (manage_url or payload.get("manage_url"))
    return f"{line} {link}" if link else line


def render(
    kind: NotificationKind,
    language: Language,
    payload: dict[str, Any],
    facts: Facts,
    *,
    manage_url: str | None = None,
    unsubscribe_url: str | None = None,
) -> Rendered:
    """The message of ``kind`` in ``language``; links go in both parts."""
    subject, body = _TEXT[language][kind]
    when = ""
    if facts.starts_at is not None and facts.timezone is not None:
        when = local_when(facts.starts_at, facts.timezone, language)
    else:
        when = _iso_when(payload.get("local_starts_at") or payload.get("starts_at"), language)
    where = ", ".join(p for p in (facts.site_name, facts.address) if p) or str(payload.get("site_id", ""))
    claim = _claim_link(payload)
    text = body.format(
        when=when, where=where, claim=claim, expires=_iso_when(payload.get("expires_at"), language),
        reason=payload.get("reason", ""),
    )  # fmt: skip
    lines = [text]
    manage_url = manage_url or payload.get("manage_url")
    if manage_url:
        lines.append(_MANAGE[language].format(url=manage_url))
    if unsubscribe_url:
        lines.append(_UNSUBSCRIBE[language].format(url=unsubscribe_url))
    plain = "\n\n".join(lines) + "\n"
    return Rendered(subject=subject, text=plain, html=_html(subject, lines))


def _html(subject: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{_linked(p)}</p>" for p in paragraphs)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(subject)}</title></head>'
        f'<body style="font-family:sans-serif;line-height:1.4">{body}</body></html>'
    )


def _linked(paragraph: str) -> str:
    """Escape, keep line breaks, and make each http(s) URL a link."""
    out = []
    for word in paragraph.split(" "):
        escaped = html.escape(word)
        if word.startswith(("http://", "https://")):
            escaped = f'<a href="{escaped}">{escaped}</a>'
        out.append(escaped)
    return " ".join(out).replace("\n", "<br>")
