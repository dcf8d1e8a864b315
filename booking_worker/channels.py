"""How a rendered message leaves: email over SMTP (aiosmtplib), text messages through a webhook.

A channel's ``send`` either returns (the server accepted the message) or raises
:class:`DeliveryError` with a reason that names no person (an exception class, an SMTP or HTTP
code): the dispatcher stores it and retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import aiohttp
import aiosmtplib


class DeliveryError(Exception):
    """The message did not go; ``reason`` is safe to store and log (no personal data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:200]


class Channel(Protocol):
    async def send(self, message: Any) -> None: ...


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """``smtp://[user:pass@]host[:port]`` (STARTTLS when the server offers it; port 25 by
        default) or ``smtps://…`` (TLS from the start; port 465). ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("SURGEGATE_SMTP_URL must look like smtp://[user:pass@]host:port or smtps://…")
        implicit = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            username=None if parts.username is None else unquote(parts.username),
            password=None if parts.password is None else unquote(parts.password),
            implicit_tls=implicit,
        )


def _reason(exc: BaseException) -> str:
    """What is kept of a failure: its class, and the server's reply code when there is one."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.code}"
    return type(exc).__name__


_SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, TimeoutError)


class SmtpChannel:
    """Email over SMTP. :meth:`send` uses a connection of its own; :meth:`send_batch` sends a list
    over one connection (connecting again after a failure), which the dispatcher uses per lane."""

    def __init__(self, target: SmtpTarget, *, ca_file: str | None = None, timeout_s: float = 30.0) -> None:
        self.target = target
        self.ca_file = ca_file
        self.timeout_s = timeout_s

    def _client(self) -> aiosmtplib.SMTP:
        """TLS from the first byte for ``smtps://``. For ``smtp://``: STARTTLS required when there
        are credentials (a server, or someone in between, that does not offer it gets no password),
        else STARTTLS when offered. The certificate and host name are always verified, against the
        system's CAs and ``ca_file`` (SURGEGATE_SMTP_CA_FILE)."""
        t = self.target
        start_tls = False if t.implicit_tls else (True if t.username is not None else None)
        return aiosmtplib.SMTP(
            hostname=t.hostname, port=t.port, username=t.username, password=t.password, use_tls=t.implicit_tls,
            start_tls=start_tls, validate_certs=True, cert_bundle=self.ca_file, timeout=self.timeout_s,
        )  # fmt: skip

    async def send(self, message: EmailMessage) -> None:
        (reason,) = await self.send_batch([message])
        if reason is not None:
            raise DeliveryError(reason)

    async def send_batch(self, messages: list[EmailMessage]) -> list[str | None]:
        """Send each in turn over one connection (STARTTLS when offered, then login, at connect);
        → per message None (accepted) or why not. A failure that may have broken the connection
        ends the session; the next message connects again."""
        results: list[str | None] = []
        client: aiosmtplib.SMTP | None = None
        try:
            for message in messages:
                try:
                    if client is None or not client.is_connected:
                        client = self._client()
                        await client.connect()
                    await client.send_message(message)
                    results.append(None)
                except _SMTP_FAILURES as exc:
                    results.append(_reason(exc))
                    await _close(client)  # whatever state the session is in, the next one starts clean
                    client = None
        finally:
            await _close(client)
        return results


async def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is not None and client.is_connected:
        try:
            await client.quit()
        except _SMTP_FAILURES:
            client.close()


@dataclass(frozen=True)
class TextMessage:
    notification_id: int
    to: str
    text: str
    kind: str
    language: str


def sms_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``: what the receiver recomputes."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class SmsWebhookChannel:
    """POSTs each text message as JSON to a relay (the shape SMS gateways' webhooks accept), signed:
    ``X-Surgegate-Timestamp`` (unix seconds), ``X-Surgegate-Signature`` (:func:`sms_signature`),
    ``Idempotency-Key`` (the notification id, so a resend after a crash is recognisable). Any 2xx
    is accepted; anything else is retried."""

    def __init__(self, url: str, secret: str, *, timeout_s: float = 15.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, message: TextMessage) -> None:
        body = json.dumps(
            {"id": str(message.notification_id), "to": message.to, "text": message.text, "kind": message.kind,
             "language": message.language},
            separators=(",", ":"),
        ).encode()  # fmt: skip
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Surgegate-Timestamp": timestamp,
            "X-Surgegate-Signature": sms_signature(self.secret, timestamp, body),
            "Idempotency-Key": str(message.notification_id),
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.post(self.url, data=body, headers=headers) as resp,
            ):
                if resp.status // 100 != 2:
                    raise DeliveryError(f"HTTP {resp.status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(type(exc).__name__) from None
