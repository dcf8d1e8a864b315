"""What we keep of a person: a keyed hash of the id number, and the rest encrypted.

``person_ref`` (HMAC-SHA256 of the normalised id number) is what uniqueness is enforced on; the
id number itself is never stored. Name, email and birth date travel and rest only as Fernet
ciphertext (cryptography), so neither job arguments in Redis nor database rows reveal them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet

from shared.settings import Settings


def person_key_of(settings: Settings) -> bytes:
    """The configured person key, or one derived from the *oldest* signing key (stable across rotation)."""
    if settings.person_key:
        return settings.person_key.encode()
    settings.require_keys()
    return hashlib.sha256(b"surgegate.person-key:" + settings.secret_keys[0][1].encode()).digest()


class PersonVault:
    def __init__(self, key: bytes) -> None:
        self._ref_key = hmac.new(key, b"person_ref", hashlib.sha256).digest()
        # For keyed digests of requests that contain a person's data (idempotency checks).
        self.hash_key = hmac.new(key, b"request_hash", hashlib.sha256).digest()
        fernet_key = hmac.new(key, b"person_enc", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(fernet_key))

    @staticmethod
    def normalise_id(id_number: str) -> str:
        return "".join(ch for ch in id_number.upper() if ch.isalnum())

    def ref(self, id_number: str) -> bytes:
        """Same id number (ignoring case, spaces and dashes) -> same 32-byte ref."""
        return hmac.new(self._ref_key, self.normalise_id(id_number).encode(), hashlib.sha256).digest()

    def seal(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode())

    def open(self, token: bytes) -> dict[str, Any]:
        value = json.loads(self._fernet.decrypt(token))
        assert isinstance(value, dict)
        return value
