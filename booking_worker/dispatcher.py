"""The outbox's dispatcher: delivers queued notifications at least once, never on a booking's path.

Each round, in one transaction, it claims up to ``notify_batch`` due messages (``FOR UPDATE SKIP
LOCKED``, so dispatchers in several workers take disjoint batches) and leases them: status
``sending`` until ``next_attempt_at`` = now + ``notify_lease_s``. A message whose dispatcher died
(before it marked the message) is claimed again once that lease ran out. In the same transaction
it re-checks each message against its appointment as it stands: one about the appointment's time
(confirmation, reschedule, reminders) whose appointment was cancelled or moved since (another
``sequence``), and a reminder to a person who opted out, is ``cancelled`` instead of sent.

Then it sends them (after the commit: no lock is held over SMTP) and marks each ``sent`` (with the
attempts count it claimed, so a late dispatcher whose lease ran out changes nothing). A failure
goes back to ``queued`` with ``next_attempt_at`` after an exponential backoff with jitter
(``notify_retry_first_s`` doubling up to ``notify_retry_max_s``), until ``notify_retry_budget_s``
after the message fell due: then it is ``failed`` (the dead letter), counted in
``surgegate_notifications_total{result="failed"}`` and alerted on.

At least once, not exactly once: a crash after the SMTP server accepted a message and before it was
marked sends it again after the lease. Each email's ``Message-ID`` is derived from the notification
id (:func:`message_id`), and each text message's ``Idempotency-Key`` is the id, so receivers (and
tests) recognise the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import asyncpg

from booking_worker import queries
from booking_worker.channels import (
    Channel,
    DeliveryError,
    SmsWebhookChannel,
    SmtpChannel,
    SmtpTarget,
    TextMessage,
)
from booking_worker.messages import Facts, render, render_sms
from shared import manage
from shared.calendar import Method, appointment_ics
from shared.metrics import Metrics
from shared.notifications import REMINDERS, TIMED, NotificationKind, language_of
from shared.persons import PersonVault
from shared.settings import Settings
from shared.statuses import AppointmentStatus, NotificationChannel
from shared.tokens import TokenCodec

log = logging.getLogger("surgegate.dispatcher")

Built = tuple[Any, str, Any]  # a claimed row, its Message-ID, its message
Outcome = tuple[Any, str | None, str | None]  # a claimed row, its Message-ID when sent, why not otherwise

# SMTP connections one dispatcher uses at once (each sends its share of a batch in turn).
LANES = 8

# The calendar file goes with these, and with which METHOD.
_ICS: dict[NotificationKind, Method] = {
    NotificationKind.CONFIRMATION: "PUBLISH",
    NotificationKind.RESCHEDULE: "PUBLISH",
    NotificationKind.CANCELLATION: "CANCEL",
    NotificationKind.SITE_CLOSED: "CANCEL",
}


def message_id(notification_id: int, secret: str, domain: str) -> str:
    """``<n-{id}.{keyed hash}@{domain}>``: the same for every send of one notification, and not
    guessable for another id (the hash is keyed)."""
    tag = hmac.new(secret.encode(), f"notification:{notification_id}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"<n-{notification_id}.{tag}@{domain}>"


def channels_from(settings: Settings) -> dict[str, Channel]:
    """The channels configured: email when SURGEGATE_SMTP_URL is set, text messages when the SMS
    webhook URL and secret are. Messages of a channel not configured stay queued (and counted in
    the backlog) until it is."""
    found: dict[str, Channel] = {}
    if settings.smtp_url:
        target = SmtpTarget.from_url(settings.smtp_url)
        found[NotificationChannel.EMAIL] = SmtpChannel(target, ca_file=settings.smtp_ca_file)
    if settings.sms_webhook_url and settings.sms_webhook_secret:
        found[NotificationChannel.SMS] = SmsWebhookChannel(settings.sms_webhook_url, settings.sms_webhook_secret)
    return found


class Dispatcher:
    """Claims, sends and marks notifications; ``clock`` and ``rng`` are injectable (tests)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        vault: PersonVault | None = None,
        channels: Mapping[str, Channel] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
        claim_sql: str = queries.CLAIM_NOTIFICATIONS,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.vault = vault or PersonVault.from_settings(settings)
        self.channels = dict(channels_from(settings) if channels is None else channels)
        self.clock = clock
        self.rng = rng
        self.claim_sql = claim_sql  # tests swap in a claim without SKIP LOCKED and lease (negative control)
        self.codec = TokenCodec(settings.secret_keys)
        self.domain = settings.mail_from.rpartition("@")[2] or "localhost"
        self._secret = settings.secret_keys[-1][1]

    # --- one round -------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch and deliver it; returns how many messages were handled (0: none due)."""
        now = self.clock()
        if not self.channels:
            return 0
        lease = now + timedelta(seconds=self.settings.notify_lease_s)
        async with self.pool.acquire() as con, con.transaction():
            rows = await con.fetch(self.claim_sql, now, lease, self.settings.notify_batch, sorted(self.channels))
            deliver = []
            for row in rows:
                reason = _why_not(row)
                if reason is None:
                    deliver.append(row)
                    continue
                await con.execute(queries.MARK_NOTIFICATION_CANCELLED, row["notification_id"], reason)
                self.metrics.notifications.labels(row["kind"], "cancelled").inc()
        # Sent concurrently; marked together on one connection (the booking jobs need the others).
        results = await self._send_all(deliver)
        if results:
            async with self.pool.acquire() as con:
                for row, mid, reason in results:
                    await self._mark(con, row, mid, reason)
        return len(rows)

    async def _send_all(self, rows: list[Any]) -> list[Outcome]:
        """Build every message, then send them: a channel that sends lists (SMTP) gets up to
        ``LANES`` lists sent concurrently, each over one connection; others one message at a time,
        all concurrently. → (row, its Message-ID, None) or (row, None, why it failed) per row."""
        built: list[Built] = []
        results: list[Outcome] = []
        for row in rows:
            try:
                built.append((row, *self._build(row)))
            except Exception as exc:  # a bug in rendering, say: retried, its class recorded, never its text
                log.exception("notification %s could not be built", row["notification_id"])
                results.append((row, None, type(exc).__name__))
        by_channel: dict[str, list[Built]] = {}
        for item in built:
            by_channel.setdefault(item[0]["channel"], []).append(item)
        sends = []
        for name, items in by_channel.items():
            channel = self.channels[name]
            if isinstance(channel, SmtpChannel):
                sends += [self._send_lane(channel, items[lane::LANES]) for lane in range(min(LANES, len(items)))]
            else:
                sends += [self._send_lane(channel, [item]) for item in items]
        for lane in await asyncio.gather(*sends):
            results += lane
        return results

    async def _send_lane(self, channel: Channel, items: list[Built]) -> list[Outcome]:
        """Send ``items`` in turn (SMTP: over one connection)."""
        reasons: list[str | None] = []
        if isinstance(channel, SmtpChannel):
            reasons = await channel.send_batch([message for _, _, message in items])
        else:
            for _, _, message in items:
                try:
                    await channel.send(message)
                    reasons.append(None)
                except DeliveryError as exc:
                    reasons.append(exc.reason)
        pairs = zip(items, reasons, strict=True)
        return [(row, mid if reason is None else None, reason) for (row, mid, _), reason in pairs]

    async def _mark(self, con: asyncpg.Connection, row: Any, mid: str | None, reason: str | None) -> None:
        now = self.clock()
        kind, notification_id, attempts = row["kind"], row["notification_id"], row["attempts"]
        if reason is None:
            await con.execute(queries.MARK_NOTIFICATION_SENT, notification_id, attempts, now, mid)
            self.metrics.notifications.labels(kind, "sent").inc()
        elif now >= row["due_at"] + timedelta(seconds=self.settings.notify_retry_budget_s):
            await con.execute(queries.MARK_NOTIFICATION_FAILED, notification_id, attempts, reason)
            self.metrics.notifications.labels(kind, "failed").inc()
            log.error("notification %s (%s) failed for good: %s", notification_id, kind, reason)
        else:
            retry_at = now + timedelta(seconds=self.backoff(attempts))
            await con.execute(queries.MARK_NOTIFICATION_RETRY, notification_id, attempts, retry_at, reason)
            self.metrics.notifications.labels(kind, "retry").inc()

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` tries: first * 2^(attempts-1), capped,
        times a jitter between 0.5 and 1 (so a burst that failed together does not retry together)."""
        s = self.settings
        delay = min(s.notify_retry_max_s, s.notify_retry_first_s * 2.0 ** min(max(attempts, 1) - 1, 30))
        return delay * (0.5 + 0.5 * self.rng())

    # --- building the message ---------------------------------------------------------------------

    def _build(self, row: Any) -> tuple[str, Any]:
        """The message of a claimed row, ready for its channel → (its Message-ID, the message)."""
        payload = self.vault.open(bytes(row["sealed"]))
        kind = NotificationKind(row["kind"])
        language = language_of(row["language"])
        facts = Facts()
        if row["starts_at"] is not None:
            facts = Facts(row["starts_at"], row["ends_at"], row["timezone"], row["site_name"], row["address"],
                          row["type_name"])  # fmt: skip
        live = row["appointment_status"] == AppointmentStatus.CONFIRMED and row["ends_at"] is not None
        manage_url = None
        if live and kind in TIMED:
            manage_url = manage.manage_url(self.settings, row["appointment_id"], row["ends_at"])
        unsubscribe = None
        if kind in REMINDERS and row["appointment_id"] is not None:
            unsubscribe = self.unsubscribe_url(row["appointment_id"])
        rendered = render(kind, language, payload, facts, manage_url=manage_url, unsubscribe_url=unsubscribe)
        mid = message_id(row["notification_id"], self._secret, self.domain)
        if row["channel"] == NotificationChannel.SMS:
            text = render_sms(kind, language, payload, facts, manage_url=manage_url)
            return mid, TextMessage(row["notification_id"], payload["phone"], text, kind, language)
        email = EmailMessage()
        email["From"] = self.settings.mail_from
        email["To"] = payload["email"]
        email["Subject"] = rendered.subject
        email["Message-ID"] = mid
        email["Date"] = format_datetime(self.clock())
        email["Content-Language"] = language
        if unsubscribe is not None:
            email["List-Unsubscribe"] = f"<{unsubscribe}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
        email.set_content(rendered.text)
        email.add_alternative(rendered.html, subtype="html")
        method = _ICS.get(kind)
        if method is not None and facts.starts_at is not None:
            email.add_attachment(
                self._ics(row, facts, method), maintype="text", subtype="calendar",
                filename="appointment.ics", params={"method": method},
            )  # fmt: skip
        return mid, email

    def _ics(self, row: Any, facts: Facts, method: Method) -> bytes:
        assert facts.starts_at is not None
        assert facts.ends_at is not None
        assert facts.timezone is not None
        return appointment_ics(
            appointment_id=row["appointment_id"], sequence=row["sequence"] or 0, starts_at=facts.starts_at,
            ends_at=facts.ends_at, timezone=facts.timezone, site_name=facts.site_name or "",
            address=facts.address, summary=facts.type_name or "Appointment", method=method,
        )  # fmt: skip

    def unsubscribe_url(self, appointment_id: uuid.UUID) -> str:
        token = self.codec.sign_unsubscribe(str(appointment_id))
        return f"{self.settings.api_url}/api/v1/reminders/unsubscribe/{token}"

    # --- the loop ----------------------------------------------------------------------------------

    async def observe(self) -> None:
        """Refresh the backlog gauges (queued or being sent, and due) from PostgreSQL."""
        async with self.pool.acquire() as con:
            row = await con.fetchrow(queries.NOTIFICATION_BACKLOG, self.clock())
        self.metrics.notifications_backlog.set(row["due"])
        self.metrics.notifications_oldest_due_age.set(max(0.0, row["oldest_age"]))

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set: batch after batch while messages are due, else look
        again after ``notify_poll_s``. A database outage is waited out (logged once per round)."""
        while not stopping.is_set():
            handled = 0
            try:
                handled = await self.run_once()
                await self.observe()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("notification dispatch paused: %s", type(exc).__name__)
            if handled:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.notify_poll_s)


def _why_not(row: Any) -> str | None:
    """Why a claimed message must not go (it is cancelled), or None to send it."""
    kind = row["kind"]
    if row["sealed"] is None:
        return "details erased"
    if kind in TIMED and row["appointment_id"] is not None:
        if row["appointment_status"] != AppointmentStatus.CONFIRMED:
            return "appointment no longer confirmed"
        if row["appointment_sequence"] is not None and row["sequence"] != row["appointment_sequence"]:
            return "appointment rescheduled since"
    if kind in REMINDERS and row["opted_out"]:
        return "opted out of reminders"
    return None
