"""The fault suite's load: visitors holding admission tokens, each booking once, retrying as real clients do.

A :class:`Booker` sends ``POST /api/v1/appointments`` with one ``Idempotency-Key`` and keeps it until
it is told a final outcome: on a timeout, a dropped connection, a 503 or a 500 it sends the same
request again (honouring ``Retry-After``, at most 2 s); on 409 ``idempotency_in_progress`` too; on a
202 it polls the attempt's status URL. With several APIs it moves to the next one when its API does
not answer (what a load balancer does). What it was told last is what the reconciliation checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared.tokens import TokenCodec
from tests.helpers import TEST_KEYS, admission_token, person

PEOPLE_SHARE = 0.85  # distinct people per booker: the rest book again as someone who already tried
REQUEST_TIMEOUT_S = 10.0  # a client's patience for one answer (the API itself waits at most 2 s)
POLL_S = 0.5  # how often a client asks again


@dataclass
class Booker:
    token_id: str
    token: str
    person: dict[str, str]
    slot_id: str
    key: str  # Idempotency-Key, the same for every retry
    api: int  # index of the API it talks to (moves on when that one does not answer)
    told: str | None = None  # "confirmed" or "rejected": the final outcome it was told
    code: str | None = None  # the refusal's code
    appointment_id: str | None = None
    decided_at: float | None = None  # monotonic time it was told
    answers: Counter[str] = field(default_factory=Counter)  # "201", "202", "503", "409 slot_full", "error"...

    @property
    def decided(self) -> bool:
        return self.told is not None


def make_bookers(count: int, slot_ids: list[str], apis: int, seed: int) -> list[Booker]:
    """``count`` admissions of event ``ev``, each to book one random slot for one person; about
    15 % of them are a second admission of someone who books too (already_booked, or a race for it)."""
    rng = random.Random(seed)
    codec = TokenCodec(TEST_KEYS)
    people = max(1, round(count * PEOPLE_SHARE))
    bookers = []
    for i in range(count):
        visitor = uuid.UUID(int=rng.getrandbits(128)).hex
        who = i if i < people else rng.randrange(people)
        bookers.append(
            Booker(
                token_id=visitor,
                token=admission_token(codec, visitor, event_id="ev", ttl=3600),
                person=person(who),
                slot_id=rng.choice(slot_ids),
                key=f"fault-{i}",
                api=i % apis,
            )
        )
    rng.shuffle(bookers)
    return bookers


class Load:
    """Runs the bookers against ``apis`` (base URLs), each starting at its offset in ``spread_s``."""

    def __init__(self, apis: list[str], bookers: list[Booker], spread_s: float) -> None:
        self.apis = apis
        self.bookers = bookers
        self.spread_s = spread_s
        self.in_flight = Counter[int]()  # requests waiting for an answer, per API index
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Until every booker is decided or :attr:`stop` is set."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            step = self.spread_s / max(1, len(self.bookers))
            await asyncio.gather(*(self._book(session, b, i * step) for i, b in enumerate(self.bookers)))

    async def _pause(self, seconds: float, *, jitter: bool = True) -> None:
        """Sleep (between half and all of ``seconds`` with jitter); returns early when the load is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds * (random.uniform(0.5, 1.0) if jitter else 1.0))

    async def _request(self, session: aiohttp.ClientSession, b: Booker, method: str, path: str,
                       **kwargs: Any) -> tuple[int, dict[str, Any], float] | None:  # fmt: skip
        """(status, JSON body, Retry-After) or None when the API did not answer (then the booker moves on)."""
        api = b.api
        self.in_flight[api] += 1
        try:
            async with session.request(method, self.apis[api] + path, **kwargs) as resp:
                body = await resp.json(content_type=None) if resp.content_length != 0 else {}
                return resp.status, body if isinstance(body, dict) else {}, float(resp.headers.get("Retry-After", 0))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            b.answers["no answer"] += 1
            b.api = (api + 1) % len(self.apis)
            return None
        finally:
            self.in_flight[api] -= 1

    async def _book(self, session: aiohttp.ClientSession, b: Booker, offset: float) -> None:
        await self._pause(offset, jitter=False)
        headers = {"Authorization": f"Bearer {b.token}", "Idempotency-Key": b.key}
        body = {"slot_id": b.slot_id, "person": b.person}
        status_url: str | None = None
        while not self.stop.is_set():
            if status_url is None:
                answer = await self._request(session, b, "POST", "/api/v1/appointments", json=body, headers=headers)
            else:
                answer = await self._request(session, b, "GET", status_url, headers=headers)
            if answer is None:
                await self._pause(POLL_S)
                continue
            status, data, retry_after = answer
            what = f"poll {data.get('status') or status}" if status_url is not None and status == 200 else str(status)
            b.answers[f"{what} {data.get('code') or ''}".strip()] += 1
            if status_url is None and status == 202:
                status_url = data["status_url"]
            elif status in (200, 201) and data.get("status") in ("confirmed", "rejected"):
                self._decide(b, data["status"], data.get("code"), data.get("appointment_id"))
                return
            elif 400 <= status < 500 and status != 429 and data.get("code") != "idempotency_in_progress":
                self._decide(b, "rejected", data.get("code") or str(status), None)
                return
            # 200 pending, 202, 409 idempotency_in_progress, 429, 503, 500: ask again
            await self._pause(min(max(retry_after, POLL_S), 2.0))

    @staticmethod
    def _decide(b: Booker, told: str, code: str | None, appointment_id: str | None) -> None:
        b.told, b.code, b.appointment_id, b.decided_at = told, code, appointment_id, time.monotonic()
