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

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

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


def seal_keys_of(settings: Settings) -> tuple[bytes, ...]:
    """The keys that seal person details, the one that seals now first, then every other that opens.

    ``SURGEGATE_PERSON_SEAL_KEYS`` lists them oldest first, as ``SURGEGATE_SECRET_KEYS`` does (the
    last seals, all open). Unset, the person key seals, as it did before the list existed, so
    ``kid:<the SURGEGATE_PERSON_KEY value>`` in the list opens what was sealed before. A person key
    derived from a signing key (SURGEGATE_PERSON_KEY never set) cannot be written in the list, so it
    always opens, never seals once the list is set.
    """
    if not settings.person_seal_keys:
        return (person_key_of(settings),)
    listed = tuple(secret.encode() for _, secret in reversed(settings.person_seal_keys))
    return listed if settings.person_key else (*listed, person_key_of(settings))


class PersonVault:
    """Keyed refs of id numbers (only those the pattern accepts) and sealed personal data."""

    def __init__(
        self, key: bytes, id_pattern: str = DEFAULT_ID_NUMBER_PATTERN, seal_keys: Sequence[bytes] = ()
    ) -> None:
        """``key`` keys the refs and request digests and is never rotated: a new one would make
        every stored person_ref a stranger. ``seal_keys`` encrypt (the first) and decrypt (all);
        none given, ``key`` does (see :func:`seal_keys_of`)."""
        # Matched against the whole canonical form (upper case, no separators).
        self._id_pattern = re.compile(id_pattern)
        self._ref_key = hmac.new(key, b"person_ref", hashlib.sha256).digest()
        # For keyed digests of requests that contain a person's data (idempotency checks).
        self.hash_key = hmac.new(key, b"request_hash", hashlib.sha256).digest()
        fernets = [Fernet(_fernet_key(k)) for k in (seal_keys or (key,))]
        self._current = fernets[0]
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonVault:
        return cls(person_key_of(settings), settings.id_number_pattern, seal_keys_of(settings))

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
        """The details ``token`` seals, under any of the seal keys; cryptography's InvalidToken if
        none of them sealed it (or it was altered)."""
        value = json.loads(self._fernet.decrypt(token))
        assert isinstance(value, dict)
        return value

    def reseal(self, token: bytes) -> bytes | None:
        """``token`` sealed again under the current key, or None if it already is (nothing to write).
        InvalidToken if no key opens it."""
        try:
            self._current.decrypt(token)
        except InvalidToken:
            return self._fernet.rotate(token)
        return None


def _fernet_key(secret: bytes) -> bytes:
    return base64.urlsafe_b64encode(hmac.new(secret, b"person_enc", hashlib.sha256).digest())
