"""``surgegate event list|show|create|set|pause|resume|close``: operate events through an edge's admin API.

Going through the admin API (not the database) means a change takes exactly the path an operator's
HTTP call takes, and reaches every edge process on its next tick (100 ms). The credential (role
``operator``) is ``--key`` or ``SURGEGATE_STAFF_KEY``, else the owner's ``--admin-token``,
``SURGEGATE_ADMIN_TOKEN`` or the ``secrets.json`` that ``surgegate up`` keeps in its data dir; the
edge is ``--edge-url``, else the configured edge URL. These options go anywhere on the line.

Only ``create`` creates: ``set``, ``pause``, ``resume`` and ``close`` on an unknown event exit 1 naming
it and change nothing (their PUT also carries ``If-Match: *``, so the edge itself refuses to create;
``create`` sends ``If-None-Match: *`` and is refused if the event exists). Every change prints each
field that changed as ``before → after`` (``--json``: the event as stored instead).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.settings import Settings
from surgegate import invite_cli
from surgegate.admin_client import (
    AdminRefused,
    Credential,
    Unreachable,
    add_admin_options,
    credential,
    explain,
    segment,
    send,
)
from surgegate.completion import complete_with, event_ids
from surgegate.options import SharedOptions

COMMAND = "event"


def _shared() -> SharedOptions:
    """Options shared by ``event`` and each action, accepted before or after the action."""
    shared = SharedOptions()
    add_admin_options(shared, "--edge-url", "edge")
    shared.add("--json", action="store_true", default=False,
               help="print the event(s) as JSON instead of the changes")  # fmt: skip
    return shared


def _event_options(p: argparse.ArgumentParser, *, creating: bool) -> None:
    event_id = p.add_argument("event_id")
    if not creating:  # a new event's id is the operator's to invent
        complete_with(event_id, event_ids)
    p.add_argument("--name", required=creating)
    p.add_argument("--rate", type=float, dest="rate_per_s", required=creating, help="admissions per second")
    p.add_argument("--ttl", type=int, dest="admission_ttl_s", help="seconds an admission stays valid")
    p.add_argument("--opens-at", help="ISO 8601 with offset, or 'none'")
    p.add_argument("--prequeue-opens-at", help="ISO 8601 with offset, or 'none'")
    p.add_argument("--closes-at", help="ISO 8601 with offset, or 'none'")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--sites", help="comma-separated site ids the admission covers (they must exist)")
    scope.add_argument("--all-sites", action="store_true", help="admissions cover every site")
    p.add_argument("--paused", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--rate-mode", choices=["fixed", "auto"], help="auto: follow the booking side's capacity")
    p.add_argument("--rate-min", type=float, help="auto mode: lowest rate")
    p.add_argument("--rate-max", type=float, help="auto mode: highest rate")
    p.add_argument("--target-queue-depth", type=int, help="auto mode: booking attempts waiting to aim under")
    p.add_argument("--target-latency", type=float, dest="target_latency_s", help="auto mode: p90 seconds to aim under")
    p.add_argument("--max-active", help="cap on admissions out and unused, or 'none'")
    p.add_argument("--pow-difficulty", help="proof-of-work bits a join must show, or 'none'")
    p.add_argument("--abandon-after", help="seconds without polling before a place is passed over, or 'none'")
    p.add_argument("--one-place", action=argparse.BooleanOptionalAction, default=None, dest="one_place_per_person",
                   help="one place per person (joins must send person_id)")  # fmt: skip
    p.add_argument("--program", dest="program_id",
                   help="the program the event admits to (one active appointment per person per program)")  # fmt: skip


def add_parser(sub: Any) -> None:
    shared = _shared()
    common = shared.parser
    p = sub.add_parser("event", parents=[common], help="list, create, show or change events via the admin API",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    actions.add_parser("list", parents=[common], help="every event with its phase and queue figures")
    complete_with(
        actions.add_parser("show", parents=[common], help="the event and its live stats").add_argument("event_id"),
        event_ids,
    )
    _event_options(actions.add_parser("create", parents=[common], help="create an event (refused if it exists)"),
                   creating=True)  # fmt: skip
    _event_options(actions.add_parser("set", parents=[common], help="change an existing event; options left out "
                                      "keep their value"), creating=False)  # fmt: skip
    for name, helptext in (("pause", "stop admissions (visitors keep their places)"), ("resume", "admit again")):
        complete_with(actions.add_parser(name, parents=[common], help=helptext).add_argument("event_id"), event_ids)
    close = actions.add_parser(
        "close", parents=[common], help="close the event now: tickets and joins get event_closed (asks first)"
    )
    complete_with(close.add_argument("event_id"), event_ids)
    close.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    invite_cli.add_action(actions, parents=[common], prepare=shared.fill)
    p.set_defaults(func=shared.wrap(run))


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
            if value.lower() == "none":
                body[key] = None
            elif value.isdigit():
                body[key] = int(value)
            else:
                raise CommandError(f"--{field.replace('_', '-')} must be a whole number or 'none', not {value!r}")
    if args.all_sites:
        body["site_ids"] = None
    elif args.sites is not None:
        body["site_ids"] = [s.strip() for s in args.sites.split(",") if s.strip()]
    return body


class CommandError(Exception):
    """A failure already explained in its message (printed to stderr, exit status 1)."""


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def print_changes(event_id: str, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    """Each field whose value differs as ``field: before → after`` (every field of a new event)."""
    if before is None:
        print(f"created event {event_id!r}:")
        for field, value in after.items():
            if field != "event_id":
                print(f"  {field}: {_shown(value)}")
        return
    changed = [field for field in after if field != "event_id" and before.get(field) != after[field]]
    if not changed:
        print(f"event {event_id!r}: nothing changed")
        return
    print(f"changed event {event_id!r}:")
    for field in changed:
        print(f"  {field}: {_shown(before.get(field))} → {_shown(after[field])}")


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields (a GET adds live stats and the lottery, which are no setting)."""
    return {k: v for k, v in event.items() if k not in ("stats", "lottery", "phase")}


