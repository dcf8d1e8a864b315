"""One fault scenario: servers and processes up, a booking load, a fault in the middle of it, a
reconciliation once every client has its outcome, and the figures of the run.

The timeline: the load's bookers arrive over :data:`LOAD_S` seconds; :data:`FAULT_AT_S` seconds in,
the fault is injected; it ends when what it broke is back (the killed process replaced and answering
its health check, the server accepting connections again; for the redundancy scenario, at the kill).
Every client then has :data:`SETTLE_S` seconds from the fault's end to be told its outcome. That
limit only keeps a broken run from hanging: it is far above the times the suite reports (which it
never asserts on), and above arq's 70 s wait before a job whose worker died runs again.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.db import connect
from tests.faults.harness import Cluster, tail
from tests.faults.load import Booker, Load, make_bookers
from tests.faults.reconcile import reconcile

ATTEMPTS = 200  # bookers per scenario (into 24 slots of 3 seats)
LOAD_S = 10.0
FAULT_AT_S = 3.0
SETTLE_S = 120.0


@dataclass
class Run:
    """What a fault's injection sees and notes while the load runs."""

    cluster: Cluster
    load: Load
    notes: list[str] = field(default_factory=list)  # what the fault found when it struck, for the figures
    struck: float | None = None  # monotonic time the fault struck

    def strike(self) -> None:
        self.struck = time.monotonic()


@dataclass(frozen=True)
class Fault:
    name: str
    title: str
    inject: Callable[[Run], Awaitable[None]]
    apis: int = 1
    workers: int = 1


async def no_fault(run: Run) -> None:
    """The baseline: the same load with nothing broken."""
    run.strike()


async def _when_jobs_run(run: Run) -> None:
    """Wait (up to 5 s) until a worker is inside a booking job, so that the fault interrupts one."""
    jobs = await run.cluster.jobs_in_progress(within_s=5.0)
    run.notes.append(f"booking jobs running when it struck: {jobs}")


async def kill_worker(run: Run) -> None:
    await _when_jobs_run(run)
    worker = run.cluster.workers[0]
    run.strike()
    worker.kill9()
    await run.cluster.restart(worker)


async def kill_api(run: Run) -> None:
    run.notes.append(f"requests in flight to the killed API: {run.load.in_flight[0]}")
    api = run.cluster.apis[0]
    run.strike()
    api.kill9()
    await run.cluster.restart(api)


async def kill_valkey_keeping_data(run: Run) -> None:
    await _when_jobs_run(run)
    run.strike()
    await run.cluster.kill_valkey(keep_data=True, down_s=1.0)


async def kill_valkey_losing_data(run: Run) -> None:
    await _when_jobs_run(run)
    run.strike()
    await run.cluster.kill_valkey(keep_data=False, down_s=1.0)


async def stop_postgres_3s(run: Run) -> None:
    await _when_jobs_run(run)
    run.strike()
    await run.cluster.stop_postgres(3.0)


async def stop_postgres_30s(run: Run) -> None:
    await _when_jobs_run(run)
    run.strike()
    await run.cluster.stop_postgres(30.0)


async def kill_one_api_and_one_worker(run: Run) -> None:
    """Two of each; one of each killed and not replaced: the survivors must finish everything."""
    await _when_jobs_run(run)
    run.notes.append(f"requests in flight to the killed API: {run.load.in_flight[0]}")
    run.strike()
    run.cluster.apis[0].kill9()
    run.cluster.workers[0].kill9()


def _final(answer: str) -> bool:
    """Whether an answer a client noted ("201", "202", "409 slot_full", "503 overloaded", "no answer",
    "poll pending", "poll rejected slot_full"...) told it the outcome (the figures list the others)."""
    if answer.startswith(("poll confirmed", "poll rejected")) or answer == "201":
        return True
    return answer.startswith("4") and answer not in ("409 idempotency_in_progress", "429")


BASELINE = Fault("none", "no fault (baseline)", no_fault)
FAULTS = [
    BASELINE,
    Fault("worker-kill", "kill -9 of the worker, replaced", kill_worker),
    Fault("api-kill", "kill -9 of the API, replaced", kill_api),
    Fault("valkey-kill-aof", "kill -9 of Valkey, back 1 s later on its append-only file", kill_valkey_keeping_data),
    Fault("valkey-kill-empty", "kill -9 of Valkey, back 1 s later on an empty data dir", kill_valkey_losing_data),
    Fault("postgres-stop-3s", "PostgreSQL stopped for 3 s", stop_postgres_3s),
    Fault("postgres-stop-30s", "PostgreSQL stopped for 30 s", stop_postgres_30s),
    Fault("two-of-each", "2 APIs + 2 workers, one of each killed, not replaced", kill_one_api_and_one_worker, 2, 2),
]
FIGURES = pytest.StashKey[list[dict[str, str]]]()  # each fault's figures, for the terminal summary


