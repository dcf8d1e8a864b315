"""Rate limits (shared/limits.py): who the client is, the Redis buckets' all-or-nothing take, and the
in-memory twin the booking API falls back to, which must give the very same verdicts."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from redis.asyncio import Redis

from shared.limits import Buckets, Limit, LocalBuckets, client_key, parse_networks
from shared.redis import create_redis
from surgegate.embedded import EmbeddedValkey

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])


def test_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_key("203.0.113.7", None, PROXIES) == "ip:203.0.113.7"
    # an untrusted peer cannot claim to be someone else
    assert client_key("203.0.113.7", "198.51.100.1", PROXIES) == "ip:203.0.113.7"
    # behind our proxies: the right-most address that is not one of them
    assert client_key("10.0.0.5", "198.51.100.1, 10.1.1.1", PROXIES) == "ip:198.51.100.1"
    # what the client prepends itself is never believed
    assert client_key("10.0.0.5", "1.1.1.1, 198.51.100.1", PROXIES) == "ip:198.51.100.1"
    assert client_key("10.0.0.5", "garbage, 198.51.100.1", PROXIES) == "ip:198.51.100.1"
    assert client_key("10.0.0.5", "garbage", PROXIES) == "ip:10.0.0.5"
    assert client_key(None, None, PROXIES) == "ip:unknown"


def test_ipv6_clients_are_grouped_per_64() -> None:
    a = client_key("2001:db8:1:2::1", None, PROXIES)
    b = client_key("2001:db8:1:2:ffff::9", None, PROXIES)
    c = client_key("2001:db8:1:3::1", None, PROXIES)
    assert a == b == "ip:2001:db8:1:2::/64"
    assert c != a
    assert client_key("::ffff:203.0.113.7", None, PROXIES) == "ip:203.0.113.7"  # IPv4-mapped


SMALL = Limit(per_minute=60, burst=2)  # one a second, two at once
LARGE = Limit(per_minute=600, burst=5)


async def test_a_take_charges_every_bucket_or_none(redis: Redis, clean: None) -> None:
    buckets = Buckets(redis)
    now = 1_800_000_000.0
    assert [(await buckets.take(now, [("sg:t:a", SMALL)])).allowed for _ in range(3)] == [True, True, False]
    # "a" is empty, so a take from "a" and "b" is refused by "a" (index 0), and "b" pays nothing:
    for _ in range(4):
        verdict = await buckets.take(now, [("sg:t:a", SMALL), ("sg:t:b", LARGE)])
        assert not verdict.allowed and verdict.refused_by == 0 and verdict.retry_after_s == 1
    assert [(await buckets.take(now, [("sg:t:b", LARGE)])).allowed for _ in range(6)] == [True] * 5 + [False]
    verdict = await buckets.take(now, [("sg:t:c", LARGE), ("sg:t:b", LARGE)])
    assert not verdict.allowed and verdict.refused_by == 1
    # refilled at its rate: one second later, "a" holds one request again
    assert (await buckets.take(now + 1, [("sg:t:a", SMALL)])).allowed
    assert not (await buckets.take(now + 1, [("sg:t:a", SMALL)])).allowed


async def test_concurrent_takes_stay_atomic(redis: Redis, clean: None) -> None:
    """Takes in flight together share one pipeline; each is still one atomic script call."""
    buckets = Buckets(redis)
    verdicts = await asyncio.gather(
        *(buckets.take(0.0, [("sg:t:shared", Limit(60, 5)), (f"sg:t:own{i}", Limit(60, 5))]) for i in range(40))
    )
    assert sum(v.allowed for v in verdicts) == 5
    assert {v.refused_by for v in verdicts if not v.allowed} == {0}
    # the refused takes cost their own buckets nothing: each still holds its whole burst
    for i in range(40):
        expected = 5 if not verdicts[i].allowed else 4
        assert [(await buckets.take(0.0, [(f"sg:t:own{i}", Limit(60, 5))])).allowed for _ in range(6)].count(True) == (
            expected
        )


@pytest.mark.slow  # starts and restarts its own Valkey
async def test_a_restarted_redis_gets_the_script_again(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "vk", persist=False)
    server.start()
    client = create_redis(server.url)
    try:
        buckets = Buckets(client)
        assert (await buckets.take(0.0, [("sg:t:a", Limit(60, 1))])).allowed  # a new server: loaded first
        server.stop()
        server.start()  # scripts are gone with the process
        assert (await buckets.take(0.0, [("sg:t:a", Limit(60, 1))])).allowed
        assert not (await buckets.take(0.0, [("sg:t:a", Limit(60, 1))])).allowed
    finally:
        await client.aclose()
        server.stop()


async def test_disabled_limits_are_skipped_without_a_round_trip() -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)  # nothing listens on port 1
    try:
        for off in (Limit(0, 10), Limit(60, 0)):
            assert (await Buckets(dead).take(0.0, [("sg:t:x", off)])).allowed
    finally:
        await dead.aclose()


async def test_the_local_twin_gives_the_same_verdicts_as_the_script(redis: Redis, clean: None) -> None:
    """Same requests, same times (irregular, sometimes backwards as across hosts' clocks): every
    verdict of LocalBuckets equals the Redis script's, refusals and Retry-After included."""
    rng = random.Random(14)
    limits = {"sg:t:p": SMALL, "sg:t:q": LARGE, "sg:t:r": Limit(per_minute=7.5, burst=3)}
    shared, local = Buckets(redis), LocalBuckets()
    now = 1_800_000_000.0
    seen = set()
    for _ in range(600):
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.37, 1.0, 3.0, -0.2])
        chosen = rng.sample(sorted(limits), rng.randint(1, 3))
        charges = [(key, limits[key]) for key in chosen]
        expected = await shared.take(now, charges)
        assert local.take(now, charges) == expected
        seen.add((expected.allowed, expected.refused_by))
    assert {(True, None), (False, 0), (False, 1)} <= seen  # both kinds of verdict were compared


def test_the_local_twin_forgets_the_least_recently_used_bucket_first() -> None:
    local = LocalBuckets(max_keys=2)
    for _ in range(2):
        assert local.take(0.0, [("a", SMALL)]).allowed
    assert not local.take(0.0, [("a", SMALL)]).allowed
    assert local.take(0.0, [("b", SMALL)]).allowed
    assert not local.take(0.0, [("a", SMALL)]).allowed  # still remembered (two buckets fit)
    assert local.take(0.0, [("c", SMALL)]).allowed  # "b" is forgotten now, the least recently used
    assert not local.take(0.0, [("a", SMALL)]).allowed
    assert local.take(0.0, [("d", SMALL)]).allowed  # and now "c"
    assert local.take(0.0, [("e", SMALL)]).allowed  # and now "a": it starts full again
    assert local.take(0.0, [("a", SMALL)]).allowed
