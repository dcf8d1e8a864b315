"""The booking API's few HTML pages (the manage page, the waitlist claim page): words in English and
Spanish, dates in the site's zone, and one HTML frame.

Server-rendered and complete without JavaScript: every action is a plain form POST. The pages load
nothing but their stylesheet (``/manage.css``), so their Content-Security-Policy is
:data:`PAGE_POLICY`. Every value is escaped here, once.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from shared import wording
from shared.settings import Settings

DEFAULT = "en"
LANGUAGES = ("en", "es")

# What the pages may do: their own stylesheet, forms posted back here, never framed.
PAGE_POLICY = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; " \
    "frame-ancestors 'none'"  # fmt: skip
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": PAGE_POLICY,
}
STYLESHEET = (resources.files("admission") / "static" / "manage.css").read_text()

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your appointment",
        "what": "What",
        "where": "Where",
        "when": "When",
        "map": "Open the map",
        "status_confirmed": "Confirmed",
        "status_cancelled": "This appointment is cancelled.",
        "status_completed": "You attended this appointment.",
        "status_no_show": "This appointment was missed.",
        "cancel_heading": "Cancel",
        "cancel_button": "Cancel my appointment",
        "cancel_late_now": "It is now less than {cutoff} before your appointment: cancelling counts as a late "
        "cancellation.",
        "cancel_policy": "Please cancel at least {cutoff} before; later cancellations are recorded as late.",
        "cancel_confirm": "Yes, I want to cancel",
        "reschedule_heading": "Change the time",
        "reschedule_link": "Choose another time",
        "reschedule_intro": "Other free times at {site} for {type}. Your current time is kept until you choose "
        "a new one.",
        "reschedule_button": "Move my appointment to this time",
        "reschedule_none": "There is no other free time at this site right now. Try again later.",
        "calendar": "Add to calendar (.ics)",
        "back": "Back to my appointment",
        "done_cancelled": "Your appointment is cancelled. We'll send you a confirmation.",
        "done_rescheduled": "Your appointment has a new time. We'll send you a confirmation.",
        "language": "Language",
        "lost_heading": "Lost your link?",
        "lost_intro": "Enter the event, your ID number and the email you booked with. If they match an "
        "appointment, we'll email you a new link.",
        "event": "Event",
        "id_number": "ID number",
        "email": "Email",
        "send_link": "Email me a new link",
        "lost_sent": "If these details match an appointment, a new link is on its way to that email address.",
        "link_invalid": "This link is not valid. Ask for a new one below.",
        "link_expired": "This link has expired: the appointment is over.",
        "no_session": "Open the link from your confirmation email again to manage your appointment.",
        "error": "That did not work: {detail}",
        "form_expired": "This form has expired. Reload the page and try again.",
        "local_time": "local time",
        "claim_title": "A place for you",
        "claim_intro": "A place has opened up. It is yours if you claim it before {expires}.",
        "claim_button": "Claim this place",
        "claim_held": "The place is held for you until {expires}. Enter your details to book it.",
        "name": "Full name",
        "birth_date": "Birth date",
        "book_button": "Book",
        "claim_pending": "We are confirming your booking. We'll email you when it is done.",
        "claim_invalid": "This offer link is not valid or has expired.",
        "claim_eligibility_intro": "This program has rules about who can book. Answer these questions too: the "
        "place is booked only if they show you can book.",
        "unsub_title": "Reminders",
        "unsub_question": "Stop reminders for your appointment?",
        "unsub_intro": "You will get no more reminder messages. We will still tell you when an appointment is "
        "booked, changed or cancelled.",
        "unsub_button": "Stop reminders",
        "unsub_done": "Done: you will get no more reminders. We will still tell you when an appointment is "
        "booked, changed or cancelled.",
        "unsub_invalid": "This link is not valid.",
    },
    "es": {
        "title": "Su cita",
        "what": "Qué",
        "where": "Dónde",
        "when": "Cuándo",
        "map": "Abrir el mapa",
        "status_confirmed": "Confirmada",
        "status_cancelled": "Esta cita está cancelada.",
        "status_completed": "Usted asistió a esta cita.",
        "status_no_show": "Esta cita no se atendió.",
        "cancel_heading": "Cancelar",
        "cancel_button": "Cancelar mi cita",
        "cancel_late_now": "Faltan menos de {cutoff} para su cita: cancelar ahora cuenta como cancelación tardía.",
        "cancel_policy": "Cancele al menos {cutoff} antes; las cancelaciones posteriores se registran como tardías.",
        "cancel_confirm": "Sí, quiero cancelar",
        "reschedule_heading": "Cambiar la hora",
        "reschedule_link": "Elegir otra hora",
        "reschedule_intro": "Otras horas libres en {site} para {type}. Conserva su hora actual hasta que elija "
        "una nueva.",
        "reschedule_button": "Pasar mi cita a esta hora",
        "reschedule_none": "Ahora no hay otra hora libre en este sitio. Inténtelo más tarde.",
        "calendar": "Añadir al calendario (.ics)",
        "back": "Volver a mi cita",
        "done_cancelled": "Su cita está cancelada. Le enviaremos una confirmación.",
        "done_rescheduled": "Su cita tiene una nueva hora. Le enviaremos una confirmación.",
        "language": "Idioma",
        "lost_heading": "¿Perdió su enlace?",
        "lost_intro": "Indique el evento, su número de identificación y el correo con el que reservó. Si "
        "coinciden con una cita, le enviaremos un enlace nuevo.",
        "event": "Evento",
        "id_number": "Número de identificación",
        "email": "Correo electrónico",
        "send_link": "Enviarme un enlace nuevo",
        "lost_sent": "Si los datos coinciden con una cita, le enviamos un enlace nuevo a ese correo.",
        "link_invalid": "Este enlace no es válido. Pida uno nuevo abajo.",
        "link_expired": "Este enlace ha caducado: la cita ya pasó.",
        "no_session": "Vuelva a abrir el enlace de su correo de confirmación para gestionar su cita.",
        "error": "No fue posible: {detail}",
        "form_expired": "Este formulario ha caducado. Recargue la página e inténtelo de nuevo.",
        "local_time": "hora local",
        "claim_title": "Un lugar para usted",
        "claim_intro": "Se ha liberado un lugar. Es suyo si lo reclama antes de {expires}.",
        "claim_button": "Reclamar este lugar",
        "claim_held": "El lugar está reservado para usted hasta {expires}. Indique sus datos para reservarlo.",
        "name": "Nombre completo",
        "birth_date": "Fecha de nacimiento",
        "book_button": "Reservar",
        "claim_pending": "Estamos confirmando su reserva. Le avisaremos por correo cuando esté lista.",
        "claim_invalid": "Este enlace de oferta no es válido o ha caducado.",
        "claim_eligibility_intro": "Este programa tiene reglas sobre quién puede reservar. Responda también a "
        "estas preguntas: el lugar se reserva solo si muestran que puede reservar.",
        "unsub_title": "Recordatorios",
        "unsub_question": "¿Dejar de recibir recordatorios de su cita?",
        "unsub_intro": "No recibirá más recordatorios. Le seguiremos avisando cuando una cita se reserve, "
        "cambie o se cancele.",
        "unsub_button": "Dejar de recibir recordatorios",
        "unsub_done": "Hecho: no recibirá más recordatorios. Le seguiremos avisando cuando una cita se reserve, "
        "cambie o se cancele.",
        "unsub_invalid": "Este enlace no es válido.",
    },
}

# What a page says for a refusal (the API's detail, in English, otherwise).
REFUSALS: dict[str, dict[str, str]] = {
    "en": {
        "slot_full": "that time has just been taken; choose another.",
        "slot_withdrawn": "that time is no longer offered; choose another.",
        "outside_booking_window": "that time can no longer be booked; choose another.",
        "appointment_started": "the appointment has already started.",
        "appointment_not_active": "the appointment is no longer active.",
        "token_scope": "that time is not at this site or of this kind.",
        "validation_error": "a field is missing or not valid; check the form.",
        "not_found": "that time does not exist any more.",
        "rate_limited": "too many requests; try again in a few minutes.",
        "claim_person_mismatch": "this place was offered to someone else: use the details of the person who joined "
        "the waitlist.",
        "offer_taken": "someone else claimed this place first; you stay on the waitlist.",
        "offer_expired": "this offer has expired; you stay on the waitlist.",
        "hold_expired": "the place is no longer held for you.",
        "already_booked": "you already have an appointment for this.",
        "ineligible": "you are not eligible for this appointment.",
        "identity_required": "this program needs proof of who you are from its sign-in service: sign in there "
        "and paste the token it gives you.",
    },
    "es": {
        "slot_full": "esa hora acaba de ocuparse; elija otra.",
        "slot_withdrawn": "esa hora ya no se ofrece; elija otra.",
        "outside_booking_window": "esa hora ya no se puede reservar; elija otra.",
        "appointment_started": "la cita ya ha comenzado.",
        "appointment_not_active": "la cita ya no está activa.",
        "token_scope": "esa hora no es de este sitio o de este tipo.",
        "validation_error": "falta un dato o no es válido; revise el formulario.",
        "not_found": "esa hora ya no existe.",
        "rate_limited": "demasiadas solicitudes; inténtelo de nuevo en unos minutos.",
        "claim_person_mismatch": "este lugar se ofreció a otra persona: use los datos de quien se apuntó a la "
        "lista de espera.",
        "offer_taken": "otra persona reclamó este lugar antes; sigue en la lista de espera.",
        "offer_expired": "esta oferta ha caducado; sigue en la lista de espera.",
        "hold_expired": "el lugar ya no está reservado para usted.",
        "already_booked": "ya tiene una cita para esto.",
        "ineligible": "no cumple los requisitos para esta cita.",
        "identity_required": "este programa necesita comprobar quién es usted con su servicio de acceso: "
        "identifíquese allí y pegue el token que le dé.",
    },
}


def refusal_text(language: str, code: str, detail: str) -> str:
    """What the page says for a refusal ``code``: our words for it, else the API's ``detail``."""
    return REFUSALS[language].get(code, detail)


