"""The composition root: reads config and environment, builds the adapters, runs a command.

`run(argv)` does the work and returns the exit code; `main()` only wires it to the process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from automation import __version__, config
from automation.clock import Clock, SystemClock
from automation.errors import (
    AutomationError,
    ConfigError,
    CredentialsRejected,
    NotFound,
    TemplateError,
    Unreachable,
)
from automation.store import Store
from automation.templates import REGISTRY, Templates
from automation.worker import Worker, template_context
from automation.zendesk import Zendesk

EXIT_OK = 0  # everything that was due was done
EXIT_STEP_FAILED = 1  # a step failed on some ticket; the others went ahead
EXIT_CONFIG = 2  # configuration, flag or template error: nothing was sent
EXIT_UNREACHABLE = 3  # Zendesk unreachable, or it rejected the credentials
EXIT_NOT_FOUND = 4  # the ticket named on the command line does not exist

log = logging.getLogger("automation")


@dataclass
class Context:
    """What a command needs from outside: where to print, the environment, the clock."""

    out: TextIO
    err: TextIO
    environ: dict[str, str]
    clock: Clock


class UsageError(ConfigError):
    """Raised when the command line itself is wrong (a flag, an argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on our stderr, not a usage dump on sys.stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def ticket_number(value: str) -> int:
    try:
        number = int(value.strip().lstrip("#"))
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a ticket number like 12345, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emergency",
        description="Runs the customer-emergency workflow on Zendesk: acknowledge, follow up, "
                    "step down to high, exactly once.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 configuration or usage error, "
               "3 Zendesk unreachable or credentials rejected, 4 ticket not found.",
    )
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $EMERGENCY_CONFIG, else ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step and retry")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("tick", help="run one pass and exit (for cron)")
    run = commands.add_parser("run", help="run passes on a timer until SIGTERM/SIGINT")
    run.add_argument("--interval", type=float, metavar="SECONDS",
                     help="seconds between passes (default: [workflow] poll_interval_seconds)")
    status = commands.add_parser("status", help="the emergencies the worker tracks")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="include tickets that are no longer emergencies")
    timeline = commands.add_parser(
        "timeline", help="a ticket's comments and the journal's steps, oldest first")
    timeline.add_argument("ticket", type=ticket_number, metavar="TICKET")
    commands.add_parser("check", help="validate the config and render every template offline")
    return parser


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
        err: TextIO | None = None, environ: dict[str, str] | None = None,
        clock: Clock | None = None) -> int:
    """Run one command; return its exit code. Only AutomationError is turned into a line."""
    ctx = Context(out=out or sys.stdout, err=err or sys.stderr,
                  environ=dict(os.environ) if environ is None else environ,
                  clock=clock or SystemClock())
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    # A service logs each step; a one-shot command prints its result and only warnings.
    level = logging.DEBUG if args.verbose else (
        logging.INFO if args.command == "run" else logging.WARNING)
    _configure_logging(ctx.err, level)
    handler = COMMANDS[args.command]
    try:
        return handler(args, ctx)
    except ConfigError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_CONFIG
    except TemplateError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_CONFIG
    except (Unreachable, CredentialsRejected) as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_UNREACHABLE
    except NotFound as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_NOT_FOUND
    except AutomationError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_STEP_FAILED


def _configure_logging(stream: TextIO, level: int) -> None:
    root = logging.getLogger("automation")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def load_config(args: argparse.Namespace, ctx: Context) -> config.Config:
    explicit = args.config or ctx.environ.get(config.CONFIG_ENV)
    return config.load(Path(explicit or config.DEFAULT_PATH))


def build_zendesk(cfg: config.Config, ctx: Context) -> Zendesk:
    token = config.zendesk_token(ctx.environ)
    return Zendesk(cfg.zendesk.url, cfg.zendesk.email, token, ctx.clock,
                   timeout=cfg.zendesk.timeout_seconds,
                   max_retry_seconds=cfg.zendesk.max_retry_seconds)


def build_worker(cfg: config.Config, ctx: Context, zendesk: Zendesk | None = None) -> Worker:
    templates = Templates(cfg.templates_path)
    zendesk = zendesk or build_zendesk(cfg, ctx)
    return Worker(zendesk, Store(cfg.state_path), templates, cfg.workflow, ctx.clock,
                  cfg.zendesk.query, cfg.zendesk.view_id)


