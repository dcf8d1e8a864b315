"""Waitlist: people waiting for a seat at a site, day and appointment type, and the offers they get.

When a seat frees (a cancel, a reschedule away, a lapsed hold or offer), it is offered to the first N
waiting entries (operators' rebooking claims first, then by joining time) through a signed claim link
valid for a window. The offer holds the seat, so nobody else takes it meanwhile. The first recipient
to claim gets an admission and a hold on the seat and books it through the normal booking path; the
others are told it is taken; an offer nobody claims lapses and the seat passes on to the next N.

Everything here runs inside the caller's transaction; notifications are queued in the same one, and
so are the audit rows: ``waitlist_joined`` and ``waitlist_left`` (actor: the admission token's id, or
``system`` when a closure puts someone first in line), ``offer_made`` and ``offer_lapsed``
(``system``), ``offer_claimed`` (the claimant's admission id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared import notifications, queries
from shared.booking import local_iso, utc_iso
from shared.errors import Code, NotFound, Refused
from shared.notifications import NotificationKind
from shared.persons import PersonVault
from shared.seats import SlotState, lock_slots, place_hold, read_slots, slot_problem
from shared.settings import Settings
from shared.statuses import OfferStatus, WaitlistEntryStatus
from shared.tokens import TokenCodec


@dataclass(frozen=True)
class WaitlistPolicy:
    offer_size: int = 3
    offer_window: timedelta = timedelta(hours=2)
    hold_ttl: timedelta = timedelta(minutes=5)
    claim_admission_ttl: timedelta = timedelta(minutes=30)
    # Where a claim is sent (POST {"claim": token}); the outbox's sender turns it into a message.
    claim_endpoint: str = "/api/v1/waitlist/claims"
    # The page a person opens (GET <claim_page>?c=<token>, admission/claim_page.py).
    claim_page: str = "/claim"

    @classmethod
    def from_settings(cls, settings: Settings) -> WaitlistPolicy:
        return cls(
            offer_size=settings.waitlist_offer_size,
            offer_window=timedelta(seconds=settings.waitlist_offer_window_s),
            hold_ttl=timedelta(seconds=settings.hold_ttl_s),
            claim_endpoint=f"{settings.api_url}/api/v1/waitlist/claims",
            claim_page=f"{settings.api_url}/claim",
        )


@dataclass(frozen=True)
class Claimed:
    admission_token: str
    hold_id: uuid.UUID
    slot: SlotState
    expires_at: datetime
    event_id: str


class Waitlist:
    def __init__(self, codec: TokenCodec, vault: PersonVault, policy: WaitlistPolicy) -> None:
        self.codec = codec
        self.vault = vault
        self.policy = policy

    async def notify(
        self,
        con: asyncpg.Connection,
        kind: str,
        sealed_person: bytes,
        details: dict[str, Any],
        *,
        appointment_id: uuid.UUID | None = None,
        entry_id: uuid.UUID | None = None,
    ) -> None:
        """Queue a message to a person by each channel they gave (address from their sealed record,
        all of it encrypted; see :mod:`shared.notifications`)."""
        contact = self.vault.open(sealed_person)
        await notifications.queue_for_person(
            con, self.vault, contact, kind=NotificationKind(kind), details=details, appointment_id=appointment_id,
            entry_id=entry_id,
        )  # fmt: skip

    async def offer_seat(self, con: asyncpg.Connection, slot_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
        """Offer one free seat of the slot to the next recipients; None if there is no free seat, it
        cannot be booked now, or nobody waits for it."""
        state = (await lock_slots(con, [slot_id], now)).get(slot_id)
        if state is None or state.type_id is None or state.free < 1 or slot_problem(state, now) is not None:
            return None
        local_day = state.starts_at.astimezone(ZoneInfo(state.timezone)).date()
        recipients = await con.fetch(
            queries.RECIPIENTS, state.site_id, state.type_id, local_day, slot_id, now, self.policy.offer_size
        )
        if not recipients:
            return None
        offer_id = uuid.uuid4()
        expires = min(now + self.policy.offer_window, state.starts_at)
        await con.execute(queries.INSERT_OFFER, offer_id, slot_id, expires)
        events = {r["event_id"] for r in recipients}
        await con.execute(
            queries.INSERT_AUDIT, "offer_made", events.pop() if len(events) == 1 else None, slot_id, None, None,
            "system", {"offer_id": str(offer_id), "entries": [str(r["entry_id"]) for r in recipients],
                       "expires_at": expires.isoformat()},
        )  # fmt: skip
        await place_hold(con, token_id=None, event_id=None, offer_id=offer_id, slot_id=slot_id, expires_at=expires,
                         now=now)  # fmt: skip
        for r in recipients:
            await con.execute(queries.INSERT_OFFER_RECIPIENT, offer_id, r["entry_id"])
            token = self.codec.sign_claim(offer_id=str(offer_id), entry_id=str(r["entry_id"]), expires_at=expires)
            await self.notify(
                con, "waitlist_offer", bytes(r["person_sealed"]),
                {"claim_endpoint": self.policy.claim_endpoint, "claim_token": token, "expires_at": utc_iso(expires),
                 "claim_url": f"{self.policy.claim_page}?c={token}",
                 "site_id": state.site_id, "starts_at": utc_iso(state.starts_at),
                 "local_starts_at": local_iso(state.starts_at, state.timezone)},
                entry_id=r["entry_id"],
            )  # fmt: skip
        return offer_id

    async def offer_freed(self, con: asyncpg.Connection, slot_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        """Offer every free seat of the slot that someone waits for (after a seat came back)."""
        offers: list[uuid.UUID] = []
        while (offer := await self.offer_seat(con, slot_id, now)) is not None:
            offers.append(offer)
        return offers

    async def pass_on(self, con: asyncpg.Connection, now: datetime, limit: int = 200) -> int:
        """Lapse expired offers (their seats return) and offer every free seat someone waits for.
        Safe to run at any time and from several workers at once. Returns offers made."""
        lapsed_rows = await con.fetch(queries.LAPSE_OFFERS, now)
        lapsed = [row["offer_id"] for row in lapsed_rows]
        for row in lapsed_rows:
            await con.execute(
                queries.INSERT_AUDIT, "offer_lapsed", None, row["slot_id"], None, None, "system",
                {"offer_id": str(row["offer_id"])},
            )  # fmt: skip
        if lapsed:
            await con.execute(queries.EXPIRE_OFFER_HOLDS, lapsed, now)
        made = 0
        for row in await con.fetch(queries.WANTED_SLOTS, now, limit):
            made += len(await self.offer_freed(con, row["slot_id"], now))
        return made

    async def claim(self, con: asyncpg.Connection, token: str, now: datetime) -> Claimed:
        """Turn an offer into a hold for the claimant, with a fresh admission to book it. The admission
        is recorded with the entry and books only for the entry's person (shared/attempts.py refuses
        anyone else claim_person_mismatch), so a claim link cannot be handed or sold on.
        Raises Refused: offer_taken (someone was first), offer_expired, hold_expired, not_found."""
        claim = self.codec.read_claim(token)
        offer_id, entry_id = uuid.UUID(claim["o"]), uuid.UUID(claim["n"])
        offer = await con.fetchrow(queries.LOCK_OFFER, offer_id)
        entry = await con.fetchrow(queries.LOCK_OFFER_ENTRY, offer_id, entry_id)
        if offer is None or entry is None:
            raise NotFound("no such offer")
        # The claimant's admission is derived from the offer and entry: claiming twice (a double
        # click, a retry) gives back the same admission and hold instead of "taken".
        token_id = uuid.uuid5(offer_id, str(entry_id)).hex
        if offer["status"] == OfferStatus.CLAIMED and offer["claimed_by"] == entry_id:
            row = await con.fetchrow(queries.LIVE_HOLD_OF_ADMISSION, token_id, now)
            if row is None:
                raise Refused(Code.HOLD_EXPIRED, "your hold on this seat has lapsed")
            slot = (await read_slots(con, [offer["slot_id"]], now))[offer["slot_id"]]
            return Claimed(self._admission(entry["event_id"], token_id, slot, now), row["hold_id"], slot,
                           row["expires_at"], entry["event_id"])  # fmt: skip
        if offer["status"] == OfferStatus.CLAIMED or entry["status"] != WaitlistEntryStatus.WAITING:
            raise Refused(Code.OFFER_TAKEN)
        if offer["status"] != OfferStatus.OPEN or offer["expires_at"] <= now:
            raise Refused(Code.OFFER_EXPIRED)
        await con.execute(queries.CLAIM_OFFER_HOLD, offer_id, now)
        expires = now + self.policy.hold_ttl
        hold = await place_hold(
            con, token_id=token_id, event_id=entry["event_id"], slot_id=offer["slot_id"], expires_at=expires, now=now,
            check_window=False,
        )  # fmt: skip
        await con.execute(queries.MARK_OFFER_CLAIMED, offer_id, entry_id)
        await con.execute(queries.MARK_ENTRY_CLAIMED, entry_id, now, token_id)
        await con.execute(
            queries.INSERT_AUDIT, "offer_claimed", entry["event_id"], offer["slot_id"], None, None, token_id,
            {"offer_id": str(offer_id), "entry_id": str(entry_id), "hold_id": str(hold.hold_id)},
        )  # fmt: skip
        others = await con.fetch(queries.OTHER_RECIPIENTS, offer_id, entry_id)
        for other in others:
            await self.notify(
                con, "waitlist_offer_taken", bytes(other["person_sealed"]), {}, entry_id=other["entry_id"]
            )
        admission = self._admission(entry["event_id"], token_id, hold.slot, now)
        return Claimed(admission, hold.hold_id, hold.slot, expires, entry["event_id"])

    def _admission(self, event_id: str, token_id: str, slot: SlotState, now: datetime) -> str:
        return self.codec.sign_admission(
            event_id=event_id,
            visitor_id=token_id,
            scope=[slot.site_id],
            expires_at=(now + self.policy.claim_admission_ttl).timestamp(),
        )

    async def join(
        self,
        con: asyncpg.Connection,
        *,
        event_id: str,
        site_id: str,
        type_id: str,
        day: date | None,
        person_ref: bytes,
        person_sealed: bytes,
        token_id: str | None,
        now: datetime,
        priority: int = 1,
        require_full: bool = True,
    ) -> dict[str, Any]:
        """Add (or find) the person's entry; Refused seats_available when a seat is free that day."""
        if require_full and day is not None and await con.fetchval(queries.FREE_ON_DAY, site_id, type_id, day, now):
            raise Refused(Code.SEATS_AVAILABLE)
        entry_id = uuid.uuid4()
        row = await con.fetchrow(
            queries.INSERT_ENTRY,
            entry_id, event_id, site_id, type_id, day, priority, person_ref, person_sealed, token_id, now,
        )  # fmt: skip
        if row is None:
            row = await con.fetchrow(queries.WAITING_ENTRY, site_id, type_id, day, person_ref)
            if row is not None and priority < row["priority"]:
                await con.execute(queries.RAISE_ENTRY_PRIORITY, row["entry_id"], priority)
        else:
            await con.execute(
                queries.INSERT_AUDIT, "waitlist_joined", event_id, None, None, None, token_id or "system",
                {"entry_id": str(row["entry_id"]), "site_id": site_id, "type_id": type_id,
                 "day": day.isoformat() if day else None, "priority": priority},
            )  # fmt: skip
        ahead = await con.fetchval(
            queries.ENTRIES_AHEAD,
            site_id,
            type_id,
            day,
            priority,
            row["joined_at"],
        )
        return {"entry_id": str(row["entry_id"]), "position": int(ahead) + 1}

    async def join_as_admission(
        self,
        con: asyncpg.Connection,
        *,
        event_id: str,
        site_id: str,
        type_id: str,
        day: date,
        person_ref: bytes,
        person_sealed: bytes,
        token_id: str,
        now: datetime,
    ) -> dict[str, Any]:
        """A person joins for a full day: not_found for an unknown site or type, seats_available when
        the day still has a free seat; joining again finds the same entry."""
        if not await con.fetchval(queries.SITE_AND_TYPE_EXIST, site_id, type_id):
            raise NotFound("no such site or appointment type")
        return await self.join(
            con, event_id=event_id, site_id=site_id, type_id=type_id, day=day, person_ref=person_ref,
            person_sealed=person_sealed, token_id=token_id, now=now,
        )  # fmt: skip

    async def leave(self, con: asyncpg.Connection, entry_id: uuid.UUID, token_id: str) -> WaitlistEntryStatus:
        """Leave the admission's entry (harmless when it already ended); not_found for anyone else's."""
        row = await con.fetchrow(queries.LEAVE_ENTRY, entry_id, token_id)
        if row is None:
            raise NotFound("no such waitlist entry")
        if row["ended_now"] and row["status"] == WaitlistEntryStatus.LEFT:
            await con.execute(
                queries.INSERT_AUDIT, "waitlist_left", row["event_id"], None, None, None, token_id,
                {"entry_id": str(entry_id)},
            )  # fmt: skip
        return WaitlistEntryStatus(row["status"])
