"""The outbox's dispatcher against a real SMTP server (aiosmtpd), PostgreSQL and the booking API.

Time is injected (a clock the test moves), never slept on: a reminder falls due when the test says
the clock reached its instant; a retry is tried when the clock passed its ``next_attempt_at``.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiosmtpd.controller import Controller
from icalendar import Calendar

from booking_worker.channels import Channel, SmsWebhookChannel, SmtpChannel, SmtpTarget, sms_signature
from booking_worker.dispatcher import Dispatcher, message_id
from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.embedded import free_port
from surgegate.mailsink import MailSink
from tests.helpers import admission_token, booking_headers, metric_value, person, running_worker, seed_typed_slots

pytestmark = pytest.mark.usefixtures("clean")


@dataclass
class Sink:
    """A real SMTP server on a fixed port that can be stopped and started again (an outage)."""

    handler: MailSink
    port: int
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@pytest.fixture
def sink(tmp_path: Any) -> Iterator[Sink]:
    s = Sink(MailSink(tmp_path / "mail"), free_port())
    s.start()
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def dispatcher(
    pool: asyncpg.Pool, settings: Settings, sink: Sink, clock: Clock, metrics: Metrics | None = None, **kw: Any
) -> Dispatcher:
    channels: dict[str, Channel] = {"email": SmtpChannel(SmtpTarget("127.0.0.1", sink.port, None, None, False))}
    return Dispatcher(pool, settings, metrics=metrics, channels=channels, clock=clock, rng=lambda: 1.0, **kw)


async def drain(d: Dispatcher) -> None:
    while await d.run_once():
        pass


async def book(api: TestClient, settings: Settings, codec: TokenCodec, slot: str, i: int = 1, **extra: Any) -> str:
    token = admission_token(codec)
    headers = {**booking_headers(token), **extra.pop("headers", {})}
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", json={"slot_id": slot, "person": person(i), **extra},
                              headers=headers)  # fmt: skip
        body = await resp.json()
    assert resp.status == 201, body
    return f"{body['appointment_id']}|{token}"


async def starts_of(pool: asyncpg.Pool, slot: str) -> datetime:
    starts: datetime = await pool.fetchval("SELECT starts_at FROM slots WHERE slot_id = $1", uuid.UUID(slot))
    return starts


async def kinds(pool: asyncpg.Pool, status: str) -> list[str]:
    rows = await pool.fetch("SELECT kind FROM notifications WHERE status = $1 ORDER BY due_at, kind", status)
    return [r["kind"] for r in rows]


# --- what goes out, and when ------------------------------------------------------------------------


async def test_confirmation_now_reminders_at_their_instants(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    await pool.execute("UPDATE sites SET name = 'Impfzentrum Mitte', address = 'Karl-Marx-Allee 1, Berlin'")
    appointment_id, _ = (await book(api, settings, codec, slot)).split("|")
    assert await kinds(pool, "queued") == ["confirmation", "reminder_24h", "reminder_1h"]
    starts = await starts_of(pool, slot)
    clock = Clock(datetime.now(UTC))
    d = dispatcher(pool, settings, sink, clock)
    await drain(d)
    assert sink.subjects() == ["Your appointment is booked"]
    confirmation = sink.messages[0]
    assert confirmation["To"] == person(1)["email"]
    notification_id = await pool.fetchval("SELECT notification_id FROM notifications WHERE kind = 'confirmation'")
    assert confirmation["Message-ID"] == message_id(notification_id, settings.secret_keys[-1][1], "localhost")
    assert "List-Unsubscribe" not in confirmation  # transactional
    text = confirmation.get_body(("plain",))
    assert text is not None and "Impfzentrum Mitte, Karl-Marx-Allee 1, Berlin" in text.get_content()
    assert "/manage" in text.get_content()  # the manage link (shared/manage.py)
    (ics,) = [p for p in confirmation.iter_attachments() if p.get_content_type() == "text/calendar"]
    event = Calendar.from_ical(ics.get_content()).walk("VEVENT")[0]
    assert event.decoded("dtstart") == starts and str(event["uid"]) == f"{appointment_id}@surgegate"
    assert str(event["location"]) == "Impfzentrum Mitte, Karl-Marx-Allee 1, Berlin"

    clock.now = starts - timedelta(hours=24, seconds=1)
    await drain(d)
    assert len(sink.messages) == 1  # not yet due
    clock.now = starts - timedelta(hours=24)
    await drain(d)
    reminder = sink.messages[-1]
    assert reminder["Subject"] == "Reminder: your appointment tomorrow"
    assert reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(reminder["List-Unsubscribe"]).startswith(f"<{settings.api_url}/api/v1/reminders/unsubscribe/")
    # The body links the same address, where a click GETs a page that asks (and changes nothing:
    # the next reminder still goes).
    link = str(reminder["List-Unsubscribe"]).strip("<>")
    plain, rich = reminder.get_body(("plain",)), reminder.get_body(("html",))
    assert plain is not None and f"No more reminders: {link}" in plain.get_content()
    assert rich is not None and f'<a href="{link}">' in rich.get_content()
    page = await api.get(link.removeprefix(settings.api_url), headers={"Accept": "text/html"})
    assert page.status == 200 and "Stop reminders for your appointment?" in await page.text()
    clock.now = starts - timedelta(minutes=59)
    await drain(d)
    assert sink.subjects()[-1] == "Reminder: your appointment in an hour"
    assert await kinds(pool, "sent") == ["confirmation", "reminder_24h", "reminder_1h"]
    assert len(set(sink.handler.message_ids())) == 3


async def test_spanish_from_the_body_or_accept_language_and_phone_checked(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    slots = await seed_typed_slots(pool, count=2)
    await book(api, settings, codec, slots[0], 1, language="es")
    await book(api, settings, codec, slots[1], 2, headers={"Accept-Language": "fr;q=0.9, es-MX;q=0.8, en;q=0.1"})
    assert await pool.fetchval("SELECT array_agg(DISTINCT language) FROM appointments") == ["es"]
    await drain(dispatcher(pool, settings, sink, Clock(datetime.now(UTC))))
    assert sink.subjects() == ["Su cita está reservada"] * 2
    bad = {"slot_id": slots[0], "person": {**person(3), "phone": "12345"}}
    resp = await api.post("/api/v1/appointments", json=bad, headers=booking_headers(admission_token(codec)))
    body = await resp.json()
    assert resp.status == 400 and body["errors"][0]["loc"][-1] == "phone"
    assert "12345" not in str(body)


# --- at least once, never twice at a time -----------------------------------------------------------


class Crash(BaseException):
    """The dispatcher's process dies (not an error it could handle)."""


