"""``surgegate report KIND [--group-by site,day] [--event E] [--from D] [--to D] [--csv]``: the booking
API's reports (``GET /admin/v1/reports/{kind}``), printed as the API answers them."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from shared.reports import DIMENSIONS, KINDS
from shared.settings import Settings
from surgegate.admin_client import add_admin_options, admin_token, call
from surgegate.options import SharedOptions


def add_parser(sub: Any) -> None:
    shared = SharedOptions()  # no actions: one parser, so its options already go anywhere
    add_admin_options(shared, "--api-url", "booking API")
    p = sub.add_parser(
        "report",
        parents=[shared.parser],
        help="counts for the reporting role, small cells suppressed (admin API)",
        description="Counts of bookings, cancellations, no-shows or waitlist offers and claims, grouped; "
        "counts below SURGEGATE_REPORT_MIN_CELL are suppressed, and so are their complements.",
    )
    p.add_argument("kind", choices=list(KINDS))
    p.add_argument("--group-by", default="", help=f"comma-separated, any of {', '.join(DIMENSIONS)}")
    p.add_argument("--event", dest="event_id", help="one event only")
    p.add_argument("--from", dest="from_", help="first local day (YYYY-MM-DD)")
    p.add_argument("--to", help="last local day (YYYY-MM-DD)")
    p.add_argument("--csv", action="store_true", help="CSV with a header row instead of JSON")
    p.set_defaults(func=shared.wrap(run))


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.api_url or settings.api_url).rstrip("/")
    params = {"group_by": args.group_by, "event_id": args.event_id, "from": args.from_, "to": args.to}
    query = urllib.parse.urlencode({name: value for name, value in params.items() if value})
    path = f"/admin/v1/reports/{urllib.parse.quote(args.kind)}" + (f"?{query}" if query else "")
    accept = "text/csv" if args.csv else "application/json"
    return call("report", base, "GET", path, admin_token(args, settings, "report"), accept=accept)
