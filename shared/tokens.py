"""Signed tickets and admission tokens (itsdangerous, HMAC-SHA256).

A token is ``<kid>.<itsdangerous payload>``: the kid says which configured key signed it, so keys
rotate by appending a new ``kid:secret`` (it signs) while the old ones still verify. Each token type
has its own salt, so a ticket can never pass as an admission token. Verification is offline: no
database or Redis is needed to check a token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes

from shared.errors import TicketInvalid, TokenExpired, TokenInvalid

TICKET_SALT = "surgegate.ticket.v1"
CHALLENGE_SALT = "surgegate.pow-challenge.v1"
ADMISSION_SALT = "surgegate.admission.v1"
CLAIM_SALT = "surgegate.waitlist-claim.v1"
INVITE_SALT = "surgegate.invite.v1"
UNSUBSCRIBE_SALT = "surgegate.reminder-unsubscribe.v1"


@dataclass(frozen=True)
class Ticket:
    """A visitor's place in one event's queue: ``seq`` is the arrival number (1 = first)."""

    event_id: str
    visitor_id: str
    seq: int
    issued_at: float
    device: str | None = None  # sha256 (hex) of the visitor's device secret, if the client sent one


@dataclass(frozen=True)
class Admission:
    """The verified claims of an admission token. ``token_id`` is unique per admitted visitor."""

    token_id: str
    event_id: str
    visitor_id: str
    scope: tuple[str, ...] | None
    expires_at: float
    kid: str
    rank: int | None = None  # the queue place admitted (frees a max_active slot once used)
    device: str | None = None  # bound: only the holder of the device secret with this sha256 may use it

    def held_by(self, device_secret: str | None) -> bool:
        """Whether the presenter proves possession (always true for an unbound admission)."""
        if self.device is None:
            return True
        return device_secret is not None and hmac.compare_digest(device_hash(device_secret), self.device)

    def allows_site(self, site_id: str) -> bool:
        return self.scope is None or site_id in self.scope


def device_hash(secret: str) -> str:
    """What a client sends instead of its device secret (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class _KeyedSigner(Signer):
    """itsdangerous's signer (HMAC with ``digest_method``, its default algorithm: the codec never
    passes another), its derived keys and their HMAC key set-up made once per key instead of per
    token: the same signatures byte for byte (tests pin tokens), a few µs less per token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._macs: dict[bytes, hmac.HMAC] = {}

    def _mac(self, secret_key: bytes) -> hmac.HMAC:
        mac = self._macs.get(secret_key)
        if mac is None:
            mac = self._macs[secret_key] = hmac.new(self.derive_key(secret_key), digestmod=self.digest_method)
        return mac.copy()

    def get_signature(self, value: str | bytes) -> bytes:
        mac = self._mac(self.secret_keys[-1])
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        try:
            raw = base64_decode(sig)
        except Exception:
            return False
        value = want_bytes(value)
        for secret_key in reversed(self.secret_keys):
            mac = self._mac(secret_key)
            mac.update(value)
            if hmac.compare_digest(raw, mac.digest()):
                return True
        return False


class _Serializer(URLSafeSerializer):
    """A URLSafeSerializer that builds its signer once (itsdangerous builds one per token)."""

    default_signer = _KeyedSigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signer = super().make_signer(self.salt)

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is None or want_bytes(salt) == self.salt:
            return self._signer
        return super().make_signer(salt)


class TokenCodec:
    """Signs with the last configured key, verifies under any. Safe to share across tasks."""

    def __init__(
        self,
        keys: Sequence[tuple[str, str]],
        *,
        leeway_s: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._keys = dict(keys)
        self._signing_kid = keys[-1][0]
        self._leeway_s = leeway_s
        self._clock = clock
        self._serializers: dict[tuple[str, str], URLSafeSerializer] = {}

    def _serializer(self, kid: str, salt: str) -> URLSafeSerializer:
        key = (kid, salt)
        serializer = self._serializers.get(key)
        if serializer is None:
            serializer = _Serializer(self._keys[kid], salt=salt, signer_kwargs={"digest_method": hashlib.sha256})
            self._serializers[key] = serializer
        return serializer

    def _sign(self, salt: str, payload: dict[str, Any]) -> str:
        kid = self._signing_kid
        return f"{kid}.{self._serializer(kid, salt).dumps(payload)}"

    def _load(self, token: str, salt: str) -> tuple[str, dict[str, Any]]:
        """Return (kid, payload); raise TokenInvalid with the failure reason."""
        if not isinstance(token, str) or len(token) > 4096:
            raise TokenInvalid(reason="malformed")
        kid, sep, body = token.partition(".")
        if not sep or not body:
            raise TokenInvalid(reason="malformed")
        if kid not in self._keys:
            raise TokenInvalid(reason="unknown_kid")
        try:
            payload = self._serializer(kid, salt).loads(body)
        except BadSignature:
            raise TokenInvalid(reason="signature") from None
        if not isinstance(payload, dict):
            raise TokenInvalid(reason="malformed")
        return kid, payload

    # --- tickets ------------------------------------------------------------------------------

    def sign_ticket(self, ticket: Ticket) -> str:
        claims: dict[str, Any] = {
            "e": ticket.event_id,
            "v": ticket.visitor_id,
            "n": ticket.seq,
            "iat": int(ticket.issued_at),
        }
        if ticket.device is not None:
            claims["dk"] = ticket.device
        return self._sign(TICKET_SALT, claims)

    def read_ticket(self, token: str) -> Ticket:
        try:
            _, p = self._load(token, TICKET_SALT)
            device = p.get("dk")
            return Ticket(
                event_id=str(p["e"]),
                visitor_id=str(p["v"]),
                seq=int(p["n"]),
                issued_at=float(p["iat"]),
                device=None if device is None else str(device),
            )
        except (TokenInvalid, KeyError, TypeError, ValueError):
            raise TicketInvalid("the queue ticket is missing or invalid") from None

    # --- proof-of-work challenges ------------------------------------------------------------

    def sign_challenge(self, claims: dict[str, Any]) -> str:
        return self._sign(CHALLENGE_SALT, claims)

    def read_challenge(self, token: str) -> dict[str, Any]:
        """The claims of a challenge this service issued; raises TokenInvalid otherwise."""
        return self._load(token, CHALLENGE_SALT)[1]

    # --- admission tokens ---------------------------------------------------------------------

    def sign_admission(
        self,
        *,
        event_id: str,
        visitor_id: str,
        scope: Sequence[str] | None,
        expires_at: float,
        rank: int | None = None,
        device: str | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "jti": visitor_id,
            "e": event_id,
            "sub": visitor_id,
            "scope": None if scope is None else list(scope),
            "exp": int(expires_at),
        }
        if rank is not None:
            claims["rk"] = rank
        if device is not None:
            claims["cnf"] = device
        return self._sign(ADMISSION_SALT, claims)

    def verify_admission(self, token: str) -> Admission:
        """Verify signature (any configured kid), type and expiry (with clock-skew leeway).

        Raises TokenInvalid (``reason`` in malformed, unknown_kid, signature, type) or TokenExpired.
        """
        try:
            kid, p = self._load(token, ADMISSION_SALT)
        except TokenInvalid as exc:
            if exc.reason == "signature" and self._is_ticket(token):
                raise TokenInvalid("a queue ticket is not an admission token", reason="type") from None
            raise
        try:
            scope = p["scope"]
            admission = Admission(
                token_id=str(p["jti"]),
                event_id=str(p["e"]),
                visitor_id=str(p["sub"]),
                scope=None if scope is None else tuple(str(s) for s in scope),
                expires_at=float(p["exp"]),
                kid=kid,
                rank=None if p.get("rk") is None else int(p["rk"]),
                device=None if p.get("cnf") is None else str(p["cnf"]),
            )
        except (KeyError, TypeError, ValueError):
            raise TokenInvalid(reason="malformed") from None
        if self._clock() > admission.expires_at + self._leeway_s:
            raise TokenExpired("the admission token has expired; rejoin the queue", event_id=admission.event_id)
        return admission

    # --- waitlist claim links ----------------------------------------------------------------

    def sign_claim(self, *, offer_id: str, entry_id: str, expires_at: datetime) -> str:
        return self._sign(CLAIM_SALT, {"o": offer_id, "n": entry_id, "exp": int(expires_at.timestamp())})

    def read_claim(self, token: str) -> dict[str, Any]:
        """The claims of a claim link this service signed; TokenInvalid / TokenExpired otherwise.
        (The offer's own expiry in the database is the authority; this only refuses stale links early.)"""
        _, claims = self._load(token, CLAIM_SALT)
        if not isinstance(claims.get("o"), str) or not isinstance(claims.get("n"), str):
            raise TokenInvalid(reason="malformed")
        if self._clock() > float(claims.get("exp", 0)) + self._leeway_s:
            raise TokenExpired("this claim link has expired")
        return claims

    # --- invite links (waitingroom/invites.py) ---------------------------------------------------

    def sign_invite(self, *, invite_id: str, event_id: str, expires_at: datetime) -> str:
        return self._sign(INVITE_SALT, {"i": invite_id, "e": event_id, "exp": int(expires_at.timestamp())})

    def read_invite(self, token: str) -> dict[str, Any]:
        """The claims of an invite this service signed (``i``: invite id, ``e``: event, ``exp``);
        TokenInvalid / TokenExpired otherwise. The database (used, revoked) is the authority beyond that."""
        _, claims = self._load(token, INVITE_SALT)
        if not isinstance(claims.get("i"), str) or not isinstance(claims.get("e"), str):
            raise TokenInvalid(reason="malformed")
        if not isinstance(claims.get("exp"), int) or self._clock() > claims["exp"] + self._leeway_s:
            raise TokenExpired("this invite has expired")
        return claims

    # --- reminder opt-out links (List-Unsubscribe, booking_worker/dispatcher.py) ----------------------

    def sign_unsubscribe(self, appointment_id: str) -> str:
        """A link's token that opts the person of ``appointment_id`` out of reminders; no expiry (an
        old reminder's link must keep working), and good for nothing else."""
        return self._sign(UNSUBSCRIBE_SALT, {"a": appointment_id})

    def read_unsubscribe(self, token: str) -> str:
        """The appointment id an unsubscribe token names; TokenInvalid otherwise."""
        _, claims = self._load(token, UNSUBSCRIBE_SALT)
        if not isinstance(claims.get("a"), str):
            raise TokenInvalid(reason="malformed")
        return str(claims["a"])

    def _is_ticket(self, token: str) -> bool:
        try:
            self._load(token, TICKET_SALT)
        except TokenInvalid:
            return False
        return True
