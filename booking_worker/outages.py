"""One log line when a dependency is lost and one when it is back, however often it is retried.

The worker retries Redis and PostgreSQL without end (``booking_worker.supervisor``, the booking
job's ``Retry``); logging each retry would bury the one fact an operator needs: down since when,
back after how long. Shared by every job through ``ctx["outages"]`` and kept across the arq
workers the supervisor starts one after another.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from shared.db import DATABASE_UNAVAILABLE

log = logging.getLogger("surgegate.booking_worker")

REDIS = "Redis"
POSTGRESQL = "PostgreSQL"

Job = TypeVar("Job", bound=Callable[..., Coroutine[Any, Any, Any]])


class Outages:
    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def down(self, dependency: str, error: BaseException) -> None:
        """Note a failed use of ``dependency``; logs only the first of an outage."""
        if dependency not in self._since:
            self._since[dependency] = time.monotonic()
            log.warning("%s unreachable (%s); the worker keeps retrying", dependency, type(error).__name__)

    def up(self, dependency: str) -> None:
        """Note a successful use of ``dependency``; logs the end of an outage once."""
        since = self._since.pop(dependency, None)
        if since is not None:
            log.warning("%s reachable again after %.1f s; the worker resumes", dependency, time.monotonic() - since)

    def is_down(self, dependency: str) -> bool:
        return dependency in self._since


def outages_of(ctx: dict[str, Any]) -> Outages:
    """The worker's outage log (a fresh one for a job run outside a worker, as tests do)."""
    outages: Outages = ctx.setdefault("outages", Outages())
    return outages


def skipped_while_database_down(job: Job) -> Job:
    """A periodic job that skips its run (returns None, logs nothing more) while PostgreSQL is
    unreachable: the next run comes within its period, so neither a retry nor a traceback helps.
    The job's return type must allow None."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await job(ctx, *args, **kwargs)
        except DATABASE_UNAVAILABLE as exc:
            outages_of(ctx).down(POSTGRESQL, exc)
            return None
        outages_of(ctx).up(POSTGRESQL)
        return result

    return cast(Job, run)
