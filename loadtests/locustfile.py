"""Locust scenarios for rehearsing an opening against a running surgegate.

    pip install -e '.[load]'
    surgegate up                      # or any deployment
    SURGEGATE_ARRIVALS_PER_USER_S=1 locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \
        --headless -u 50 -r 50 -t 5m OpeningVisitor AbusiveClient

Users (pick with class names on the command line):

* ``OpeningVisitor`` — the cohort-opening spike as an **open stream of arrivals**: each locust user is
  an arrival generator that starts a new visitor every ``Exp(SURGEGATE_ARRIVALS_PER_USER_S)`` seconds
  (default 1/s) whatever the system answers, so ``-u 50`` means about 50 new people a second, not 50
  people polling forever. A visitor joins (solving the proof of work when the event asks for one),
  polls as told by ``poll_after_ms``, once admitted searches and books like the queue page, follows a
  202 to its ``status_url`` until the attempt is final, and leaves.
* ``SteadyBooker`` — one visitor after another per user (closed loop), for booking throughput.
* ``AbusiveClient`` — forged tickets, malformed and oversized bodies, unknown ids, a join flood from one
  address (which must reach the join limiter: 429 ``rate_limited``; ``--tags join-flood`` runs only
  that) and joins with forged proofs of work. Every answer must be a 4xx problem+json; a 5xx is a
  failure.

Statistics of their own, besides the HTTP requests (request type first, as locust lists them):

* ``funnel`` ``joined`` / ``admitted`` / ``booked`` / ``slot_full`` / ``ineligible`` / ``refused:<code>``:
  one entry per visitor reaching that step; the response time of ``admitted`` is the time in queue
  (join → admitted), of the others the time since joining.
* ``outcome`` ``time to outcome``: from the first ``POST /appointments`` to the final answer (201,
  409, or the attempt a 202 pointed to turning confirmed / rejected). A visitor with no outcome within
  ``SURGEGATE_OUTCOME_TIMEOUT_S`` (120) is a failure here.
* ``abuse`` ``join limiter reached`` / ``pow refused``: the defences seen to work.

HTTP entries count 201, 202 and 409 apart (``book 201``, ``book 202``, ``book 409``).

``SURGEGATE_RAMP="30:10,30:20,60:40"`` (seconds:users, …) turns on :class:`RampShape`: the user count
(so the arrival rate) steps up as listed, then the run ends. With ``SURGEGATE_CHECK_DSN`` set, the end of
the run checks the invariants in that database (no slot overbooked, at most one confirmed appointment
per person and event, per admission) and fails the run (exit code 1) if one is broken.

``SURGEGATE_EVENT`` selects the event (default ``demo``). Its ``rate_per_s`` bounds admissions: the
demo's 2/s admits ~120 people a minute whatever the arrival rate (raise it with ``surgegate event set
demo --rate R``, or find the right one with ``surgegate rehearse``). Person data is synthetic. Each
visitor sends its own ``X-Forwarded-For`` address (198.18.0.0/15, the benchmarking range); start the
servers with ``SURGEGATE_TRUSTED_PROXIES=127.0.0.1/32`` so the per-client join limit sees thousands of
clients, as in a real opening, instead of one loopback address.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent
from gevent.pool import Group
from locust import HttpUser, LoadTestShape, User, between, events, tag, task
from locust.clients import HttpSession
from locust.env import Environment
from locust.runners import WorkerRunner

from waitingroom.pow import solve

EVENT = os.environ.get("SURGEGATE_EVENT", "demo")
ARRIVALS_PER_USER_S = float(os.environ.get("SURGEGATE_ARRIVALS_PER_USER_S", "1"))
OUTCOME_TIMEOUT_S = float(os.environ.get("SURGEGATE_OUTCOME_TIMEOUT_S", "120"))


def synthetic_person() -> dict[str, str]:
    n = uuid.uuid4().hex[:10]
    return {"id_number": f"LT{n}".upper(), "name": f"Load Tester {n}", "email": f"lt{n}@example.org",
            "birth_date": "1985-06-15"}  # fmt: skip


def client_address() -> str:
    return f"198.18.{random.randrange(512) // 2}.{random.randrange(1, 255)}"


def record(env: Environment, kind: str, name: str, since: float, failure: str | None = None) -> None:
    """One entry of our own statistics: ``since`` is a ``time.monotonic()``; the time is in ms."""
    env.events.request.fire(
        request_type=kind, name=name, response_time=(time.monotonic() - since) * 1000, response_length=0,
        exception=None if failure is None else RuntimeError(failure), context={},
    )  # fmt: skip


def problem_code(response: Any) -> str:
    try:
        return str(response.json().get("code") or response.status_code)
    except ValueError:
        return str(response.status_code)


class Visit:
    """One person's way from joining to an outcome, through ``client`` (their own cookies)."""

    def __init__(self, client: HttpSession, env: Environment) -> None:
        self.client = client
        self.env = env
        self.client.headers["X-Forwarded-For"] = client_address()

    def run(self) -> None:
        joined = time.monotonic()
        ticket = self.join()
        if ticket is None:
            return
        record(self.env, "funnel", "joined", joined)
        admission = self.wait_in_line(ticket)
        if admission is None:
            return
        record(self.env, "funnel", "admitted", joined)  # the time in queue
        outcome = self.book(admission)
        record(self.env, "funnel", outcome, joined)

    def join(self) -> str | None:
        body: dict[str, Any] = {}
        for _ in range(2):  # the second time with a proof of work, where the event asks for one
            with self.client.post(f"/api/v1/events/{EVENT}/join", name="join", json=body, catch_response=True) as r:
                if r.status_code == 201:
                    return str(r.json()["ticket"])
                if r.status_code == 403 and problem_code(r) == "pow_invalid" and not body:
                    r.success()
                    body = {"pow": self.proof()}
                    continue
                r.failure(f"join answered {r.status_code} {problem_code(r)}")
                return None
        return None

    def proof(self) -> dict[str, str]:
        challenge = self.client.get(f"/api/v1/events/{EVENT}/challenge", name="challenge").json()
        return {"challenge": challenge["challenge"], "solution": solve(challenge["challenge"], challenge["difficulty"])}

    def wait_in_line(self, ticket: str) -> dict[str, Any] | None:
        auth = {"Authorization": f"Bearer {ticket}"}
        while True:
            with self.client.get(f"/api/v1/events/{EVENT}/status", name="status", headers=auth,
                                 catch_response=True) as r:  # fmt: skip
                if r.status_code != 200:
                    r.failure(f"status answered {r.status_code} {problem_code(r)}")
                    return None
                status: dict[str, Any] = r.json()
            if status["state"] == "admitted":
                return status
            if status["state"] not in ("waiting", "prequeue", "paused"):
                record(self.env, "funnel", f"left queue: {status['state']}", time.monotonic())
                return None
            gevent.sleep(status["poll_after_ms"] / 1000)

    def book(self, admission: dict[str, Any]) -> str:
        """Search, book, follow a 202 to the final answer; returns the funnel step reached."""
        api = admission["booking_url"]
        auth = {"Authorization": f"Bearer {admission['admission_token']}"}
        sites = self.client.get(f"{api}/sites", headers=auth, name="sites").json()["sites"]
        now = datetime.now(UTC)
        window = {"site_id": random.choice(sites)["site_id"], "from": now.isoformat(),
                  "to": (now + timedelta(days=7)).isoformat()}  # fmt: skip
        slots = self.client.get(f"{api}/slots", headers=auth, name="slots", params=window).json()["slots"]
        if not slots:
            return "no slots"
        open_slots = [s for s in slots if s["remaining"] > 0] or slots
        started = time.monotonic()
        body = {"slot_id": random.choice(open_slots)["slot_id"], "person": synthetic_person()}
        headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}
        r = self.client.post(f"{api}/appointments", name="book", headers=headers, json=body, catch_response=True)
        with r:
            r.request_meta["name"] = f"book {r.status_code}"  # type: ignore[index]  # 201, 202 and 409 counted apart
            if r.status_code in (201, 202, 403, 409):
                r.success()
            else:
                r.failure(f"book answered {r.status_code} {problem_code(r)}")
        if r.status_code == 201:
            outcome = "booked"
        elif r.status_code in (403, 409):
            outcome = problem_code(r)
        elif r.status_code == 202:
            outcome = self.follow(f"{api.removesuffix('/api/v1')}{r.json()['status_url']}", auth, started)
        else:
            outcome = str(r.status_code)
        failure = "no outcome in time" if outcome == "pending" else None
        record(self.env, "outcome", "time to outcome", started, failure)
        return outcome if outcome in ("booked", "slot_full", "ineligible", "pending") else f"refused: {outcome}"

    def follow(self, url: str, auth: dict[str, str], started: float) -> str:
        while time.monotonic() - started < OUTCOME_TIMEOUT_S:
            gevent.sleep(0.5)
            attempt = self.client.get(url, headers=auth, name="attempt").json()
            if attempt["status"] == "confirmed":
                return "booked"
            if attempt["status"] == "rejected":
                return str(attempt["code"])
        return "pending"


