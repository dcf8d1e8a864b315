"""The audit log you can prove: a hash chain sealed in the background, and signed checkpoints.

Request paths insert audit rows with ``shared.queries.INSERT_AUDIT`` in the transaction that makes
the change, unsealed (``seq``, ``prev_hash``, ``row_hash`` NULL; a trigger sees to it), so bookings
never wait on one chain head. The sealer (:func:`seal`, a worker cron job every second) takes the
unsealed rows older than a small margin in ``audit_id`` order, under an advisory try-lock, and gives
each the next ``seq`` and ``row_hash = sha256(PREFIX || prev_hash || canonical(row))``, where
``canonical`` is the row's every column but the hashes (``seq`` included), as sorted compact JSON
(:func:`canonical`). The chain runs by ``seq``: bigserial ids commit out of order, so a row that
commits after a higher id was sealed is sealed later with a later ``seq``; nothing is ever re-sealed.

Checkpoints (:func:`checkpoint_if_due`): at intervals the head (``seq``, its ``audit_id`` and
``row_hash``) is signed with Ed25519 and stored in ``audit_checkpoints``. A hash chain alone only
proves the rows agree with each other: someone able to write the table could rewrite a row and
recompute every hash after it. The signature, made with a key the database does not hold, and its
copies exported to write-once storage, pin what the chain was.

:func:`verify` walks the chain and the checkpoints and reports the first row in chain order that is
not what was sealed: changed (its hash), removed (a gap, or the next row's link points at nothing),
inserted (the next row's link skips it), reordered (a link points forward), or a run of rows
rewritten with fresh hashes (a checkpoint's signed head disagrees). The append-only triggers make
none of this happen by accident; the chain catches it when a superuser disabled them to do it.
Rows appended at the end are not tampering (anyone allowed to act is allowed to be audited).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared import partitions, queries
from shared.locks import LockNamespace, try_xact_lock

SEAL_COLUMNS = frozenset({"seq", "prev_hash", "row_hash"})
GENESIS = bytes(32)  # the prev_hash of seq 1
_ROW_PREFIX = b"surgegate-audit-row-v1\0"
_CHECKPOINT_PREFIX = b"surgegate-audit-checkpoint-v1\0"
SEAL_BATCH = 5000
# How many recent rows verify remembers to tell an inserted row from a removed one.
_RECENT = 10_000


# --- what is hashed ---------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A column's value as JSON: timestamps in UTC with microseconds, UUIDs as text, bytes as hex."""
    if value is None or isinstance(value, str | int | float | bool | dict | list):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    # A new column of a type not listed here must be given a canonical form before it is sealed.
    raise TypeError(f"audit_log column of type {type(value).__name__} has no canonical form")


