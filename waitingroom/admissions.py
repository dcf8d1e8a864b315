"""When each admission began, so that an admission that expired is never issued again, whatever
Redis lost (README, "Admissions and Redis loss").

An admission lasts the event's ``admission_ttl_s`` from its *moment*: when the serving position
reached the visitor's rank. The queue's Lua script records that as it walks the ranks it reaches
(``keys.admission_runs_key``: one member per advance, exact to the tick), so the moment is a fact
about the rank, the same for every edge and every poll. Where an answer comes from, in order:

1. the visitor's pin in Redis (``keys.admitted_at_key``), written by their first admitted status;
2. the runs in Redis: the run that covers the rank gives its moment exactly;
3. if Redis knows neither (it lost its data, or those keys were deleted or evicted): PostgreSQL.
   With every queue checkpoint each edge saves a *mark*: at queue-clock time ``t`` the serving
   position still stood at ``p`` (``queue_marks``, the latest ``t`` per ``p``). No rank above ``p``
   had been reached at ``t``, so the latest mark below a rank is a moment no later than the true
   one: the earliest the rank can have been admitted. An expiry derived from it is never later than
   the one the visitor was given; at most one checkpoint interval earlier while checkpoints run. It
   is pinned in Redis at once, so later polls on any edge agree. With no mark below the rank on
   record nothing bounds the moment, and the admission counts as long expired.

Why this design: it is the simplest one that holds under any loss of Redis without putting
PostgreSQL on the admission path. A moment signed into what the visitor holds (a re-signed ticket)
does not survive a replay of their older ticket, so the server needs its own record anyway. Writing
each moment to PostgreSQL as it happens would stop admissions whenever PostgreSQL is away (edges
admit from Redis alone meanwhile), and writing them in batches leaves a window that a loss reopens.
Marks are one upsert per event per checkpoint, off the request path, and a lower bound is safe by
construction: it can only shorten an admission. The price: a moment used to be the visitor's first
admitted poll, which nothing durable can bound (a visitor who has not polled yet and one whose pin
was lost look the same); it is now the moment their turn came, which is also when ``max_active``
starts counting the admission. The edges' clocks are assumed to agree, as for the queue itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from shared import keys
from waitingroom.queries import LAST_MARK_BELOW

# A moment nothing on record can bound: the admission counts as expired long ago.
NOTHING_ON_RECORD = 0.0

_MOMENT = """
local rank = tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return {'passed', ''} end
local pinned = redis.call('GET', KEYS[1])
-- the run that reached the rank: the first member scored at or above it, if it starts at or below it
local reached = false
local run = redis.call('ZRANGE', KEYS[4], ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, 1)[1]
if run then
  local first, at = string.match(run, '^(%d+):(.+)$')
  if first and tonumber(first) <= rank then reached = at end
end
local at = reached
if pinned and (not at or tonumber(pinned) < tonumber(at)) then at = pinned end
if not at then
  if ARGV[4] == '' then return {'unknown', ''} end
  at = ARGV[4]  -- the caller's bound from PostgreSQL
end
if pinned then return {'known', at} end
redis.call('SET', KEYS[1], at, 'EX', ARGV[5])
if not reached then return {'known', at} end
-- first seen admitted: keep how long they waited (the latest 10,000, for the event's stats)
redis.call('LPUSH', KEYS[3], tostring(tonumber(ARGV[1]) - tonumber(ARGV[3])))
redis.call('LTRIM', KEYS[3], 0, 9999)
return {'first', at}
"""


@dataclass(frozen=True)
class Moment:
    """When an admission began (queue clock, epoch seconds); ``first_seen``: this status pinned it
    from the runs, the visitor's first as admitted (for the wait statistics; a moment taken from
    PostgreSQL never counts)."""

    at: float
    first_seen: bool = False


async def earliest_admission(con: asyncpg.Connection, event_id: str, rank: int) -> float | None:
    """The latest moment on record at which ``rank`` had not been reached yet (None: none on record)."""
    value = await con.fetchval(LAST_MARK_BELOW, event_id, rank)
    return None if value is None else float(value)


class Admissions:
    """The admission moments of every event's visitors. A lookup is one Redis round trip; one that
    Redis cannot answer costs one PostgreSQL query and one more round trip, once per visitor."""

    def __init__(self, redis: Redis, pool: asyncpg.Pool, *, pin_ttl_s: int) -> None:
        self.pool = pool
        self._pin_ttl_s = pin_ttl_s
        self._script = redis.register_script(_MOMENT)

    async def moment(self, event_id: str, visitor_id: str, rank: int, now: float, joined_at: float) -> Moment | None:
        """When the admission of ``visitor_id`` (holding ``rank``, which the serving position has
        passed) began; None if the rank was passed over because they had left. Pins the answer:
        safe to repeat, later calls return the same moment. Raises a backend error if Redis, or
        PostgreSQL when it is needed, cannot be reached: then nothing can be issued."""
        kind, at = await self._lookup(event_id, visitor_id, rank, now, joined_at, "")
        if kind == "unknown":
            earliest = await self.earliest(event_id, rank)
            bound = NOTHING_ON_RECORD if earliest is None else earliest
            kind, at = await self._lookup(event_id, visitor_id, rank, now, joined_at, repr(bound))
        if kind == "passed":
            return None
        return Moment(float(at), first_seen=kind == "first")

    async def earliest(self, event_id: str, rank: int) -> float | None:
        """The earliest moment ``rank`` can have been admitted, from PostgreSQL's marks."""
        async with self.pool.acquire() as con:
            return await earliest_admission(con, event_id, rank)

    async def _lookup(
        self, event_id: str, visitor_id: str, rank: int, now: float, joined_at: float, bound: str
    ) -> tuple[str, str]:
        kind, at = await self._script(
            keys=[
                keys.admitted_at_key(event_id, visitor_id),
                keys.abandoned_key(event_id),
                keys.waits_key(event_id),
                keys.admission_runs_key(event_id),
            ],
            args=[repr(now), str(rank), repr(joined_at), bound, str(self._pin_ttl_s)],
        )
        return _text(kind), _text(at)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
