"""Options a command shares with each of its actions, accepted anywhere on the line.

``surgegate event show demo --edge-url U`` and ``surgegate event --edge-url U show demo`` must mean
the same. argparse copies every attribute of an action's namespace over the command's, so an option
given before the action would be overwritten by the action parser's default: every shared option is
declared with ``default=SUPPRESS`` (on the command and on each action, through ``parents``), and
:meth:`SharedOptions.fill` sets the real default of whatever nobody gave, before the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Run = Callable[[argparse.Namespace], int]


class SharedOptions:
    """Declare with :meth:`add`; pass :attr:`parser` as a parent of the command and of every action;
    run the command through :meth:`wrap` (or call :meth:`fill` first)."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser(add_help=False)
        self.defaults: dict[str, Any] = {}

    def add(self, *flags: str, default: Any = None, **kwargs: Any) -> None:
        action = self.parser.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)
        self.defaults[action.dest] = default

    def fill(self, args: argparse.Namespace) -> None:
        """Give every shared option nobody passed its default."""
        for name, value in self.defaults.items():
            if not hasattr(args, name):
                setattr(args, name, value)

    def wrap(self, run: Run) -> Filled:
        return Filled(self, run)


class Filled:
    """A command's ``func``: fills in the shared defaults, then runs the command."""

    def __init__(self, options: SharedOptions, run: Run) -> None:
        self.options = options
        self.run = run

    def __call__(self, args: argparse.Namespace) -> int:
        self.options.fill(args)
        return self.run(args)
