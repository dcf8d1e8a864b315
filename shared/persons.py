"""What we keep of a person: a keyed hash of the id number, and the rest encrypted.

``person_ref`` (HMAC-SHA256 of the id number's canonical form) is what uniqueness is enforced on;
the id number itself is never stored. Name, email and birth date travel and rest only as Fernet
ciphertext (cryptography), so neither job arguments in Redis nor database rows reveal them.

One number, one person: every written form of an id number maps to one canonical form
(:func:`canonical_id_number`), and a canonical form the program's pattern does not accept is
refused, never kept as a person of its own. So a number typed with full-width or mathematical
letters, another script's digits, spaces or dashes is the same person as its plain form, and a
look-alike that is not the same character (a Cyrillic A, U+0410, for a Latin A) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet

from shared.errors import ValidationFailed
from shared.settings import DEFAULT_ID_NUMBER_PATTERN, Settings

# Ignored anywhere in an id number (after NFKC), with white space and dashes: what people type
# between groups of characters.
_SEPARATORS = frozenset("./")
_NOT_AN_ID = "not a valid id number (spaces, -, . and / are ignored; the program says which characters count)"


def canonical_id_number(written: str) -> str:
    """The one form of an id number, however it was written. Never refuses (the pattern does).

    1. Unicode NFKC, then case folding, then NFKC again (Unicode's NFKC_Casefold, near enough):
       full-width, mathematical, circled and other compatibility letters and digits become their
       plain forms, and case stops mattering.
    2. Separators go: white space, dash punctuation (``-``, U+2010, the en dash...), ``.`` and ``/``.
    3. Every decimal digit of any script (Arabic-Indic U+0663, Devanagari U+0969...) becomes its
       ASCII digit: NFKC leaves those alone, but they are the same number.
    4. Upper case, so an ASCII number keeps the form it always had (``ab-12 3`` → ``AB123``) and
       refs stored before this normalisation still match.

    Letters of other scripts stay what they are (a Cyrillic A is not a Latin A), so an
    ASCII-only pattern refuses them. Hand-written: no library maps other scripts' digits to ASCII
    (``int()`` does, for a whole string of digits only), and the steps are the policy itself.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", written).casefold())
    kept: list[str] = []
    for ch in folded:
        if ch.isspace() or ch in _SEPARATORS or unicodedata.category(ch) == "Pd":
            continue
        digit = unicodedata.decimal(ch, None)
        kept.append(ch if digit is None else str(digit))
    # NFKC once more: dropping a separator can leave a letter next to a combining mark it composes with.
    return unicodedata.normalize("NFKC", "".join(kept).upper())


def person_key_of(settings: Settings) -> bytes:
    """The configured person key, or one derived from the *oldest* signing key (stable across rotation)."""
    if settings.person_key:
        return settings.person_key.encode()
    settings.require_keys()
    return hashlib.sha256(b"surgegate.person-key:" + settings.secret_keys[0][1].encode()).digest()


class PersonVault:
    """Keyed refs of id numbers (only those the pattern accepts) and sealed personal data."""

    def __init__(self, key: bytes, id_pattern: str = DEFAULT_ID_NUMBER_PATTERN) -> None:
        # Matched against the whole canonical form (upper case, no separators).
        self._id_pattern = re.compile(id_pattern)
        self._ref_key = hmac.new(key, b"person_ref", hashlib.sha256).digest()
        # For keyed digests of requests that contain a person's data (idempotency checks).
        self.hash_key = hmac.new(key, b"request_hash", hashlib.sha256).digest()
        fernet_key = hmac.new(key, b"person_enc", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(fernet_key))

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonVault:
        return cls(person_key_of(settings), settings.id_number_pattern)

    def canonical_id(self, id_number: str, *, field: Sequence[str] = ("id_number",)) -> str:
        """The id number's canonical form; ValidationFailed naming ``field`` (never the value) when
        the pattern does not accept it."""
        canonical = canonical_id_number(id_number)
        if not self._id_pattern.fullmatch(canonical):
            name = ".".join(field)
            raise ValidationFailed(f"{name} is not a valid id number", [{"loc": list(field), "msg": _NOT_AN_ID}])
        return canonical

    def ref(self, id_number: str, *, field: Sequence[str] = ("id_number",)) -> bytes:
        """Every written form of one id number -> the same 32-byte ref (see :func:`canonical_id_number`).
        Raises ValidationFailed naming ``field`` for a number the pattern does not accept."""
        canonical = self.canonical_id(id_number, field=field)
        return hmac.new(self._ref_key, canonical.encode(), hashlib.sha256).digest()

    def seal(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode())

    def open(self, token: bytes) -> dict[str, Any]:
        value = json.loads(self._fernet.decrypt(token))
        assert isinstance(value, dict)
        return value
