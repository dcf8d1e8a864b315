"""Fixtures of the fault suite: a migrated PostgreSQL data dir to copy, and every selected fault's
run, all started at once in threads of their own (each on its own servers and processes), so the
suite lasts about as long as its slowest fault rather than the sum of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faults.harness import make_template
from tests.faults.scenarios import BASELINE, FIGURES, Fault, Report, run_scenario


@pytest.fixture(scope="module")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults-template") / "pg"
    # In a thread of its own: its asyncio.run must not meet the loop pytest-asyncio keeps in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(make_template, path).result()
    return path


def _selected(request: pytest.FixtureRequest) -> dict[str, Fault]:
    """The faults of the tests this session runs (-k and -m respected), and the baseline (the
    negative controls reconcile its database)."""
    faults = {BASELINE.name: BASELINE}
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        fault = callspec.params.get("fault") if callspec is not None else None
        if isinstance(fault, Fault):
            faults[fault.name] = fault
    return faults


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, pg_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Report]]]:
    """Fault name -> its run's report (a future: each test waits for its own)."""
    faults = _selected(request)
    pool = ThreadPoolExecutor(len(faults), thread_name_prefix="fault")
    futures = {
        name: pool.submit(
            asyncio.run,
            run_scenario(fault, tmp_path_factory.mktemp(name), pg_template, keep_postgres=fault is BASELINE),
        )
        for name, fault in faults.items()
    }
    try:
        yield futures
    finally:
        for future in futures.values():
            future.result().stop()
        pool.shutdown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The figures of every fault run, as a Markdown table (what docs/faults.md shows)."""
    rows = config.stash.get(FIGURES, [])
    if not rows:
        return
    terminalreporter.section("fault suite figures")
    columns = list(rows[0])
    terminalreporter.write_line("| " + " | ".join(columns) + " |")
    terminalreporter.write_line("|" + "---|" * len(columns))
    for row in rows:
        terminalreporter.write_line("| " + " | ".join(row[c] for c in columns) + " |")