@dataclass
class Report:
    fault: Fault
    bookers: list[Booker]
    problems: list[str]
    notes: list[str]
    fault_s: float  # how long the fault lasted (from striking to its end)
    last_outcome_s: float | None  # from the fault's end to the last client told its outcome
    dsn: str = ""
    stop: Callable[[], None] = lambda: None  # stops what the run kept running (the baseline's PostgreSQL)

    def figures(self) -> dict[str, str]:
        told = Counter(b.told or "undecided" for b in self.bookers)
        codes = Counter(b.code for b in self.bookers if b.told == "rejected")
        last = self.last_outcome_s
        answers = Counter[str]()
        for b in self.bookers:
            answers.update(b.answers)
        return {
            "fault": self.fault.title,
            "attempts": str(len(self.bookers)),
            "confirmed": str(told["confirmed"]),
            "refused": ", ".join(f"{n} {code}" for code, n in codes.most_common()) or "0",
            "undecided": str(told["undecided"]),
            "retries seen": ", ".join(f"{n} x {what}" for what, n in sorted(answers.items()) if not _final(what)),
            "fault lasted": f"{self.fault_s:.1f} s",
            "last outcome after the fault's end": "-" if last is None else f"{last:.1f} s",
            "notes": "; ".join(self.notes),
            "problems": str(len(self.problems)),
        }


async def run_scenario(fault: Fault, workdir: Path, template: Path, *, keep_postgres: bool = False) -> Report:
    """Run ``fault`` on servers and processes of its own under ``workdir``; stops all of them (all
    but PostgreSQL with ``keep_postgres``: then ``Report.stop`` does) before returning."""
    cluster = Cluster(workdir, template, apis=fault.apis, workers=fault.workers)
    try:
        await cluster.start()
        report = await _load_and_fault(fault, cluster)
    except Exception:
        problems = [traceback.format_exc(), *(f"{s.name} log:\n{tail(s.log)}" for s in cluster.services)]
        report = Report(fault, [], problems, [], 0.0, None)
        keep_postgres = False
    await asyncio.to_thread(cluster.stop, keep_postgres=keep_postgres)
    if keep_postgres:
        report.stop = cluster.pg.stop
    # Next to the processes' logs, for whoever looks into a failed run (pytest --basetemp keeps them).
    figures = "".join(f"{k}: {v}\n" for k, v in report.figures().items())
    (workdir / "report.txt").write_text(figures + "\n" + "\n".join(report.problems))
    return report


async def _load_and_fault(fault: Fault, cluster: Cluster) -> Report:
    con = await connect(cluster.dsn)
    try:
        slot_ids = [str(row["slot_id"]) for row in await con.fetch("SELECT slot_id FROM slots ORDER BY starts_at")]
    finally:
        await con.close()
    # The same load (seed) for every fault, so their figures compare.
    load = Load([api.url for api in cluster.apis], make_bookers(ATTEMPTS, slot_ids, fault.apis, seed=1), LOAD_S)
    run = Run(cluster, load)
    started = time.monotonic()
    clients = asyncio.create_task(load.run())
    watcher = asyncio.create_task(_supervise(cluster))
    try:
        await asyncio.sleep(FAULT_AT_S)
        await fault.inject(run)
        ended = time.monotonic()
        struck = run.struck or ended
        # SETTLE_S from the fault's end, or from the last arrival if that comes later
        settle = max(0.0, started + LOAD_S - ended) + SETTLE_S
        try:
            await asyncio.wait_for(asyncio.shield(clients), settle)
        except TimeoutError:
            load.stop.set()
            await clients
    finally:
        load.stop.set()
        watcher.cancel()
        await asyncio.gather(clients, watcher, return_exceptions=True)
    problems = [f"{s.name} exited by itself: {', '.join(s.exits)}\n{tail(s.log)}" for s in cluster.services if s.exits]
    # The README's promise: an unreachable Redis or PostgreSQL is answered 503 overloaded, never a 500.
    errors = Counter[str]()
    for b in load.bookers:
        errors.update({what: n for what, n in b.answers.items() if what.startswith("5")})
    if errors.keys() - {"503 overloaded"}:
        problems.append(f"clients were answered {dict(errors)}; an outage must answer 503 overloaded, never a 500")
    con = await connect(cluster.dsn)
    try:
        problems += await reconcile(con, load.bookers)
    finally:
        await con.close()
    decided = [b.decided_at for b in load.bookers if b.decided_at is not None]
    last = max(decided) - ended if decided else None
    return Report(fault, load.bookers, problems, run.notes, ended - struck, last, cluster.dsn)


async def _supervise(cluster: Cluster) -> None:
    """Start again every process that exits by itself, as systemd or compose would (so the run still
    finishes and is reconciled); each such exit is noted on the service and reported as a failure."""
    while True:
        for service in cluster.watch():
            service.start()  # its readiness is not awaited: if it exits again, that is noted again
        await asyncio.sleep(1.0)
