"""``surgegate completion bash|zsh|fish``: print the shell's completion script; and the completers
the CLI's arguments use.

argcomplete completes from the argparse tree itself (commands, actions, options, choices), so the
completion never drifts from the CLI. The script it prints calls ``surgegate`` back with
``_ARGCOMPLETE`` set, and :func:`surgegate.cli.main` answers before parsing anything. Event ids are
completed from the edge's ``GET /admin/v1/events`` when a credential is found the way the ``event``
command finds one; if not, or if the edge does not answer within a second, nothing is offered.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import argcomplete
from argcomplete.shell_integration import shellcode

from shared.settings import Settings, SettingsError
from surgegate.admin_client import AdminRefused, Unreachable, credential, send

SHELLS = ("bash", "zsh", "fish")
EVENT_LIST_TIMEOUT_S = 1.0  # a completion that waits longer than this is worse than none


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print the shell completion script (bash, zsh or fish)",
        description='Print a completion script for your shell. bash: `eval "$(surgegate completion bash)"` '
        "in ~/.bashrc; zsh: the same in ~/.zshrc (after compinit); fish: "
        "`surgegate completion fish > ~/.config/fish/completions/surgegate.fish`.",
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(shellcode(["surgegate"], shell=args.shell))
    return 0


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer a completion request and exit, if this process is one (``_ARGCOMPLETE`` set); else return."""
    argcomplete.autocomplete(parser)


def event_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The ids of the events the edge knows that start with ``prefix``; [] when it cannot tell."""
    given = vars(parsed_args)
    found = argparse.Namespace(
        key=given.get("key"), admin_token=given.get("admin_token"), data_dir=given.get("data_dir") or Path(".surgegate")
    )
    try:
        settings = Settings.from_env()
        base = given.get("edge_url") or settings.edge_url
        token = credential(found, settings, "event").token
        listed = send(base, "GET", "/admin/v1/events", token, timeout=EVENT_LIST_TIMEOUT_S)
    except (SystemExit, SettingsError, AdminRefused, Unreachable, OSError, ValueError):
        return []
    return [e["event_id"] for e in listed.get("events", []) if str(e.get("event_id", "")).startswith(prefix)]


def complete_with(action: argparse.Action, completer: Any) -> argparse.Action:
    """Give an argument a completer (argcomplete reads the attribute ``completer``)."""
    action.completer = completer  # type: ignore[attr-defined]
    return action
