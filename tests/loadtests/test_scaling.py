"""The scaling harness computes its figures right (never how fast anything was): joins come from
distinct client addresses, the connections of k processes are summed into one figure, every booking
sent is committed and counted, and the table's ratios are against the 1-process figure of the run."""

from __future__ import annotations

import argparse
import ipaddress

import pytest

from loadtests.loadgen import Result
from loadtests.scaling import ADDRESSES, Figure, client, measure, table


def test_join_addresses_are_distinct_and_inside_the_benchmarking_range() -> None:
    addresses = {client(i) for i in range(ADDRESSES)}
    assert len(addresses) == ADDRESSES
    network = ipaddress.ip_network("198.18.0.0/15")
    assert all(ipaddress.ip_address(a) in network for a in addresses)
    assert client(ADDRESSES) == client(0)


def test_table_compares_each_figure_with_its_one_process_run() -> None:
    one = Figure("joins/s", 1, Result(requests=1000, seconds=2.0), {"edges": 0.9, "machine": 2.0})
    two = Figure("joins/s", 2, Result(requests=1500, seconds=2.0), {"edges": 1.4, "machine": 2.0})
    rows = table([one, two])
    assert rows[2].startswith("| joins/s | 1 | 500 | 1.00 |")
    assert rows[3].startswith("| joins/s | 2 | 750 | 1.50 |")
    assert "/ 1.40 /" in rows[3]
    assert "| 1,800 / 0 / 0 |" in rows[2]  # 0.9 CPU-seconds per second for 500 joins/s: 1,800 µs each
    assert "| 1,867 / 0 / 0 |" in rows[3]


@pytest.mark.slow
async def test_the_harness_sums_processes_and_counts_every_booking(
    database_url: str, redis_url: str, clean: None
) -> None:
    args = argparse.Namespace(processes=[1, 2], seconds=0.5, concurrency=4, bookings=40, kinds=["edges", "workers"])
    figures = await measure(database_url, redis_url, args)
    assert [(f.kind, f.processes) for f in figures] == [
        ("status polls/s", 1), ("joins/s", 1), ("status polls/s", 2), ("joins/s", 2),
        ("bookings/s", 1), ("bookings/s", 2),
    ]  # fmt: skip
    for f in figures:
        assert f.result.requests > 0
        assert set(f.cpu) >= {"load generator", "redis", "postgresql", "machine"}
        if f.kind == "bookings/s":
            # committed appointments (each run has people of its own: none refused as a repeat)
            assert f.result.requests == 40
            assert set(f.result.statuses) <= {201, 202}
        else:
            assert sum(f.result.statuses.values()) == f.result.requests == len(f.result.latencies)
            assert set(f.result.statuses) == {201 if f.kind == "joins/s" else 200}
