"""Token codec: rotation, tampering, wrong key, expiry with leeway, token types."""

from __future__ import annotations

import hashlib

import pytest
from itsdangerous import URLSafeSerializer

from shared.errors import TicketInvalid, TokenExpired, TokenInvalid
from shared.tokens import TICKET_SALT, Ticket, TokenCodec
from tests.helpers import FakeClock

OLD = ("old", "old-secret-0123456789")
NEW = ("new", "new-secret-0123456789")


def sign(codec: TokenCodec, clock: FakeClock, ttl: float = 60, scope: list[str] | None = None) -> str:
    return codec.sign_admission(event_id="ev", visitor_id="v1", scope=scope, expires_at=clock.now + ttl)


def test_rotation_old_kid_verifies_new_kid_signs(clock: FakeClock) -> None:
    before = TokenCodec([OLD], clock=clock)
    after = TokenCodec([OLD, NEW], clock=clock)
    old_token = sign(before, clock)
    assert after.verify_admission(old_token).kid == "old"
    new_token = sign(after, clock)
    assert new_token.startswith("new.")
    assert after.verify_admission(new_token).kid == "new"
    with pytest.raises(TokenInvalid) as info:  # a verifier that dropped the old key
        TokenCodec([NEW], clock=clock).verify_admission(old_token)
    assert info.value.reason == "unknown_kid"


def test_tampered_and_wrong_key(clock: FakeClock) -> None:
    codec = TokenCodec([OLD], clock=clock)
    token = sign(codec, clock)
    kid, _, body = token.partition(".")
    tampered = f"{kid}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}"
    for bad in (tampered, f"{kid}.{body}x"):
        with pytest.raises(TokenInvalid) as info:
            codec.verify_admission(bad)
        assert info.value.reason == "signature"
    impostor = TokenCodec([("old", "another-secret-0123456789")], clock=clock)
    with pytest.raises(TokenInvalid) as info:
        codec.verify_admission(sign(impostor, clock))
    assert info.value.reason == "signature"
    for junk in ("", "nodot", "old.", "x" * 5000):
        with pytest.raises(TokenInvalid):
            codec.verify_admission(junk)


def test_expiry_has_leeway(clock: FakeClock) -> None:
    codec = TokenCodec([OLD], clock=clock, leeway_s=5)
    token = sign(codec, clock, ttl=60)
    clock.advance(64)
    assert codec.verify_admission(token).event_id == "ev"
    clock.advance(2)
    with pytest.raises(TokenExpired):
        codec.verify_admission(token)


def test_a_ticket_is_not_an_admission_token_and_vice_versa(clock: FakeClock) -> None:
    codec = TokenCodec([OLD], clock=clock)
    ticket = codec.sign_ticket(Ticket("ev", "v1", 7, clock.now))
    assert codec.read_ticket(ticket).seq == 7
    with pytest.raises(TokenInvalid) as info:
        codec.verify_admission(ticket)
    assert info.value.reason == "type"
    with pytest.raises(TicketInvalid):
        codec.read_ticket(sign(codec, clock))


def test_scope(clock: FakeClock) -> None:
    codec = TokenCodec([OLD], clock=clock)
    scoped = codec.verify_admission(sign(codec, clock, scope=["a"]))
    assert scoped.allows_site("a") and not scoped.allows_site("b")
    assert codec.verify_admission(sign(codec, clock)).allows_site("anything")


def test_the_codec_signs_and_verifies_as_plain_itsdangerous_with_its_signers_made_once(clock: FakeClock) -> None:
    """The codec keeps each serializer's signer and HMAC key state (shared/tokens.py ``_KeyedSigner``):
    every token, the hundredth as the first, is what itsdangerous itself makes, and tokens made by
    itsdangerous (tickets already issued) verify; a bad one after good ones is still refused."""
    plain = {
        kid: URLSafeSerializer(secret, salt=TICKET_SALT, signer_kwargs={"digest_method": hashlib.sha256})
        for kid, secret in (OLD, NEW)
    }
    codec = TokenCodec([OLD, NEW], clock=clock)
    for n in range(1, 101):
        ticket = Ticket(event_id="ev", visitor_id=f"v{n}", seq=n, issued_at=clock.now)
        claims = {"e": "ev", "v": f"v{n}", "n": n, "iat": int(clock.now)}
        assert codec.sign_ticket(ticket) == f"new.{plain['new'].dumps(claims)}"
        for kid in ("old", "new"):
            assert codec.read_ticket(f"{kid}.{plain[kid].dumps(claims)}") == ticket
    body = plain["new"].dumps({"e": "ev", "v": "v1", "n": 1, "iat": int(clock.now)})
    for forged in (f"old.{body}", f"new.{body[:-1]}{'A' if body[-1] != 'A' else 'B'}"):
        with pytest.raises(TicketInvalid):
            codec.read_ticket(forged)
