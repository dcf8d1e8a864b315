"""No identity data of a person in any log record or metric, through the whole in-process path, in
the text log format and the JSON-lines one (SURGEGATE_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from shared.metrics import Metrics
from shared.settings import Settings
from shared.tokens import TokenCodec
from surgegate.logs import JsonLines
from tests.helpers import (
    admission_token,
    booking_headers,
    metric_value,
    person,
    running_worker,
    seed_site_and_slot,
)


async def test_person_data_never_logged_or_in_metrics(
    api: TestClient,
    settings: Settings,
    codec: TokenCodec,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    slot_id = await seed_site_and_slot(pool, capacity=1)
    people = [person(i) for i in (424242, 515151, 616161)]
    worker_metrics = Metrics()
    async with running_worker(settings, worker_metrics):
        for p in people:  # one booked, one slot_full, one with bad input
            await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": p},
                           headers=booking_headers(admission_token(codec)))  # fmt: skip
        bad = {**people[2], "email": "not-an-email"}
        await api.post("/api/v1/appointments", json={"slot_id": slot_id, "person": bad},
                       headers=booking_headers(admission_token(codec)))  # fmt: skip
    assert await pool.fetchval("SELECT count(*) FROM appointments") == 1
    assert any("book" in r.getMessage() for r in caplog.records)  # the worker did log its jobs
    from admission.keys import METRICS

    json_lines = [JsonLines().format(r) for r in caplog.records]
    assert all(
        json.loads(line)["message"] == r.getMessage() for line, r in zip(json_lines, caplog.records, strict=True)
    )
    # the requests were counted (by route template: nothing of the body or the person reaches a label)
    labels = {"service": "api", "route": "/api/v1/appointments", "method": "POST"}
    assert metric_value(api.app[METRICS], "surgegate_http_request_seconds_count", **labels) == 4
    exposed = "\n".join(
        [caplog.text, *json_lines, api.app[METRICS].render().decode(), worker_metrics.render().decode()]
    )
    for p in people:
        for field in ("id_number", "name", "email"):
            assert p[field] not in exposed
    stored = await pool.fetchrow("SELECT person_ref, person_sealed FROM appointments")
    assert people[0]["id_number"].encode() not in bytes(stored["person_ref"])
    assert people[0]["name"].encode() not in bytes(stored["person_sealed"])
