"""Refusals: every code a request can be refused with, once, and the one exception that carries it.

:data:`CATALOGUE` is the single home of each code: its HTTP status and its default message (what a
person reads when the caller gives no more specific detail). :class:`Refused` is the exception every
layer raises to refuse something; it knows nothing of HTTP — :mod:`shared.http` turns it into
problem+json by looking the code up here. The subclasses below only fix a code (and, for a few, carry
an extra field such as ``errors`` or ``retry_after``): ``raise NotFound("no such hold")`` and
``raise Refused(Code.NOT_FOUND, "no such hold")`` are the same refusal.

Codes are the contract's stable strings (``Code`` is a StrEnum, so ``Code.SLOT_FULL == "slot_full"``).
Translations of the queue page key on the same strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    # Requests and credentials
    NOT_FOUND = "not_found"
    VALIDATION_ERROR = "validation_error"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    TICKET_INVALID = "ticket_invalid"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_SCOPE = "token_scope"
    POW_INVALID = "pow_invalid"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    HTTP_ERROR = "http_error"
    # The waiting room
    EVENT_CLOSED = "event_closed"
    EVENT_NOT_OPEN = "event_not_open"
    RATE_LIMITED = "rate_limited"
    # Capacity and backends
    OVERLOADED = "overloaded"
    BOOKINGS_FROZEN = "bookings_frozen"
    INTERNAL_ERROR = "internal_error"
    CONFLICT = "conflict"
    # Idempotency
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    TOO_MANY_KEYS = "too_many_keys"
    # Seats and bookings
    SLOT_FULL = "slot_full"
    SLOT_WITHDRAWN = "slot_withdrawn"
    OUTSIDE_BOOKING_WINDOW = "outside_booking_window"
    ALREADY_BOOKED = "already_booked"
    ADMISSION_USED = "admission_used"
    HOLD_EXPIRED = "hold_expired"
    BOOKING_IN_PROGRESS = "booking_in_progress"
    TOO_MANY_HOLDS = "too_many_holds"
    INELIGIBLE = "ineligible"
    # Eligibility rules (shared/eligibility.py)
    EXAMPLES_FAILED = "examples_failed"
    IDENTITY_REQUIRED = "identity_required"
    # Changes to an appointment
    APPOINTMENT_NOT_ACTIVE = "appointment_not_active"
    APPOINTMENT_STARTED = "appointment_started"
    # Waitlist
    SEATS_AVAILABLE = "seats_available"
    OFFER_TAKEN = "offer_taken"
    OFFER_EXPIRED = "offer_expired"
    CLAIM_PERSON_MISMATCH = "claim_person_mismatch"
    # Invite links (waitingroom/invites.py)
    INVITE_INVALID = "invite_invalid"
    INVITE_USED = "invite_used"
    INVITE_REVOKED = "invite_revoked"
    INVITE_EXPIRED = "invite_expired"


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


CATALOGUE: Mapping[Code, Refusal] = {
    Code.NOT_FOUND: Refusal(404, "no such resource"),
    Code.VALIDATION_ERROR: Refusal(400, "the request is invalid"),
    Code.UNAUTHORIZED: Refusal(401, "an admin bearer token is required"),
    Code.FORBIDDEN: Refusal(403, "this credential may not do that"),
    Code.TICKET_INVALID: Refusal(401, "the queue ticket is missing or invalid"),
    Code.TOKEN_INVALID: Refusal(401, "admission token is missing or invalid"),
    Code.TOKEN_EXPIRED: Refusal(401, "the admission token has expired"),
    Code.TOKEN_SCOPE: Refusal(403, "this admission does not cover that slot's site"),
    Code.POW_INVALID: Refusal(403, "the proof of work is missing or invalid"),
    Code.METHOD_NOT_ALLOWED: Refusal(405, "method not allowed"),
    Code.PAYLOAD_TOO_LARGE: Refusal(413, "request body too large"),
    Code.UNSUPPORTED_MEDIA_TYPE: Refusal(415, "unsupported media type"),
    Code.HTTP_ERROR: Refusal(400, "the request could not be served"),
    Code.EVENT_CLOSED: Refusal(410, "this event is closed"),
    Code.EVENT_NOT_OPEN: Refusal(409, "this event is not open yet"),
    Code.RATE_LIMITED: Refusal(429, "too many requests; retry later"),
    Code.OVERLOADED: Refusal(503, "the service is overloaded; retry shortly"),
    Code.BOOKINGS_FROZEN: Refusal(503, "bookings for this event are paused by its operators; retry later"),
    Code.INTERNAL_ERROR: Refusal(500, "an unexpected error occurred"),
    Code.CONFLICT: Refusal(409, "the request conflicts with data already stored"),
    Code.IDEMPOTENCY_CONFLICT: Refusal(409, "this Idempotency-Key was already used with a different request"),
    Code.IDEMPOTENCY_IN_PROGRESS: Refusal(409, "a request with this Idempotency-Key is still being processed"),
    Code.TOO_MANY_KEYS: Refusal(
        409, "this admission has used too many Idempotency-Keys; retry a request with the key it was first sent with"
    ),
    Code.SLOT_FULL: Refusal(409, "that slot has no seat left; pick another"),
    Code.SLOT_WITHDRAWN: Refusal(409, "that slot is no longer offered; pick another"),
    Code.OUTSIDE_BOOKING_WINDOW: Refusal(409, "that slot cannot be booked now (too soon, too far ahead, or past)"),
    Code.ALREADY_BOOKED: Refusal(409, "this person already holds an active appointment in this program"),
    Code.ADMISSION_USED: Refusal(409, "this admission has already been used to book"),
    Code.HOLD_EXPIRED: Refusal(409, "the hold is gone (expired, released or used); hold a seat again"),
    Code.BOOKING_IN_PROGRESS: Refusal(409, "a booking from this admission's hold is in progress"),
    Code.TOO_MANY_HOLDS: Refusal(
        409, "this admission has held seats too many times; book the seat it holds, or a slot"
    ),
    Code.INELIGIBLE: Refusal(403, "this person is not eligible"),
    Code.EXAMPLES_FAILED: Refusal(409, "an example of this rule set does not give its expected outcome"),
    Code.IDENTITY_REQUIRED: Refusal(403, "a verified identity of the required level is needed"),
    Code.APPOINTMENT_NOT_ACTIVE: Refusal(409, "only a confirmed appointment can be changed"),
    Code.APPOINTMENT_STARTED: Refusal(409, "the appointment has already started"),
    Code.SEATS_AVAILABLE: Refusal(409, "that day still has free seats; book one instead"),
    Code.OFFER_TAKEN: Refusal(409, "someone else claimed this seat first; you stay on the waitlist"),
    Code.OFFER_EXPIRED: Refusal(410, "this offer has lapsed; you stay on the waitlist"),
    Code.CLAIM_PERSON_MISMATCH: Refusal(
        403, "a seat claimed from the waitlist can only be booked for the person who joined the waitlist"
    ),
    Code.INVITE_INVALID: Refusal(403, "this invite link is not valid for this event"),
    Code.INVITE_USED: Refusal(409, "this invite link has already been used"),
    Code.INVITE_REVOKED: Refusal(410, "this invite link has been withdrawn"),
    Code.INVITE_EXPIRED: Refusal(410, "this invite link has expired"),
}

# An HTTP status aiohttp raised itself (no route, wrong method, body too large) → its code.
CODE_OF_HTTP_STATUS: Mapping[int, Code] = {
    400: Code.VALIDATION_ERROR,
    401: Code.UNAUTHORIZED,
    403: Code.FORBIDDEN,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.PAYLOAD_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
}


def status_of(code: str) -> int:
    """The HTTP status of a code (400 for a string that is not in the catalogue)."""
    try:
        return CATALOGUE[Code(code)].status
    except ValueError:
        return 400


def message_of(code: str) -> str:
    try:
        return CATALOGUE[Code(code)].message
    except ValueError:
        return code.replace("_", " ")


class Refused(Exception):
    """A request refused with a catalogue code. ``detail`` defaults to the code's message.

    Subclasses fix ``code`` as a class attribute; the base takes it as the first argument.
    """

    code: Code = Code.CONFLICT

    def __init__(self, code: Code | None = None, detail: str = "", *, retry_after: int | None = None) -> None:
        if code is not None:
            self.code = code
        self.detail = detail or CATALOGUE[self.code].message
        self.retry_after = retry_after
        super().__init__(self.detail)

    @property
    def status(self) -> int:
        return CATALOGUE[self.code].status


class SpecificRefusal(Refused):
    """A refusal whose code is fixed by its class: ``NotFound("no such hold")``."""

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(None, detail, retry_after=retry_after)


class NotFound(SpecificRefusal):
    code = Code.NOT_FOUND


class ValidationFailed(SpecificRefusal):
    code = Code.VALIDATION_ERROR

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class TicketInvalid(SpecificRefusal):
    code = Code.TICKET_INVALID


class TokenInvalid(SpecificRefusal):
    code = Code.TOKEN_INVALID

    def __init__(self, detail: str = "", *, reason: str = "signature") -> None:
        super().__init__(detail)
        self.reason = reason  # for metrics: signature, malformed, kid, event, replay, ...


class TokenExpired(SpecificRefusal):
    code = Code.TOKEN_EXPIRED

    def __init__(self, detail: str = "", *, event_id: str | None = None) -> None:
        super().__init__(detail)
        self.event_id = event_id  # the signature held, so the event it names is one this service issued


# Why an admission token failed verification: the only values metrics and the console's counts carry
# (``TokenInvalid.reason``, plus ``expired``, and ``scope`` / ``replay`` found after verification).
TOKEN_FAILURE_REASONS = (
    *("missing", "malformed", "unknown_kid", "signature", "type"),
    *("expired", "binding", "scope", "replay"),
)


class TokenScope(SpecificRefusal):
    code = Code.TOKEN_SCOPE


class EventClosed(SpecificRefusal):
    code = Code.EVENT_CLOSED


class Unauthorized(SpecificRefusal):
    code = Code.UNAUTHORIZED


class RateLimited(SpecificRefusal):
    code = Code.RATE_LIMITED

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)


class Overloaded(SpecificRefusal):
    code = Code.OVERLOADED

    def __init__(self, detail: str = "", *, retry_after: int = 2) -> None:
        super().__init__(detail, retry_after=retry_after)


class Ineligible(SpecificRefusal):
    """403 ``ineligible``, carrying each reason (``[{"code", "text"}]``) for the problem body."""

    code = Code.INELIGIBLE

    def __init__(self, reasons: list[dict[str, str]], detail: str = "") -> None:
        super().__init__(detail)
        self.reasons = reasons


class IdempotencyConflict(SpecificRefusal):
    code = Code.IDEMPOTENCY_CONFLICT


class IdempotencyInProgress(SpecificRefusal):
    code = Code.IDEMPOTENCY_IN_PROGRESS

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, retry_after=1)
