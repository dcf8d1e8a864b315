"""Locust scenarios for rehearsing an opening against a running surgegate.

    pip install -e '.[load]'
    surgegate up                      # or any deployment; note the admin token it prints
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \
        --headless -u 2000 -r 200 -t 5m OpeningVisitor AbusiveClient

Users (pick with class names on the command line):

* ``OpeningVisitor`` — the cohort-opening spike: join, poll as told by ``poll_after_ms``, and once
  admitted search and book exactly like the queue page does, then leave.
* ``SteadyBooker`` — the same path at a steady pace, for booking throughput after the spike.
* ``AbusiveClient`` — forged and expired tokens, tickets used as tokens, malformed and oversized
  bodies, unknown ids. Every answer must be a 4xx problem+json; a 5xx is reported as a failure.

``SURGEGATE_EVENT`` selects the event (default ``demo``). Person data is synthetic. Each simulated
user sends its own ``X-Forwarded-For`` address (198.18.0.0/15, the benchmarking range); start the
servers with ``SURGEGATE_TRUSTED_PROXIES=127.0.0.1/32`` so the per-client join limit sees thousands of
clients, as in a real opening, instead of one loopback address.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from locust import HttpUser, between, task

EVENT = os.environ.get("SURGEGATE_EVENT", "demo")


def synthetic_person() -> dict[str, str]:
    n = uuid.uuid4().hex[:10]
    return {"id_number": f"LT-{n}", "name": f"Load Tester {n}", "email": f"lt{n}@example.org",
            "birth_date": "1985-06-15"}  # fmt: skip


class QueueThenBook(HttpUser):
    """Join, wait in line, then book through the API named by ``booking_url``."""

    abstract = True
    wait_time = between(0, 0)
    rejoin_after_booking = False

    def on_start(self) -> None:
        self.client.headers["X-Forwarded-For"] = f"198.18.{random.randrange(512) // 2}.{random.randrange(1, 255)}"
        self.admission: dict[str, Any] | None = None
        self.booked = False
        with self.client.post(f"/api/v1/events/{EVENT}/join", name="join", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"join answered {r.status_code}")
                self.ticket = None
                return
            body = r.json()
            self.ticket = body["ticket"]
            self.next_poll = time.monotonic() + body["poll_after_ms"] / 1000

    @task
    def step(self) -> None:
        if self.booked and self.rejoin_after_booking:
            self.client.cookies.clear()  # a live ticket cookie would return the same (used) place
            self.on_start()
            return
        if self.ticket is None or self.booked:
            time.sleep(1)
            return
        if self.admission is None:
            time.sleep(max(0.0, self.next_poll - time.monotonic()))
            r = self.client.get(f"/api/v1/events/{EVENT}/status", name="status",
                                headers={"Authorization": f"Bearer {self.ticket}"})  # fmt: skip
            status = r.json()
            self.next_poll = time.monotonic() + status["poll_after_ms"] / 1000
            if status["state"] == "admitted":
                self.admission = status
            return
        self.book()

    def book(self) -> None:
        assert self.admission is not None
        api = self.admission["booking_url"]
        auth = {"Authorization": f"Bearer {self.admission['admission_token']}"}
        sites = self.client.get(f"{api}/sites", headers=auth, name="sites").json()["sites"]
        site = random.choice(sites)["site_id"]
        now = datetime.now(UTC)
        window = {"site_id": site, "from": now.isoformat(), "to": (now + timedelta(days=7)).isoformat()}
        slots = self.client.get(f"{api}/slots", headers=auth, name="slots", params=window).json()["slots"]
        open_slots = [s for s in slots if s["remaining"] > 0] or slots
        key = uuid.uuid4().hex
        with self.client.post(f"{api}/appointments", name="book", catch_response=True,
                              headers={**auth, "Idempotency-Key": key},
                              json={"slot_id": random.choice(open_slots)["slot_id"], "person": synthetic_person()},
                              ) as r:  # fmt: skip
            if r.status_code in (201, 202, 409):
                r.success()  # a full slot is a correct answer under load, not a failure
            else:
                r.failure(f"book answered {r.status_code}")
        self.booked = True


class OpeningVisitor(QueueThenBook):
    weight = 10


class SteadyBooker(QueueThenBook):
    """Books, rejoins the queue and books again, at a steady pace."""

    weight = 1
    wait_time = between(1, 3)
    rejoin_after_booking = True


class AbusiveClient(HttpUser):
    weight = 1
    wait_time = between(0.1, 0.5)

    def _expect_4xx(self, method: str, path: str, name: str, **kwargs: Any) -> None:
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            if 400 <= r.status_code < 500 and r.headers.get("Content-Type", "").startswith("application/problem+json"):
                r.success()
            else:
                r.failure(f"expected a 4xx problem, got {r.status_code}")

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
