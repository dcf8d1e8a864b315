"""The waitlist claim link opens a page: the offer, a Claim button, then the booking form, then the
new appointment's manage page; only for the person who waited, and only with the page's own token."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from shared.persons import PersonVault, person_key_of
from shared.settings import Settings
from shared.tokens import TokenCodec
from tests.admission.test_claims import join_waitlist
from tests.helpers import admission_token, book, person, running_worker, seed_typed_slots

WAITING, STRANGER = 2, 3
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def offered(api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool) -> tuple[str, str]:
    """A full day with person WAITING on its waitlist; the first seat frees. (its slot, the offer's claim_url)"""
    first, second = await seed_typed_slots(pool, count=2, capacity=1)
    owner = admission_token(codec)
    status, mine = await book(api, owner, 1, slot_id=first)
    assert status == 201 and (await book(api, admission_token(codec), 4, slot_id=second))[0] == 201
    assert await join_waitlist(api, codec, pool, first, WAITING) == 201
    assert (await api.delete(f"/api/v1/appointments/{mine['appointment_id']}", headers=auth(owner))).status == 200
    (sealed,) = await pool.fetch("SELECT sealed FROM notifications WHERE kind = 'waitlist_offer'")
    claim_url = str(PersonVault(person_key_of(settings)).open(bytes(sealed["sealed"]))["claim_url"])
    return first, claim_url


def form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "lang": "en", **fields}


async def test_the_claim_link_opens_a_page_that_leads_to_booking(
    api: TestClient, settings: Settings, codec: TokenCodec, pool: asyncpg.Pool
) -> None:
    async with running_worker(settings):
        slot, claim_url = await offered(api, settings, codec, pool)
        assert claim_url.startswith(f"{settings.api_url}/claim?c=")
        parts = urlsplit(claim_url)
        resp = await api.get(f"{parts.path}?{parts.query}", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/claim"  # the token leaves the address bar
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        set_cookie = resp.headers["Set-Cookie"]
        assert "Path=/claim" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie

        offer = await api.get("/claim")  # the client's jar holds the cookie from here on
        text = await offer.text()
        assert offer.status == 200 and "A place for you" in text and "Claim this place" in text and "Site" in text
        csrf = CSRF.search(text)
        assert csrf is not None
        # a form without the page's token claims nothing
        assert (await api.post("/claim", data=form("0" * 64))).status == 401
        assert await pool.fetchval("SELECT status FROM waitlist_offers") == "open"

        booking = await api.post("/claim", data=form(csrf.group(1)))
        booking_text = await booking.text()
        assert booking.status == 200 and 'action="/claim/book"' in booking_text
        assert await pool.fetchval("SELECT status FROM waitlist_offers") == "claimed"

        # the link passed on: a stranger's details are refused, the hold stays
        stranger = {k: v for k, v in person(STRANGER).items()}
        resp = await api.post("/claim/book", data=form(csrf.group(1), **stranger), allow_redirects=False)
        assert resp.status == 403
        resp = await api.post("/claim/book", data=form(csrf.group(1), **person(WAITING)), allow_redirects=False)
        assert resp.status == 303, await resp.text()
        manage = resp.headers["Location"]
    assert manage.startswith(f"{settings.api_url}/manage?c=")
    booked = await pool.fetchrow("SELECT appointment_id, slot_id, status FROM appointments WHERE status = 'confirmed'"
                                 " AND slot_id = $1", uuid.UUID(slot))  # fmt: skip
    assert booked is not None
    page = await api.get(f"/manage?{urlsplit(manage).query}")  # follows to the clean manage page
    assert page.status == 200 and page.url.path == f"/manage/{booked['appointment_id']}"


async def test_a_forged_or_missing_claim_is_refused(api: TestClient) -> None:
    resp = await api.get("/claim", params={"c": "k1.forged"}, allow_redirects=False)
    assert resp.status == 401 and "sg_claim" not in resp.cookies and "not valid" in await resp.text()
    assert (await api.get("/claim")).status == 401
