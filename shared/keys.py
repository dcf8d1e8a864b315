"""Every Redis key and queue name this project uses, built here and nowhere else (arq keeps its own
in ``arq/constants.py``: ``arq:job:{id}``, ``arq:result:{id}`` under the queue below).

The strings are a storage format: a running deployment's data lives under them, so changing one
loses that data (``tests/shared/test_keys.py`` pins each). All are ours under ``sg:``, apart from
the arq queue. Per-event keys carry the event id; nothing here is person data in the clear
(``person_ref`` is a keyed hash, ``client`` an address the edge already sees).

Hash tags (Valkey/Redis Cluster). Every key of one event carries the event id in braces,
``{event_id}``: a cluster hashes only the part in braces, so all of an event's keys live in one hash
slot, which its Lua scripts (each touches several) need, while different events hash to different
slots and so spread over the shards. The tag changed the strings once (``sg:q:ev-1`` became
``sg:q:{ev-1}``): an upgrade from a release without tags finds no state under the new names and
restores each queue from PostgreSQL (``waitingroom/recovery.py``), exactly as after a Redis that
lost its data. Keys that belong to no event (the per-client and per-token buckets, proof-of-work
nonces) carry no tag and are never used by a script together with an event's keys; a bucket
script that takes several buckets at once is only run against a single Redis
(``admission/throttle.py`` uses the queue's Redis, see ``Settings.queue_redis``).
"""

from __future__ import annotations

import base64

PREFIX = "sg"

# The arq queue (a sorted set) of booking attempts: the API enqueues, the worker takes, the edge's
# auto rate controller reads its depth. Settings.queue_name; tests use their own.
BOOKING_QUEUE_NAME = "surgegate:booking"


# --- an event's waiting room (waitingroom/queue.py) ---------------------------------------------


def queue_key(event_id: str) -> str:
    """Hash: the queue's state (joined, served, rate, paused, lottery...) — its one Lua script's."""
    return f"{PREFIX}:q:{{{event_id}}}"


def alive_key(event_id: str) -> str:
    """Sorted set: rank -> until when its holder counts as present (abandonment)."""
    return f"{PREFIX}:alive:{{{event_id}}}"


def abandoned_key(event_id: str) -> str:
    """Set of the ranks passed over because their holders had left."""
    return f"{PREFIX}:abandoned:{{{event_id}}}"


def person_ref_text(ref: bytes) -> str:
    """A person's keyed hash as it appears in :func:`person_place_key`: base64url without padding
    (43 characters for the 32 bytes). Not hex: one such key is kept per waiting person for 30 days,
    and the 21 characters saved are ~15 % of its memory (docs/benchmarks.md, "A million waiters")."""
    return base64.urlsafe_b64encode(ref).rstrip(b"=").decode()


def person_place_key(event_id: str, person_ref: str) -> str:
    """Hash (seq, visitor) of the place one person holds: one place per person; kept 30 days."""
    return f"{PREFIX}:pp:{{{event_id}}}:{person_ref}"


def admitted_at_key(event_id: str, visitor_id: str) -> str:
    """String: the moment this visitor's admission began (waitingroom/admissions.py), pinned at their
    first admitted status; set once, kept as long as a ticket lives."""
    return f"{PREFIX}:adm:{{{event_id}}}:{visitor_id}"


def admission_runs_key(event_id: str) -> str:
    """Sorted set: when the serving position reached each rank. One member per advance that reached
    new ranks: score = the last rank reached, member = ``"<first rank>:<queue-clock time>"``."""
    return f"{PREFIX}:runs:{{{event_id}}}"


def waits_key(event_id: str) -> str:
    """List of the latest waits (seconds from join to admission), newest first, for the stats."""
    return f"{PREFIX}:waits:{{{event_id}}}"


def active_admissions_key(event_id: str) -> str:
    """Sorted set of the event's admissions out and unused: member = rank, score = when it lapses.
    The edge adds to it when it admits; the booking worker removes a rank once its booking commits."""
    return f"{PREFIX}:active:{{{event_id}}}"


# --- the edge's guards ----------------------------------------------------------------------------


def rate_lease_key(event_id: str) -> str:
    """String: the edge that controls the event's rate now (a lease, waitingroom/autorate.py)."""
    return f"{PREFIX}:ratectl:{{{event_id}}}"


def pow_used_key(nonce: str) -> str:
    """String: a proof-of-work challenge already spent (replay guard, waitingroom/pow.py)."""
    return f"{PREFIX}:pow:{nonce}"


def join_bucket_key(client: str) -> str:
    """Hash (tokens, t): one client's join rate-limit bucket (shared/limits.py, waitingroom/views.py)."""
    return f"{PREFIX}:rl:join:{client}"


# --- the booking API's guards ---------------------------------------------------------------------


def api_bucket_key(scope: str, kind: str, who: str) -> str:
    """Hash (tokens, t): a booking-API rate-limit bucket (admission/throttle.py). ``scope`` is
    ``token`` (``who`` = the admission's token id) or ``client`` (``who`` = its client key, e.g.
    ``ip:203.0.113.7``); ``kind`` is ``read`` or ``write``."""
    return f"{PREFIX}:rl:api:{scope}:{kind}:{who}"


def eligibility_bucket_key(visitor_id: str) -> str:
    """Hash (tokens, t): eligibility evaluations of one queue ticket or admission (its visitor id;
    admission/eligibility.py). Random ids, nothing about the person."""
    return f"{PREFIX}:rl:elig:{visitor_id}"


# --- the booking worker's signals ---------------------------------------------------------------


def booking_latency_key(event_id: str) -> str:
    """List of the event's latest booking attempt latencies (seconds from enqueue to outcome),
    newest first; the worker writes it, the edge's auto rate controller reads it."""
    return f"{PREFIX}:latency:{{{event_id}}}"


# --- the booking API's token failures (shared/token_failures.py) ---------------------------------


def token_failures_key(minute: int) -> str:
    """Hash of one minute's admission-token failures (``minute`` = Redis server time // 60): field
    ``"<event id>:<reason>"`` (event ``-`` when the token never named a verified event) -> count.
    The booking API adds to it, the edge's console reads the last 15; it expires after 20 minutes."""
    return f"{PREFIX}:tokfail:{minute}"
