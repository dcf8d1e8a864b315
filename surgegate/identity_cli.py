"""``surgegate identity show|set|remove EVENT``: an event's identity provider, through the booking API.

``set EVENT --issuer ISS --audience AUD --jwks-url URL [--acr-values low,substantial,high]
[--min-acr substantial] [--algorithms RS256,ES256]`` names the OpenID Connect provider whose ID tokens
prove the event's verified attributes, and the minimum assurance level (``acr``) it requires
(``PUT /admin/v1/events/{event_id}/identity``, role ``rules``, audited). ``show`` prints it; ``remove``
removes it. The credential and the API are found as for ``surgegate report``; options go anywhere.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from shared.settings import Settings
from surgegate.admin_client import add_admin_options, admin_token, call
from surgegate.options import SharedOptions

COMMAND = "identity"


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    add_admin_options(shared, "--api-url", "booking API")
    common = shared.parser
    p = sub.add_parser(COMMAND, parents=[common], help="an event's identity provider and minimum assurance level",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("show", parents=[common], help="the event's identity provider").add_argument("event_id")
    actions.add_parser("remove", parents=[common], help="the event no longer names one").add_argument("event_id")
    s = actions.add_parser("set", parents=[common], help="name the event's identity provider (replaces it)")
    s.add_argument("event_id")
    s.add_argument("--issuer", required=True, help="the ID tokens' iss")
    s.add_argument("--audience", required=True, help="the ID tokens' aud (the client id at the provider)")
    s.add_argument("--jwks-url", required=True, help="where the provider publishes its signing keys")
    s.add_argument("--acr-values", type=_list, default=[], help="the provider's assurance levels, lowest first")
    s.add_argument("--min-acr", help="the lowest acr the event accepts (one of --acr-values)")
    s.add_argument("--algorithms", type=_list, help="accepted signature algorithms (default RS256,ES256)")
    p.set_defaults(func=shared.wrap(run))


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.api_url or settings.api_url).rstrip("/")
    token = admin_token(args, settings, COMMAND)
    path = f"/admin/v1/events/{urllib.parse.quote(args.event_id, safe='')}/identity"
    if args.action == "show":
        return call(COMMAND, base, "GET", path, token)
    if args.action == "remove":
        return call(COMMAND, base, "DELETE", path, token)
    body: dict[str, Any] = {"issuer": args.issuer, "audience": args.audience, "jwks_url": args.jwks_url,
                            "acr_values": args.acr_values, "min_acr": args.min_acr}  # fmt: skip
    if args.algorithms:
        body["algorithms"] = args.algorithms
    return call(COMMAND, base, "PUT", path, token, body)
