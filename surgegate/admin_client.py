"""A tiny admin API client for the CLI (stdlib urllib: one request per command, no session needed)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.settings import Settings
from surgegate.options import SharedOptions


def add_admin_options(options: SharedOptions, url_flag: str, service: str) -> None:
    """The options every admin command shares: where the service is and which credential to send."""
    options.add(url_flag, help=f"{service} base URL (default: the configured {service})")
    options.add("--key", help="your staff key (default: SURGEGATE_STAFF_KEY; else the owner's admin token)")
    options.add("--admin-token", help="owner token (default: SURGEGATE_ADMIN_TOKEN or <data-dir>/secrets.json)")
    options.add("--data-dir", type=Path, default=Path(".surgegate"),
                help="where `up` keeps its secrets (default .surgegate)")  # fmt: skip


def segment(value: str) -> str:
    """An id typed by the operator as one path segment: a space, ``/`` or ``?`` in it can neither break
    the request nor reach another route; the service then answers for the id as typed (404, 400)."""
    return urllib.parse.quote(value, safe="")


@dataclass(frozen=True)
class Credential:
    token: str
    source: str  # where it was found: the option, the variable or the file (absolute), for error messages


def credential(args: argparse.Namespace, settings: Settings, command: str) -> Credential:
    """The credential to send, first found of: --key, SURGEGATE_STAFF_KEY, --admin-token,
    SURGEGATE_ADMIN_TOKEN, the secrets.json `surgegate up` keeps in --data-dir. None found: SystemExit
    naming every place looked at (the file by its absolute path: the command may run from elsewhere)."""
    for given, source in (
        (args.key, "--key"), (settings.staff_key, "SURGEGATE_STAFF_KEY"), (args.admin_token, "--admin-token"),
        (settings.admin_tokens[0] if settings.admin_tokens else None, "SURGEGATE_ADMIN_TOKEN"),
    ):  # fmt: skip
        if given:
            return Credential(str(given), source)
    secrets = args.data_dir.resolve() / "secrets.json"
    if secrets.exists():
        return Credential(str(json.loads(secrets.read_text())["admin_token"]), str(secrets))
    raise SystemExit(
        f"surgegate {command}: no credential found; looked for --key, SURGEGATE_STAFF_KEY, --admin-token, "
        f"SURGEGATE_ADMIN_TOKEN and {secrets} (run from the folder where `surgegate up` runs, or pass "
        "--data-dir; a staff key comes from `surgegate staff add`)"
    )


def admin_token(args: argparse.Namespace, settings: Settings, command: str) -> str:
    return credential(args, settings, command).token


class AdminRefused(Exception):
    """The admin API answered with a problem (``status`` 4xx/5xx, ``problem`` its JSON body)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('code', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


class Unreachable(Exception):
    """The service could not be reached at all."""


def send(
    base: str,
    method: str,
    path: str,
    token: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Any:
    """One JSON request; returns the decoded answer. Raises AdminRefused or Unreachable."""
    request = urllib.request.Request(  # noqa: S310 (the operator's own service URL)
        f"{base.rstrip('/')}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AdminRefused(exc.code, problem_of(exc)) from None
    except urllib.error.URLError as exc:
        raise Unreachable(f"cannot reach {base}: {exc.reason}") from None


def problem_of(exc: urllib.error.HTTPError) -> dict[str, Any]:
    """The problem+json of an error answer; a body that is none (a proxy's HTML page) gives just its
    reason, so the command still says what happened instead of failing on the body."""
    try:
        problem = json.loads(exc.read() or b"{}")
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    problem.setdefault("detail", exc.reason)
    return problem


def explain(command: str, refused: AdminRefused, source: str) -> None:
    """Print a refusal to stderr: the problem, its field errors, and for 401/403 where the credential
    sent came from."""
    problem = refused.problem
    print(f"surgegate {command}: {refused.status} {problem.get('code', '')}: {problem.get('detail', '')}",
          file=sys.stderr)  # fmt: skip
    if refused.status in (401, 403):
        print(f"surgegate {command}: the credential sent came from {source} (looked in order at --key, "
              "SURGEGATE_STAFF_KEY, --admin-token, SURGEGATE_ADMIN_TOKEN, <data-dir>/secrets.json)",
              file=sys.stderr)  # fmt: skip
    for error in problem.get("errors", []):
        print(f"  {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)


def call(
    command: str, base: str, method: str, path: str, token: str, body: Any = None, *, csv: bytes | None = None,
    accept: str = "application/json",
) -> int:  # fmt: skip
    """Send one admin request, print the answer (JSON indented, anything else as it came; a problem to
    stderr); exit status 0/1."""
    data, content_type = (csv, "text/csv") if csv is not None else (
        None if body is None else json.dumps(body).encode(), "application/json")  # fmt: skip
    request = urllib.request.Request(  # noqa: S310 (the operator's own service URL)
        f"{base.rstrip('/')}{path}",
        method=method,
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": accept},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
            if resp.headers.get_content_type() != "application/json":
                sys.stdout.write(resp.read().decode(resp.headers.get_content_charset() or "utf-8"))
                return 0
            result = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        problem = problem_of(exc)
        print(f"surgegate {command}: {exc.code} {problem.get('code', '')}: {problem.get('detail', exc.reason)}",
              file=sys.stderr)  # fmt: skip
        if exc.code in (401, 403):
            print(f"surgegate {command}: the credential sent came from --key, SURGEGATE_STAFF_KEY, --admin-token, "
                  "SURGEGATE_ADMIN_TOKEN or secrets.json, the first of them set", file=sys.stderr)  # fmt: skip
        for error in problem.get("errors", []):
            print(f"  {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"surgegate {command}: cannot reach {base}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