def _confirm(event: dict[str, Any]) -> bool:
    stats = event.get("stats") or {}
    waiting = stats.get("waiting", "?")
    people = "1 person" if waiting == 1 else f"{waiting} people"
    question = (
        f"Close event {event['event_id']!r} ({event['name']}) now? {people} waiting and everyone "
        "holding a ticket get event_closed; new joins are refused. [y/N] "
    )
    print(question, end="", flush=True)
    if sys.stdin is None:  # no stdin at all: no answer is no
        print()
        return False
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not sys.stdin.isatty():
        print()  # a piped answer is not echoed: end the question's line
    return answer.strip().lower() in ("y", "yes")


def _print_list(events: list[dict[str, Any]]) -> None:
    if not events:
        print("no events (create one: surgegate event create EVENT --name NAME --rate RATE)")
        return
    rows = [("EVENT", "PHASE", "PAUSED", "RATE/S", "WAITING", "NAME")]
    for e in events:
        waiting = "-" if e["stats"] is None else str(e["stats"]["waiting"])
        rows.append((e["event_id"], e["phase"], "yes" if e["paused"] else "no", f"{e['rate_per_s']:g}", waiting,
                     e["name"]))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])


def _act(args: argparse.Namespace, base: str, cred: Credential) -> None:
    path = f"/admin/v1/events/{segment(args.event_id)}" if hasattr(args, "event_id") else "/admin/v1/events"
    if args.action == "list":
        listed = send(base, "GET", path, cred.token)
        if args.json:
            print(json.dumps(listed, indent=2))
        else:
            _print_list(listed["events"])
        return
    if args.action == "create":
        body = _changes(args)
        try:
            after = send(base, "PUT", path, cred.token, body, headers={"If-None-Match": "*"})
        except AdminRefused as exc:
            if exc.status == 409 and exc.problem.get("code") == "conflict" and "exists" in exc.problem["detail"]:
                raise CommandError(f"event {args.event_id!r} already exists; change it with "
                                   f"`surgegate event set {args.event_id} …`") from None  # fmt: skip
            raise
        _report(args, None, after)
        return
    try:
        before = send(base, "GET", path, cred.token)
    except AdminRefused as exc:
        if exc.status == 404:
            raise CommandError(
                f"no event {args.event_id!r} at {base}: nothing changed. `surgegate event list` shows the events; "
                f"`surgegate event create {args.event_id} --name NAME --rate RATE` creates one"
            ) from None
        raise
    if args.action == "show":
        print(json.dumps(before, indent=2))
        return
    if args.action == "close":
        if not args.yes and not _confirm(before):
            raise CommandError(f"event {args.event_id!r} not closed (answer y to close, or pass --yes)")
        after = send(base, "DELETE", path, cred.token)
    else:
        body = {"pause": {"paused": True}, "resume": {"paused": False}}.get(args.action) or _changes(args)
        if not body:
            raise CommandError("nothing to change: pass at least one option (see `surgegate event set --help`)")
        after = send(base, "PUT", path, cred.token, body, headers={"If-Match": "*"})
    _report(args, _fields(before), after)


def _report(args: argparse.Namespace, before: dict[str, Any] | None, after: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(after, indent=2))
    else:
        print_changes(args.event_id, before, after)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.edge_url or settings.edge_url).rstrip("/")
    cred = credential(args, settings, COMMAND)
    try:
        _act(args, base, cred)
    except CommandError as exc:
        print(f"surgegate {COMMAND}: {exc}", file=sys.stderr)
        return 1
    except AdminRefused as exc:
        explain(COMMAND, exc, cred.source)
        return 1
    except Unreachable as exc:
        print(f"surgegate {COMMAND}: {exc}", file=sys.stderr)
        return 1
    return 0
