"""``surgegate event invites EVENT``: issue, count or revoke invite links through the edge's admin API.

``--count N --expires T [--label L]`` issues a batch and prints its links, one a line (the only time
they are shown: only their hashes are stored); ``--list`` prints the counts per batch; ``--revoke ID``
revokes a batch or one invite. The credential and edge are found as for the other ``event`` actions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.settings import Settings
from surgegate.admin_client import admin_token, problem_of, segment
from surgegate.completion import complete_with, event_ids

DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def add_action(
    actions: Any,
    *,
    parents: list[argparse.ArgumentParser] | None = None,
    prepare: Callable[[argparse.Namespace], None] | None = None,
) -> None:
    """Add ``invites`` to the ``event`` command's actions (with its shared options, ``parents``;
    ``prepare`` fills in the shared options nobody gave, before :func:`run`)."""
    p = actions.add_parser(
        "invites",
        parents=parents or [],
        help="issue (--count, --expires), list (--list) or revoke (--revoke) invite links",
    )
    complete_with(p.add_argument("event_id"), event_ids)
    p.add_argument("--count", type=int, default=1, help="how many links to issue (one per person)")
    p.add_argument("--expires", help="when the links stop working: ISO 8601 with offset, or a duration (30m, 48h, 7d)")
    p.add_argument("--label", default="", help="what the batch is for (shown in the counts and the audit)")
    p.add_argument("--list", action="store_true", help="print how many are issued, used, revoked and expired")
    p.add_argument("--revoke", metavar="ID", help="revoke a batch (its id) or one invite (its id)")

    def prepared(args: argparse.Namespace) -> int:
        if prepare is not None:
            prepare(args)
        return run(args)

    p.set_defaults(func=prepared)


def expiry(text: str, now: datetime) -> str:
    """``--expires`` as the API takes it: a duration from now, or an ISO 8601 time with its offset."""
    match = DURATION.match(text.strip())
    if match:
        return (now + timedelta(**{UNITS[match[2]]: int(match[1])})).isoformat()
    return text


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    base = (args.edge_url or settings.edge_url).rstrip("/")
    token = admin_token(args, settings, "event")
    path = f"/admin/v1/events/{segment(args.event_id)}/invites"
    if args.revoke:
        status, result = _request(base, "DELETE", f"{path}/{segment(args.revoke)}", token)
        if status:
            print(f"revoked {result['revoked']} unused invite(s) of batch {result['batch']}")
    elif args.list:
        status, result = _request(base, "GET", path, token)
        for b in result.get("batches", []):
            print(f"{b['batch']}  {b['label'] or '-'}  expires {b['expires_at']}: issued {b['issued']}, "
                  f"used {b['used']}, revoked {b['revoked']}, expired {b['expired']}, open {b['open']}")  # fmt: skip
    else:
        if not args.expires:
            print("surgegate event invites: --expires is required to issue links (e.g. --expires 48h)", file=sys.stderr)
            return 2
        body = {"count": args.count, "expires_at": expiry(args.expires, datetime.now(UTC)), "label": args.label}
        status, result = _request(base, "POST", path, token, body)
        if status:
            print(f"# batch {result['batch']}, expires {result['expires_at']}", file=sys.stderr)
            for link in result["links"]:
                print(link)
    return 0 if status else 1


def _request(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[bool, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 (the operator's own edge)
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            result: dict[str, Any] = json.loads(resp.read())
            return True, result
    except urllib.error.HTTPError as exc:
        problem = problem_of(exc)
        print(f"surgegate event invites: {exc.code} {problem.get('code', '')}: {problem.get('detail', exc.reason)}",
              file=sys.stderr)  # fmt: skip
        for error in problem.get("errors", []):
            print(f"  {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
    except urllib.error.URLError as exc:
        print(f"surgegate event invites: cannot reach {base}: {exc.reason}", file=sys.stderr)
    return False, {}
