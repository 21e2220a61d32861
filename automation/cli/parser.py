"""The command line: every command, flag and argument type, and nothing that runs them."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import datetime
from typing import NoReturn, TypeAlias

from automation import __version__
from automation.errors import ConfigError


class UsageError(ConfigError):
    """Raised when the command line itself is wrong (a flag, an argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on our stderr, not a usage dump on sys.stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class _Scenarios:
    """The demo's scenario names, read from automation.demo (and the sandbox) only when used."""

    def _names(self) -> list[str]:
        from automation.demo import scenario_names

        return scenario_names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


MAX_INTERVAL_SECONDS = 3600  # as [workflow] poll_interval_seconds


def interval_seconds(value: str) -> float:
    number = positive_number(value)
    if number > MAX_INTERVAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_INTERVAL_SECONDS} seconds, got {value!r}")
    return number


# A night on call in 4 s: faster scrolls by unread. (The story plays the same at any speed:
# the demo's clock moves only when the demo steps it, see automation.clock.PacedClock.)
MAX_DEMO_SPEED = 600


def demo_speed(value: str) -> float:
    speed = positive_number(value)
    if speed > MAX_DEMO_SPEED:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_DEMO_SPEED}, got {value!r}")
    return speed


def ticket_number(value: str) -> int:
    try:
        number = int(value.strip().lstrip("#"))
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a ticket number like 12345, got {value!r}")
    return number


def moment(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date and time like 2026-11-28T02:00+00:00, got {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a time zone (e.g. {value}+00:00), "
                                         f"got {value!r}")
    return parsed


def _add_global_options(command: argparse.ArgumentParser) -> None:
    """`emergency tick --config x.toml` works as `emergency --config x.toml tick` does."""
    command.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                         help="config file (also accepted before the command)")
    command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log every step and retry")


def port_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emergency",
        description="Runs the customer-emergency workflow on Zendesk: acknowledge, follow up, "
                    "step down to high, exactly once.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 configuration or usage error, "
               "3 Zendesk unreachable or credentials rejected, 4 ticket not found, "
               "5 refused (solved ticket, already done, not urgent): nothing was sent.",
    )
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $EMERGENCY_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step and retry")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_worker_commands(commands)
    _add_demo_commands(commands)
    _add_writing_commands(commands)
    for command in commands.choices.values():
        _add_global_options(command)
    _add_pagerduty_commands(commands)
    return parser


# The object add_subparsers returns (argparse keeps its class private).
Subcommands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_worker_commands(commands: Subcommands) -> None:
    commands.add_parser("tick", help="run one pass and exit (for cron)")
    run = commands.add_parser("run", help="run passes on a timer until SIGTERM/SIGINT")
    run.add_argument("--interval", type=interval_seconds, metavar="SECONDS",
                     help="seconds between passes (default: [workflow] poll_interval_seconds)")
    status = commands.add_parser("status", help="the emergencies the worker tracks")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="include tickets that are no longer emergencies")
    timeline = commands.add_parser(
        "timeline", help="a ticket's comments and the journal's steps, oldest first")
    timeline.add_argument("ticket", type=ticket_number, metavar="TICKET")
    commands.add_parser("check", help="validate the config and render every template offline")


def _add_demo_commands(commands: Subcommands) -> None:
    demo = commands.add_parser("demo", help="the real worker against the built-in sandbox")
    scenario = demo.add_argument("--scenario", default="all",
                                 help="which story to play (default: all, the stories at once)")
    # Set after add_argument, which formats the choices (importing the demo) to check them.
    scenario.choices = _Scenarios()
    demo.add_argument("--speed", type=demo_speed, default=120.0, metavar="X",
                      help="simulated seconds per wall-clock second (default 120, at most "
                           f"{MAX_DEMO_SPEED})")
    sandbox = commands.add_parser(
        "sandbox", help="the built-in fake Zendesk, PagerDuty and Slack, without the worker")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION",
                                              required=True)
    serve = sandbox_commands.add_parser("serve", help="serve them on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--port", type=port_number, default=8765,
                       help="port (default 8765; 0 = any)")
    serve.add_argument("--speed", type=positive_number, default=1.0, metavar="X",
                       help="simulated seconds per wall-clock second (default 1)")
    serve.add_argument("--write-config", metavar="PATH", default="sandbox.toml",
                       help="where to write a config.toml for it (default ./sandbox.toml)")


