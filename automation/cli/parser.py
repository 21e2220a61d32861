"""The command line's parser: every command's flags (flags.py), one-line usage errors, and a
parser built for the one command a line names."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from automation import __version__
from automation.cli.flags import COMMANDS, add_global_options
from automation.errors import ConfigError


class UsageError(ConfigError):
    """Raised when the command line itself is wrong (a flag, an argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on our stderr, not a usage dump on sys.stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Given the arguments, only the command they name is built
    (a cron tick reads its line without building the other twenty commands' flags); --help,
    --version and a line that names no command get every command."""
    parser = _Parser(
        prog="emergency",
        description="Runs the customer-emergency workflow on Zendesk: acknowledge, follow up, "
                    "step down to high, exactly once.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 configuration or usage error, "
               "3 a service unreachable or credentials rejected, 4 ticket not found, "
               "5 refused (solved ticket, already done, not urgent): nothing was sent.",
    )
    add_global_options(parser, before=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = None if argv is None else command_named(argv)
    for name, add in COMMANDS.items():
        if named in (None, name):
            add(commands)
    for command in commands.choices.values():
        add_global_options(command)
    return parser


def command_named(argv: Sequence[str]) -> str | None:
    """The command an argument list names, read past the options that may come before it;
    None when it names none (--help, --version, a mistake)."""
    head = _Parser(prog="emergency", add_help=False)
    add_global_options(head, before=True)
    head.add_argument("command", nargs="?")
    try:
        known, _ = head.parse_known_args(list(argv))
    except UsageError:
        return None
    return known.command if known.command in COMMANDS else None


