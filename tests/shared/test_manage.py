"""Manage credentials: one appointment, until it is over, under any configured key, nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.errors import TokenExpired, TokenInvalid
from shared.manage import CREDENTIAL_PARAM, MANAGE_PATH, manage_url, verify_manage_credential
from shared.settings import Settings
from shared.tokens import TokenCodec

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
OLD = ("k1", "an-old-secret-of-enough-length")
NEW = ("k2", "a-new-secret-of-enough-length!")


def _settings(*keys: tuple[str, str]) -> Settings:
    return Settings(secret_keys=keys, public_api_url="https://book.example.org/")


def _credential(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"https://book.example.org{MANAGE_PATH}"
    return parse_qs(parts.query)[CREDENTIAL_PARAM][0]


def test_a_credential_names_its_appointment_until_the_end() -> None:
    settings = _settings(OLD)
    appointment = uuid.uuid4()
    credential = _credential(manage_url(settings, appointment, NOW + timedelta(hours=1)))
    assert verify_manage_credential(settings, credential, NOW) == appointment
    assert verify_manage_credential(settings, credential, NOW + timedelta(hours=1)) == appointment
    with pytest.raises(TokenExpired):
        verify_manage_credential(settings, credential, NOW + timedelta(hours=1, seconds=1))


def test_rotation_keeps_old_credentials_working_and_signs_with_the_new_key() -> None:
    appointment = uuid.uuid4()
    old = _credential(manage_url(_settings(OLD), appointment, NOW + timedelta(days=1)))
    rotated = _settings(OLD, NEW)
    assert verify_manage_credential(rotated, old, NOW) == appointment
    new = _credential(manage_url(rotated, appointment, NOW + timedelta(days=1)))
    assert new.startswith("k2.")
    with pytest.raises(TokenInvalid) as refused:
        verify_manage_credential(_settings(NEW), old, NOW)  # the old key was retired
    assert refused.value.reason == "unknown_kid"


def _flip_last(credential: str) -> str:
    return credential[:-2] + ("AA" if credential[-2:] != "AA" else "BB")


@pytest.mark.parametrize("mangle", [_flip_last, lambda c: "x" + c, lambda c: "", lambda c: c.replace(".", "", 1)])
def test_tampered_credentials_are_refused(mangle: Callable[[str], str]) -> None:
    settings = _settings(OLD)
    credential = _credential(manage_url(settings, uuid.uuid4(), NOW + timedelta(days=1)))
    with pytest.raises(TokenInvalid):
        verify_manage_credential(settings, mangle(credential), NOW)


def test_other_tokens_are_not_manage_credentials_nor_the_reverse() -> None:
    settings = _settings(OLD)
    codec = TokenCodec([OLD])
    admission = codec.sign_admission(event_id="e", visitor_id="v", scope=None, expires_at=NOW.timestamp() + 3600)
    claim = codec.sign_claim(offer_id=str(uuid.uuid4()), entry_id="n", expires_at=NOW + timedelta(days=1))
    for token in (admission, claim):
        with pytest.raises(TokenInvalid):
            verify_manage_credential(settings, token, NOW)
    credential = _credential(manage_url(settings, uuid.uuid4(), NOW + timedelta(days=1)))
    with pytest.raises(TokenInvalid):
        codec.verify_admission(credential)