def _writing(commands: Subcommands, name: str,
             help_text: str, force: bool = False) -> argparse.ArgumentParser:
    """A command that writes on a ticket: previewed with --dry-run, sent with --yes."""
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("ticket", type=ticket_number, metavar="TICKET")
    sub.add_argument("--dry-run", action="store_true",
                     help="print exactly what would be sent, and send nothing")
    sub.add_argument("--yes", "-y", action="store_true",
                     help="send without asking (required when not on a terminal)")
    sub.add_argument("--as", dest="as_email", metavar="EMAIL",
                     help="post as this agent (their Zendesk user)")
    if force:
        sub.add_argument("--force", action="store_true",
                         help="post a public reply even if the ticket is not urgent")
    return sub


def _add_writing_commands(commands: Subcommands) -> None:
    _writing(commands, "ack", "post the acknowledgement by hand (refused once contact exists)",
             force=True)
    _writing(commands, "follow-up", "post the follow-up by hand", force=True)
    _writing(commands, "close", "close the bridge and set priority high by hand", force=True)
    post_call = _writing(commands, "post-call", "public post-call notes, then an internal note",
                         force=True)
    post_call.add_argument("--notes", required=True, metavar="FILE|-",
                           help="the public post-call notes (a file, or - for stdin)")
    post_call.add_argument("--internal", metavar="FILE|-",
                           help="internal-only detail, posted as an internal note")
    post_call.add_argument("--until", metavar="TIME",
                           help="until when you are available for follow-up, e.g. '17:00 UTC'")
    post_call.add_argument("--next", dest="next_engineer", metavar="NAME|EMAIL",
                           help="who responds after that (the next on-call engineer); an "
                                "email lets Slack tag them")
    _add_brief_commands(commands)
    not_emergency = _writing(commands, "not-emergency",
                             "assume good intent: an internal note; priority and SLA unchanged")
    not_emergency.add_argument("--reason", required=True, metavar="TEXT",
                               help="why the ticket may not meet the emergency definition")
    not_emergency.add_argument("--inform", default="The account manager or a Support Manager",
                               metavar="WHO", help="who is told (named in the note)")


def _add_brief_commands(commands: Subcommands) -> None:
    brief = _writing(commands, "brief", "an ASE's pre-task brief, as an internal note")
    brief.add_argument("--file", metavar="FILE|-",
                       help="the brief as TOML keys or Markdown sections (## Planned, ## When, "
                            "## Possible problems, ## Suggested solutions, ## Architecture)")
    brief.add_argument("--edit", action="store_true", help="write the brief in $EDITOR")
    for field_name, text in (("planned", "what is planned"),
                             ("when", "when, e.g. 2026-11-28T02:00+00:00"),
                             ("problems", "possible problems"),
                             ("solutions", "suggested solutions"),
                             ("architecture", "architecture and account notes")):
        brief.add_argument(f"--{field_name}", metavar="TEXT", help=text)
    briefs = commands.add_parser("briefs", help="list the pre-task briefs on file")
    briefs.add_argument("--org", metavar="ORG", help="an organization id or part of its name")
    briefs.add_argument("--upcoming", action="store_true",
                        help="only work planned from now on")
    briefs.add_argument("--json", action="store_true", help="machine-readable output")


def _add_pagerduty_commands(commands: Subcommands) -> None:
    page = commands.add_parser("page", help="trigger the emergency's PagerDuty incident by hand")
    page.add_argument("ticket", type=ticket_number, metavar="TICKET")
    page.add_argument("--engineer", metavar="EMAIL",
                      help="who to page (default: whoever is on call now)")
    page.add_argument("--dry-run", action="store_true", help="say who would be paged; send nothing")
    page.add_argument("--yes", "-y", action="store_true",
                      help="page without asking (required when not on a terminal)")
    page.add_argument("--force", action="store_true",
                      help="page for a ticket that is not urgent")
    oncall = commands.add_parser("oncall", help="who is on call now and next, from PagerDuty")
    oncall.add_argument("--at", type=moment, metavar="TIME",
                        help="another moment, e.g. 2026-11-28T02:00+00:00 (default: now)")
    oncall.add_argument("--federal", action="store_true",
                        help="the US Federal on-call ([pagerduty.federal]) and its hours")
