"""Every subcommand CLI takes its shared options before or after the action (surgegate/options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgegate.cli import build_parser
from surgegate.options import Filled

CASES = [
    # (command, action and its arguments, shared options)
    ("event", ["show", "demo"], ["--edge-url", "http://e:1", "--key", "k", "--json"]),
    ("event", ["invites", "demo", "--count", "2"], ["--admin-token", "t", "--data-dir", "/tmp/x"]),
    ("supply", ["type", "t1", "--name", "N", "--duration", "10"], ["--api-url", "http://a:2", "--key", "k"]),
    ("supply", ["check-in", "A1"], ["--admin-token", "t", "--data-dir", "/tmp/x"]),
    ("report", ["bookings", "--group-by", "site"], ["--api-url", "http://a:2", "--key", "k"]),
    ("audit", ["verify", "--public-key", "P"], ["--database-url", "postgresql://x/y"]),
    ("audit", ["public-key"], ["--database-url", "postgresql://x/y"]),
    ("staff", ["add", "ana", "--role", "operator"], ["--database-url", "postgresql://x/y"]),
    ("persons", ["erase"], ["--database-url", "postgresql://x/y"]),
    ("identity", ["set", "ev", "--issuer", "i", "--audience", "a", "--jwks-url", "https://x"], ["--key", "k"]),
]


def parsed(argv: list[str]) -> dict[str, object]:
    args = build_parser().parse_args(argv)
    fields = vars(args)
    fields.pop("func")
    return fields


@pytest.mark.parametrize(
    ("command", "action", "options"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_options_before_and_after_the_action_mean_the_same(command: str, action: list[str], options: list[str]) -> None:
    after = parsed([command, *action, *options])
    before = parsed([command, *options, *action])
    assert before == after
    flags = [o for o in options if o.startswith("--")]
    for flag in flags:  # each option reached the namespace, not only its default
        dest = flag.removeprefix("--").replace("-", "_")
        value = options[options.index(flag) + 1] if options.index(flag) + 1 < len(options) else None
        if value is None or value.startswith("--"):
            assert after[dest] is True
        elif dest == "data_dir":
            assert after[dest] == Path(value)
        else:
            assert after[dest] == value


@pytest.mark.parametrize("command", sorted({c for c, _, _ in CASES}))
def test_options_nobody_gave_get_their_defaults_before_the_command_runs(command: str) -> None:
    action = next(a for c, a, _ in CASES if c == command)
    args = build_parser().parse_args([command, *action])
    assert isinstance(args.func, Filled), "the command runs through SharedOptions.wrap"
    args.func.options.fill(args)  # what the command does first when it runs
    assert args.func.options.defaults  # each command shares some option
    for name, default in args.func.options.defaults.items():
        assert getattr(args, name) == default
