"""Redis keys: the exact strings are a storage format (a running deployment's data lives under
them), so each is pinned here; and no module but shared/keys.py spells one."""

from __future__ import annotations

import ast
from pathlib import Path

from shared import keys
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "waitingroom", "admission", "booking_worker", "surgegate", "loadtests")


def test_every_key_is_byte_identical() -> None:
    assert keys.queue_key("ev-1") == "sg:q:{ev-1}"
    assert keys.alive_key("ev-1") == "sg:alive:{ev-1}"
    assert keys.abandoned_key("ev-1") == "sg:abandoned:{ev-1}"
    assert keys.person_place_key("ev-1", "c0ffee") == "sg:pp:{ev-1}:c0ffee"
    assert (
        keys.person_ref_text(bytes.fromhex("c0ffee") * 10 + b"\xff\xfe")
        == "wP_uwP_uwP_uwP_uwP_uwP_uwP_uwP_uwP_uwP_u__4"
    )
    assert keys.admitted_at_key("ev-1", "v-42") == "sg:adm:{ev-1}:v-42"
    assert keys.admission_runs_key("ev-1") == "sg:runs:{ev-1}"
    assert keys.waits_key("ev-1") == "sg:waits:{ev-1}"
    assert keys.active_admissions_key("ev-1") == "sg:active:{ev-1}"
    assert keys.rate_lease_key("ev-1") == "sg:ratectl:{ev-1}"
    assert keys.pow_used_key("n0nce") == "sg:pow:n0nce"
    assert keys.join_bucket_key("ip:203.0.113.7") == "sg:rl:join:ip:203.0.113.7"
    assert keys.api_bucket_key("token", "write", "t-1") == "sg:rl:api:token:write:t-1"
    assert keys.api_bucket_key("client", "read", "ip:2001:db8::/64") == "sg:rl:api:client:read:ip:2001:db8::/64"
    assert keys.booking_latency_key("ev-1") == "sg:latency:{ev-1}"
    assert keys.token_failures_key(29_000_000) == "sg:tokfail:29000000"
    assert keys.BOOKING_QUEUE_NAME == "surgegate:booking" == Settings().queue_name


def test_no_other_module_spells_a_key() -> None:
    spelled = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "shared" / "keys.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                if node.value in (keys.PREFIX, keys.BOOKING_QUEUE_NAME) or node.value.startswith("sg:"):
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert spelled == []


def test_an_events_keys_share_one_hash_slot_and_events_spread() -> None:
    from redis.crc import key_slot

    def of(event_id: str) -> set[int]:
        return {
            key_slot(k.encode())
            for k in (
                keys.queue_key(event_id),
                keys.alive_key(event_id),
                keys.abandoned_key(event_id),
                keys.person_place_key(event_id, "c0ffee"),
                keys.admitted_at_key(event_id, "v-42"),
                keys.admission_runs_key(event_id),
                keys.waits_key(event_id),
                keys.active_admissions_key(event_id),
                keys.rate_lease_key(event_id),
                keys.booking_latency_key(event_id),
            )
        }

    slots = [of(f"ev-{i}") for i in range(20)]
    assert all(len(s) == 1 for s in slots)  # a cluster runs every script of an event on one node
    assert len(set().union(*slots)) > 10  # and different events hash apart (negative control)
