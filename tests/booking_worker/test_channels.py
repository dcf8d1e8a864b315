"""The channels on their own: the SMTP URL's forms; credentials, STARTTLS and implicit TLS against a real
aiosmtpd with a certificate made in the test (its CA trusted through SURGEGATE_SMTP_CA_FILE)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from booking_worker.channels import DeliveryError, SmtpChannel, SmtpTarget
from booking_worker.dispatcher import channels_from
from shared.settings import Settings, SettingsError
from surgegate.embedded import free_port
from surgegate.mailsink import MailSink


def test_smtp_urls() -> None:
    assert SmtpTarget.from_url("smtp://mail.example.org") == SmtpTarget("mail.example.org", 25, None, None, False)
    assert SmtpTarget.from_url("smtp://u%40x:p%3Aw@mail:587") == SmtpTarget("mail", 587, "u@x", "p:w", False)
    assert SmtpTarget.from_url("smtps://mail") == SmtpTarget("mail", 465, None, None, True)
    with pytest.raises(ValueError, match="smtp://"):
        SmtpTarget.from_url("http://mail")


class Logins:
    """An aiosmtpd authenticator that accepts one user and notes each try (login, over TLS?)."""

    def __init__(self, user: bytes, password: bytes) -> None:
        self.user, self.password = user, password
        self.seen: list[tuple[bytes, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login, server.transport.get_extra_info("ssl_object") is not None))
        return AuthResult(success=(data.login, data.password) == (self.user, self.password))


def mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@localhost", "b@example.org", subject
    message.set_content("hi")
    return message


# aiosmtpd warns (rightly) about AUTH without TLS: this server is the careless one.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_credentials_never_go_in_clear() -> None:
    """A server (or someone in between) that offers no STARTTLS gets no password: the channel
    refuses to log in rather than send it in clear, even though this server would take it."""
    sink, logins = MailSink(), Logins(b"relay", b"pw")
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=logins, auth_require_tls=False,
                            auth_required=True)  # fmt: skip
    controller.start()
    try:
        with pytest.raises(DeliveryError) as refused:
            await SmtpChannel(SmtpTarget.from_url(f"smtp://relay:pw@127.0.0.1:{port}")).send(mail("hello"))
        assert "@" not in refused.value.reason and "pw" not in refused.value.reason
        assert logins.seen == [] and sink.messages == []
    finally:
        controller.stop()


# --- TLS against a real aiosmtpd with a certificate made here ----------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: str
    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_pki(directory: Path, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)) -> Pki:
    """A CA of this test only and a server certificate it signed for ``names`` and ``ips``."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "surgegate test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pki(str(directory / "ca.pem"), str(directory / "server.pem"), str(directory / "server.key"))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


class TlsSink(MailSink):
    """Also notes, per accepted message, whether it came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.over_tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


@contextmanager
def smtp_server(handler: Any, **kw: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_starttls_required_by_the_server_and_credentials_only_after_it(pki: Pki) -> None:
    sink, logins = TlsSink(), Logins(b"relay", b"pw")
    # require_starttls: no command but EHLO/STARTTLS/QUIT before TLS; auth_require_tls (aiosmtpd's
    # default, said aloud): AUTH refused and not even offered in clear.
    with smtp_server(sink, tls_context=pki.server_context(), require_starttls=True, auth_require_tls=True,
                     authenticator=logins, auth_required=True) as port:  # fmt: skip
        url = f"smtp://relay:pw@127.0.0.1:{port}"
        await SmtpChannel(SmtpTarget.from_url(url), ca_file=pki.ca_file).send(mail("over starttls"))
        assert [m["Subject"] for m in sink.messages] == ["over starttls"]
        assert sink.over_tls == [True] and logins.seen == [(b"relay", True)]

        # The server's certificate is not one the system trusts: without the CA file, nothing goes,
        # and the password never left.
        with pytest.raises(DeliveryError) as untrusted:
            await SmtpChannel(SmtpTarget.from_url(url)).send(mail("unverified"))
        assert "@" not in untrusted.value.reason
        assert len(sink.messages) == 1 and len(logins.seen) == 1


async def test_starttls_without_credentials_when_offered(pki: Pki) -> None:
    sink = TlsSink()
    with smtp_server(sink, tls_context=pki.server_context(), require_starttls=True) as port:
        target = SmtpTarget.from_url(f"smtp://localhost:{port}")  # the certificate's DNS name this time
        await SmtpChannel(target, ca_file=pki.ca_file).send(mail("anonymous"))
    assert sink.over_tls == [True]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls(pki: Pki) -> None:
    sink, logins = TlsSink(), Logins(b"relay", b"pw")
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; here the whole connection is TLS
    # (ssl_context), which the authenticator checks itself.
    with smtp_server(sink, ssl_context=pki.server_context(), authenticator=logins, auth_required=True,
                     auth_require_tls=False) as port:  # fmt: skip
        url = f"smtps://relay:pw@127.0.0.1:{port}"
        await SmtpChannel(SmtpTarget.from_url(url), ca_file=pki.ca_file).send(mail("over tls"))
        assert [m["Subject"] for m in sink.messages] == ["over tls"]
        assert sink.over_tls == [True] and logins.seen == [(b"relay", True)]
        with pytest.raises(DeliveryError):
            await SmtpChannel(SmtpTarget.from_url(url)).send(mail("unverified"))
        assert len(sink.messages) == 1 and len(logins.seen) == 1


async def test_the_host_name_is_verified_too(tmp_path: Path) -> None:
    other = make_pki(tmp_path, names=("mail.example.org",), ips=())  # trusted CA, someone else's name
    sink = TlsSink()
    with smtp_server(sink, ssl_context=other.server_context()) as port, pytest.raises(DeliveryError):
        await SmtpChannel(SmtpTarget.from_url(f"smtps://127.0.0.1:{port}"), ca_file=other.ca_file).send(
            mail("wrong name")
        )
    assert sink.messages == []


def test_the_ca_file_is_checked_at_start(pki: Pki, tmp_path: Path) -> None:
    base = {"SURGEGATE_SECRET_KEYS": "k1:" + "x" * 32}
    assert Settings.from_env({**base, "SURGEGATE_SMTP_CA_FILE": pki.ca_file}).smtp_ca_file == pki.ca_file
    (tmp_path / "junk.pem").write_text("not a certificate")
    for bad in (str(tmp_path / "missing.pem"), str(tmp_path / "junk.pem")):
        with pytest.raises(SettingsError, match="SURGEGATE_SMTP_CA_FILE must be a readable PEM file"):
            Settings.from_env({**base, "SURGEGATE_SMTP_CA_FILE": bad})
    channel = channels_from(Settings(secret_keys=(("k1", "x" * 32),), smtp_url="smtps://mail",
                                     smtp_ca_file=pki.ca_file))["email"]  # fmt: skip
    assert isinstance(channel, SmtpChannel) and channel.ca_file == pki.ca_file


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
