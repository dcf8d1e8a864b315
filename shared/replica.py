"""Reads that may lag, served by a PostgreSQL streaming replica while it keeps up.

``SURGEGATE_DATABASE_REPLICA_URL`` names a hot standby; search (sites, slots, next available) and
reports read from it, so the primary's connections go to what must be exact: the booking
transaction, holds, admin reads ("read from the primary, never cached") and every write stay there.

Whether the replica may be used is checked at most once per ``check_every_s`` (one query on the
replica, bounded by a timeout); between checks the last verdict holds. It is used when it is a
standby and is behind by at most ``max_lag_s``:

* behind = 0 when it has replayed all the WAL it received (``pg_last_wal_receive_lsn() =
  pg_last_wal_replay_lsn()``): an idle primary sends nothing, and ``now() -
  pg_last_xact_replay_timestamp()`` grows without the replica missing anything;
* otherwise behind = ``now() - pg_last_xact_replay_timestamp()``: the commit time of the last
  transaction it applied (replay paused or slow: it only grows);
* unreachable, erroring, or no longer a standby (promoted): not used.

When not used, reads go to the primary, counted in ``surgegate_replica_fallback_total{reason}``
(``lag``, ``down``, ``not_standby``); reads the replica served count in
``surgegate_replica_reads_total``. A replica that dies between two checks fails the reads sent to it
for at most ``check_every_s`` (they answer 5xx, as with the primary away), then reads fall back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from shared.metrics import Metrics
from shared.queries import REPLICA_LAG

log = logging.getLogger("surgegate.replica")

CHECK_TIMEOUT_S = 1.0


class Reads:
    """Which pool serves reads that may lag: the replica while it keeps up, else the primary."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None,
        *,
        max_lag_s: float,
        metrics: Metrics,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.metrics = metrics
        self.check_every_s = check_every_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._unusable: str | None = "down"  # why not (None: usable), as of the last check
        self.behind_s: float | None = None

    async def pool(self) -> asyncpg.Pool:
        if self.replica is None:
            return self.primary
        now = self._clock()
        if now - self._checked_at >= self.check_every_s:
            self._checked_at = now  # before the await: concurrent reads keep the last verdict meanwhile
            self._unusable = await self._check(self.replica)
        if self._unusable is None:
            self.metrics.replica_reads.inc()
            return self.replica
        self.metrics.replica_fallback.labels(self._unusable).inc()
        return self.primary

    async def _check(self, replica: asyncpg.Pool) -> str | None:
        try:
            row = await asyncio.wait_for(replica.fetchrow(REPLICA_LAG), CHECK_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if self._unusable != "down":
                log.warning("database replica unusable (%s): reads go to the primary", type(exc).__name__)
            self.behind_s = None
            return "down"
        assert row is not None
        if not row["standby"]:
            return "not_standby"
        self.behind_s = 0.0 if row["caught_up"] else float(row["behind_s"] or 0.0)
        self.metrics.replica_lag.set(self.behind_s)
        return None if self.behind_s <= self.max_lag_s else "lag"
