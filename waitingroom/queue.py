"""An event's queue state in Redis: arrivals and the serving position.

Arrivals get consecutive numbers (``joined``). The serving position ``served`` is a real number
that advances at ``rate`` per second while the event is open and not paused, and never passes
``joined`` (so an empty queue banks no credit for a later burst). A visitor with number ``n`` is
admitted once ``floor(served) >= n``: FIFO by construction, and over T seconds exactly
``floor(rate * T)`` (+-1) positions are admitted while enough visitors wait. Each advance that
reaches new ranks records when it did: the moment their admissions begin (:mod:`waitingroom.admissions`).

All state changes happen in one Lua script, so every edge process computes the same position from
the same Redis hash; the rate and pause flag live there too, which is why a change made through any
edge applies to all of them at once. The clock is passed in by the caller (tests inject one).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared import keys
from shared.limits import Charge
from waitingroom.lottery import Lottery

_SCRIPT = """
local key = KEYS[1]
-- KEYS[1..5]: the event's keys. A join batch (mode 'join') adds, after them, the places of its persons
-- and (single Redis only: a cluster keeps every key of a script in the event's slot) its clients'
-- join buckets; ARGV[15] is the number of joins, then five arguments per join (see the join loop).
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local h = redis.call('HMGET', key, 'joined', 'served', 't', 'rate', 'paused', 'opens', 'pre', 'seed', 'abandoned')
local joined = tonumber(h[1]) or 0
local served = tonumber(h[2]) or 0
local t = tonumber(h[3]) or now
local rate = tonumber(h[4])
local paused = h[5]
local opens = tonumber(h[6])
local pre = tonumber(h[7])
local seed = h[8]
local abandoned = tonumber(h[9]) or 0
local restored = 0
if rate == nil then
  -- no state: a new event, or a Redis that lost its data. Take the configuration the caller read
  -- from the database and resume from where the caller knows the queue at least stood.
  rate = tonumber(ARGV[3]); paused = ARGV[4]; opens = tonumber(ARGV[5])
  joined = tonumber(ARGV[6]); served = tonumber(ARGV[7]); t = now
  if joined > 0 then restored = 1 end
  if ARGV[9] ~= '' then
    pre = tonumber(ARGV[9]); seed = ARGV[10]
  elseif restored == 1 and (opens == 0 or now >= opens) then
    pre = 0; seed = ARGV[8]  -- opened, but no draw on record: keep arrival order, never reshuffle
  end
end
-- The pre-queue lottery, drawn exactly once per queue: the first call at or after opens_at (or the
-- very first call, for a queue without opens_at) fixes who joined before it (pre) and the seed of
-- their random order. Everyone numbered above pre stays in arrival order behind them.
if pre == nil and (opens == 0 or now >= opens) then
  pre = joined; seed = ARGV[8]
end
local before = math.floor(served)
local skipped = 0
local from = math.max(t, opens)
-- max_active: admissions handed out and neither used (a booking removes them) nor expired.
local max_active = tonumber(ARGV[13])
local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)  -- lapsed unused
if lapsed > 0 then redis.call('HINCRBY', key, 'lapsed', lapsed) end
local free = math.huge
if max_active then free = max_active - redis.call('ZCARD', KEYS[4]) end
if paused ~= '1' and now > from then
  local target = math.min(joined, served + rate * (now - from))
  do
    -- Walk the ranks the credit reaches; every admission is recorded in KEYS[4] until it is used
    -- (the booking worker removes it) or lapses. Abandonment: a rank whose holder stopped polling (deadline
    -- in KEYS[2] passed) is passed over without spending an admission; a rank with no deadline on
    -- record counts as live. max_active: stop at the first live rank there is no room for (the
    -- credit is dropped, so freeing room later does not release a burst).
    local r = before + 1
    while r <= math.floor(target) and r - before <= 20000 do
      local deadline = ARGV[12] == '1' and redis.call('ZSCORE', KEYS[2], r)
      if deadline and tonumber(deadline) < now then
        redis.call('SADD', KEYS[3], r)
        skipped = skipped + 1
        target = math.min(joined, target + 1)
      else
        if free <= 0 then
          target = r - 1
          break
        end
        free = free - 1
        redis.call('ZADD', KEYS[4], now + tonumber(ARGV[14]), r)
      end
      if deadline then redis.call('ZREM', KEYS[2], r) end
      r = r + 1
    end
    if r <= math.floor(target) then target = r - 1 end  -- walked as far as one call may
    abandoned = abandoned + skipped
  end
  served = target
  -- When each rank was reached (waitingroom/admissions.py): one member per run of new ranks.
  local reached = math.floor(served)
  if reached > before then
    redis.call('ZADD', KEYS[5], reached, string.format('%d:%.17g', before + 1, now))
  end
