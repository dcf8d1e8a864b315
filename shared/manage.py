"""Manage credentials: the signed link that brings a person back to their one appointment.

A manage credential is ``<kid>.<itsdangerous payload>`` like every token of :mod:`shared.tokens`
(same keys, same rotation: the last configured key signs, all verify), under its own salt, so it can
never pass as an admission token, a ticket or a claim link, nor they as it. It names one appointment
and an expiry (the end of the appointment): it lets whoever holds it read, cancel, reschedule and
download that appointment, and nothing else. Verification is offline; the database (is the
appointment still confirmed?) is the authority beyond that.

The credential travels in a URL only on the first hop (``manage_url``): the manage page trades it for
an HttpOnly cookie and redirects to a clean address (:mod:`admission.manage`). Apps send it as
``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg

from shared import queries
from shared.errors import TokenExpired, TokenInvalid
from shared.notifications import NotificationKind, queue_for_person
from shared.persons import PersonVault
from shared.settings import Settings
from shared.tokens import TokenCodec

MANAGE_SALT = "surgegate.manage.v1"
MANAGE_PATH = "/manage"  # the page (admission/manage.py); the first hop carries ?c=<credential>
CREDENTIAL_PARAM = "c"


class ManageCodec(TokenCodec):
    """A :class:`TokenCodec` that also signs and reads manage credentials."""

    def sign_manage(self, appointment_id: uuid.UUID, valid_until: datetime) -> str:
        return self._sign(MANAGE_SALT, {"a": str(appointment_id), "exp": int(valid_until.timestamp())})

    def read_manage(self, credential: str, now: datetime) -> uuid.UUID:
        """The appointment id; TokenInvalid (tampered, unknown kid, another kind of token) or TokenExpired."""
        _, claims = self._load(credential, MANAGE_SALT)
        appointment_id = _appointment_of(claims)
        expires = claims.get("exp")
        if not isinstance(expires, int) or isinstance(expires, bool):
            raise TokenInvalid(reason="malformed")
        if now.timestamp() > expires:
            raise TokenExpired("this manage link has expired: the appointment is over")
        return appointment_id


def _appointment_of(claims: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims["a"]))
    except (KeyError, ValueError):
        raise TokenInvalid(reason="malformed") from None


@lru_cache(maxsize=8)
def codec_for(keys: tuple[tuple[str, str], ...]) -> ManageCodec:
    """One codec per key set (its serializers are cached inside)."""
    return ManageCodec(keys)


def manage_credential(settings: Settings, appointment_id: uuid.UUID, valid_until: datetime) -> str:
    """A fresh credential for ``appointment_id``, valid until ``valid_until`` (the appointment's end)."""
    settings.require_keys()
    return codec_for(settings.secret_keys).sign_manage(appointment_id, valid_until)


def manage_url(settings: Settings, appointment_id: uuid.UUID, valid_until: datetime) -> str:
    """The absolute link of the manage page for ``appointment_id`` on the booking API's public URL,
    carrying a credential valid until ``valid_until``. Safe to call repeatedly (each call signs anew)."""
    credential = manage_credential(settings, appointment_id, valid_until)
    return f"{settings.api_url}{MANAGE_PATH}?{CREDENTIAL_PARAM}={credential}"


def verify_manage_credential(settings: Settings, credential: str, now: datetime) -> uuid.UUID:
    """The appointment a manage credential names. Raises TokenInvalid (``reason``: malformed,
    unknown_kid, signature) or TokenExpired. Says nothing about the appointment's current state."""
    settings.require_keys()
    return codec_for(settings.secret_keys).read_manage(credential, now)


# --- lost links -------------------------------------------------------------------------------------

MANAGE_LINK_KIND = NotificationKind.MANAGE_LINK  # the notification that carries a fresh link


def _same_email(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.strip().casefold().encode(), b.strip().casefold().encode())


async def resend_link(
    con: asyncpg.Connection,
    settings: Settings,
    vault: PersonVault,
    *,
    event_id: str,
    id_number: str,
    email: str,
) -> uuid.UUID | None:
    """Queue a ``manage_link`` notification with a fresh link when the (normalised) id number has an
    active appointment in ``event_id`` booked with ``email`` (compared with the sealed one, case and
    surrounding blanks aside); return its id, None otherwise. The caller tells nobody which: the same
    work (keyed hash, one query, one decryption) is done either way. Runs in the caller's transaction."""
    person_ref = vault.ref(id_number, field=("id_number",))
    row = await con.fetchrow(queries.ACTIVE_APPOINTMENT_OF_PERSON, event_id, person_ref)
    # Decrypt something in either case, so a match costs no more time than a miss before the insert.
    sealed = bytes(row["person_sealed"]) if row is not None else vault.seal({"email": ""})
    contact = vault.open(sealed)
    if row is None or not _same_email(contact.get("email"), email):
        return None
    appointment_id: uuid.UUID = row["appointment_id"]
    link = manage_url(settings, appointment_id, row["ends_at"])
    await queue_for_person(
        con, vault, contact, kind=NotificationKind.MANAGE_LINK, details={"manage_url": link},
        appointment_id=appointment_id, person_ref=person_ref,
    )  # fmt: skip
    return appointment_id
