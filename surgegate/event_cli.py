"""``surgegate event show|set|pause|resume``: operate an event through an edge's admin API.

Going through the admin API (not the database) means a change takes exactly the path an operator's
HTTP call takes, and reaches every edge process on its next tick (100 ms). The credential (role
``operator``) is ``--key`` or ``SURGEGATE_STAFF_KEY``, else the owner's ``--admin-token``,
``SURGEGATE_ADMIN_TOKEN`` or the ``secrets.json`` that ``surgegate up`` keeps in its data dir; the
edge is ``--edge-url``, else the configured edge URL.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.settings import Settings
from surgegate import invite_cli
from surgegate.admin_client import add_admin_options, admin_token, call


def add_parser(sub: Any) -> None:
    p = sub.add_parser("event", help="show or change an event (rate, pause, schedule) via the admin API")
    add_admin_options(p, "--edge-url", "edge")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    show = actions.add_parser("show", help="the event and its live stats")
    show.add_argument("event_id")
    for name, helptext in (("pause", "stop admissions (visitors keep their places)"), ("resume", "admit again")):
        actions.add_parser(name, help=helptext).add_argument("event_id")

    s = actions.add_parser("set", help="create or change an event; options left out keep their value")
    s.add_argument("event_id")
    s.add_argument("--name")
    s.add_argument("--rate", type=float, dest="rate_per_s", help="admissions per second")
    s.add_argument("--ttl", type=int, dest="admission_ttl_s", help="seconds an admission stays valid")
    s.add_argument("--opens-at", help="ISO 8601 with offset, or 'none'")
    s.add_argument("--prequeue-opens-at", help="ISO 8601 with offset, or 'none'")
    s.add_argument("--closes-at", help="ISO 8601 with offset, or 'none'")
    scope = s.add_mutually_exclusive_group()
    scope.add_argument("--sites", help="comma-separated site ids the admission covers")
    scope.add_argument("--all-sites", action="store_true", help="admissions cover every site")
    s.add_argument("--paused", action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--rate-mode", choices=["fixed", "auto"], help="auto: follow the booking side's capacity")
    s.add_argument("--rate-min", type=float, help="auto mode: lowest rate")
    s.add_argument("--rate-max", type=float, help="auto mode: highest rate")
    s.add_argument("--target-queue-depth", type=int, help="auto mode: booking attempts waiting to aim under")
    s.add_argument("--target-latency", type=float, dest="target_latency_s", help="auto mode: p90 seconds to aim under")
    s.add_argument("--max-active", help="cap on admissions out and unused, or 'none'")
    s.add_argument("--pow-difficulty", help="proof-of-work bits a join must show, or 'none'")
    s.add_argument("--abandon-after", help="seconds without polling before a place is passed over, or 'none'")
    s.add_argument("--one-place", action=argparse.BooleanOptionalAction, default=None, dest="one_place_per_person",
                   help="one place per person (joins must send person_id)")  # fmt: skip
    s.add_argument("--program", dest="program_id",
                   help="the program the event admits to (one active appointment per person per program)")  # fmt: skip
    invite_cli.add_action(actions)
    p.set_defaults(func=run)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for field in (
        "name", "rate_per_s", "admission_ttl_s", "paused", "one_place_per_person", "rate_mode", "rate_min",
        "rate_max", "target_queue_depth", "target_latency_s", "program_id",
    ):  # fmt: skip
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    for field in ("opens_at", "prequeue_opens_at", "closes_at"):
        value = getattr(args, field)
        if value is not None:
            body[field] = None if value.lower() == "none" else value
    for field, key in (
        ("max_active", "max_active"), ("abandon_after", "abandon_after_s"), ("pow_difficulty", "pow_difficulty"),
    ):  # fmt: skip
        value = getattr(args, field)
        if value is not None:
            body[key] = None if value.lower() == "none" else int(value)
    if args.all_sites:
        body["site_ids"] = None
    elif args.sites is not None:
        body["site_ids"] = [s.strip() for s in args.sites.split(",") if s.strip()]
    return body


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.edge_url or settings.edge_url).rstrip("/")
    method, body = "GET", None
    if args.action == "pause":
        method, body = "PUT", {"paused": True}
    elif args.action == "resume":
        method, body = "PUT", {"paused": False}
    elif args.action == "set":
        method, body = "PUT", _changes(args)
    return call("event", base, method, f"/admin/v1/events/{args.event_id}", admin_token(args, settings, "event"), body)
