"""Each command's arguments and flags, one function a command, and the table of commands in
the order --help lists them. The parser (parser.py) builds from it."""

from __future__ import annotations

import argparse
from argparse import SUPPRESS
from collections.abc import Callable
from typing import Any, TypeAlias

from automation.cli.argtypes import (
    MAX_DEMO_SPEED,
    Scenarios,
    demo_speed,
    duration_seconds,
    interval_seconds,
    listen_address,
    moment,
    port_number,
    positive_number,
    since,
    ticket_number,
)
from automation.logs import LOG_FORMATS


def add_global_options(command: argparse.ArgumentParser, before: bool = False) -> None:
    """`emergency tick --config x.toml` works as `emergency --config x.toml tick` does: after
    the command, an option left out keeps its value from before it (SUPPRESS)."""
    command.add_argument("--config", metavar="PATH", default=None if before else SUPPRESS, help=(
        "config file (default: $EMERGENCY_CONFIG, else ./config.toml)" if before
        else "config file (also accepted before the command)"))
    command.add_argument("-v", "--verbose", action="store_true", help="log every step and retry",
                         default=False if before else SUPPRESS)
    command.add_argument("--log-format", choices=LOG_FORMATS, help="log lines as text (default) "
                         "or one JSON object per line", default="text" if before else SUPPRESS)


# The object add_subparsers returns (argparse keeps its class private).
Subcommands: TypeAlias = "argparse._SubParsersAction[Any]"


def _add_tick(commands: Subcommands) -> None:
    commands.add_parser("tick", help="run one pass and exit (for cron)")


def _add_run(commands: Subcommands) -> None:
    run = commands.add_parser("run", help="run passes on a timer until SIGTERM/SIGINT")
    run.add_argument("--interval", type=interval_seconds, metavar="SECONDS",
                     help="seconds between passes (default: [workflow] poll_interval_seconds)")


def _add_serve(commands: Subcommands) -> None:
    serve = commands.add_parser("serve", help="run's passes, plus webhooks, timers on the "
                                "second, health, metrics and the status page over HTTP")
    serve.add_argument("--listen", type=listen_address, metavar="HOST:PORT",
                       help="where to listen (default: [server] listen, else 127.0.0.1:8080)")
    serve.add_argument("--interval", type=interval_seconds, metavar="SECONDS",
                       help="seconds between passes, the safety net for missed webhooks "
                            "(default: [workflow] poll_interval_seconds)")
    serve.add_argument("--sandbox", action="store_true",
                       help="against the built-in sandbox (no account needed; writes "
                            "./sandbox.toml for the `emergency sandbox` verbs)")
    serve.add_argument("--speed", type=positive_number, default=60.0, metavar="X",
                       help="with --sandbox: its clock's speed (default 60: a follow-up 15 s "
                            "after contact)")


def _add_status(commands: Subcommands) -> None:
    status = commands.add_parser("status", help="the emergencies the worker tracks")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="include tickets that are no longer emergencies")


def _add_timeline(commands: Subcommands) -> None:
    timeline = commands.add_parser(
        "timeline", help="a ticket's comments and the journal's steps, oldest first")
    timeline.add_argument("ticket", type=ticket_number, metavar="TICKET")


def _add_check(commands: Subcommands) -> None:
    check = commands.add_parser("check",
                                help="validate the config and render every template offline")
    check.add_argument("--online", action="store_true",
                       help="also try each token and every configured id against Zendesk, "
                            "Slack and PagerDuty (exit 3: a token refused or a service down; "
                            "2: an id wrong)")


def _add_report(commands: Subcommands) -> None:
    report = commands.add_parser("report", help="how the emergencies went, from Zendesk's "
                                 "audits: per emergency, and by week, organization, engineer")
    report.add_argument("--since", type=since, default=since("30d"), metavar="30d|DATE",
                        help="how far back: 30d (default), 12h, 2w, or a date (UTC) or time")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--html", metavar="FILE", help="also write the report, with its "
                        "charts, as one HTML page (needs the `report` extra)")


def _add_init(commands: Subcommands) -> None:
    init = commands.add_parser("init", help="write a starter config.toml, every key commented")
    init.add_argument("path", nargs="?", metavar="PATH",
                      help="where (default: --config, $EMERGENCY_CONFIG, else ./config.toml); "
                           "an existing file is never overwritten")


def _add_demo(commands: Subcommands) -> None:
    demo = commands.add_parser("demo", help="the real worker against the built-in sandbox")
    scenario = demo.add_argument("--scenario", default="all",
                                 help="which story to play (default: all, the stories at once)")
    # Set after add_argument, which formats the choices (importing the demo) to check them.
    scenario.choices = Scenarios()
    demo.add_argument("--speed", type=demo_speed, default=120.0, metavar="X",
                      help="simulated seconds per wall-clock second (default 120, at most "
                           f"{MAX_DEMO_SPEED})")
    demo.add_argument("--report", metavar="FILE",
                      help="also write the night's report as an HTML page (as report --html)")


