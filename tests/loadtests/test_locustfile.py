"""The locust scenarios against a real stack (``surgegate up`` on embedded servers, as ``surgegate
rehearse`` starts it): the funnel and the time to outcome come out as statistics of their own, book
answers are counted by status, the abusive client's join flood meets the join limiter (and, the
negative control, is reported as a failure when the limiter is off), and the invariants are checked
against the database after the run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from surgegate.rehearse import embedded_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """Outside pytest's own temp root: any pytest session starting meanwhile makes that 0700 again,
    which the embedded PostgreSQL's own user could then no longer traverse."""
    with tempfile.TemporaryDirectory() as path:
        yield Path(path)


LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
JOIN_FLOOD = ("--tags", "join-flood", "-u", "1", "-r", "1", "-t", "3s")  # one abusive client, flooding only


def run_locust(
    host: str, out: Path, users: list[str], env: dict[str, str], *extra: str
) -> dict[tuple[str, str], dict[str, str]]:
    """Runs locust headless; returns its stats rows by (type, name)."""
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host, "--headless", "--only-summary",
         "--csv", str(out / "run"), "--stop-timeout", "5", *extra, *users],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    (out / "locust.out").write_text(done.stdout + done.stderr)
    with open(out / "run_stats.csv", newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_funnel_outcomes_limiter_and_invariants(tmp_path: Path, stack_dir: Path) -> None:
    with embedded_stack(stack_dir, tmp_path / "up.log") as target:
        assert target.database_url is not None
        stats = run_locust(
            target.edge_url, tmp_path, ["OpeningVisitor", "SteadyBooker", "AbusiveClient"],
            {"SURGEGATE_RAMP": "3:6,4:12", "SURGEGATE_CHECK_DSN": target.database_url},
        )  # fmt: skip
        output = (tmp_path / "locust.out").read_text()
        flood = run_locust(target.edge_url, tmp_path, ["AbusiveClient"], {}, *JOIN_FLOOD)
    assert int(stats["funnel", "joined"]["Request Count"]) > 0
    assert ("POST", "book") not in stats  # each answer under its status: book 201, book 202, book 409
    booked = [row for (kind, name), row in stats.items() if kind == "POST" and name.startswith("book ")]
    outcome = stats.get(("outcome", "time to outcome"))
    if booked:  # whether anyone got that far in 7 s is the machine's business, not the test's
        assert outcome is not None
        assert int(outcome["Request Count"]) == sum(int(row["Request Count"]) for row in booked)
    assert "invariants hold over" in output
    limiter = flood["abuse", "join limiter reached"]
    assert int(limiter["Request Count"]) > 0
    assert limiter["Failure Count"] == "0"


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_negative_control_a_join_flood_without_a_limiter_is_a_failure(tmp_path: Path, stack_dir: Path) -> None:
    with embedded_stack(stack_dir, tmp_path / "up.log", {"SURGEGATE_JOIN_LIMIT_PER_MIN": "0"}) as target:
        stats = run_locust(target.edge_url, tmp_path, ["AbusiveClient"], {}, *JOIN_FLOOD)
    limiter = stats["abuse", "join limiter reached"]
    assert int(limiter["Request Count"]) > 0
    assert limiter["Failure Count"] == limiter["Request Count"]
