"""Prometheus metrics, as an object each app owns (so tests read real values, not mocks).

The funnel, labelled by event: joined -> admitted -> token verified -> attempt -> booked.
Labels carry event ids, outcomes and reasons only, never anything about a person. Every HTTP request
of the edge and the API is counted by route template and status (:func:`shared.http.http_metrics_middleware`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_joined = Counter(
            "surgegate_queue_joined", "Visitors who joined an event's queue", ["event"], registry=r
        )
        self.join_rejected = Counter(
            "surgegate_join_rejected", "Joins refused before taking a place, by reason", ["event", "reason"], registry=r
        )
        self.admitted = Counter(
            "surgegate_admitted",
            "Queue positions admitted (serving position advanced)",
            ["event"],
            registry=r,
        )
        self.abandoned = Counter(
            "surgegate_abandoned",
            "Queue places passed over because their holders stopped polling",
            ["event"],
            registry=r,
        )
        self.admissions_active = Gauge(
            "surgegate_admissions_active", "Admissions out, unused and unexpired", ["event"], registry=r
        )
        self.admissions_lapsed = Counter(
            "surgegate_admissions_lapsed", "Admissions that expired unused", ["event"], registry=r
        )
        self.queue_wait_seconds = Histogram(
            "surgegate_queue_wait_seconds",
            "Time from joining to first being seen admitted",
            ["event"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
            registry=r,
        )
        self.queue_waiting = Gauge(
            "surgegate_queue_waiting", "Visitors waiting (joined minus admitted)", ["event"], registry=r
        )
        self.queue_restored = Counter(
            "surgegate_queue_restored",
            "Times an event's queue state was missing in Redis and was resumed from a checkpoint",
            ["event"],
            registry=r,
        )
        self.admission_rate = Gauge(
            "surgegate_admission_rate_per_s",
            "Configured admission rate (0 while paused)",
            ["event"],
            registry=r,
        )
        self.rate_changes = Counter(
            "surgegate_rate_changes",
            "Admission rate changes made by the auto rate controller",
            ["event", "direction"],
            registry=r,
        )
        self.token_verify = Counter(
            "surgegate_token_verify",
            "Admission token verifications by result (ok or the failure reason)",
            ["event", "result"],
            registry=r,
        )
        self.booking_requests = Counter(
            "surgegate_booking_requests",
            "Booking requests answered by the API, by outcome",
            ["event", "outcome"],
            registry=r,
        )
        self.booking_attempts = Counter(
            "surgegate_booking_attempts",
            "Booking attempts executed by the worker, by outcome (confirmed or the rejection code)",
            ["event", "outcome"],
            registry=r,
        )
        self.booking_seconds = Histogram(
            "surgegate_booking_seconds",
            "Booking transaction latency, start to commit",
            ["event"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.cancellations = Counter("surgegate_cancellations", "Appointments cancelled", ["event"], registry=r)
        self.holds = Counter(
            "surgegate_holds", "Hold requests by result (placed, refused, released)", ["event", "result"], registry=r
        )
        self.reschedules = Counter(
            "surgegate_reschedules", "Reschedule requests by result", ["event", "result"], registry=r
        )
        self.waitlist = Counter(
            "surgegate_waitlist", "Waitlist actions (joined, offered, claimed, claim_refused)", ["action"], registry=r
        )
        self.appointment_status = Counter(
            "surgegate_appointment_status_changes", "Appointments moved to a status", ["status"], registry=r
        )
        self.search_cache = Counter("surgegate_search_cache", "Search cache lookups", ["result"], registry=r)
        self.replica_reads = Counter(
            "surgegate_replica_reads", "Reads that may lag served by the database replica", registry=r
        )
        self.replica_fallback = Counter(
            "surgegate_replica_fallback",
            "Reads that may lag served by the primary because the replica was unusable (lag, down, not_standby)",
            ["reason"],
            registry=r,
        )
        self.replica_lag = Gauge(
            "surgegate_replica_lag_seconds", "How far the database replica was behind at its last check", registry=r
        )
        self.api_throttled = Counter(
            "surgegate_api_throttled",
            "Booking-API requests refused 429 by a rate limit, by scope (token, client) and kind (read, write)",
            ["scope", "kind"],
            registry=r,
        )
        self.api_throttle_local = Counter(
            "surgegate_api_throttle_local",
            "Booking-API limit checks decided in this process's memory because Redis was unreachable",
            registry=r,
        )
        self.invites = Counter(
            "surgegate_invites",
            "Invite links by result: issued, revoked, or a redemption's outcome (redeemed or the refusal code)",
            ["event", "result"],
            registry=r,
        )

        # Issue 12: every request of the edge and the API. ``route`` is the route's path template
        # (``/api/v1/events/{event_id}/status``), never the URL, so the series stay a handful.
        self.http_requests = Counter(
            "surgegate_http_requests",
            "HTTP requests answered, by service, route template, method and status",
            ["service", "route", "method", "status"],
            registry=r,
        )
        self.http_request_seconds = Histogram(
            "surgegate_http_request_seconds",
            "Time to answer an HTTP request (until the handler returned its response), by route template",
            ["service", "route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )

        # Issue 12, dashboards and alerts: read by the worker when it is scraped.
        self.booking_queue_depth = Gauge(
            "surgegate_booking_queue_depth", "Booking jobs queued in Redis, not yet started (arq queue)", registry=r
        )
        self.dependency_up = Gauge(
            "surgegate_dependency_up",
            "1 while the worker reaches the dependency (redis, postgresql), 0 during an outage",
            ["dependency"],
            registry=r,
        )

        # Issue 9: the outbox's delivery (booking_worker/dispatcher.py). ``result``: sent, retry, failed
        # (past the retry budget: the dead letter), cancelled (its appointment changed first).
        self.notifications = Counter(
            "surgegate_notifications", "Notifications handled by the dispatcher, by kind and result",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        self.notifications_backlog = Gauge(
            "surgegate_notifications_backlog", "Notifications queued and due now, not yet sent", registry=r
        )
        self.notifications_oldest_due_age = Gauge(
            "surgegate_notifications_oldest_due_age_seconds",
            "How long the oldest due, unsent notification has been due (0: none)",
            registry=r,
        )
        # Issue 10, eligibility: by event, rule version, outcome and reason code (never an attribute value).
        self.eligibility_decisions = Counter(
            "surgegate_eligibility_decisions",
            "Eligibility evaluations by the published version, by outcome",
            ["event", "rule_version", "outcome"],
            registry=r,
        )
        self.eligibility_reasons = Counter(
            "surgegate_eligibility_reasons",
            "Reasons of ineligible evaluations, by rule version and reason code",
            ["event", "rule_version", "reason"],
            registry=r,
        )
        self.eligibility_errors = Counter(
            "surgegate_eligibility_errors",
            "Rules that erred while evaluating (counted as failed: fail closed), by rule version",
            ["event", "rule_version"],
            registry=r,
        )
        self.eligibility_shadow = Counter(
            "surgegate_eligibility_shadow",
            "Shadow version's answers beside the published one: agree, to_eligible, to_ineligible",
            ["event", "rule_version", "flip"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
