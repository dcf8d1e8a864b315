"""Every word the queue page shows, in one catalog; the language comes from ``Accept-Language``.

The page renders its first state on the server with these strings (so it works without
JavaScript) and hands the same catalog to its script as JSON. ``{name}`` placeholders are filled
on either side.
"""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "{event} — waiting room",
        "state_none": "Join the queue to get your place.",
        "state_joining": "Joining the queue…",
        "state_prequeue": "You have a place in the pre-queue.",
        "state_waiting": "You are in the queue.",
        "state_admitted": "It's your turn!",
        "state_expired": "Your turn has passed. You can join the queue again.",
        "position": "Your place in line",
        "ahead": "People ahead of you",
        "eta": "Estimated wait",
        "eta_less_minute": "less than a minute",
        "eta_range": "{lo}–{hi} minutes",
        "eta_paused": "admissions are paused for now; you keep your place",
        "opens_in": "The queue opens in {time}.",
        "lottery": "At opening, everyone already here gets a random place: arriving earlier does not help.",
        "keep_open": "Keep this page open; you don't need to refresh. We'll let you in as soon as it's your turn.",
        "join": "Join the queue",
        "rejoin": "Join again",
        "no_js_refresh": "This page refreshes itself every {seconds} s.",
        "book_heading": "Book your appointment",
        "book_before": "Book before {time}.",
        "needs_js": "Booking needs JavaScript in this browser: turn it on and reload this page.",
        "site": "Site",
        "time": "Time",
        "your_details": "Your details",
        "id_number": "ID number",
        "name": "Full name",
        "email": "Email",
        "birth_date": "Birth date",
        "book": "Book",
        "seats_left": "{n} left",
        "booked_heading": "You're booked",
        "confirmation": "Appointment {id} on {time} (local time at the site).",
        "error_connection": "Connection problem; trying again…",
        "error_generic": "Something went wrong; trying again…",
        "progress": "Progress in the queue",
        "working": "Getting your place ready… (this takes a few seconds)",
        "blank": "–",
    },
    "es": {
        "page_title": "{event} — sala de espera",
        "state_none": "Únase a la fila para obtener su lugar.",
        "state_joining": "Uniéndose a la fila…",
        "state_prequeue": "Tiene un lugar en la prefila.",
        "state_waiting": "Está en la fila.",
        "state_admitted": "¡Es su turno!",
        "state_expired": "Su turno ha pasado. Puede volver a unirse a la fila.",
        "position": "Su lugar en la fila",
        "ahead": "Personas delante de usted",
        "eta": "Espera estimada",
        "eta_less_minute": "menos de un minuto",
        "eta_range": "{lo}–{hi} minutos",
        "eta_paused": "las admisiones están en pausa por ahora; conserva su lugar",
        "opens_in": "La fila abre en {time}.",
        "lottery": "Al abrir, quienes ya estén aquí reciben un lugar al azar: llegar antes no da ventaja.",
        "keep_open": "Mantenga esta página abierta; no necesita recargarla. Le daremos paso en cuanto sea su turno.",
        "join": "Unirse a la fila",
        "rejoin": "Volver a unirse",
        "no_js_refresh": "Esta página se actualiza sola cada {seconds} s.",
        "book_heading": "Reserve su cita",
        "book_before": "Reserve antes de las {time}.",
        "needs_js": "Para reservar hace falta JavaScript en este navegador: actívelo y recargue la página.",
        "site": "Centro",
        "time": "Hora",
        "your_details": "Sus datos",
        "id_number": "Número de identificación",
        "name": "Nombre completo",
        "email": "Correo electrónico",
        "birth_date": "Fecha de nacimiento",
        "book": "Reservar",
        "seats_left": "quedan {n}",
        "booked_heading": "Su cita está reservada",
        "confirmation": "Cita {id} el {time} (hora local del centro).",
        "error_connection": "Problema de conexión; reintentando…",
        "error_generic": "Algo salió mal; reintentando…",
        "progress": "Avance en la fila",
        "working": "Preparando su lugar… (tarda unos segundos)",
        "blank": "–",
    },
}

DEFAULT = "en"


def pick_language(accept_language: str | None) -> str:
    """The best of our languages for an ``Accept-Language`` header (q-values honoured)."""
    best, best_q = DEFAULT, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            continue
        language = tag.strip().lower().split("-")[0]
        if language in STRINGS and q > best_q:
            best, best_q = language, q
    return best


def eta_minutes(eta_seconds: float) -> tuple[int, int] | None:
    """An honest range instead of a false-precise number; None under a minute."""
    if eta_seconds < 60:
        return None
    return max(1, int(eta_seconds * 0.8 // 60)), max(2, -(-int(eta_seconds * 1.25) // 60))


def duration(seconds: float) -> str:
    """A countdown in units both languages write the same way: 45 s, 12 min, 2 h 05 min."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
