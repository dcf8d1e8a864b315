"""Every word the queue page shows, in one catalog; the language comes from ``Accept-Language``.

The page renders its first state on the server with these strings (so it works without
JavaScript) and hands the same catalog to its script as JSON. ``{name}`` placeholders are filled
on either side.
"""

from __future__ import annotations

from shared.wording import local_when as local_when  # the page's long form of a time (re-exported)

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "{event} — waiting room",
        "state_none": "Join the queue to get your place.",
        "state_joining": "Joining the queue…",
        "state_prequeue": "You have a place in the pre-queue.",
        "state_waiting": "You are in the queue.",
        "state_admitted": "It's your turn!",
        "state_expired": "Your turn has expired. You can join the queue again.",
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
        "error_connection": "Connection problem; trying again…",
        "error_generic": "Something went wrong; trying again…",
        "progress": "Progress in the queue",
        "working": "Getting your place ready… (this takes a few seconds)",
        "blank": "–",
        "state_closed": "This event is closed: it no longer takes anyone into its queue.",
        "state_booked": "You're booked.",
        "announce_prequeue": "You have a place in the pre-queue.",
        "announce_waiting": "You are in the queue.",
        "announce_admitted": "It's your turn! You can book now.",
        "announce_booked": "You're booked.",
        "announce_expired": "Your turn has expired.",
        "announce_closed": "This event is closed.",
        "time_left": "Time left to book: {time}",
        "time_warning": "Less than a minute left to book. After that you will need to join the queue again.",
        "check_now": "Check now",
        "near_me": "Show the nearest sites first",
        "near_me_denied": "Your location is not available; the sites stay in their usual order.",
        "distance": "{km} km",
        "zone_note": "Times are local to the site: {zone}.",
        "no_slots": "No times are left at this site in the booking window. Try another site.",
        "privacy": (
            "Why we ask: your ID number makes sure each person books once, and your birth date checks that you "
            "are eligible. Your ID number is kept only as a keyed fingerprint; your name, email and birth date are "
            "stored encrypted and erased {days} days after your appointment."
        ),
        "what": "What",
        "where": "Where",
        "when": "When",
        "emailed": "We've emailed you a confirmation with these details.",
        "manage": "Change or cancel this appointment",
        "add_to_calendar": "Add to calendar",
        "cancelled_note": "This appointment has been cancelled.",
        "not_found_title": "No such event",
        "not_found_text": "There is no event at this address. Check the link you were given.",
        "all_events": "See the open events",
        "last_updated": "Last updated {time}",
        "err_missing": "{field}: this is required.",
        "err_invalid": "{field}: check what you entered.",
        "err_email": "{field}: enter an address like name@example.org.",
        "err_birth_date": "{field}: enter a past date (day, month, year).",
        "err_slot": "Pick a time.",
        "code_not_found": "We could not find that. Reload the page.",
        "code_validation_error": "Some details need fixing: see the marked fields.",
        "code_unauthorized": "You are not signed in for that.",
        "code_forbidden": "You may not do that.",
        "code_ticket_invalid": "Your place in the queue could not be read. Join the queue again.",
        "code_token_invalid": "Your turn could not be confirmed in this browser. Reload the page.",
        "code_token_expired": "Your turn has expired. You can join the queue again.",
        "code_token_scope": "Your turn does not cover that site. Pick another site.",
        "code_pow_invalid": "Your browser's check did not pass. Reload the page to try again.",
        "code_method_not_allowed": "That action is not available.",
        "code_payload_too_large": "What you sent is too long.",
        "code_unsupported_media_type": "Your browser sent something we cannot read. Reload the page.",
        "code_http_error": "The request could not be served. Reload the page.",
        "code_event_closed": "This event is closed: it no longer takes anyone into its queue.",
        "code_event_not_open": "This event is not open yet. Come back when it opens.",
        "code_rate_limited": "Too many tries from your network. Wait a moment and try again.",
        "code_overloaded": "We are very busy right now. Wait a moment and try again.",
        "code_bookings_frozen": (
            "Booking is paused for now by the organisers. Keep this page open and try again later."
        ),
        "code_internal_error": "Something went wrong on our side. Try again.",
        "code_conflict": "That could not be saved. Try again.",
        "code_idempotency_conflict": "Your booking changed while it was being sent. Reload the page.",
        "code_idempotency_in_progress": "Your booking is still being processed. Wait a moment.",
        "code_too_many_keys": "Too many booking tries. Reload the page.",
        "code_slot_full": "That time has just been taken. Pick another time.",
        "code_slot_withdrawn": "That time is no longer offered. Pick another time.",
        "code_outside_booking_window": "That time cannot be booked now. Pick another time.",
        "code_already_booked": "This person already has an appointment in this program.",
        "code_admission_used": "You have already booked with this turn.",
        "code_hold_expired": "The seat kept for you was released. Pick a time again.",
        "code_booking_in_progress": "Your booking is in progress. Wait a moment.",
        "code_too_many_holds": "Too many seats kept. Book the one you have, or pick a time.",
        "code_ineligible": "This person is not eligible for this program.",
        "code_appointment_not_active": "Only a confirmed appointment can be changed.",
        "code_appointment_started": "This appointment has already started.",
        "code_seats_available": "That day still has free times. Book one of them.",
        "code_offer_taken": "Someone else took this seat first. You stay on the waitlist.",
        "code_offer_expired": "This offer has lapsed. You stay on the waitlist.",
        "code_claim_person_mismatch": "This seat can only be booked for the person on the waitlist.",
        "code_invite_invalid": "This invite link is not valid for this event.",
        "code_invite_used": "This invite link has already been used.",
        "code_invite_revoked": "This invite link has been withdrawn.",
        "code_invite_expired": "This invite link has expired.",
        # issue 10 (eligibility): the page says these in its own words (waitingroom/eligibility.py too)
        "code_identity_required": "This program needs proof of who you are from its sign-in service: sign in "
        "there, then try again.",
        "code_examples_failed": "This program's rules are being corrected; try again later.",
    },
    "es": {
        "page_title": "{event} — sala de espera",
        "state_none": "Únase a la fila para obtener su lugar.",
        "state_joining": "Uniéndose a la fila…",
        "state_prequeue": "Tiene un lugar en la prefila.",
        "state_waiting": "Está en la fila.",
        "state_admitted": "¡Es su turno!",
        "state_expired": "Su turno ha vencido. Puede volver a unirse a la fila.",
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
        "error_connection": "Problema de conexión; reintentando…",
        "error_generic": "Algo salió mal; reintentando…",
        "progress": "Avance en la fila",
        "working": "Preparando su lugar… (tarda unos segundos)",
        "blank": "–",
        "state_closed": "Este evento está cerrado: ya no admite a nadie en su fila.",
        "state_booked": "Su cita está reservada.",
        "announce_prequeue": "Tiene un lugar en la prefila.",
        "announce_waiting": "Está en la fila.",
        "announce_admitted": "¡Es su turno! Ya puede reservar.",
        "announce_booked": "Su cita está reservada.",
        "announce_expired": "Su turno ha vencido.",
        "announce_closed": "Este evento está cerrado.",
        "time_left": "Tiempo para reservar: {time}",
        "time_warning": "Queda menos de un minuto para reservar. Después tendrá que volver a unirse a la fila.",
        "check_now": "Comprobar ahora",
        "near_me": "Mostrar primero los centros más cercanos",
        "near_me_denied": "Su ubicación no está disponible; los centros siguen en su orden habitual.",
        "distance": "{km} km",
        "zone_note": "Las horas son locales del centro: {zone}.",
        "no_slots": "No quedan horas en este centro dentro del plazo de reserva. Pruebe otro centro.",
        "privacy": (
            "Por qué lo pedimos: su número de identificación asegura que cada persona reserve una vez, y su fecha "
            "de nacimiento comprueba que cumple los requisitos. Su número se guarda solo como una huella cifrada; "
            "su nombre, correo y fecha de nacimiento se guardan cifrados y se borran {days} días después de su cita."
        ),
        "what": "Qué",
        "where": "Dónde",
        "when": "Cuándo",
        "emailed": "Le hemos enviado por correo una confirmación con estos datos.",
        "manage": "Cambiar o cancelar esta cita",
        "add_to_calendar": "Añadir al calendario",
        "cancelled_note": "Esta cita ha sido cancelada.",
        "not_found_title": "No existe este evento",
        "not_found_text": "No hay ningún evento en esta dirección. Revise el enlace que le dieron.",
        "all_events": "Ver los eventos abiertos",
        "last_updated": "Actualizado a las {time}",
        "err_missing": "{field}: este dato es obligatorio.",
        "err_invalid": "{field}: revise lo que escribió.",
        "err_email": "{field}: escriba una dirección como nombre@ejemplo.org.",
        "err_birth_date": "{field}: escriba una fecha pasada (día, mes, año).",
        "err_slot": "Elija una hora.",
        "code_not_found": "No lo encontramos. Recargue la página.",
        "code_validation_error": "Hay datos que corregir: vea los campos marcados.",
        "code_unauthorized": "No tiene sesión iniciada para eso.",
        "code_forbidden": "No puede hacer eso.",
        "code_ticket_invalid": "No se pudo leer su lugar en la fila. Vuelva a unirse a la fila.",
        "code_token_invalid": "No se pudo confirmar su turno en este navegador. Recargue la página.",
        "code_token_expired": "Su turno ha vencido. Puede volver a unirse a la fila.",
        "code_token_scope": "Su turno no incluye ese centro. Elija otro centro.",
        "code_pow_invalid": "La comprobación de su navegador no pasó. Recargue la página para intentarlo de nuevo.",
        "code_method_not_allowed": "Esa acción no está disponible.",
        "code_payload_too_large": "Lo que envió es demasiado largo.",
        "code_unsupported_media_type": "Su navegador envió algo que no podemos leer. Recargue la página.",
        "code_http_error": "No se pudo atender la solicitud. Recargue la página.",
        "code_event_closed": "Este evento está cerrado: ya no admite a nadie en su fila.",
        "code_event_not_open": "Este evento aún no está abierto. Vuelva cuando abra.",
        "code_rate_limited": "Demasiados intentos desde su red. Espere un momento y vuelva a intentarlo.",
        "code_overloaded": "Estamos muy ocupados ahora. Espere un momento y vuelva a intentarlo.",
        "code_bookings_frozen": (
            "Los organizadores han pausado las reservas. Mantenga esta página abierta e inténtelo más tarde."
        ),
        "code_internal_error": "Algo salió mal de nuestro lado. Vuelva a intentarlo.",
        "code_conflict": "No se pudo guardar. Vuelva a intentarlo.",
        "code_idempotency_conflict": "Su reserva cambió mientras se enviaba. Recargue la página.",
        "code_idempotency_in_progress": "Su reserva aún se está procesando. Espere un momento.",
        "code_too_many_keys": "Demasiados intentos de reserva. Recargue la página.",
        "code_slot_full": "Esa hora se acaba de ocupar. Elija otra hora.",
        "code_slot_withdrawn": "Esa hora ya no se ofrece. Elija otra hora.",
        "code_outside_booking_window": "Esa hora no se puede reservar ahora. Elija otra hora.",
        "code_already_booked": "Esta persona ya tiene una cita en este programa.",
        "code_admission_used": "Ya reservó con este turno.",
        "code_hold_expired": "Se liberó el lugar que le guardábamos. Vuelva a elegir una hora.",
        "code_booking_in_progress": "Su reserva está en curso. Espere un momento.",
        "code_too_many_holds": "Demasiados lugares guardados. Reserve el que tiene o elija una hora.",
        "code_ineligible": "Esta persona no cumple los requisitos de este programa.",
        "code_appointment_not_active": "Solo se puede cambiar una cita confirmada.",
        "code_appointment_started": "Esta cita ya ha comenzado.",
        "code_seats_available": "Ese día aún tiene horas libres. Reserve una de ellas.",
        "code_offer_taken": "Otra persona tomó este lugar antes. Sigue en la lista de espera.",
        "code_offer_expired": "Esta oferta ha vencido. Sigue en la lista de espera.",
        "code_claim_person_mismatch": "Este lugar solo puede reservarse para la persona de la lista de espera.",
        "code_invite_invalid": "Este enlace de invitación no es válido para este evento.",
        "code_invite_used": "Este enlace de invitación ya se usó.",
        "code_invite_revoked": "Este enlace de invitación fue retirado.",
        "code_invite_expired": "Este enlace de invitación ha vencido.",
        # issue 10 (eligibility): the page says these in its own words (waitingroom/eligibility.py too)
        "code_identity_required": "Este programa necesita comprobar quién es usted con su servicio de acceso: "
        "identifíquese allí y vuelva a intentarlo.",
        "code_examples_failed": "Las reglas de este programa se están corrigiendo; vuelva a intentarlo más tarde.",
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
