"""Every status a stored row can be in, as StrEnums equal to the schema's CHECK constraints.

``tests/shared/test_statuses.py`` reads the CHECK constraints from a migrated database and fails
when an enum and its column disagree, so a new status needs a migration and a member here together.
Members are ``str``: they go into SQL parameters and JSON as the plain value.
"""

from __future__ import annotations

from enum import StrEnum


class AttemptStatus(StrEnum):
    """``booking_attempts.status``: accepted and waiting for the worker, then one final outcome."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


class AppointmentStatus(StrEnum):
    """``appointments.status``; only ``confirmed`` holds a seat."""

    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


class CancelledBy(StrEnum):
    """``appointments.cancelled_by``."""

    PERSON = "person"
    SITE = "site"


class HoldStatus(StrEnum):
    """``holds.status``; only ``active`` (and unexpired, or pinned by an attempt) sets a seat aside."""

    ACTIVE = "active"
    RELEASED = "released"
    REPLACED = "replaced"
    CONSUMED = "consumed"
    EXPIRED = "expired"
    CLAIMED = "claimed"


class WaitlistEntryStatus(StrEnum):
    """``waitlist_entries.status``."""

    WAITING = "waiting"
    CLAIMED = "claimed"
    LEFT = "left"


class OfferStatus(StrEnum):
    """``waitlist_offers.status``."""

    OPEN = "open"
    CLAIMED = "claimed"
    LAPSED = "lapsed"


class NotificationStatus(StrEnum):
    """``notifications.status``: queued (waiting for ``due_at``/``next_attempt_at``), sending (claimed
    by a dispatcher until ``lease_until``), then sent, failed (past the retry budget: the dead letter)
    or cancelled (its appointment changed before it was due)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NotificationChannel(StrEnum):
    """``notifications.channel``."""

    EMAIL = "email"
    SMS = "sms"


class Language(StrEnum):
    """``appointments.language`` and ``notifications.language``: what messages are written in."""

    EN = "en"
    ES = "es"


class RateMode(StrEnum):
    """``events.rate_mode``: the operator's rate, or the auto controller's."""

    FIXED = "fixed"
    AUTO = "auto"


class RuleState(StrEnum):
    """``rule_versions.state`` (and ``rule_moves.to_state``): only ``published`` decides; ``shadow``
    is evaluated beside it; ``retired`` was published once and was replaced."""

    DRAFT = "draft"
    SHADOW = "shadow"
    PUBLISHED = "published"
    RETIRED = "retired"


class DecisionOutcome(StrEnum):
    """``eligibility_decisions.outcome`` (and ``shadow_outcome``)."""

    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"


class DecisionKind(StrEnum):
    """``eligibility_decisions.kind``: the rules' answer, or a staff member's override of one."""

    EVALUATION = "evaluation"
    OVERRIDE = "override"


# (table, column) → the enum that must equal its CHECK constraint's values.
COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("booking_attempts", "status"): AttemptStatus,
    ("appointments", "status"): AppointmentStatus,
    ("holds", "status"): HoldStatus,
    ("waitlist_entries", "status"): WaitlistEntryStatus,
    ("waitlist_offers", "status"): OfferStatus,
    ("notifications", "status"): NotificationStatus,
    ("notifications", "channel"): NotificationChannel,
    ("notifications", "language"): Language,
    ("appointments", "language"): Language,
    ("appointments", "cancelled_by"): CancelledBy,
    ("events", "rate_mode"): RateMode,
    ("rule_versions", "state"): RuleState,
    ("rule_moves", "to_state"): RuleState,
    ("eligibility_decisions", "outcome"): DecisionOutcome,
    ("eligibility_decisions", "shadow_outcome"): DecisionOutcome,
    ("eligibility_decisions", "kind"): DecisionKind,
}
