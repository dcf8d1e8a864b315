"""Routine periodic jobs do not flood the worker's log; bookings and failures still show."""

from __future__ import annotations

import logging

import pytest

from shared.settings import Settings, SettingsError
from surgegate.cli import _access_log, _QuietRoutine


def record(level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("arq.worker", level, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("level", "message", "args", "kept"),
    [
        (logging.INFO, "%6.2fs → %s(%s)%s", (0.01, "cron:seal_audit:1800000000:cron:seal_audit", "", ""), False),
        (logging.INFO, "%6.2fs ← %s ● %s", (0.01, "cron:tidy_holds:1800000000:cron:tidy_holds", "{}"), False),
        (logging.INFO, "%6.2fs → %s(%s)%s", (0.02, "5e3a438e:book", "{...}", ""), True),
        (logging.WARNING, "%6.2fs ! %s failed", (0.01, "cron:seal_audit:1800000000:cron:seal_audit"), True),
        (logging.INFO, "Starting worker for %d functions: %s", (2, "book, cron:seal_audit"), True),
    ],
)
def test_routine_job_lines_are_dropped_and_the_rest_kept(
    level: int, message: str, args: tuple[object, ...], kept: bool
) -> None:
    assert _QuietRoutine().filter(record(level, message, *args)) is kept


def test_access_logs_are_off_unless_asked() -> None:
    assert _access_log(Settings.from_env({})) is None  # aiohttp then logs no line per request
    assert _access_log(Settings.from_env({"SURGEGATE_ACCESS_LOG": "1"})) is logging.getLogger("aiohttp.access")
    with pytest.raises(SettingsError, match="SURGEGATE_ACCESS_LOG must be 1/true/yes or 0/false/no, not 'maybe'"):
        Settings.from_env({"SURGEGATE_ACCESS_LOG": "maybe"})
