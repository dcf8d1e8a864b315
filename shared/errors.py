"""Domain errors shared by the services.

They know nothing of HTTP: each carries the contract's stable ``code`` and a human ``detail``;
:mod:`shared.http` maps codes to statuses in one place.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code.replace("_", " ")
        self.retry_after = retry_after


class NotFound(DomainError):
    code = "not_found"


class ValidationFailed(DomainError):
    code = "validation_error"

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class TicketInvalid(DomainError):
    code = "ticket_invalid"


class TokenInvalid(DomainError):
    code = "token_invalid"

    def __init__(self, detail: str = "admission token is missing or invalid", *, reason: str = "signature"):
        super().__init__(detail)
        self.reason = reason


class TokenExpired(DomainError):
    code = "token_expired"


class TokenScope(DomainError):
    code = "token_scope"


class EventClosed(DomainError):
    code = "event_closed"


class Unauthorized(DomainError):
    code = "unauthorized"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)


class Overloaded(DomainError):
    code = "overloaded"

    def __init__(self, detail: str = "the service is overloaded; retry shortly", *, retry_after: int = 2):
        super().__init__(detail, retry_after=retry_after)


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"


class BookingRejected(DomainError):
    """A business outcome of a booking (slot_full, already_booked, admission_used, ...)."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        super().__init__(detail)


class IdempotencyInProgress(DomainError):
    code = "idempotency_in_progress"

    def __init__(self, detail: str = "a request with this Idempotency-Key is still being processed") -> None:
        super().__init__(detail, retry_after=1)


class Conflict(DomainError):
    """A business outcome that refuses the request (its ``code`` says which)."""

    def __init__(self, code: str, detail: str = "") -> None:
        self.code = code
        super().__init__(detail)
