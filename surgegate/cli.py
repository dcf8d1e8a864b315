"""``surgegate`` — one console script for every process of the system."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from shared.settings import Settings, SettingsError
from surgegate import (
    audit_cli,
    event_cli,
    identity_cli,
    persons_cli,
    rehearse,
    report_cli,
    rules_cli,
    staff_cli,
    supply_cli,
)
from surgegate.logs import formatter


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {}
    for name in ("host", "database_url", "redis_url"):
        value = getattr(args, name, None)
        if value:
            overrides[name] = value
    port = getattr(args, "port", None)
    if port is not None:
        overrides[args.port_field] = port
    return dataclasses.replace(settings, **overrides)


def _port(text: str) -> int:
    """argparse type of the --*port options: the range Settings accepts, refused before anything starts."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0 to 65535), not {text!r}")
    return int(text)


class _QuietRoutine(logging.Filter):
    """arq logs two INFO lines per job run; the periodic jobs (the audit sealer runs every second) would
    bury what matters. Their INFO lines go (a failure is still logged at WARNING or above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # arq's per-job lines are "%6.2fs → job(...)", "%6.2fs ← job ● result"; the start banner also
        # names the cron jobs and stays.
        per_job = isinstance(record.msg, str) and record.msg.startswith("%6.2fs")
        return record.levelno > logging.INFO or not per_job or "cron:" not in record.getMessage()


def _logging(settings: Settings) -> None:
    """The process's log on stderr, as ``SURGEGATE_LOG_FORMAT`` says, quiet about routine work: no
    line per periodic job, and no line per HTTP request unless ``SURGEGATE_ACCESS_LOG`` asks for one."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    logging.getLogger("arq.worker").addFilter(_QuietRoutine())
    # aiohttp writes each request at INFO on "aiohttp.access" (a load test's worth is tens of MB).
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if settings.access_log else logging.WARNING)


def _access_log(settings: Settings) -> logging.Logger | None:
    """``run_app``'s ``access_log``: aiohttp's access logger when asked for, else none (not even formatted)."""
    return logging.getLogger("aiohttp.access") if settings.access_log else None


def cmd_edge(args: argparse.Namespace) -> int:
    from aiohttp import web

    from waitingroom.app import create_app

    settings = _settings(args)
    _logging(settings)
    web.run_app(
        create_app(settings), host=settings.host, port=settings.edge_port, print=None, access_log=_access_log(settings)
    )
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from aiohttp import web

    from admission.app import create_app

    settings = _settings(args)
    _logging(settings)
    web.run_app(
        create_app(settings), host=settings.host, port=settings.api_port, print=None, access_log=_access_log(settings)
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from booking_worker.supervisor import run

    settings = _settings(args)
    _logging(settings)
    run(settings)  # through Redis and PostgreSQL outages, until SIGINT or SIGTERM
    return 0


async def _migrate(dsn: str) -> list[str]:
    from shared.db import connect, migrate

    con = await connect(dsn)
    try:
        return await migrate(con)
    finally:
        await con.close()


async def _seed(dsn: str) -> bool:
    from shared.db import connect
    from surgegate.demo import seed_demo

    con = await connect(dsn)
    try:
        async with con.transaction():
            return await seed_demo(con)
    finally:
        await con.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(_settings(args).require_database()))
    print(f"applied {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    if not args.demo:
        print("nothing to seed: pass --demo", file=sys.stderr)
        return 2
    loaded = asyncio.run(_seed(_settings(args).require_database()))
    print("demo loaded" if loaded else "demo already present")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from surgegate.up import run_up

    return run_up(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surgegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server(name: str, helptext: str, port_field: str, default_port: int) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--host", help="address to bind (SURGEGATE_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=_port, help=f"port (default {default_port} or the env variable)")
        p.set_defaults(port_field=port_field)
        return p

    server("edge", "run the waiting room (aiohttp), default 127.0.0.1:8080", "edge_port", 8080).set_defaults(
        func=cmd_edge
    )
    server("api", "run the booking API (aiohttp), default 127.0.0.1:8081", "api_port", 8081).set_defaults(func=cmd_api)
    server("worker", "run the arq booking worker; metrics on 127.0.0.1:9101", "worker_metrics_port", 9101).set_defaults(
        func=cmd_worker
    )

    p = sub.add_parser("migrate", help="apply database migrations (idempotent)")
    p.add_argument("--database-url", help="PostgreSQL DSN (default SURGEGATE_DATABASE_URL)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed", help="load data; --demo loads the demo event, sites and slots (idempotent)")
    p.add_argument("--demo", action="store_true", help="load the demo event, three sites and a week of slots")
    p.add_argument("--database-url", help="PostgreSQL DSN (default SURGEGATE_DATABASE_URL)")
    p.set_defaults(func=cmd_seed)

    event_cli.add_parser(sub)
    supply_cli.add_parser(sub)
    staff_cli.add_parser(sub)
    report_cli.add_parser(sub)
    rules_cli.add_parser(sub)
    identity_cli.add_parser(sub)
    persons_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    rehearse.add_parser(sub)

    p = sub.add_parser(
        "up",
        help="run everything on a laptop (embedded PostgreSQL/Valkey when no URLs are set)",
        description="Start embedded PostgreSQL and Valkey when SURGEGATE_DATABASE_URL / SURGEGATE_REDIS_URL "
        "are unset, migrate, seed the demo into an empty database, start edge + api + worker, print the "
        "URLs and admin token, and stop everything on Ctrl-C, SIGTERM or SIGHUP (or should `up` be killed).",
    )
    p.add_argument("--data-dir", type=Path, default=Path(".surgegate"), help="where data and keys live")
    p.add_argument("--edge-port", type=_port, help="edge port (default 8080 or SURGEGATE_EDGE_PORT)")
    p.add_argument("--api-port", type=_port, help="API port (default 8081 or SURGEGATE_API_PORT)")
    p.add_argument("--worker-metrics-port", type=_port, help="worker metrics port (default 9101)")
    p.add_argument("--no-seed", action="store_true", help="do not load the demo into an empty database")
    p.add_argument("--access-log", action="store_true", help="log a line per HTTP request (SURGEGATE_ACCESS_LOG)")
    p.set_defaults(func=cmd_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"surgegate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