def _add_sandbox(commands: Subcommands) -> None:
    sandbox = commands.add_parser(
        "sandbox", help="the built-in fake Zendesk, PagerDuty and Slack, without the worker")
    verbs = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve = verbs.add_parser("serve", help="serve them on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--port", type=port_number, default=8765,
                       help="port (default 8765; 0 = any)")
    serve.add_argument("--speed", type=positive_number, default=1.0, metavar="X",
                       help="simulated seconds per wall-clock second (default 1)")
    serve.add_argument("--write-config", metavar="PATH", default="sandbox.toml",
                       help="where to write a config.toml for it (default ./sandbox.toml)")
    # The verbs below ask the sandbox that `serve` runs, found at the config's [zendesk] url.
    ticket = verbs.add_parser("ticket", help="a customer files a new urgent ticket")
    ticket.add_argument("--org", metavar="NAME", help="the customer's organization (default "
                        "Acme Corp; a new name makes a new organization)")
    ticket.add_argument("--subject", metavar="TEXT")
    ticket.add_argument("--body", metavar="TEXT", help="the customer's first comment")
    reply = verbs.add_parser("reply", help="the ticket's customer answers (a public comment)")
    reply.add_argument("ticket", type=ticket_number, metavar="TICKET")
    reply.add_argument("--body", metavar="TEXT")
    ack = verbs.add_parser("ack", help="an engineer acknowledges the ticket's page in PagerDuty")
    ack.add_argument("ticket", type=ticket_number, metavar="TICKET")
    ack.add_argument("--engineer", metavar="EMAIL",
                     help="who acknowledges (default: whom the page is assigned to)")
    advance = verbs.add_parser("advance", help="move the sandbox's clock forward")
    advance.add_argument("duration", type=duration_seconds, metavar="DURATION",
                         help="e.g. 15m, 90s, 1h30m")
    for verb in verbs.choices.values():
        add_global_options(verb)


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


def _add_ack(commands: Subcommands) -> None:
    _writing(commands, "ack", "post the acknowledgement by hand (refused once contact exists)",
             force=True)


def _add_follow_up(commands: Subcommands) -> None:
    _writing(commands, "follow-up", "post the follow-up by hand", force=True)


def _add_close(commands: Subcommands) -> None:
    _writing(commands, "close", "close the bridge and set priority high by hand", force=True)


def _add_post_call(commands: Subcommands) -> None:
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


def _add_brief(commands: Subcommands) -> None:
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


def _add_briefs(commands: Subcommands) -> None:
    briefs = commands.add_parser("briefs", help="list the pre-task briefs on file")
    briefs.add_argument("--org", metavar="ORG", help="an organization id or part of its name")
    briefs.add_argument("--upcoming", action="store_true",
                        help="only work planned from now on")
    briefs.add_argument("--json", action="store_true", help="machine-readable output")


def _add_escalate(commands: Subcommands) -> None:
    escalate = _writing(commands, "escalate", "stuck: page the Support Manager on call, with "
                        "an internal note and a line in the thread", force=True)
    escalate.add_argument("--reason", required=True, metavar="TEXT",
                          help="what you are stuck on (for the manager and the note)")


def _add_runbook_issue(commands: Subcommands) -> None:
    runbook = commands.add_parser("runbook-issue", help="open the emergency's Emergency Runbook "
                                  "issue in GitLab by hand (once)")
    runbook.add_argument("ticket", type=ticket_number, metavar="TICKET")
    runbook.add_argument("--dry-run", action="store_true", help="print the issue; open nothing")
    runbook.add_argument("--yes", "-y", action="store_true",
                         help="open it without asking (required when not on a terminal)")


def _add_not_emergency(commands: Subcommands) -> None:
    not_emergency = _writing(commands, "not-emergency",
                             "assume good intent: an internal note; priority and SLA unchanged")
    not_emergency.add_argument("--reason", required=True, metavar="TEXT",
                               help="why the ticket may not meet the emergency definition")
    not_emergency.add_argument("--inform", default="The account manager or a Support Manager",
                               metavar="WHO", help="who is told (named in the note)")


def _add_page(commands: Subcommands) -> None:
    page = commands.add_parser("page", help="trigger the emergency's PagerDuty incident by hand")
    page.add_argument("ticket", type=ticket_number, metavar="TICKET")
    page.add_argument("--engineer", metavar="EMAIL",
                      help="who to page (default: whoever is on call now)")
    page.add_argument("--dry-run", action="store_true", help="say who would be paged; send nothing")
    page.add_argument("--yes", "-y", action="store_true",
                      help="page without asking (required when not on a terminal)")
    page.add_argument("--force", action="store_true",
                      help="page for a ticket that is not urgent")


def _add_oncall(commands: Subcommands) -> None:
    oncall = commands.add_parser("oncall", help="who is on call now and next, from PagerDuty")
    oncall.add_argument("--at", type=moment, metavar="TIME",
                        help="another moment, e.g. 2026-11-28T02:00+00:00 (default: now)")
    oncall.add_argument("--federal", action="store_true",
                        help="the US Federal on-call ([pagerduty.federal]) and its hours")


# Every command, in the order --help lists them.
COMMANDS: dict[str, Callable[[Subcommands], None]] = {
    "tick": _add_tick,
    "run": _add_run,
    "serve": _add_serve,
    "status": _add_status,
    "timeline": _add_timeline,
    "check": _add_check,
    "report": _add_report,
    "init": _add_init,
    "demo": _add_demo,
    "sandbox": _add_sandbox,
    "ack": _add_ack,
    "follow-up": _add_follow_up,
    "close": _add_close,
    "post-call": _add_post_call,
    "brief": _add_brief,
    "briefs": _add_briefs,
    "escalate": _add_escalate,
    "runbook-issue": _add_runbook_issue,
    "not-emergency": _add_not_emergency,
    "page": _add_page,
    "oncall": _add_oncall,
}
