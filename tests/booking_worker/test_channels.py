"""The channels on their own: the SMTP URL's forms, and credentials accepted by a real server."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from booking_worker.channels import DeliveryError, SmtpChannel, SmtpTarget
from surgegate.embedded import free_port
from surgegate.mailsink import MailSink


def test_smtp_urls() -> None:
    assert SmtpTarget.from_url("smtp://mail.example.org") == SmtpTarget("mail.example.org", 25, None, None, False)
    assert SmtpTarget.from_url("smtp://u%40x:p%3Aw@mail:587") == SmtpTarget("mail", 587, "u@x", "p:w", False)
    assert SmtpTarget.from_url("smtps://mail") == SmtpTarget("mail", 465, None, None, True)
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTarget.from_url("http://mail")


def _only(user: bytes, password: bytes) -> Any:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user, password)
        return AuthResult(success=ok)

    return authenticate


# aiosmtpd warns (rightly) about AUTH without TLS; a loopback test server has no certificate.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_credentials_from_the_url_log_in() -> None:
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=_only(b"relay", b"pw"),
                            auth_require_tls=False, auth_required=True)  # fmt: skip
    controller.start()
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@localhost", "b@example.org", "hello"
        message.set_content("hi")
        await SmtpChannel(SmtpTarget.from_url(f"smtp://relay:pw@127.0.0.1:{port}")).send(message)
        assert [m["Subject"] for m in sink.messages] == ["hello"]
        # Without the credentials the server (auth_required) refuses: the channel says so, safely.
        anonymous = SmtpChannel(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}"))
        with pytest.raises(DeliveryError) as refused:
            await anonymous.send(message)
        assert refused.value.reason.startswith("SMTP") and "@" not in refused.value.reason
        assert len(sink.messages) == 1
    finally:
        controller.stop()


class RefusesOne(MailSink):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if b"Subject: refuse me" in envelope.content:
            return "554 5.6.0 not this one"
        return await super().handle_DATA(server, session, envelope)


async def test_a_batch_goes_on_after_a_refused_message() -> None:
    sink = RefusesOne()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        messages = []
        for subject in ("one", "refuse me", "three"):
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "a@localhost", "b@example.org", subject
            message.set_content("hi")
            messages.append(message)
        results = await SmtpChannel(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}")).send_batch(messages)
        assert results == [None, "SMTPDataError 554", None]
        assert [m["Subject"] for m in sink.messages] == ["one", "three"]
    finally:
        controller.stop()