def cmd_tick(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    worker = build_worker(cfg, ctx)
    report = worker.run_once()
    for result in report.posted:
        print(f"#{result.ticket_id} {result.step}: {result.outcome}: {result.detail}",
              file=ctx.out)
    for result in report.failed:
        print(f"#{result.ticket_id} {result.step}: FAILED: {result.detail}", file=ctx.out)
    print(f"pass at {report.now:%Y-%m-%d %H:%M:%S} UTC: {report.listed} emergencies listed, "
          f"{report.read} read, {len(report.posted)} posted, {len(report.failed)} failed",
          file=ctx.out)
    return EXIT_OK if report.ok else EXIT_STEP_FAILED


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    worker = build_worker(cfg, ctx)
    stop = threading.Event()

    def warm_stop(signum: int, _frame: Any) -> None:
        log.info("%s received: finishing the pass in hand, then stopping",
                 signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, warm_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("watching %s every %g s", cfg.zendesk.url,
                 args.interval or cfg.workflow.poll_interval_seconds)
        worker.run_forever(stop, args.interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return EXIT_OK


def _relative(due: datetime | None, now: datetime) -> str:
    if due is None:
        return "-"
    minutes = round((due - now).total_seconds() / 60)
    if minutes <= 0:
        return "due now"
    return f"in {minutes} min"


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    store = Store(cfg.state_path)
    tracked = store.tracked(active_only=not args.all)
    rows = [
        {"ticket_id": t.ticket_id, "state": t.state, "next_step": t.next_step,
         "due_at": t.due_at.isoformat() if t.due_at else None, "subject": t.subject,
         "updated_at": t.updated_at, "seen_at": t.seen_at.isoformat()}
        for t in tracked.values()
    ]
    if args.json:
        json.dump(rows, ctx.out, indent=2)
        print(file=ctx.out)
        return EXIT_OK
    if not rows:
        print("no emergencies tracked (run `emergency tick` to look for some)", file=ctx.out)
        return EXIT_OK
    now = ctx.clock.now()
    print(f"{'TICKET':>8}  {'STATE':<18} {'NEXT STEP':<12} {'DUE':<24} SUBJECT", file=ctx.out)
    for t in tracked.values():
        due = f"{t.due_at:%H:%M} ({_relative(t.due_at, now)})" if t.due_at else "-"
        print(f"{t.ticket_id:>8}  {t.state:<18} {t.next_step or '-':<12} {due:<24} "
              f"{t.subject[:60]}", file=ctx.out)
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    zendesk = build_zendesk(cfg, ctx)
    snapshot = zendesk.snapshot(args.ticket)
    store = Store(cfg.state_path)
    lines: list[tuple[datetime, int, str]] = []
    for comment in snapshot.comments:
        author = snapshot.people.get(comment.author_id)
        who = f"{author.name} ({author.role})" if author else f"user {comment.author_id}"
        first = next((ln for ln in comment.body.splitlines() if ln.strip()), "")
        visibility = "public" if comment.public else "internal"
        lines.append((comment.created_at, 0,
                      f"zendesk  {visibility:<8} comment by {who}: {first[:80]}"))
    for entry in store.journal(args.ticket):
        visibility = {True: "public", False: "internal", None: ""}[entry.public]
        text = f"journal  {visibility:<8} {entry.step} {entry.outcome}"
        if entry.detail:
            text += f": {entry.detail[:80]}"
        lines.append((entry.at, 1, text))
    t = snapshot.ticket
    print(f"#{t.id} {t.subject} — {t.status}, priority {t.priority}, tags "
          f"{', '.join(t.tags) or '-'}", file=ctx.out)
    for at, _, text in sorted(lines, key=lambda line: (line[0], line[1])):
        print(f"{at:%Y-%m-%d %H:%M:%S}  {text}", file=ctx.out)
    return EXIT_OK


def sample_context(cfg: config.Config) -> dict[str, Any]:
    """Realistic data for rendering every template offline."""
    from automation.model import Assessment, Person, Snapshot, State, Ticket

    now = datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    ticket = Ticket(id=12345, subject="Production is down: 502 on every request",
                    status="open", priority="urgent", tags=(), requester_id=1,
                    organization_id=None, created_at=now, updated_at=now,
                    updated_stamp="2026-01-05T09:00:00Z")
    snapshot = Snapshot(ticket=ticket, comments=(),
                        people={1: Person(1, "Dana Customer", "dana@example.com", "end-user")})
    assessment = Assessment(ticket_id=ticket.id, state=State.AWAITING_CUSTOMER, next_step=None,
                            due_at=None, contact_at=now)
    org = type("SampleOrganization", (), {"name": "Example Corp"})()
    context = template_context(snapshot, assessment, cfg.workflow, org, now)
    context.update(engineer="Sam Engineer", reason="The customer's staging system is down.",
                   informed="The account manager")
    return context


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    print(f"config {cfg.source}: ok (Zendesk {cfg.zendesk.url} as {cfg.zendesk.email})",
          file=ctx.out)
    if cfg.zendesk.view_id is not None:
        print(f"emergencies: view {cfg.zendesk.view_id}", file=ctx.out)
    else:
        print(f"emergencies: search {cfg.zendesk.query!r}", file=ctx.out)
    templates = Templates(cfg.templates_path)
    failures = 0
    context = sample_context(cfg)
    for name in sorted(REGISTRY):
        try:
            rendered = templates.render(name, context)
        except TemplateError as exc:
            failures += 1
            print(f"template {name}: FAILED: {exc}", file=ctx.out)
            continue
        visibility = "public" if rendered.public else "internal"
        print(f"template {name} ({visibility}): ok: {rendered.first_line[:70]}", file=ctx.out)
    if not ctx.environ.get(config.ZENDESK_TOKEN_ENV, "").strip():
        print(f"warning: {config.ZENDESK_TOKEN_ENV} is not set; tick and run will refuse to "
              "start", file=ctx.out)
    if failures:
        print(f"error: {failures} template(s) failed to render", file=ctx.err)
        return EXIT_CONFIG
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Context], int]] = {
    "tick": cmd_tick,
    "run": cmd_run,
    "status": cmd_status,
    "timeline": cmd_timeline,
    "check": cmd_check,
}


def main() -> None:
    sys.exit(run())
