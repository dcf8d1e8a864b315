"""``surgegate supply ...``: appointment types, schedules, overrides, imports and closures through the
booking API's admin endpoints (the same path an operator's HTTP call takes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.settings import Settings
from surgegate.admin_client import add_admin_options, admin_token, call, segment
from surgegate.options import SharedOptions

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    add_admin_options(shared, "--api-url", "booking API")
    common = shared.parser
    p = sub.add_parser("supply", parents=[common],
                       help="appointment types, schedules, overrides, CSV imports, closures (admin API)")  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = actions.add_parser("type", parents=[common], help="create or change an appointment type")
    t.add_argument("type_id")
    t.add_argument("--name", required=True)
    t.add_argument("--duration", type=int, required=True, dest="duration_minutes", help="minutes")
    t.add_argument("--seats", type=int, default=1, dest="seats_per_slot", help="seats per slot (group sessions)")
    t.add_argument("--buffer", type=int, default=0, dest="buffer_minutes", help="minutes between appointments")
    t.add_argument("--min-notice", type=int, default=0, dest="min_notice_minutes", help="minutes")
    t.add_argument("--max-advance", type=int, default=60, dest="max_advance_days", help="days")
    t.add_argument("--cancel-cutoff", type=int, default=0, dest="cancel_cutoff_minutes", help="minutes")
    t.add_argument("--no-show-grace", type=int, default=30, dest="no_show_grace_minutes", help="minutes")

    s = actions.add_parser(
        "schedule", parents=[common], help="set a site's weekly hours for a type, e.g. --mon 09:00-12:00,13:00-17:00"
    )
    s.add_argument("site_id")
    s.add_argument("type_id")
    for day in WEEKDAYS:
        s.add_argument(f"--{day}", default="", help="comma-separated HH:MM-HH:MM intervals (none: closed)")

    o = actions.add_parser("override", parents=[common], help="special hours on one local date (--closed: none at all)")
    o.add_argument("site_id")
    o.add_argument("day", help="YYYY-MM-DD, the site's local date")
    o.add_argument("--hours", default="", help="comma-separated HH:MM-HH:MM intervals")
    o.add_argument("--closed", action="store_true")
    o.add_argument("--type", dest="type_id", help="only this appointment type (default: all)")
    o.add_argument("--note")

    g = actions.add_parser(
        "generate", parents=[common], help="generate or re-align a site's slots (report of kept bookings)"
    )
    g.add_argument("site_id")
    g.add_argument("--from", dest="from_", help="first local date")
    g.add_argument("--to", help="last local date")

    for name, helptext in (("import-sites", "site_id,name,region,timezone,lat,lng"),
                           ("import-schedules", "site_id,type_id,weekday,start,end")):  # fmt: skip
        i = actions.add_parser(name, parents=[common], help=f"bulk import a CSV with columns {helptext}")
        i.add_argument("csv_file", type=Path)

    c = actions.add_parser(
        "close-day", parents=[common], help="cancel a local day at a site; people get first claim on rebooking"
    )
    c.add_argument("site_id")
    c.add_argument("day")
    c.add_argument("--reason", required=True)
    c.add_argument("--type", dest="type_id")

    k = actions.add_parser("check-in", parents=[common], help="mark an appointment completed")
    k.add_argument("appointment_id")
    p.set_defaults(func=shared.wrap(run))


def _intervals(raw: str) -> list[list[str]]:
    return [part.strip().split("-", 1) for part in raw.split(",") if part.strip()]


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.api_url or settings.api_url).rstrip("/")
    token = admin_token(args, settings, "supply")

    def send(method: str, path: str, body: Any = None, *, csv: bytes | None = None) -> int:
        return call("supply", base, method, path, token, body, csv=csv)

    if args.action == "type":
        fields = ("name", "duration_minutes", "seats_per_slot", "buffer_minutes", "min_notice_minutes",
                  "max_advance_days", "cancel_cutoff_minutes", "no_show_grace_minutes")  # fmt: skip
        return send(
            "PUT", f"/admin/v1/appointment-types/{segment(args.type_id)}", {f: getattr(args, f) for f in fields}
        )
    if args.action == "schedule":
        weekly = {day: _intervals(getattr(args, day)) for day in WEEKDAYS}
        return send(
            "PUT", f"/admin/v1/sites/{segment(args.site_id)}/schedules/{segment(args.type_id)}", {"weekly": weekly}
        )
    if args.action == "override":
        body = {"hours": [] if args.closed else _intervals(args.hours), "type_id": args.type_id, "note": args.note}
        return send("PUT", f"/admin/v1/sites/{segment(args.site_id)}/overrides/{segment(args.day)}", body)
    if args.action == "generate":
        return send("POST", f"/admin/v1/sites/{segment(args.site_id)}/generate", {"from": args.from_, "to": args.to})
    if args.action in ("import-sites", "import-schedules"):
        kind = args.action.removeprefix("import-")
        return send("POST", f"/admin/v1/import/{kind}", csv=args.csv_file.read_bytes())
    if args.action == "close-day":
        body = {"day": args.day, "reason": args.reason, "type_id": args.type_id}
        return send("POST", f"/admin/v1/sites/{segment(args.site_id)}/closures", body)
    return send("POST", f"/admin/v1/appointments/{segment(args.appointment_id)}/check-in")
