"""Invite links: signed, expiring, single-use passes past one event's queue, straight to admission.

An operator issues a batch (one link for one person, or many for a cohort) for one event; each link
carries a token signed with the project's keys under its own salt (``shared/tokens.py``: an invite
can never pass as a ticket or an admission, nor the other way round) naming the invite, the event
and the batch's expiry. Only the SHA-256 of each token is stored (``invites.token_hash``): the
tokens are shown once, at issue, and a database dump cannot be replayed as links.

Redeeming one is a single conditional UPDATE (``queries.REDEEM_INVITE``): of any number of concurrent
redemptions exactly one marks it used and gets an admission; the others are refused
``invite_used``. The admission is signed as the queue's are (the event's scope and
``admission_ttl_s``) and counts in ``max_active`` like a queue admission: its member in the
event's active set is ``-serial`` (no queue rank is negative), carried in the token as the rank, so
the booking worker frees it once booked and it lapses unused like any other. An invite does not
wait for room under ``max_active``: the operator's policy let its holder in, so it may briefly
push the admissions out above the cap, and the queue admits nobody until there is room again.

Issue, redemption and revocation are audited (``invites_issued``, ``invite_used``,
``invites_revoked``); no person's data is involved anywhere (a link names nobody).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared import keys
from shared.errors import Code, EventClosed, NotFound, Refused, TokenExpired, TokenInvalid, ValidationFailed
from shared.metrics import Metrics
from shared.queries import INSERT_AUDIT
from shared.staff import Actor, audit_admin
from shared.tokens import TokenCodec
from waitingroom.events import Event
from waitingroom.queries import (
    INSERT_INVITE,
    INSERT_INVITE_BATCH,
    INVITE_BATCH_OF,
    INVITE_COUNTS,
    INVITE_STATE,
    REDEEM_INVITE,
    REVOKE_INVITE,
    REVOKE_INVITE_BATCH,
)
from waitingroom.queue import ACTIVE_GRACE_S
from waitingroom.room import EventNotOpen

MAX_BATCH = 10_000


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Issued:
    batch_id: uuid.UUID
    expires_at: datetime
    tokens: list[str]


@dataclass(frozen=True)
class Redeemed:
    invite_id: uuid.UUID
    admission_token: str
    expires_at: float


async def issue(
    pool: asyncpg.Pool,
    codec: TokenCodec,
    metrics: Metrics,
    event: Event,
    *,
    count: int,
    expires_at: datetime,
    label: str,
    actor: Actor,
    now: float,
) -> Issued:
    """Create a batch of ``count`` invites for ``event`` and return their tokens (shown only here).
    One transaction, audited ``invites_issued`` (the count, the label and the expiry)."""
    if not 1 <= count <= MAX_BATCH:
        raise ValidationFailed(f"count must be between 1 and {MAX_BATCH}")
    if expires_at.tzinfo is None:
        raise ValidationFailed("expires_at needs a time zone (e.g. 2030-01-01T00:00:00Z)")
    if expires_at.timestamp() <= now:
        raise ValidationFailed("expires_at must be in the future")
    batch_id = uuid.uuid4()
    rows: list[tuple[uuid.UUID, uuid.UUID, bytes]] = []
    tokens: list[str] = []
    for _ in range(count):
        invite_id = uuid.uuid4()
        token = codec.sign_invite(invite_id=str(invite_id), event_id=event.event_id, expires_at=expires_at)
        tokens.append(token)
        rows.append((invite_id, batch_id, token_hash(token)))
    created = datetime.fromtimestamp(now, UTC)
    async with pool.acquire() as con, con.transaction():
        await con.execute(INSERT_INVITE_BATCH, batch_id, event.event_id, label, expires_at, created,
                          actor.audit_name())  # fmt: skip
        await con.executemany(INSERT_INVITE, rows)
        await audit_admin(con, actor, "invites_issued", event_id=event.event_id,
                          detail={"batch": str(batch_id), "count": count, "label": label,
                                  "expires_at": expires_at.isoformat()})  # fmt: skip
    metrics.invites.labels(event.event_id, "issued").inc(count)
    return Issued(batch_id, expires_at, tokens)


async def counts(pool: asyncpg.Pool, event_id: str, now: float) -> list[dict[str, Any]]:
    """Per batch of the event: issued, used, revoked, expired (unused past expiry) and open."""
    async with pool.acquire() as con:
        rows = await con.fetch(INVITE_COUNTS, event_id, datetime.fromtimestamp(now, UTC))
    return [
        {
            "batch": str(r["batch_id"]),
            "label": r["label"],
            "expires_at": r["expires_at"].isoformat(),
            "created_at": r["created_at"].isoformat(),
            "created_by": r["created_by"],
            **{k: r[k] for k in ("issued", "used", "revoked", "expired", "open")},
        }
        for r in rows
    ]


async def revoke(
    pool: asyncpg.Pool, metrics: Metrics, event_id: str, target: uuid.UUID, *, actor: Actor, now: float
) -> tuple[uuid.UUID, int]:
    """Revoke a batch (``target`` is a batch id) or one invite (an invite id) of the event: every one
    of its invites not used yet can no longer be redeemed. Returns (the batch, how many were revoked
    now); safe to repeat (then 0). Audited ``invites_revoked``. NotFound if neither exists for the event."""
    at = datetime.fromtimestamp(now, UTC)
    async with pool.acquire() as con, con.transaction():
        batch = await con.fetchval(INVITE_BATCH_OF, event_id, target)
        if batch is None:
            raise NotFound("no such invite batch or invite for this event")
        one = batch != target
        status = await con.execute(REVOKE_INVITE if one else REVOKE_INVITE_BATCH, event_id, target, at)
        revoked = int(status.split()[-1])
        detail: dict[str, Any] = {"batch": str(batch), "revoked": revoked}
        if one:
            detail["invite"] = str(target)
        await audit_admin(con, actor, "invites_revoked", event_id=event_id, detail=detail)
    if revoked:
        metrics.invites.labels(event_id, "revoked").inc(revoked)
    return batch, revoked


async def redeem(
    pool: asyncpg.Pool,
    redis: Redis,
    codec: TokenCodec,
    metrics: Metrics,
    event: Event,
    token: str,
    *,
    now: float,
    device: str | None = None,
) -> Redeemed:
    """Use the invite ``token`` for ``event``: mark it used (exactly once, whatever the concurrency)
    and return an admission token. Refused ``invite_invalid`` (tampered, unknown, another event's),
    ``invite_expired``, ``invite_revoked`` or ``invite_used`` (``event_not_open`` / ``event_closed``
    outside the event's open phase); each outcome is counted. ``device``: the
    SHA-256 of the browser's device secret, to bind the admission to it (as a join does)."""
    try:
        result = await _redeem(pool, redis, codec, event, token, now, device)
    except Refused as exc:
        metrics.invites.labels(event.event_id, str(exc.code)).inc()
        raise
    metrics.invites.labels(event.event_id, "redeemed").inc()
    return result


async def _redeem(
    pool: asyncpg.Pool, redis: Redis, codec: TokenCodec, event: Event, token: str, now: float, device: str | None
) -> Redeemed:
    phase = event.phase(now)
    if phase == "closed":
        raise EventClosed(f"the queue for {event.event_id!r} has closed")
    if phase != "open":  # an invite skips the queue, not the opening time
        assert event.opens_at is not None
        raise EventNotOpen(f"the event opens at {event.opens_at.isoformat()}")
    try:
        claims = codec.read_invite(token)
    except TokenExpired:
        raise Refused(Code.INVITE_EXPIRED) from None
    except TokenInvalid:
        raise Refused(Code.INVITE_INVALID) from None
    if claims["e"] != event.event_id:
        raise Refused(Code.INVITE_INVALID, "this invite link is for another event")
    digest = token_hash(token)
    at = datetime.fromtimestamp(now, UTC)
    expires_at = now + event.admission_ttl_s
    async with pool.acquire() as con, con.transaction():
        row = await mark_used(con, digest, event.event_id, at)
        if row is None:
            raise await _why_not(con, digest, at)
        visitor = f"invite-{row['invite_id']}"
        await con.execute(INSERT_AUDIT, "invite_used", event.event_id, None, None, None, visitor,
                          {"batch": str(row["batch_id"]), "invite": str(row["invite_id"])})  # fmt: skip
        rank = -int(row["serial"])
        admission = codec.sign_admission(
            event_id=event.event_id,
            visitor_id=visitor,
            scope=event.site_ids,
            expires_at=expires_at,
            rank=rank,
            device=device,
        )
        # Counted in max_active before the commit makes the admission real (a crash in between
        # leaves a member that lapses with the admission's lifetime, never an uncounted admission).
        await redis.zadd(keys.active_admissions_key(event.event_id), {str(rank): expires_at + ACTIVE_GRACE_S})
    return Redeemed(row["invite_id"], admission, expires_at)


async def mark_used(con: asyncpg.Connection, digest: bytes, event_id: str, at: datetime) -> asyncpg.Record | None:
    """The atomic mark (one conditional UPDATE): the invite's row if this call used it, else None."""
    row: asyncpg.Record | None = await con.fetchrow(REDEEM_INVITE, digest, event_id, at)
    return row


async def _why_not(con: asyncpg.Connection, digest: bytes, at: datetime) -> Refused:
    row = await con.fetchrow(INVITE_STATE, digest)
    if row is None:
        return Refused(Code.INVITE_INVALID)
    if row["used_at"] is not None:
        return Refused(Code.INVITE_USED)
    if row["revoked_at"] is not None:
        return Refused(Code.INVITE_REVOKED)
    if row["expires_at"] <= at:
        return Refused(Code.INVITE_EXPIRED)
    return Refused(Code.INVITE_INVALID)