def pick_language(request: web.Request, chosen: str | None = None) -> str:
    """The page's language: the one chosen on the page (``lang`` in the query or form), else the best
    of ``Accept-Language`` (q-values honoured), else English."""
    chosen = chosen or request.query.get("lang")
    if chosen in LANGUAGES:
        return chosen
    best, best_q = DEFAULT, -1.0
    for part in request.headers.get("Accept-Language", "").split(","):
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            continue
        language = tag.strip().lower().split("-")[0]
        if language in LANGUAGES and q > best_q:
            best, best_q = language, q
    return best


def local_when(moment: datetime, timezone: str, language: str) -> str:
    """``Monday 23 November 2026, 09:00 (CET, Europe/Berlin)`` in the site's zone: the queue page's words."""
    return wording.local_when(moment.astimezone(ZoneInfo(timezone)), language)


def local_time(moment: datetime, timezone: str) -> str:
    """``09:00 (CET)``: the time of day in the site's zone, with the zone's abbreviation then."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%H:%M} ({local.tzname()})"


def local_day(moment: datetime, timezone: str, language: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    month = wording.MONTHS[language][local.month - 1]
    weekday = wording.WEEKDAYS[language][local.weekday()]
    return f"{weekday} {local.day} {month}" if language == "en" else f"{weekday} {local.day} de {month}"


def duration_words(minutes: int, language: str) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        unit = ("hour" if hours == 1 else "hours") if language == "en" else ("hora" if hours == 1 else "horas")
        return f"{hours} {unit}"
    return f"{minutes} min"


def map_url(lat: float, lng: float) -> str:
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lng:.6f}#map=17/{lat:.6f}/{lng:.6f}"


def facts(row: Any, language: str) -> str:
    """What, where (name, address or region, a map link) and when, from a row with the type's and site's columns."""
    t = STRINGS[language]
    what = row["type_name"] or row["type_id"] or "—"
    where = f"{e(row['site_name'])}<br>"
    address = row.get("address")  # sites.address, where the schema has it
    where += f"{e(address)}<br>" if address else f"{e(row['region'])}<br>"
    where += f'<a href="{e(map_url(row["lat"], row["lng"]))}" rel="noreferrer">{e(t["map"])}</a>'
    when = e(local_when(row["starts_at"], row["timezone"], language))
    return (
        '<dl class="facts">'
        f"<div><dt>{e(t['what'])}</dt><dd>{e(what)}</dd></div>"
        f"<div><dt>{e(t['where'])}</dt><dd>{where}</dd></div>"
        f'<div><dt>{e(t["when"])}</dt><dd><time datetime="{row["starts_at"].isoformat()}">{when}</time></dd></div>'
        "</dl>"
    )


def form_token(settings: Settings, salt: bytes, credential: str) -> str:
    """A page's per-session form token: an HMAC of the credential its cookie holds (under a key of
    its own, derived from the signing key), so a form made elsewhere cannot carry it."""
    key = hashlib.sha256(salt + settings.secret_keys[-1][1].encode()).digest()
    return hmac.new(key, credential.encode(), hashlib.sha256).hexdigest()


def redirect(location: str) -> web.Response:
    """303 to ``location`` (after a form, or to drop a credential from the address)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})  # fmt: skip


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def language_switch(language: str, path: str, label: str) -> str:
    """Links to the same page in each language (a plain link: works without JavaScript)."""
    links = " · ".join(
        f'<a href="{e(path)}?lang={code}" hreflang="{code}" lang="{code}"'
        + (' aria-current="true"' if code == language else "")
        + f">{name}</a>"
        for code, name in (("en", "English"), ("es", "Español"))
    )
    return f'<nav class="lang" aria-label="{e(label)}">{links}</nav>'


def page(
    language: str, title: str, body: str, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The whole document around ``body`` (already escaped HTML), with the pages' headers."""
    document = (
        f'<!doctype html>\n<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f'<title>{e(title)}</title>\n<link rel="stylesheet" href="/manage.css">\n</head>\n'
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**PAGE_HEADERS, **(headers or {})},
    )


async def stylesheet(request: web.Request) -> web.Response:
    """``GET /manage.css``: the pages' only resource."""
    return web.Response(text=STYLESHEET, content_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
