"""``surgegate rules ...``: eligibility rule-set versions through the booking API's admin endpoints
(role ``rules``): create from a JSON or YAML file, list with history, show, diff, shadow, publish,
roll back, the shadow report and replay (which flags appointments for review), and ``flagged``: the
event's flagged appointments (role ``support``). Publish, shadow and rollback take ``--reason`` (kept in the
version's history and the audit log)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from shared.settings import Settings
from surgegate.admin_client import add_admin_options, admin_token, call
from surgegate.options import SharedOptions


def add_parser(sub: Any) -> None:
    shared = SharedOptions()
    add_admin_options(shared, "--api-url", "booking API")
    common = shared.parser
    p = sub.add_parser("rules", parents=[common], help="eligibility rule sets: versions, publish, rollback (admin API)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    c = actions.add_parser("create", parents=[common], help="a new draft version from a JSON or YAML file")
    c.add_argument("event_id")
    c.add_argument("file", type=Path, help="*.json, or *.yaml / *.yml")
    actions.add_parser("list", parents=[common], help="every version with its state and history").add_argument(
        "event_id"
    )
    s = actions.add_parser("show", parents=[common], help="one version: rules, example results, history")
    s.add_argument("event_id")
    s.add_argument("version", type=int)
    d = actions.add_parser("diff", parents=[common], help="what changed from one version to another")
    d.add_argument("event_id")
    d.add_argument("old", type=int)
    d.add_argument("new", type=int)
    for name, helptext in (("publish", "make a version the one that decides (examples must pass)"),
                           ("shadow", "evaluate a version beside the published one on every evaluation")):  # fmt: skip
        m = actions.add_parser(name, parents=[common], help=helptext)
        m.add_argument("event_id")
        m.add_argument("version", type=int)
        m.add_argument("--reason", required=True, help="why (kept in the history and the audit log)")
    r = actions.add_parser("rollback", parents=[common], help="publish again the version the current one replaced")
    r.add_argument("event_id")
    r.add_argument("--reason", required=True)
    sr = actions.add_parser("shadow-report", parents=[common], help="agreements and flips of a shadow version")
    sr.add_argument("event_id")
    sr.add_argument("version", type=int)
    rp = actions.add_parser("replay", parents=[common], help="re-evaluate one version's decisions with another")
    rp.add_argument("event_id")
    rp.add_argument("--from", dest="from_version", type=int, required=True)
    rp.add_argument("--to", dest="to_version", type=int, required=True)
    fl = actions.add_parser("flagged", parents=[common], help="appointments a replay flagged for review (support)")
    fl.add_argument("event_id")
    fl.add_argument("--all", action="store_true", help="cleared flags too")
    p.set_defaults(func=shared.wrap(run))


class Unreadable(Exception):
    """The rule file cannot be read or parsed."""


def read_rule_set(path: Path) -> Any:
    """The file's document (YAML for .yaml/.yml, else JSON); Unreadable naming the file and why."""
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise Unreadable(f"cannot read {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.api_url or settings.api_url).rstrip("/")
    token = admin_token(args, settings, "rules")
    event = f"/admin/v1/events/{urllib.parse.quote(args.event_id, safe='')}"
    rules = f"{event}/rules"

    def send(method: str, path: str, body: Any = None) -> int:
        return call("rules", base, method, path, token, body)

    if args.action == "create":
        try:
            return send("POST", rules, read_rule_set(args.file))
        except Unreadable as exc:
            print(f"surgegate rules: {exc}", file=sys.stderr)
            return 1
    if args.action == "list":
        return send("GET", rules)
    if args.action == "show":
        return send("GET", f"{rules}/{args.version}")
    if args.action == "diff":
        return send("GET", f"{rules}/diff?from={args.old}&to={args.new}")
    if args.action in ("publish", "shadow"):
        return send("POST", f"{rules}/{args.version}/{args.action}", {"reason": args.reason})
    if args.action == "rollback":
        return send("POST", f"{rules}/rollback", {"reason": args.reason})
    if args.action == "flagged":
        return send("GET", f"{event}/eligibility/flagged?all={'true' if args.all else 'false'}")
    if args.action == "shadow-report":
        return send("GET", f"{rules}/shadow-report?version={args.version}")
    return send("POST", f"{rules}/replay", {"from_version": args.from_version, "to_version": args.to_version})