class CrashAfterSending(SmtpChannel):
    """Sends for real (the server accepts), then dies before the dispatcher can mark anything sent."""

    async def send_batch(self, messages: list[EmailMessage]) -> list[str | None]:
        await super().send_batch(messages)
        raise Crash


async def test_killed_after_smtp_accepted_resends_once_with_the_same_message_id(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    await book(api, settings, codec, slot)
    clock = Clock(datetime.now(UTC))
    dying_channel = CrashAfterSending(SmtpTarget("127.0.0.1", sink.port, None, None, False))
    dying = Dispatcher(pool, settings, channels={"email": dying_channel}, clock=clock)
    with pytest.raises(Crash):
        await dying.run_once()
    assert len(sink.messages) == 1  # the server accepted it; it was never marked
    assert await kinds(pool, "sending") == ["confirmation"]

    survivor = dispatcher(pool, settings, sink, clock)
    await drain(survivor)
    assert len(sink.messages) == 1  # leased to the dead one: nobody sends it meanwhile
    clock.now += timedelta(seconds=settings.notify_lease_s)
    await drain(survivor)
    first, again = sink.messages
    assert first["Message-ID"] == again["Message-ID"]  # a receiver dedupes on it
    assert await kinds(pool, "sent") == ["confirmation"]
    await drain(survivor)
    assert len(sink.messages) == 2  # once resent, never again


# Claims without SKIP LOCKED and without a lease: what a naive outbox reader does.
NAIVE_CLAIM = """
SELECT n.notification_id, n.kind, n.channel, n.language, n.sealed, n.attempts, n.due_at, n.appointment_id,
       n.appointment_sequence, NULL::text AS appointment_status, NULL::int AS sequence,
       NULL::timestamptz AS starts_at, NULL::timestamptz AS ends_at, NULL::text AS site_name,
       NULL::text AS address, NULL::text AS timezone, NULL::text AS type_name, false AS opted_out
FROM notifications n
WHERE n.status = 'queued' AND coalesce(n.next_attempt_at, n.due_at) <= $1 AND $2::timestamptz IS NOT NULL
  AND n.channel = ANY($4::text[])
ORDER BY n.notification_id LIMIT $3
"""


async def queue_manage_links(pool: asyncpg.Pool, settings: Settings, n: int) -> None:
    from shared import notifications
    from shared.persons import PersonVault

    vault = PersonVault.from_settings(settings)
    async with pool.acquire() as con, con.transaction():
        for i in range(n):
            await notifications.queue(
                con, vault, kind="manage_link",
                payload={"email": f"p{i}@example.org", "manage_url": f"http://x/manage?c={i}"},
            )  # fmt: skip


@pytest.mark.parametrize("guarded", [True, False], ids=["skip-locked-and-lease", "negative-control-naive-claim"])
async def test_two_dispatchers_at_once_never_send_one_twice(
    settings: Settings, pool: asyncpg.Pool, sink: Sink, guarded: bool
) -> None:
    n = 20
    await queue_manage_links(pool, settings, n)
    clock = Clock(datetime.now(UTC))
    options = {} if guarded else {"claim_sql": NAIVE_CLAIM}
    a, b = (dispatcher(pool, replace(settings, notify_batch=n), sink, clock, **options) for _ in range(2))
    await asyncio.gather(a.run_once(), b.run_once())
    ids = sink.handler.message_ids()
    if guarded:
        assert sorted(ids) == sorted(set(ids)) and len(ids) == n
        assert await pool.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") == n
    else:
        assert len(ids) > len(set(ids))  # the guard is what prevents this


# --- changes after queueing ---------------------------------------------------------------------------


async def test_cancelled_after_reminders_were_queued_gets_none(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1)
    appointment_id, token = (await book(api, settings, codec, slot)).split("|")
    clock = Clock(datetime.now(UTC))
    d = dispatcher(pool, settings, sink, clock)
    await drain(d)  # the confirmation
    resp = await api.delete(f"/api/v1/appointments/{appointment_id}", headers=booking_headers(token))
    assert resp.status == 200
    starts = await starts_of(pool, slot)
    for clock.now in (starts - timedelta(hours=24), starts - timedelta(minutes=30)):
        await drain(d)
    assert sink.subjects() == ["Your appointment is booked", "Your appointment is cancelled"]
    (ics,) = [p for p in sink.messages[1].iter_attachments() if p.get_content_type() == "text/calendar"]
    assert Calendar.from_ical(ics.get_content())["method"] == "CANCEL"
    assert await kinds(pool, "cancelled") == ["reminder_24h", "reminder_1h"]


async def test_a_change_the_queue_missed_is_caught_when_claimed(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    """Re-checked in the claiming transaction: an appointment no longer confirmed gets no reminder
    even if its queued messages were not withdrawn (negative control: still confirmed, it does)."""
    slots = await seed_typed_slots(pool, count=2)
    kept, _ = (await book(api, settings, codec, slots[0], 1)).split("|")
    gone, _ = (await book(api, settings, codec, slots[1], 2)).split("|")
    await pool.execute("UPDATE appointments SET status = 'cancelled' WHERE appointment_id = $1", uuid.UUID(gone))
    clock = Clock(await starts_of(pool, slots[1]) - timedelta(minutes=30))
    await drain(dispatcher(pool, settings, sink, clock))
    sent = await pool.fetch("SELECT appointment_id, kind FROM notifications WHERE status = 'sent'")
    assert {str(r["appointment_id"]) for r in sent} == {kept}
    assert len(sent) == 3
    reasons = await pool.fetch("SELECT DISTINCT last_error FROM notifications WHERE status = 'cancelled'")
    assert [r["last_error"] for r in reasons] == ["appointment no longer confirmed"]


async def test_rescheduled_gets_reminders_for_the_new_time_only(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    slots = await seed_typed_slots(pool, count=3)
    appointment_id, token = (await book(api, settings, codec, slots[0])).split("|")
    resp = await api.post(f"/api/v1/appointments/{appointment_id}/reschedule", json={"slot_id": slots[2]},
                          headers=booking_headers(token))  # fmt: skip
    assert resp.status == 200
    old, new = await starts_of(pool, slots[0]), await starts_of(pool, slots[2])
    clock = Clock(datetime.now(UTC))
    d = dispatcher(pool, settings, sink, clock)
    instants = [clock.now, old - timedelta(hours=24), new - timedelta(hours=24), old - timedelta(hours=1),
                new - timedelta(hours=1)]  # fmt: skip
    for instant in sorted(set(instants)):
        clock.now = instant
        await drain(d)
    assert sink.subjects() == [
        "Your appointment has moved", "Reminder: your appointment tomorrow", "Reminder: your appointment in an hour"
    ]  # fmt: skip
    due = await pool.fetch("SELECT due_at FROM notifications WHERE status = 'sent' AND kind LIKE 'reminder%'")
    assert sorted(r["due_at"] for r in due) == [new - timedelta(hours=24), new - timedelta(hours=1)]
    (ics,) = [p for p in sink.messages[0].iter_attachments() if p.get_content_type() == "text/calendar"]
    event = Calendar.from_ical(ics.get_content()).walk("VEVENT")[0]
    assert event["sequence"] == 1 and event.decoded("dtstart") == new
    assert await kinds(pool, "cancelled") == ["confirmation", "reminder_24h", "reminder_1h"]  # the old time's


async def test_opting_out_stops_reminders_not_transactional_messages(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    slots = await seed_typed_slots(pool, count=2)
    appointment_id, token = (await book(api, settings, codec, slots[0])).split("|")
    starts = await starts_of(pool, slots[0])
    clock = Clock(starts - timedelta(hours=24))
    d = dispatcher(pool, settings, sink, clock)
    await drain(d)  # the confirmation and the first reminder (in either order: sent concurrently)
    (reminder,) = [m for m in sink.messages if m["Subject"] == "Reminder: your appointment tomorrow"]
    link = str(reminder["List-Unsubscribe"]).strip("<>")
    resp = await api.post(link.removeprefix(settings.api_url), data="List-Unsubscribe=One-Click")  # RFC 8058
    assert resp.status == 200 and await resp.json() == {"reminders": "off"}
    moved = await api.post(f"/api/v1/appointments/{appointment_id}/reschedule", json={"slot_id": slots[1]},
                           headers=booking_headers(token))  # fmt: skip
    assert moved.status == 200
    new = await starts_of(pool, slots[1])
    for clock.now in (new - timedelta(hours=24), new - timedelta(minutes=30)):
        await drain(d)
    assert sorted(sink.subjects()) == [
        "Reminder: your appointment tomorrow", "Your appointment has moved", "Your appointment is booked"
    ]  # fmt: skip
    forged = await api.post("/api/v1/reminders/unsubscribe/k1.forged")
    assert forged.status == 401


# --- outages and the dead letter ----------------------------------------------------------------------


async def test_smtp_down_for_a_while_then_delivered_past_the_budget_failed(
    settings: Settings, pool: asyncpg.Pool, sink: Sink
) -> None:
    await queue_manage_links(pool, settings, 2)
    metrics = Metrics()
    clock = Clock(datetime.now(UTC))
    d = dispatcher(pool, settings, sink, clock, metrics)
    sink.stop()
    await drain(d)
    rows = await pool.fetch("SELECT status, attempts, next_attempt_at, last_error FROM notifications")
    assert {(r["status"], r["attempts"]) for r in rows} == {("queued", 1)}
    assert all(r["last_error"] == "SMTPConnectError" for r in rows)  # a class name, no address
    assert metric_value(metrics, "surgegate_notifications_total", kind="manage_link", result="retry") == 2
    # Backoff: not tried before its time, then again (still down), then the server is back.
    retry_at = rows[0]["next_attempt_at"]
    assert retry_at == clock.now + timedelta(seconds=settings.notify_retry_first_s)
    clock.now = retry_at
    await drain(d)
    assert await pool.fetchval("SELECT max(attempts) FROM notifications") == 2
    sink.start()
    clock.now += timedelta(minutes=30)
    await drain(d)
    assert len(sink.messages) == 2
    assert metric_value(metrics, "surgegate_notifications_total", kind="manage_link", result="sent") == 2

    # Another message, and the server never comes back: retried for the whole budget, then failed.
    await pool.execute("DELETE FROM notifications")
    await queue_manage_links(pool, settings, 1)
    sink.stop()
    queued_at = clock.now = await pool.fetchval("SELECT due_at FROM notifications")
    tries = 0
    while await pool.fetchval("SELECT status FROM notifications") == "queued":
        clock.now = max(clock.now, await pool.fetchval("SELECT coalesce(next_attempt_at, due_at) FROM notifications"))
        await drain(d)
        tries += 1
        assert tries < 100
    row = await pool.fetchrow("SELECT status, attempts FROM notifications")
    assert row["status"] == "failed" and row["attempts"] > 5
    assert clock.now >= queued_at + timedelta(seconds=settings.notify_retry_budget_s)
    assert metric_value(metrics, "surgegate_notifications_total", kind="manage_link", result="failed") == 1
    await d.observe()
    assert metric_value(metrics, "surgegate_notifications_backlog") == 0


async def test_backlog_gauges(settings: Settings, pool: asyncpg.Pool, sink: Sink) -> None:
    await queue_manage_links(pool, settings, 3)
    metrics = Metrics()
    clock = Clock(datetime.now(UTC) + timedelta(seconds=90))
    d = dispatcher(pool, settings, sink, clock, metrics)
    await d.observe()
    assert metric_value(metrics, "surgegate_notifications_backlog") == 3
    assert metric_value(metrics, "surgegate_notifications_oldest_due_age_seconds") >= 90
    await drain(d)
    await d.observe()
    assert metric_value(metrics, "surgegate_notifications_backlog") == 0
    assert metric_value(metrics, "surgegate_notifications_oldest_due_age_seconds") == 0


# --- text messages ------------------------------------------------------------------------------------


@pytest.fixture
async def sms_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local relay that accepts a message only with a valid signature (else 401)."""
    received: list[dict[str, Any]] = []
    secret = "relay-secret"

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers["X-Surgegate-Timestamp"]
        expected = sms_signature(secret, timestamp, body)
        if not hmac.compare_digest(expected, request.headers.get("X-Surgegate-Signature", "")):
            return web.Response(status=401)
        received.append({"key": request.headers["Idempotency-Key"], **(await request.json())})
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/sms", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/sms", received
    finally:
        await runner.cleanup()


async def test_text_messages_signed_to_the_webhook(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool,
    sms_receiver: tuple[str, list[dict[str, Any]]],
) -> None:  # fmt: skip
    url, received = sms_receiver
    (slot,) = await seed_typed_slots(pool, count=1)
    token = admission_token(codec)
    async with running_worker(settings):
        resp = await api.post("/api/v1/appointments", headers=booking_headers(token),
                              json={"slot_id": slot, "person": {**person(1), "phone": "+49 30 1234-5678"}})  # fmt: skip
        assert resp.status == 201
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE channel = 'sms'") == 3
    assert b"+493012345678" not in b"".join(
        bytes(r["sealed"]) for r in await pool.fetch("SELECT sealed FROM notifications")
    )
    clock = Clock(datetime.now(UTC))
    wrong = Dispatcher(pool, settings, channels={"sms": SmsWebhookChannel(url, "not-the-secret")}, clock=clock)
    await drain(wrong)
    assert received == []  # refused: retried later
    assert (
        await pool.fetchval("SELECT last_error FROM notifications WHERE channel = 'sms' AND kind = 'confirmation'")
        == "HTTP 401"
    )
    clock.now += timedelta(minutes=5)
    right = Dispatcher(pool, settings, channels={"sms": SmsWebhookChannel(url, "relay-secret")}, clock=clock)
    await drain(right)
    (message,) = received
    sms_id = await pool.fetchval(
        "SELECT notification_id FROM notifications WHERE channel = 'sms' AND kind = 'confirmation'"
    )
    assert message["key"] == message["id"] == str(sms_id)
    assert message["to"] == "+493012345678" and message["text"].startswith("Booked: ")
    assert "<p>" not in message["text"] and "\n" not in message["text"]  # one line of plain text
    line, _, link = message["text"].rpartition(" ")  # what, when, where; then the manage link
    assert len(line) <= 160 and link.startswith(f"{settings.api_url}/manage?c=")


# --- daylight saving time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "zone_name"),
    [(datetime(2027, 3, 28, 10, 0), "CEST"), (datetime(2027, 10, 31, 10, 0), "CET")],
    ids=["clocks-go-forward", "clocks-go-back"],
)
async def test_reminders_are_absolute_instants_across_a_dst_change(
    settings: Settings, pool: asyncpg.Pool, sink: Sink, local: datetime, zone_name: str
) -> None:
    """An appointment at 10:00 on the day Berlin's clocks change: its reminders fall due exactly 24 h
    and 1 h before (so the 24 h one is at 09:00 or 11:00 on the wall the day before), and say 10:00
    in the zone as it is that day."""
    from shared import notifications, queries
    from shared.notifications import NotificationKind
    from shared.persons import PersonVault

    starts = local.replace(tzinfo=ZoneInfo("Europe/Berlin"))
    vault = PersonVault.from_settings(settings)
    appointment_id, slot_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as con, con.transaction():
        await con.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
        await con.execute(
            "INSERT INTO sites (site_id, name, region, timezone, lat, lng, address)"
            " VALUES ('b', 'Mitte', 'Berlin', 'Europe/Berlin', 52.5, 13.4, 'Karl-Marx-Allee 1')"
        )
        await con.execute(
            "INSERT INTO slots (slot_id, site_id, starts_at, ends_at, capacity, booked) VALUES ($1, 'b', $2, $3, 1, 1)",
            slot_id, starts, starts + timedelta(minutes=30),
        )  # fmt: skip
        sealed = vault.seal({"email": "dst@example.org", "language": "en"})
        await con.execute(queries.INSERT_APPOINTMENT, appointment_id, "ev", slot_id, "t", vault.ref("D1"), sealed, "en")
        await notifications.queue_appointment_messages(
            con, vault, kind=NotificationKind.CONFIRMATION, appointment_id=appointment_id, person_sealed=sealed,
            person_ref=vault.ref("D1"), starts_at=starts, sequence=0, now=starts - timedelta(days=3),
        )  # fmt: skip
    due = dict(await pool.fetch("SELECT kind, due_at FROM notifications WHERE kind LIKE 'reminder%'"))
    absolute = starts.astimezone(UTC)
    assert due == {"reminder_24h": absolute - timedelta(hours=24), "reminder_1h": absolute - timedelta(hours=1)}
    wall_before = due["reminder_24h"].astimezone(ZoneInfo("Europe/Berlin"))
    assert wall_before.hour == (9 if zone_name == "CEST" else 11)  # 24 h, not "same time yesterday"
    clock = Clock(due["reminder_24h"])
    await drain(dispatcher(pool, settings, sink, clock))
    body = next(m for m in sink.messages if m["Subject"] == "Reminder: your appointment tomorrow")
    plain = body.get_body(("plain",))
    assert plain is not None and f"10:00 {zone_name}" in plain.get_content()


async def test_a_waitlist_offer_is_delivered_with_its_claim_link(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    (slot,) = await seed_typed_slots(pool, count=1, capacity=1)
    appointment_id, token = (await book(api, settings, codec, slot, 1)).split("|")
    day = str((await starts_of(pool, slot)).astimezone(ZoneInfo("Europe/Berlin")).date())
    spanish = {**booking_headers(admission_token(codec)), "Accept-Language": "es"}
    wait = {"site_id": "site-a", "type_id": "group", "day": day, "person": person(2)}
    joined = await api.post("/api/v1/waitlist", headers=spanish, json=wait)
    assert joined.status == 201
    assert (await api.delete(f"/api/v1/appointments/{appointment_id}", headers=booking_headers(token))).status == 200
    await drain(dispatcher(pool, settings, sink, Clock(datetime.now(UTC))))
    (offer,) = [m for m in sink.messages if m["To"] == person(2)["email"]]
    assert offer["Subject"] == "Hay una plaza libre para usted"
    text = offer.get_body(("plain",))
    assert text is not None and f"{settings.api_url}/claim?c=" in text.get_content()  # the claim page
    assert {str(m["Subject"]) for m in sink.messages if m["To"] == person(1)["email"]} <= {
        "Your appointment is booked", "Your appointment is cancelled"
    }  # fmt: skip


async def test_surgegate_worker_delivers_without_being_asked(
    settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    """The dispatcher runs inside the supervised worker (`surgegate worker`): a booking made through
    the real processes is confirmed by email, and the worker's /metrics counts it."""
    import aiohttp

    from tests.helpers import serving_processes

    (slot,) = await seed_typed_slots(pool, count=1)
    live = replace(settings, smtp_url=f"smtp://127.0.0.1:{sink.port}", notify_poll_s=0.05)
    async with serving_processes(live) as procs, aiohttp.ClientSession() as s:
        headers = booking_headers(admission_token(codec))
        async with s.post(f"{procs.api}/api/v1/appointments", json={"slot_id": slot, "person": person(1)},
                          headers=headers) as resp:  # fmt: skip
            assert resp.status == 201
        sent = 'surgegate_notifications_total{kind="confirmation",result="sent"} 1.0'
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # marked sent (and counted) once the server accepted it
            async with s.get(f"{procs.worker}/metrics") as resp:
                if sent in await resp.text():
                    break
            assert asyncio.get_running_loop().time() < deadline, "the worker sent no email"
            await asyncio.sleep(0.05)
    assert sink.subjects() == ["Your appointment is booked"]


async def test_a_site_closing_the_day_is_told_with_a_cancelling_calendar_file(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool, sink: Sink
) -> None:
    from tests.helpers import admin_headers

    (slot,) = await seed_typed_slots(pool, count=1)
    await book(api, settings, codec, slot)
    starts = await starts_of(pool, slot)
    clock = Clock(datetime.now(UTC))
    d = dispatcher(pool, settings, sink, clock)
    await drain(d)
    day = str(starts.astimezone(ZoneInfo("Europe/Berlin")).date())
    closed = await api.post("/admin/v1/sites/site-a/closures", json={"day": day, "reason": "flooding"},
                            headers=admin_headers())  # fmt: skip
    assert closed.status == 200, await closed.text()
    for instant in (clock.now, starts - timedelta(hours=24), starts - timedelta(minutes=30)):
        clock.now = instant
        await drain(d)
    assert sink.subjects() == ["Your appointment is booked", "Your appointment is cancelled by the site"]
    text = sink.messages[1].get_body(("plain",))
    assert text is not None and "flooding" in text.get_content()
    (ics,) = [p for p in sink.messages[1].iter_attachments() if p.get_content_type() == "text/calendar"]
    assert Calendar.from_ical(ics.get_content())["method"] == "CANCEL"
    assert await kinds(pool, "cancelled") == ["reminder_24h", "reminder_1h"]