class OpeningVisitor(User):
    """An arrival generator: a new visitor every Exp(rate) seconds, each on its own greenlet, so the
    arrivals do not wait for the system (an open stream); visitors leave after their outcome."""

    weight = 10

    def wait_time(self) -> float:
        return random.expovariate(ARRIVALS_PER_USER_S)

    def on_start(self) -> None:
        self.visits = Group()

    def on_stop(self) -> None:
        self.visits.kill(block=False)

    @task
    def arrive(self) -> None:
        session = HttpSession(self.host or "", self.environment.events.request, self)
        self.visits.spawn(Visit(session, self.environment).run)


class SteadyBooker(HttpUser):
    """One visitor after another (a closed loop): booking throughput after the spike."""

    weight = 1
    wait_time = between(1, 3)

    @task
    def visit(self) -> None:
        self.client.cookies.clear()  # a live ticket cookie would return the same (used) place
        Visit(self.client, self.environment).run()


class AbusiveClient(HttpUser):
    weight = 1
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        # One address for all this client's requests: its join flood must meet the per-client limit.
        self.client.headers["X-Forwarded-For"] = client_address()

    def _expect_4xx(self, method: str, path: str, name: str, **kwargs: Any) -> str | None:
        """The problem's code when the answer is a 4xx problem+json, else None (and a failure)."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            if 400 <= r.status_code < 500 and r.headers.get("Content-Type", "").startswith("application/problem+json"):
                r.success()
                return problem_code(r)
            r.failure(f"expected a 4xx problem, got {r.status_code}")
            return None

    @task
    def forged_ticket(self) -> None:
        self._expect_4xx("GET", f"/api/v1/events/{EVENT}/status", "abuse: forged ticket",
                         headers={"Authorization": "Bearer k1.eyJmYWtlIjoxfQ.AAAA"})  # fmt: skip

    @task
    def malformed_join(self) -> None:
        self._expect_4xx("POST", f"/api/v1/events/{EVENT}/join", "abuse: malformed body", data=b"{{{",
                         headers={"Content-Type": "application/json"})  # fmt: skip

    @task
    def huge_body(self) -> None:
        self._expect_4xx("POST", f"/api/v1/events/{EVENT}/join", "abuse: huge body", data=b"x" * 200_000,
                         headers={"Content-Type": "application/json"})  # fmt: skip

    @task
    def unknown_event(self) -> None:
        self._expect_4xx("POST", f"/api/v1/events/{uuid.uuid4().hex}/join", "abuse: unknown event")

    @task
    def admin_without_token(self) -> None:
        self._expect_4xx("PUT", f"/admin/v1/events/{EVENT}", "abuse: admin without token", json={"paused": True})

    @tag("abuse", "join-flood")
    @task(3)
    def join_flood(self) -> None:
        """Joins from one address without cookies, faster than a person would: past the burst the
        limiter answers 429 (a 201 before it is fine; recorded as ``abuse`` ``join limiter reached``)."""
        started = time.monotonic()
        for _ in range(30):
            self.client.cookies.clear()
            with self.client.post(f"/api/v1/events/{EVENT}/join", name="abuse: join flood", json={},
                                  catch_response=True) as r:  # fmt: skip
                if r.status_code == 429:
                    r.success()
                    record(self.environment, "abuse", "join limiter reached", started)
                    return
                if r.status_code == 201 or (r.status_code == 403 and problem_code(r) == "pow_invalid"):
                    r.success()
                else:
                    r.failure(f"join flood answered {r.status_code}")
                    return
        record(self.environment, "abuse", "join limiter reached", started, "30 joins from one address, none limited")

    @task
    def forged_proof(self) -> None:
        """A join with a proof of work that is not one: refused with 403 ``pow_invalid`` where the event
        asks for work (429 once the limiter is reached; where no work is asked the join succeeds)."""
        self.client.cookies.clear()
        proof = {"challenge": "k1.eyJlIjoiZGVtbyJ9.AAAA", "solution": "0"}
        with self.client.post(f"/api/v1/events/{EVENT}/join", name="abuse: forged proof", json={"pow": proof},
                              catch_response=True) as r:  # fmt: skip
            if r.status_code in (201, 429):
                r.success()
            elif r.status_code == 403 and problem_code(r) == "pow_invalid":
                r.success()
                record(self.environment, "abuse", "pow refused", time.monotonic())
            else:
                r.failure(f"forged proof answered {r.status_code}")


def _ramp(spec: str) -> list[tuple[float, int]]:
    """``"30:10,30:20"`` → [(30.0, 10), (60.0, 20)]: each step's end (seconds from the start) and users."""
    steps, end = [], 0.0
    for part in spec.split(","):
        seconds, users = part.split(":")
        end += float(seconds)
        steps.append((end, int(users)))
    return steps


if os.environ.get("SURGEGATE_RAMP"):  # a shape class present is always used, so only when asked for

    class RampShape(LoadTestShape):
        """Users (arrival generators) step up as ``SURGEGATE_RAMP`` lists; the run ends after the last."""

        steps = _ramp(os.environ["SURGEGATE_RAMP"])

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            for end, users in self.steps:
                if elapsed < end:
                    return users, float(max(users, 1))
            return None


@events.test_stop.add_listener
def check_invariants(environment: Environment, **_: Any) -> None:
    """With ``SURGEGATE_CHECK_DSN``: no slot holds more confirmed appointments than seats, no person two
    confirmed appointments for one event, no admission two. A broken one is printed and fails the run."""
    dsn = os.environ.get("SURGEGATE_CHECK_DSN")
    if not dsn or isinstance(environment.runner, WorkerRunner):  # once, on the master of a distributed run
        return
    # A process of its own: asyncpg under gevent's patched sockets is not something to rely on.
    if subprocess.run([sys.executable, "-m", "loadtests.invariants", dsn], check=False).returncode != 0:
        environment.process_exit_code = 1
