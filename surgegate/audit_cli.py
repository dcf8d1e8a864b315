"""``surgegate audit verify|export|public-key|archive``: prove the audit log, or hand it over for safekeeping.

These read PostgreSQL directly (``--database-url`` or ``SURGEGATE_DATABASE_URL``), read-only but
``archive`` (which detaches the oldest audit_log partition, shared/partitions.py): an
auditor checks the database itself, not what an API in front of it says. Checkpoint signatures are
checked with the public keys derived from ``SURGEGATE_AUDIT_SIGNING_KEY`` or given with
``--public-key`` (what ``surgegate audit public-key`` prints), so an auditor needs no private key.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared import audit, partitions
from shared.settings import Settings, SettingsError
from surgegate.options import SharedOptions


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    shared.add("--database-url", help="PostgreSQL DSN (default SURGEGATE_DATABASE_URL)")
    common = shared.parser
    p = sub.add_parser(
        "audit", parents=[common], help="verify the audit log's hash chain and signed checkpoints; export it"
    )
    p.set_defaults(func=shared.wrap(cmd_audit))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    v = actions.add_parser(
        "verify", parents=[common], help="exit 0 if the log is intact, else 1 naming the first bad audit_id"
    )
    v.add_argument(
        "--public-key", action="append", default=[], help="base64url Ed25519 public key (repeatable); "
        "default: those of SURGEGATE_AUDIT_SIGNING_KEY",
    )  # fmt: skip
    v.add_argument(
        "--checkpoints", type=Path, action="append", default=[], help="an export (JSON Lines) whose signed "
        "checkpoints are checked too, e.g. one kept in write-once storage (repeatable)",
    )  # fmt: skip
    v.set_defaults(audit_func=_verify)

    e = actions.add_parser(
        "export", parents=[common], help="write sealed rows and signed checkpoints since a time as JSON Lines"
    )
    e.add_argument("--since", required=True, type=_moment, help="ISO 8601 date or time (UTC unless it says)")
    e.add_argument("--out", type=Path, help="file to write (default: standard output)")
    e.set_defaults(audit_func=_export)

    k = actions.add_parser("public-key", parents=[common], help="print the public key(s) that verify the checkpoints")
    k.set_defaults(audit_func=_public_key)

    a = actions.add_parser(
        "archive", parents=[common], help="detach the oldest audit_log partition(s) (after exporting them) for "
        "pg_dump; exit 1 if it cannot be archived yet",
    )  # fmt: skip
    a.set_defaults(audit_func=_archive)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an ISO 8601 date or time, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _database_url(args: argparse.Namespace, settings: Settings) -> str:
    url: str | None = args.database_url or settings.database_url
    if not url:
        raise SettingsError("SURGEGATE_DATABASE_URL is not set (or pass --database-url)")
    return url


def cmd_audit(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    code: int = args.audit_func(args, settings)
    return code


def _public_key(args: argparse.Namespace, settings: Settings) -> int:
    keys = audit.AuditKeys.from_seeds(settings.audit_signing_keys)
    if not keys.public:
        print("surgegate: SURGEGATE_AUDIT_SIGNING_KEY is not set", file=sys.stderr)
        return 2
    for kid, key in keys.public.items():
        print(f"{kid} {base64.urlsafe_b64encode(audit.public_bytes(key)).decode().rstrip('=')}")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    try:
        keys = (
            audit.AuditKeys.verifying(args.public_key)
            if args.public_key
            else audit.AuditKeys.from_seeds(settings.audit_signing_keys)
        )
    except ValueError:
        print("surgegate: --public-key must be base64url of a 32-byte Ed25519 public key", file=sys.stderr)
        return 2
    try:
        kept = [cp for path in args.checkpoints for cp in audit.read_checkpoints(path.read_text("utf-8").splitlines())]
    except (OSError, ValueError, KeyError) as exc:
        print(f"surgegate: --checkpoints: cannot read {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(_run_verify(_database_url(args, settings), keys, kept))
    if report.problem is not None:
        print(f"audit log NOT intact: {report.problem}", file=sys.stderr)
        return 1
    print(
        f"audit log intact: {report.rows} sealed rows, {report.checkpoints} signed checkpoints verified, "
        f"{report.unsealed} rows not sealed yet"
    )
    if not keys.public:
        print("warning: no public key given, so no checkpoint signature was checked", file=sys.stderr)
    return 0


async def _run_verify(dsn: str, keys: audit.AuditKeys, kept: list[dict[str, Any]]) -> audit.Report:
    from shared.db import connect

    con = await connect(dsn)
    try:
        return await audit.verify(con, keys, kept=kept)
    finally:
        await con.close()


def _export(args: argparse.Namespace, settings: Settings) -> int:
    dsn = _database_url(args, settings)
    if args.out is None:
        rows, cps = asyncio.run(_run_export(dsn, args.since, sys.stdout))
    else:
        with args.out.open("x", encoding="utf-8") as out:  # never overwrite an earlier export
            rows, cps = asyncio.run(_run_export(dsn, args.since, out))
    print(f"exported {rows} rows and {cps} checkpoints", file=sys.stderr)
    return 0


async def _run_export(dsn: str, since: datetime, out: Any) -> tuple[int, int]:
    from shared.db import connect

    con = await connect(dsn)
    try:
        return await audit.export(con, since, out)
    finally:
        await con.close()


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    try:
        done = asyncio.run(_run_archive(_database_url(args, settings)))
    except partitions.CannotArchive as e:
        print(f"not archived: {e}", file=sys.stderr)
        return 1
    for part in done:
        seqs = f"seq {part.first_seq}..{part.last_seq}" if part.rows else "no rows"
        print(f"detached {part.partition} ({part.rows} rows, {seqs}); pg_dump it, then DROP TABLE {part.partition}")
    return 0


async def _run_archive(dsn: str) -> list[partitions.Archived]:
    from shared.db import connect

    con = await connect(dsn)
    try:
        async with con.transaction():
            return await partitions.archive_oldest(con)
    finally:
        await con.close()