def content(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of an audit row but the hashes, as JSON values (``seq`` included when set)."""
    return {name: plain(value) for name, value in row.items() if name not in SEAL_COLUMNS or name == "seq"}


def canonical(row: Mapping[str, Any], seq: int) -> bytes:
    """The bytes a row's hash covers: its content with ``seq``, as sorted compact UTF-8 JSON."""
    body = content(row) | {"seq": seq}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def row_hash(prev_hash: bytes, row: Mapping[str, Any], seq: int) -> bytes:
    return hashlib.sha256(_ROW_PREFIX + prev_hash + canonical(row, seq)).digest()


# --- keys --------------------------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A public key's short name, stored with each checkpoint it signed."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


@dataclass(frozen=True)
class AuditKeys:
    """The key that signs checkpoints (None: unsigned) and the public keys that verify them, by id."""

    signing: Ed25519PrivateKey | None
    public: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_seeds(cls, seeds: Iterable[str]) -> AuditKeys:
        """From ``SURGEGATE_AUDIT_SIGNING_KEY``'s seeds (settings checked them): the last one signs."""
        private = [Ed25519PrivateKey.from_private_bytes(_b64decode(seed)) for seed in seeds]
        public = {key_id(k.public_key()): k.public_key() for k in private}
        return cls(private[-1] if private else None, public)

    @classmethod
    def verifying(cls, public_keys: Iterable[str]) -> AuditKeys:
        """Public keys only (base64url of the 32 raw bytes), as an auditor holds them."""
        keys = [Ed25519PublicKey.from_public_bytes(_b64decode(k)) for k in public_keys]
        return cls(None, {key_id(k): k for k in keys})


def checkpoint_message(seq: int, audit_id: int, head_hash: bytes, signed_at: datetime) -> bytes:
    return _CHECKPOINT_PREFIX + f"{seq}\n{audit_id}\n{head_hash.hex()}\n{plain(signed_at)}".encode()


# --- sealing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    rows: int
    head_seq: int | None
    checkpoint_id: int | None = None


async def seal(
    con: asyncpg.Connection, *, margin_s: float, limit: int = SEAL_BATCH, partition_ids: int = partitions.PARTITION_IDS
) -> Sealed | None:
    """Extend the chain by up to ``limit`` unsealed rows older than ``margin_s``, in the caller's
    transaction, after making sure audit_log has a partition of ``partition_ids`` ids ahead
    (:func:`shared.partitions.ensure_ahead`). None when another sealer holds the chain (it will do
    the work); safe to run any time, from any number of workers."""
    if not await try_xact_lock(con, LockNamespace.AUDIT_CHAIN, "chain"):
        return None
    await partitions.ensure_ahead(con, partition_ids)
    # Every sealed row may sit in archived partitions: the chain then continues from the archive's head.
    head = await con.fetchrow(queries.AUDIT_HEAD) or await con.fetchrow(queries.AUDIT_ARCHIVED_HEAD)
    seq, prev = (head["seq"], bytes(head["row_hash"])) if head else (0, GENESIS)
    ids: list[int] = []
    seqs: list[int] = []
    prevs: list[bytes] = []
    hashes: list[bytes] = []
    for row in await con.fetch(queries.AUDIT_UNSEALED, margin_s, limit):
        seq += 1
        digest = row_hash(prev, row, seq)
        ids.append(row["audit_id"])
        seqs.append(seq)
        prevs.append(prev)
        hashes.append(digest)
        prev = digest
    if ids:
        await con.execute(queries.AUDIT_SEAL, ids, seqs, prevs, hashes)
    return Sealed(len(ids), seq or None)


async def checkpoint_if_due(
    con: asyncpg.Connection, keys: AuditKeys, *, every_s: float, now: datetime, force: bool = False
) -> asyncpg.Record | None:
    """Sign the chain's head when it moved and the last checkpoint is ``every_s`` old (or ``force``).
    Call it after :func:`seal` returned, in the same transaction (which holds the chain's lock)."""
    if keys.signing is None:
        return None
    head = await con.fetchrow(queries.AUDIT_HEAD)
    last = await con.fetchrow(queries.AUDIT_LAST_CHECKPOINT)
    if head is None or (last is not None and last["seq"] == head["seq"]):
        return None
    if not force and last is not None and (now - last["signed_at"]).total_seconds() < every_s:
        return None
    head_hash = bytes(head["row_hash"])
    signature = keys.signing.sign(checkpoint_message(head["seq"], head["audit_id"], head_hash, now))
    record: asyncpg.Record = await con.fetchrow(
        queries.AUDIT_INSERT_CHECKPOINT,
        head["seq"], head["audit_id"], head_hash, now, key_id(keys.signing.public_key()), signature,
    )  # fmt: skip
    return record


# --- verifying ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    audit_id: int | None  # the first row in chain order that is not as sealed
    reason: str

    def __str__(self) -> str:
        where = f"audit_id {self.audit_id}" if self.audit_id is not None else "the chain"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Report:
    rows: int  # sealed rows walked
    checkpoints: int  # checkpoints whose signature and head were checked
    unsealed: int  # rows not sealed yet (they are not vouched for)
    problem: Problem | None

    @property
    def intact(self) -> bool:
        return self.problem is None


def _check_signature(cp: Mapping[str, Any], keys: AuditKeys) -> str | None:
    if not keys.public:  # nothing to check with (the caller says so); heads are still compared
        return None
    key = keys.public.get(cp["key_id"])
    if key is None:
        return f"checkpoint {cp['checkpoint_id']} is signed by unknown key {cp['key_id']}"
    message = checkpoint_message(cp["seq"], cp["audit_id"], bytes(cp["head_hash"]), cp["signed_at"])
    try:
        key.verify(bytes(cp["signature"]), message)
    except InvalidSignature:
        return f"checkpoint {cp['checkpoint_id']} has a bad signature (forged or altered)"
    return None


def _checkpoints_ahead(
    checkpoints: Sequence[Mapping[str, Any]], keys: AuditKeys, start_seq: int, start_hash: bytes
) -> tuple[dict[int, list[Mapping[str, Any]]], int, Problem | None]:
    """Checkpoints past ``start_seq`` by seq, once their signatures hold; those of archived rows are
    left out, the one at ``start_seq`` compared with the archived head. Returns (by seq, checked, problem)."""
    by_seq: dict[int, list[Mapping[str, Any]]] = {}
    checked = 0
    for cp in checkpoints:
        if (bad := _check_signature(cp, keys)) is not None:
            return {}, 0, Problem(cp["audit_id"], bad)
        if cp["seq"] == start_seq and bytes(cp["head_hash"]) != start_hash:
            reason = f"checkpoint {cp['checkpoint_id']} disagrees with the archived head at seq {start_seq}"
            return {}, 0, Problem(cp["audit_id"], reason)
        if cp["seq"] <= start_seq:
            checked += cp["seq"] == start_seq
            continue
        by_seq.setdefault(cp["seq"], []).append(cp)
    return by_seq, checked, None


async def walk(
    rows: AsyncIterator[Mapping[str, Any]],
    checkpoints: Sequence[Mapping[str, Any]],
    keys: AuditKeys,
    *,
    chain: bool = True,
    archived: Mapping[str, Any] | None = None,
) -> tuple[int, int, Problem | None]:
    """Check sealed rows (in seq order) against each other and against the checkpoints; returns
    (rows walked, checkpoints checked, the first problem). ``chain=False`` trusts each row's stored
    hashes and only compares checkpoints with them: what a check without the chain would catch.
    ``archived``: where the chain stood at the last archived partition (``audit_archives``); the walk
    starts after it, and checkpoints of archived rows are checked against it where they meet it
    (the archived rows themselves are proven by their export)."""
    start_seq, start_hash = (archived["seq"], bytes(archived["row_hash"])) if archived else (0, GENESIS)
    by_seq, checked, bad = _checkpoints_ahead(checkpoints, keys, start_seq, start_hash)
    if bad is not None:
        return 0, 0, bad
    expected_seq, prev = start_seq + 1, start_hash
    # Hashes of recent good rows -> the audit_id of the row after each (None: not seen yet).
    recent: OrderedDict[bytes, int | None] = OrderedDict({start_hash: None})
    first_unvouched: int | None = None  # the first row after the last checkpoint that matched
    walked = 0
    async for row in rows:
        audit_id, seq = row["audit_id"], row["seq"]
        if first_unvouched is None:
            first_unvouched = audit_id
        stored_prev, stored_hash = bytes(row["prev_hash"]), bytes(row["row_hash"])
        if chain:
            if stored_prev != prev or seq != expected_seq:
                if stored_prev in recent and stored_prev != prev and recent[stored_prev] is not None:
                    inserted = recent[stored_prev]
                    return walked, checked, Problem(inserted, "inserted: the chain's next row was sealed without it")
                if seq != expected_seq and stored_prev not in recent:
                    reason = f"the row sealed before it (seq {expected_seq}) is missing: removed"
                else:
                    reason = "out of place: its link does not follow the row before it (reordered, or one removed)"
                return walked, checked, Problem(audit_id, reason)
            computed = row_hash(prev, row, seq)
            if computed != stored_hash:
                return walked, checked, Problem(audit_id, "changed: its content is not what was sealed")
        else:
            computed = stored_hash
        recent[prev] = audit_id
        recent[computed] = None
        while len(recent) > _RECENT:
            recent.popitem(last=False)
        prev, expected_seq, walked = computed, seq + 1, walked + 1
        for cp in by_seq.pop(seq, []):
            if bytes(cp["head_hash"]) != computed or cp["audit_id"] != audit_id:
                return (
                    walked,
                    checked,
                    Problem(
                        first_unvouched,
                        f"rewritten: checkpoint {cp['checkpoint_id']} signed another chain up to audit_id "
                        f"{cp['audit_id']} (seq {seq}); the rows from here to there are not what was sealed",
                    ),
                )
            checked += 1
            first_unvouched = None
    if by_seq:
        cp = min((c for cps in by_seq.values() for c in cps), key=lambda c: c["seq"])
        return (
            walked,
            checked,
            Problem(
                cp["audit_id"],
                f"removed: checkpoint {cp['checkpoint_id']} vouches for seq {cp['seq']} but the chain ends at seq "
                f"{expected_seq - 1}",
            ),
        )
    return walked, checked, None


async def verify(
    con: asyncpg.Connection, keys: AuditKeys, *, chain: bool = True, kept: Sequence[Mapping[str, Any]] = ()
) -> Report:
    """Walk the whole sealed chain and every checkpoint in one consistent snapshot. Read-only.
    ``kept``: checkpoints kept elsewhere (:func:`read_checkpoints` of an export), checked like the
    database's own, so deleting checkpoints from the database does not hide a rewrite."""
    async with con.transaction(isolation="repeatable_read", readonly=True):
        checkpoints = [dict(r) for r in await con.fetch(queries.AUDIT_CHECKPOINTS)] + list(kept)
        unsealed = await con.fetchval(queries.AUDIT_UNSEALED_COUNT)
        archived = await con.fetchrow(queries.AUDIT_ARCHIVED_HEAD)
        rows = con.cursor(queries.AUDIT_CHAIN, prefetch=1000)
        walked, checked, problem = await walk(rows.__aiter__(), checkpoints, keys, chain=chain, archived=archived)
    return Report(walked, checked, unsealed, problem)


# --- exporting ---------------------------------------------------------------------------------------


async def export(con: asyncpg.Connection, since: datetime, out: Any) -> tuple[int, int]:
    """Write sealed rows at or after ``since`` and the checkpoints signed since then to ``out`` (a text
    file) as JSON Lines: ``{"kind": "row", ...content, "prev_hash", "row_hash"}`` (hex), then
    ``{"kind": "checkpoint", ...}``. Each row's hash can be recomputed from its line alone
    (:func:`row_hash` of ``prev_hash`` and the other fields). Returns (rows, checkpoints)."""
    rows = cps = 0
    async with con.transaction(isolation="repeatable_read", readonly=True):
        async for row in con.cursor(queries.AUDIT_CHAIN_SINCE, since, prefetch=1000):
            line = {"kind": "row", **content(row), "prev_hash": bytes(row["prev_hash"]).hex(),
                    "row_hash": bytes(row["row_hash"]).hex()}  # fmt: skip
            out.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
            rows += 1
        for cp in await con.fetch(queries.AUDIT_CHECKPOINTS_SINCE, since):
            out.write(json.dumps({"kind": "checkpoint", **{k: plain(v) for k, v in cp.items()}}, sort_keys=True) + "\n")
            cps += 1
    return rows, cps


def read_checkpoints(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The checkpoints of an export (its ``"kind": "checkpoint"`` lines) as :func:`verify` takes them."""
    found: list[dict[str, Any]] = []
    for line in lines:
        item = json.loads(line) if line.strip() else {}
        if item.get("kind") == "checkpoint":
            found.append({
                "checkpoint_id": item["checkpoint_id"], "seq": item["seq"], "audit_id": item["audit_id"],
                "head_hash": bytes.fromhex(item["head_hash"]), "signed_at": datetime.fromisoformat(item["signed_at"]),
                "key_id": item["key_id"], "signature": bytes.fromhex(item["signature"]),
            })  # fmt: skip
    return found


# --- reading -----------------------------------------------------------------------------------------


async def page(
    con: asyncpg.Connection,
    *,
    event_id: str | None,
    since: datetime | None,
    action: str | None,
    after: int,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit + 1`` rows after audit_id ``after``, oldest first (one more than asked: whether a
    next page exists)."""
    rows: list[asyncpg.Record] = await con.fetch(queries.AUDIT_PAGE, event_id, since, action, after, limit + 1)
    return rows
