"""Optional proof of work on join: make each place cost a browser about a second of hashing.

``GET /api/v1/events/{id}/challenge`` hands out a signed, short-lived challenge (stateless: nothing
is stored until it is used). The visitor finds a ``solution`` such that
``sha256(challenge + ":" + solution)`` starts with ``difficulty`` zero bits (the page does this in a
Web Worker) and sends both with the join. Checking costs the server one hash, one signature check
and one ``SET NX`` on the challenge's nonce, which makes every solution single-use (replays are
refused). Hashcash-style; hand-written because it is a dozen lines and no library fits aiohttp.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from redis.asyncio import Redis

from shared.errors import Code, SpecificRefusal, TokenInvalid
from shared.keys import pow_used_key
from shared.tokens import TokenCodec

CHALLENGE_TTL_S = 120


class ProofRejected(SpecificRefusal):
    code = Code.POW_INVALID

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte:
            return bits + 8 - byte.bit_length()
        bits += 8
    return bits


def solves(challenge: str, solution: str, difficulty: int) -> bool:
    digest = hashlib.sha256(f"{challenge}:{solution}".encode()).digest()
    return leading_zero_bits(digest) >= difficulty


def solve(challenge: str, difficulty: int) -> str:
    """What the page's worker does (used by tests and load generators)."""
    n = 0
    while not solves(challenge, str(n), difficulty):
        n += 1
    return str(n)


def issue(codec: TokenCodec, event_id: str, difficulty: int, now: float) -> dict[str, Any]:
    token = codec.sign_challenge({"e": event_id, "n": secrets.token_urlsafe(12), "exp": int(now) + CHALLENGE_TTL_S})
    return {"challenge": token, "difficulty": difficulty, "expires_in_s": CHALLENGE_TTL_S}


async def check(
    codec: TokenCodec, redis: Redis, event_id: str, difficulty: int, proof: dict[str, str] | None, now: float
) -> None:
    """Accept a proof once; raise ProofRejected (reason: missing, signature, event, expired, work, replay)."""
    if not proof or not proof.get("challenge") or proof.get("solution") is None:
        raise ProofRejected(
            "this queue needs a proof of work: GET the event's challenge and solve it", reason="missing"
        )
    challenge, solution = proof["challenge"], proof["solution"]
    try:
        claims = codec.read_challenge(challenge)
    except TokenInvalid:
        raise ProofRejected("the challenge is not one of ours", reason="signature") from None
    if claims.get("e") != event_id:
        raise ProofRejected("the challenge belongs to another event", reason="event")
    if now > float(claims.get("exp", 0)):
        raise ProofRejected("the challenge has expired; get a new one", reason="expired")
    if not solves(challenge, solution, difficulty):
        raise ProofRejected("the solution does not solve the challenge", reason="work")
    if not await redis.set(pow_used_key(claims["n"]), "1", nx=True, ex=CHALLENGE_TTL_S + 60):
        raise ProofRejected("this challenge was already used", reason="replay")
