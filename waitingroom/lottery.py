"""The pre-queue lottery: a uniformly random, auditable order for everyone who joined early.

At ``opens_at`` the queue fixes ``size`` (how many joined before it) and a random ``seed``. Arrival
number ``n <= size`` then gets rank ``permute(n)``, a keyed pseudo-random permutation of 1..size:
a 12-round Feistel network over the next even power of two with HMAC-SHA256 rounds, cycle-walked into
range. Any process (and any auditor with the seed) computes the same rank for a ticket in a few
microseconds, without storing the order: it is a bijection, so no two visitors share a rank and
nobody is left out. Arrival numbers above ``size`` keep their order behind the draw.

Hand-written because no maintained library offers a small-domain keyed permutation; the construction
is the textbook one (Black & Rogaway's cycle-walking Feistel cipher), with extra rounds because
the domain can be tiny.
"""

from __future__ import annotations

import hashlib
import hmac

# 12 rounds: with 4, tiny pre-queues (2-bit halves) get measurably non-uniform ranks (chi-square
# 14 at 2 degrees of freedom over 20,000 draws); 8 is borderline; 12 and 16 test uniform.
ROUNDS = 12
ALGORITHM = "feistel12-hmac-sha256-cyclewalk; rank(n) = permute(n - 1) + 1 for n <= size"


class Lottery:
    def __init__(self, size: int, seed: str) -> None:
        self.size = size
        self.seed = seed  # hex; published with the draw so anyone can recompute the order
        bits = max(2, (max(size, 1) - 1).bit_length())
        self._half = (bits + bits % 2) // 2
        self._mask = (1 << self._half) - 1
        self._key = bytes.fromhex(seed)

    def _round(self, value: int, i: int) -> int:
        digest = hmac.new(self._key, f"{i}:{value}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") & self._mask

    def _encrypt(self, x: int) -> int:
        left, right = x >> self._half, x & self._mask
        for i in range(ROUNDS):
            left, right = right, left ^ self._round(right, i)
        return (left << self._half) | right

    def rank(self, seq: int) -> int:
        """The queue position of arrival number ``seq`` after the draw."""
        if seq > self.size:
            return seq
        x = self._encrypt(seq - 1)
        while x >= self.size:  # cycle-walking: stays a bijection on 0..size-1
            x = self._encrypt(x)
        return x + 1

    def order(self, offset: int = 0, limit: int | None = None) -> list[int]:
        """Arrival numbers in drawn order (rank offset+1 onwards), for audits."""
        by_rank = sorted(range(1, self.size + 1), key=self.rank)
        return by_rank[offset : None if limit is None else offset + limit]
