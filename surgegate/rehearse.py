"""``surgegate rehearse``: find the admission rate an opening can take, before the opening.

Against a target (by default a fresh stack it starts itself: embedded PostgreSQL and Valkey in a
temporary directory, then ``surgegate up`` on free ports), it runs the locust opening scenario
(``loadtests/locustfile.py``, ``OpeningVisitor``) headless once per step of admission rate. Each step
gets an event of its own (``rehearse-<n>``, all sites, that rate), so no step inherits the queue of the
one before, and visitors arrive a little faster than the rate admits them (``--arrivals``) so the
queue never runs dry. A step passes when the p95 time to outcome (the first ``POST /appointments`` to
the final answer, 202s followed) is within ``--max-latency`` and the share of failed requests within
``--max-errors``. The ramp stops at the first failing step.

The report (printed, and in ``--out``/``report.md`` with locust's HTML report and CSVs of each step
next to it) names the highest passing rate, the bottleneck met by the first failing one (booking
queue depth sampled in Redis, the worker's transaction time from its ``/metrics``, API errors from
locust's failures) and the ``rate_per_s`` to configure: 80% of the highest passing rate, a margin for
a real opening's burstier arrivals.

Needs the ``load`` extra (locust); without it, says how to install it and exits 2.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from surgegate.embedded import EmbeddedPostgres, EmbeddedValkey, free_port

MARGIN = 0.8  # the rate to configure, as a share of the highest passing one
OWN_STATISTICS = ("funnel", "outcome", "abuse")  # the locustfile's request types that are not HTTP


@dataclass
class Target:
    """Where the rehearsal sends its load, and what it may read besides the HTTP answers."""

    edge_url: str
    admin_token: str
    redis_url: str | None = None  # to sample the booking queue's depth
    database_url: str | None = None  # to check the invariants after each step
    worker_metrics_url: str | None = None


@dataclass
class Step:
    """What one step of the ramp measured."""

    rate_per_s: float
    event_id: str
    p95_outcome_s: float | None = None
    outcomes: int = 0
    requests: int = 0
    failures: int = 0
    funnel: dict[str, int] = field(default_factory=dict)
    max_queue_depth: int | None = None
    booking_txn_mean_s: float | None = None
    top_failures: list[str] = field(default_factory=list)
    invariants: str = "not checked"
    passed: bool = False
    verdict: str = ""

    @property
    def error_share(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "rehearse",
        help="ramp the admission rate under a locust opening and report the highest one that holds",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--edge-url", help="the edge of a running deployment (default: start a fresh embedded stack)")
    p.add_argument("--admin-token", help="an operator credential for --edge-url (default SURGEGATE_ADMIN_TOKEN)")
    p.add_argument("--redis-url", help="with --edge-url: Redis to sample the booking queue depth in")
    p.add_argument("--database-url", help="with --edge-url: PostgreSQL to check the invariants in after each step")
    p.add_argument("--worker-metrics-url", help="with --edge-url: a worker's /metrics")
    p.add_argument("--rates", default="2,5,10,20,40,80", help="admission rates per second to try, in order")
    p.add_argument("--step-seconds", type=float, default=60, help="how long each step lasts (60)")
    p.add_argument("--arrivals", type=float, default=1.2, help="arrival rate as a multiple of the admission rate")
    p.add_argument("--max-latency", type=float, default=5.0, help="p95 time to outcome allowed, in seconds (5)")
    p.add_argument("--max-errors", type=float, default=0.01, help="share of failed requests allowed (0.01)")
    p.add_argument("--out", type=Path, default=Path("rehearsal"), help="where the reports go (./rehearsal)")
    p.set_defaults(func=run_rehearse)


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"surgegate rehearse: --rates must be numbers separated by commas, not {text!r}") from None
    if not rates or any(r <= 0 or not math.isfinite(r) for r in rates):
        raise SystemExit("surgegate rehearse: every rate in --rates must be above 0")
    return rates


def run_rehearse(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("locust") is None:
        print(
            "surgegate rehearse needs locust, the `load` extra: pip install 'surgegate[load]' "
            "(from a checkout: pip install -e '.[load]')",
            file=sys.stderr,
        )
        return 2
    rates = _rates(args.rates)
    if args.step_seconds <= 0 or args.arrivals <= 0 or args.max_latency <= 0 or not 0 <= args.max_errors <= 1:
        print("surgegate rehearse: --step-seconds, --arrivals and --max-latency must be above 0, "
              "--max-errors a share between 0 and 1", file=sys.stderr)  # fmt: skip
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if args.edge_url:
            token = args.admin_token or os.environ.get("SURGEGATE_ADMIN_TOKEN", "").split(",")[0]
            if not token:
                print("surgegate rehearse: --edge-url needs --admin-token (or SURGEGATE_ADMIN_TOKEN)", file=sys.stderr)
                return 2
            target = Target(
                args.edge_url.rstrip("/"), token, args.redis_url, args.database_url, args.worker_metrics_url
            )
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            target = stack.enter_context(embedded_stack(workdir, out / "up.log"))
        steps: list[Step] = []
        for n, rate in enumerate(rates, 1):
            step = run_step(target, rate, n, args, out)
            steps.append(step)
            print(f"step {n}: {step.verdict}", flush=True)
            if not step.passed:
                break
    report = write_report(steps, args, out)
    print(report)
    return 0


@contextmanager
def embedded_stack(workdir: Path, log: Path, settings: dict[str, str] | None = None) -> Iterator[Target]:
    """Embedded PostgreSQL and Valkey, then ``surgegate up`` on free ports against them (its output in
    ``log``, ``settings`` added to its environment); all stopped (``up`` by SIGTERM, which stops its
    children) when the block ends."""
    print(f"starting a fresh embedded stack in {workdir}", flush=True)
    postgres = EmbeddedPostgres(workdir / "pg", password=secrets.token_urlsafe(24))
    valkey = EmbeddedValkey(workdir / "valkey", password=secrets.token_urlsafe(24))
    up: subprocess.Popen[bytes] | None = None
    try:
        dsn, redis_url = postgres.start(), valkey.start()
        edge, api, metrics = free_port(), free_port(), free_port()
        token = secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SURGEGATE_")}
        env.update(
            SURGEGATE_DATABASE_URL=dsn,
            SURGEGATE_REDIS_URL=redis_url,
            SURGEGATE_ADMIN_TOKEN=token,
            SURGEGATE_TRUSTED_PROXIES="127.0.0.1/32",  # each simulated visitor is a client of its own
            SURGEGATE_LOG_LEVEL="WARNING",
        )
        env.update(settings or {})
        with log.open("wb") as output:
            up = subprocess.Popen(
                [sys.executable, "-m", "surgegate", "up", "--data-dir", str(workdir / "up"),
                 "--edge-port", str(edge), "--api-port", str(api), "--worker-metrics-port", str(metrics)],
                env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_up(up, log)
        yield Target(f"http://127.0.0.1:{edge}", token, redis_url, dsn, f"http://127.0.0.1:{metrics}/metrics")
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        valkey.stop()
        postgres.stop()


def _wait_up(up: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until ``up`` prints that it is up; its output is shown if it dies or hangs instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if "surgegate is up" in output:
            return
        if up.poll() is not None:
            raise SystemExit(f"surgegate rehearse: `surgegate up` failed:\n{output}")
        time.sleep(0.2)
    raise SystemExit(f"surgegate rehearse: `surgegate up` did not come up in {timeout:.0f} s:\n{log.read_text()}")


def _admin(target: Target, method: str, path: str, body: Any) -> None:
    request = urllib.request.Request(  # noqa: S310 (the operator's own edge)
        f"{target.edge_url}{path}", method=method, data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {target.admin_token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310
            pass
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"surgegate rehearse: {method} {path} answered {exc.code}: {exc.read()[:300]!r}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"surgegate rehearse: cannot reach {target.edge_url}: {exc.reason}") from None


def _metric_sum(url: str | None, name: str) -> float | None:
    """The sum over labels of one metric in a /metrics page (None when unreadable)."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text))