end
if now > t then t = now end
-- A join batch, in arrival order: each join first takes one request from its client's bucket (when
-- folded in here: the arithmetic of shared/limits.py's take, one bucket), then takes the next number,
-- unless its person (a keyed hash) already holds one. One argument per join (fewer to encode):
-- "visitor place bucket rate burst", place and bucket indexes into KEYS (0: none), the bucket's rate
-- per second and burst.
local out = {}
if mode == 'join' then
  for i = 1, tonumber(ARGV[15]) or 0 do
    local new_visitor, pk, bk, rate, burst = string.match(ARGV[15 + i], '^(%S*) (%d+) (%d+) (%S+) (%S+)$')
    pk, bk = tonumber(pk), tonumber(bk)
    local refused = ''
    if bk > 0 then
      rate, burst = tonumber(rate), tonumber(burst)
      local b = redis.call('HMGET', KEYS[bk], 'tokens', 't')
      local have, bt = tonumber(b[1]) or burst, tonumber(b[2]) or now
      if now > bt then have = math.min(burst, have + (now - bt) * rate); bt = now end
      if have < 1 then refused = string.format('%.17g', (1 - have) / rate) else have = have - 1 end
      redis.call('HSET', KEYS[bk], 'tokens', string.format('%.17g', have), 't', string.format('%.17g', bt))
      redis.call('PEXPIRE', KEYS[bk], math.ceil(burst / rate * 1000) + 1000)
    end
    local seq, visitor = '0', ''
    if refused == '' then
      local held = pk > 0 and redis.call('HMGET', KEYS[pk], 'seq', 'visitor') or {false, false}
      if held[1] then
        seq, visitor = held[1], held[2]
      else
        joined = joined + 1
        seq, visitor = tostring(joined), new_visitor
        if pk > 0 then
          redis.call('HSET', KEYS[pk], 'seq', seq, 'visitor', visitor)
          redis.call('EXPIRE', KEYS[pk], 30 * 86400)
        end
      end
    end
    out[#out + 1] = seq; out[#out + 1] = visitor; out[#out + 1] = refused
  end
end
if mode == 'configure' then
  rate = tonumber(ARGV[3]); paused = ARGV[4]; opens = tonumber(ARGV[5])
end
local fmt = '%.17g'
redis.call('HSET', key, 'joined', tostring(joined), 'served', string.format(fmt, served),
  't', string.format(fmt, t), 'rate', string.format(fmt, rate), 'paused', paused,
  'opens', string.format(fmt, opens), 'abandoned', tostring(abandoned))
if pre ~= nil then redis.call('HSET', key, 'pre', tostring(pre), 'seed', seed) end
local reply = {tostring(joined), string.format(fmt, served), tostring(math.floor(served) - before - skipped),
  string.format(fmt, rate), paused, restored, pre and tostring(pre) or '', seed or '',
  tostring(abandoned), tostring(skipped), tostring(lapsed), tostring(redis.call('ZCARD', KEYS[4]))}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# An admission counts as out a little longer than its token lives: a margin for edges whose clocks
# differ by a little (the token's clock starts at the same moment, see waitingroom/admissions.py).
ACTIVE_GRACE_S = 30


@dataclass(frozen=True)
class QueueState:
    joined: int
    served: float
    newly_admitted: int
    rate_per_s: float
    paused: bool
    restored: bool = False  # this call found no state and resumed from the caller's restore point
    lottery: Lottery | None = None  # the pre-queue draw, once opens_at has passed
    abandoned: int = 0  # ranks passed over because their holders stopped polling (in total)
    newly_abandoned: int = 0
    newly_lapsed: int = 0  # admissions that lapsed unused during this call
    active: int = 0  # admissions out and unused after this call

    @property
    def passed(self) -> int:
        """The serving position: every rank up to here is admitted or was abandoned."""
        return int(self.served)

    @property
    def admitted(self) -> int:
        return self.passed - self.abandoned

    @property
    def waiting(self) -> int:
        return self.joined - self.passed


@dataclass(frozen=True)
class QueueConfig:
    rate_per_s: float
    paused: bool
    opens_at: float  # epoch seconds; 0 when open from the start
    # Used only when Redis holds no state: arrivals numbered so far (new numbers start above it)
    # and the serving position to resume from (at least as far as anyone was admitted).
    restore_joined: int = 0
    restore_served: float = 0.0
    restore_lottery: Lottery | None = None
    # Pass over ranks whose holders stopped polling (their deadlines are kept by note_alive).
    abandonment: bool = False
    # At most this many admissions out and unused at once (None: no cap); they count for the ttl.
    max_active: int | None = None
    admission_ttl_s: int = 900


@dataclass(frozen=True)
class Arrival:
    """One join of a batch: the new visitor id, the person's ref ("" for none) and, folded into the
    script, the client's join bucket (never on a cluster: the bucket's key is not in the event's slot)."""

    visitor: str
    person_ref: str = ""
    charge: Charge | None = None


@dataclass(frozen=True)
class Seat:
    """A join's outcome: its number and visitor id (a person's earlier ones if they held a place), or,
    refused by its bucket, ``retry_after_s`` (seconds) and no number (``seq`` 0)."""

    seq: int
    visitor: str
    retry_after_s: float | None = None


class QueueStore:
    """Atomic operations on an event's queue (its keys: :mod:`shared.keys`). Each is one Redis
    round trip."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_SCRIPT)
        # A single Redis (not a cluster): a script may touch keys outside the event's slot.
        self.single_node = not isinstance(redis, RedisCluster)

    async def note_alive(self, deadlines: dict[str, dict[int, float]]) -> None:
        """Record, per event, until when each rank's holder counts as present (one round trip for
        all events; a deadline only ever moves later)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, ranks in deadlines.items():
                if ranks:
                    pipe.zadd(keys.alive_key(event_id), {str(r): d for r, d in ranks.items()}, gt=True)
            await pipe.execute()

    def script_call(
        self,
        mode: str,
        event_id: str,
        now: float,
        config: QueueConfig,
        person_ref: str = "",
        visitor: str = "",
        *,
        arrivals: Sequence[Arrival] = (),
    ) -> tuple[list[str], list[str]]:
        """The script's (keys, args) for one call: what :meth:`_run` sends (and a bench pipelines).
        A join names its arrivals (in order), or one by ``visitor`` and ``person_ref``."""
        if mode == "join" and not arrivals:
            arrivals = (Arrival(visitor, person_ref),)
        script_keys = [
            keys.queue_key(event_id),
            keys.alive_key(event_id),
            keys.abandoned_key(event_id),
            keys.active_admissions_key(event_id),
            keys.admission_runs_key(event_id),
        ]
        args = [
            mode,
            repr(now),
            repr(config.rate_per_s),
            "1" if config.paused else "0",
            repr(config.opens_at),
            str(config.restore_joined),
            repr(config.restore_served),
            secrets.token_hex(16),  # the lottery seed, used once: by the call that draws
            "" if config.restore_lottery is None else str(config.restore_lottery.size),
            "" if config.restore_lottery is None else config.restore_lottery.seed,
            "",  # unused (a single join's visitor, before joins came in batches)
            "1" if config.abandonment else "0",
            "" if config.max_active is None else str(config.max_active),
            str(config.admission_ttl_s + ACTIVE_GRACE_S),
            str(len(arrivals)),
        ]
        for arrival in arrivals:
            if " " in arrival.visitor:
                raise ValueError("a visitor id has no spaces")  # the script splits its argument on them
            place = bucket = 0
            if arrival.person_ref:
                script_keys.append(keys.person_place_key(event_id, arrival.person_ref))
                place = len(script_keys)
            rate, burst = "0", "0"
            if arrival.charge is not None:
                script_keys.append(arrival.charge[0])
                bucket = len(script_keys)
                rate, burst = repr(arrival.charge[1].per_second), str(arrival.charge[1].burst)
            args.append(f"{arrival.visitor} {place} {bucket} {rate} {burst}")  # one argument: cheaper to send
        return script_keys, args

    @property
    def script_sha(self) -> str:
        return str(self._script.sha)

    async def _run(
        self, mode: str, event_id: str, now: float, config: QueueConfig, arrivals: Sequence[Arrival] = ()
    ) -> tuple[QueueState, list[Seat]]:
        script_keys, args = self.script_call(mode, event_id, now, config, arrivals=arrivals)
        reply = await self._script(keys=script_keys, args=args)
        joined, served, new, rate, paused, restored, pre, seed, abandoned, skipped, lapsed, active = reply[:12]
        state = QueueState(
            joined=int(joined),
            served=float(served),
            newly_admitted=int(new),
            rate_per_s=float(rate),
            paused=paused in (b"1", "1"),
            restored=bool(int(restored)),
            lottery=Lottery(int(pre), _text(seed)) if _text(pre) else None,
            abandoned=int(abandoned),
            newly_abandoned=int(skipped),
            newly_lapsed=int(lapsed),
            active=int(active),
        )
        seats = [
            Seat(int(seq), _text(visitor), float(refused) if _text(refused) else None)
            for seq, visitor, refused in zip(reply[12::3], reply[13::3], reply[14::3], strict=True)
        ]
        return state, seats

    async def advance(self, event_id: str, now: float, config: QueueConfig) -> QueueState:
        """Move the serving position up to ``now``. ``config`` is used only if Redis has no state."""
        return (await self._run("advance", event_id, now, config))[0]

    async def join(
        self, event_id: str, now: float, config: QueueConfig, *, visitor: str, person_ref: str = ""
    ) -> tuple[QueueState, int, str]:
        """Advance to ``now``, then take the next arrival number for ``visitor``; returns (state,
        number, visitor). With ``person_ref``, a person who already holds a number gets it back
        (and its visitor id) instead: one place per person, decided atomically."""
        state, (seat,) = await self.join_many(event_id, now, config, [Arrival(visitor, person_ref)])
        return state, seat.seq, seat.visitor

    async def join_many(
        self, event_id: str, now: float, config: QueueConfig, arrivals: Sequence[Arrival]
    ) -> tuple[QueueState, list[Seat]]:
        """:meth:`join` for several arrivals in one script call (one round trip): numbered in the
        order given, each decided as if joined alone in that order. An arrival with a ``charge`` first
        takes one request from that bucket (a single Redis only; see :class:`Arrival`); refused, it
        takes no number (its seat says when to retry)."""
        return await self._run("join", event_id, now, config, arrivals)

    async def configure(self, event_id: str, now: float, config: QueueConfig) -> QueueState:
        """Advance under the old settings up to ``now``, then switch to ``config``."""
        return (await self._run("configure", event_id, now, config))[0]

    async def counts(self, event_id: str, now: float) -> tuple[int, int, list[float]]:
        """(admissions out and unused, admissions that lapsed unused, recent waits in seconds)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(keys.active_admissions_key(event_id), now, "+inf")
            pipe.hget(keys.queue_key(event_id), "lapsed")
            pipe.lrange(keys.waits_key(event_id), 0, -1)
            active, lapsed, waits = await pipe.execute()
        return int(active), int(lapsed or 0), [float(w) for w in waits]

    async def ping(self) -> None:
        await self.redis.ping()