def run_step(target: Target, rate: float, n: int, args: argparse.Namespace, out: Path) -> Step:
    import loadtests
    from shared.settings import Settings

    event_id = f"rehearse-{n}-{secrets.token_hex(3)}"
    step = Step(rate_per_s=rate, event_id=event_id)
    _admin(target, "PUT", f"/admin/v1/events/{event_id}",
           {"name": f"Rehearsal step {n}", "rate_per_s": rate, "paused": False})  # fmt: skip
    arrivals = rate * args.arrivals
    users = max(1, math.ceil(arrivals))
    prefix = out / f"step-{n}-rate-{rate:g}"
    env = {
        **os.environ,
        "SURGEGATE_EVENT": event_id,
        "SURGEGATE_ARRIVALS_PER_USER_S": f"{arrivals / users:.6f}",
        "SURGEGATE_OUTCOME_TIMEOUT_S": str(max(args.max_latency * 4, 10)),
    }
    env.pop("SURGEGATE_RAMP", None)
    env.pop("SURGEGATE_CHECK_DSN", None)  # checked here, after the step, where the answer is read
    txn_before = (_metric_sum(target.worker_metrics_url, "surgegate_booking_seconds_sum"),
                  _metric_sum(target.worker_metrics_url, "surgegate_booking_seconds_count"))  # fmt: skip
    with open(f"{prefix}.log", "wb") as log:
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(Path(loadtests.__file__).parent / "locustfile.py"),
              "--host", target.edge_url, "--headless", "-u", str(users), "-r", str(users),
             "-t", f"{args.step_seconds:g}s", "--stop-timeout", f"{max(args.max_latency * 2, 5):g}",
             "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", "--loglevel", "WARNING",
             "OpeningVisitor"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    queue_name = Settings.from_env().queue_name
    step.max_queue_depth = _sample_queue(target.redis_url, queue_name, locust)
    txn_after = (_metric_sum(target.worker_metrics_url, "surgegate_booking_seconds_sum"),
                 _metric_sum(target.worker_metrics_url, "surgegate_booking_seconds_count"))  # fmt: skip
    if None not in txn_before + txn_after and txn_after[1] - txn_before[1] > 0:  # type: ignore[operator]
        step.booking_txn_mean_s = (txn_after[0] - txn_before[0]) / (txn_after[1] - txn_before[1])  # type: ignore[operator]
    _read_stats(step, prefix)
    if target.database_url is not None:
        check = subprocess.run(
            [sys.executable, "-m", "loadtests.invariants", target.database_url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        step.invariants = (check.stdout or check.stderr).strip()
        if check.returncode != 0:
            step.failures += 1
    _judge(step, args)
    return step


def _sample_queue(redis_url: str | None, queue_name: str, locust: subprocess.Popen[bytes]) -> int | None:
    """Waits for the locust run; meanwhile samples the booking queue's depth each second (the max)."""
    if redis_url is None:
        locust.wait()
        return None
    import redis

    client = redis.Redis.from_url(redis_url)
    deepest = 0
    try:
        while locust.poll() is None:
            with suppress(redis.RedisError):  # a sample missed is no reason to stop the rehearsal
                deepest = max(deepest, int(cast(int, client.zcard(queue_name))))
            time.sleep(1)
    finally:
        client.close()
    return deepest


def _read_stats(step: Step, prefix: Path) -> None:
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        kind, name = row["Type"], row["Name"]
        count, failed = int(row["Request Count"]), int(row["Failure Count"])
        if kind == "funnel":
            step.funnel[name] = count
        elif kind == "outcome":
            step.outcomes = count
            step.failures += failed  # no outcome within the timeout
            step.requests += count
            p95 = row["95%"]
            step.p95_outcome_s = float(p95) / 1000 if p95 not in ("", "N/A") else None
        elif kind not in OWN_STATISTICS and name != "Aggregated":
            step.requests += count
            step.failures += failed
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        with failures.open(newline="") as f:
            worst = sorted(csv.DictReader(f), key=lambda r: -int(r["Occurrences"]))[:3]
        step.top_failures = [f"{r['Method']} {r['Name']}: {r['Error']} (x{r['Occurrences']})" for r in worst]


def _judge(step: Step, args: argparse.Namespace) -> None:
    latency_ok = step.p95_outcome_s is not None and step.p95_outcome_s <= args.max_latency
    errors_ok = step.error_share <= args.max_errors
    step.passed = latency_ok and errors_ok and step.outcomes > 0
    p95 = "no outcome" if step.p95_outcome_s is None else f"p95 time to outcome {step.p95_outcome_s:.2f} s"
    step.verdict = (
        f"rate {step.rate_per_s:g}/s: {p95}, errors {step.error_share:.1%}, "
        f"booked {step.funnel.get('booked', 0)} — {'within' if step.passed else 'OVER'} the limits"
    )


def bottleneck(step: Step, args: argparse.Namespace) -> str:
    """What most likely stopped a failing step, from what was measured (a judgement, named as one)."""
    if step.error_share > args.max_errors:
        return "API errors: " + ("; ".join(step.top_failures) or "requests failed")
    if step.outcomes == 0:
        return "no visitor reached an outcome: admission or search never let anyone book (see the HTML report)"
    if step.max_queue_depth is not None and step.max_queue_depth > step.rate_per_s * max(args.max_latency, 1):
        return (f"the booking workers: their queue reached {step.max_queue_depth} jobs "
                "(more `surgegate worker` processes, or scale them on queue depth)")  # fmt: skip
    if step.booking_txn_mean_s is not None and step.booking_txn_mean_s > 0.25:
        return f"the database: a booking transaction took {step.booking_txn_mean_s * 1000:.0f} ms on average"
    return ("the booking API (the booking queue stayed short and transactions fast): more `surgegate api` "
            "processes, or CPU for them")  # fmt: skip


def write_report(steps: list[Step], args: argparse.Namespace, out: Path) -> str:
    passing = [s for s in steps if s.passed]
    failing = next((s for s in steps if not s.passed), None)
    best = passing[-1].rate_per_s if passing else None
    lines = [
        "# Rehearsal",
        "",
        f"Limits: p95 time to outcome ≤ {args.max_latency:g} s, errors ≤ {args.max_errors:.1%}; "
        f"{args.step_seconds:g} s a step, arrivals {args.arrivals:g} times the admission rate.",
        "",
        "| rate/s | p95 to outcome | errors | joined | admitted | booked | slot_full | max booking queue "
        "| invariants |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        p95 = "—" if s.p95_outcome_s is None else f"{s.p95_outcome_s:.2f} s"
        depth = "—" if s.max_queue_depth is None else str(s.max_queue_depth)
        lines.append(
            f"| {s.rate_per_s:g} | {p95} | {s.error_share:.1%} | {s.funnel.get('joined', 0)} | "
            f"{s.funnel.get('admitted', 0)} | {s.funnel.get('booked', 0)} | {s.funnel.get('slot_full', 0)} | "
            f"{depth} | {s.invariants} |"
        )
    lines.append("")
    if best is None:
        lines.append("No rate stayed within the limits: lower --rates, or relax the limits.")
    else:
        lines.append(f"Highest rate within the limits: **{best:g}/s**.")
    if failing is not None:
        lines.append(f"Bottleneck at {failing.rate_per_s:g}/s: {bottleneck(failing, args)}.")
    else:
        lines.append("Bottleneck: none reached; every step passed (rehearse again with higher --rates).")
    if best is not None:
        lines.append(
            f"Rate to configure: `surgegate event set EVENT --rate {best * MARGIN:.3g}` "
            f"({MARGIN:.0%} of {best:g}/s, a margin for burstier real arrivals)."
        )
    lines += ["", "Locust's reports, one per step: " + ", ".join(f"`step-{i}-rate-{s.rate_per_s:g}.html`"
                                                           for i, s in enumerate(steps, 1))]  # fmt: skip
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    summary = {"highest_rate_per_s": best, "rate_to_configure": None if best is None else best * MARGIN,
               "bottleneck": None if failing is None else bottleneck(failing, args),
               "steps": [asdict(s) for s in steps]}  # fmt: skip
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return report
