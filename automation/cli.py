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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from automation import __version__, config, wiring
from automation.clock import Clock, SystemClock
from automation.commands import BRIEF_FIELDS, Commands, Plan, Refused, parse_brief_file, preview
from automation.demo import run_demo, scenario_names
from automation.errors import (
    AutomationError,
    ConfigError,
    CredentialsRejected,
    NotFound,
    TemplateError,
    Unreachable,
)
from automation.facts import template_context
from automation.model import Step
from automation.pagerduty import PagerDuty
from automation.store import Store
from automation.templates import REGISTRY, Templates, summary_line
from automation.worker import Worker
from automation.workflow import coverage_at
from automation.zendesk import Zendesk

EXIT_OK = 0  # everything that was due was done
EXIT_STEP_FAILED = 1  # a step failed on some ticket; the others went ahead
EXIT_CONFIG = 2  # configuration, flag or template error: nothing was sent
EXIT_UNREACHABLE = 3  # Zendesk unreachable, or it rejected the credentials
EXIT_NOT_FOUND = 4  # the ticket named on the command line does not exist
EXIT_REFUSED = 5  # the ticket's state forbids it (solved, already done, not urgent): nothing sent

log = logging.getLogger("automation")


@dataclass
class Context:
    """What a command needs from outside: where to print, the environment, the clock."""

    out: TextIO
    err: TextIO
    environ: dict[str, str]
    clock: Clock
    stdin: TextIO
    # Connections to close when the command ends (PagerDuty's client keeps a pool).
    closers: list[Callable[[], None]] = field(default_factory=list)


class UsageError(ConfigError):
    """Raised when the command line itself is wrong (a flag, an argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on our stderr, not a usage dump on sys.stderr."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


# Faster, and one pass's real HTTP time eats whole simulated minutes of the story.
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

    commands.add_parser("tick", help="run one pass and exit (for cron)")
    run = commands.add_parser("run", help="run passes on a timer until SIGTERM/SIGINT")
    run.add_argument("--interval", type=positive_number, metavar="SECONDS",
                     help="seconds between passes (default: [workflow] poll_interval_seconds)")
    status = commands.add_parser("status", help="the emergencies the worker tracks")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="include tickets that are no longer emergencies")
    timeline = commands.add_parser(
        "timeline", help="a ticket's comments and the journal's steps, oldest first")
    timeline.add_argument("ticket", type=ticket_number, metavar="TICKET")
    commands.add_parser("check", help="validate the config and render every template offline")
    demo = commands.add_parser("demo", help="the real worker against the built-in sandbox")
    demo.add_argument("--scenario", choices=scenario_names(), default="all",
                      help="which story to play (default: all, the stories at once)")
    demo.add_argument("--speed", type=demo_speed, default=120.0, metavar="X",
                      help="simulated seconds per wall-clock second (default 120, at most "
                           f"{MAX_DEMO_SPEED})")
    sandbox = commands.add_parser(
        "sandbox", help="the built-in fake Zendesk, PagerDuty and Slack, without the worker")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION",
                                              required=True)
    serve = sandbox_commands.add_parser("serve", help="serve them on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    serve.add_argument("--speed", type=positive_number, default=1.0, metavar="X",
                       help="simulated seconds per wall-clock second (default 1)")
    serve.add_argument("--write-config", metavar="PATH", default="sandbox.toml",
                       help="where to write a config.toml for it (default ./sandbox.toml)")

    def writing(name: str, help_text: str, force: bool = False) -> argparse.ArgumentParser:
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

    writing("ack", "post the acknowledgement by hand (refused once contact exists)", force=True)
    writing("follow-up", "post the follow-up by hand", force=True)
    writing("close", "close the bridge and set priority high by hand", force=True)
    post_call = writing("post-call", "public post-call notes, then an internal note",
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
    brief = writing("brief", "an ASE's pre-task brief, as an internal note")
    brief.add_argument("--file", metavar="FILE|-",
                       help="the brief as TOML keys or Markdown sections (## Planned, ## When, "
                            "## Problems, ## Solutions, ## Architecture)")
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
    not_emergency = writing("not-emergency",
                            "assume good intent: an internal note; priority and SLA unchanged")
    not_emergency.add_argument("--reason", required=True, metavar="TEXT",
                               help="why the ticket may not meet the emergency definition")
    not_emergency.add_argument("--inform", default="The account manager or a Support Manager",
                               metavar="WHO", help="who is told (named in the note)")
    page = commands.add_parser("page", help="trigger the emergency's PagerDuty incident by hand")
    page.add_argument("ticket", type=ticket_number, metavar="TICKET")
    page.add_argument("--engineer", metavar="EMAIL",
                      help="who to page (default: whoever is on call now)")
    page.add_argument("--dry-run", action="store_true", help="say who would be paged; send nothing")
    page.add_argument("--yes", "-y", action="store_true",
                      help="page without asking (required when not on a terminal)")
    oncall = commands.add_parser("oncall", help="who is on call now and next, from PagerDuty")
    oncall.add_argument("--at", type=moment, metavar="TIME",
                        help="another moment, e.g. 2026-11-28T02:00+00:00 (default: now)")
    oncall.add_argument("--federal", action="store_true",
                        help="the US Federal on-call ([pagerduty.federal]) and its hours")
    return parser


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


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
        err: TextIO | None = None, environ: dict[str, str] | None = None,
        clock: Clock | None = None, stdin: TextIO | None = None) -> int:
    """Run one command; return its exit code. Only AutomationError is turned into a line."""
    ctx = Context(out=out or sys.stdout, err=err or sys.stderr,
                  environ=dict(os.environ) if environ is None else environ,
                  clock=clock or SystemClock(), stdin=stdin or sys.stdin)
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
    except AutomationError as exc:
        return _exit_code(exc, ctx)
    finally:
        for close in ctx.closers:
            close()


# The first matching class decides the exit code; the rest of AutomationError is a failed step.
EXIT_CODES: tuple[tuple[type[AutomationError], int], ...] = (
    (Refused, EXIT_REFUSED),
    (ConfigError, EXIT_CONFIG),
    (TemplateError, EXIT_CONFIG),
    (Unreachable, EXIT_UNREACHABLE),
    (CredentialsRejected, EXIT_UNREACHABLE),
    (NotFound, EXIT_NOT_FOUND),
)


def _exit_code(exc: AutomationError, ctx: Context) -> int:
    """One line naming what went wrong, and the documented exit code for it."""
    code = next((c for kind, c in EXIT_CODES if isinstance(exc, kind)), EXIT_STEP_FAILED)
    print(f"{'refused' if code == EXIT_REFUSED else 'error'}: {exc}", file=ctx.err)
    return code


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
    return config.load(config.resolve_path(args.config, ctx.environ))


def build_zendesk(cfg: config.Config, ctx: Context) -> Zendesk:
    return wiring.build_zendesk(cfg, ctx.clock, ctx.environ)


def build_pagerduty(cfg: config.Config, ctx: Context) -> PagerDuty | None:
    client = wiring.build_pagerduty(cfg, ctx.clock, ctx.environ)
    if client is not None:
        ctx.closers.append(client.close)
    return client


def build_worker(cfg: config.Config, ctx: Context) -> Worker:
    return wiring.build_worker(cfg, ctx.clock, ctx.environ)


def cmd_tick(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    worker = build_worker(cfg, ctx)
    try:
        report = worker.run_once()
    finally:
        worker.close()
    for result in report.posted:
        print(f"#{result.ticket_id} {result.step}: {result.outcome}: {result.detail}",
              file=ctx.out)
    for result in report.failed:
        print(f"#{result.ticket_id} {result.step}: FAILED: {result.detail}", file=ctx.out)
    if report.slack_pending:
        print(f"slack: {report.slack_pending} line(s) pending; they are retried next pass",
              file=ctx.out)
    print(f"pass at {report.now:%Y-%m-%d %H:%M:%S} UTC: {report.listed} emergencies listed, "
          f"{report.read} read, {len(report.posted)} posted, {len(report.failed)} failed",
          file=ctx.out)
    if report.rejected is not None:
        raise report.rejected  # after the Zendesk steps: they must not wait on PagerDuty
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
        worker.close()
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
        if not t.active:
            due = "- (no longer listed)"
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
        visibility = "public" if comment.public else "internal"
        lines.append((comment.created_at, 0, f"zendesk  {visibility:<8} comment by {who}: "
                      f"{summary_line(comment.body, 80)}"))
    for entry in store.journal(args.ticket):
        visibility = {True: "public", False: "internal", None: ""}[entry.public]
        text = f"journal  {visibility:<8} {entry.step} {entry.outcome}"
        if entry.detail:
            text += f": {entry.detail[:80]}"
        lines.append((entry.at, 1, text))
    for queued in store.outbox(args.ticket, pending_only=False):
        status = "posted" if queued.sent_at else "PENDING"
        why = f" [{queued.attempts} tries; last: {queued.last_error[:80]}]" \
            if not queued.sent_at and queued.last_error else ""
        lines.append((queued.sent_at or queued.queued_at, 2,
                      f"slack    {status:<8} {queued.kind}: {queued.text[:80]}{why}"))
    t = snapshot.ticket
    print(f"#{t.id} {t.subject} — {t.status}, priority {t.priority}, tags "
          f"{', '.join(t.tags) or '-'}", file=ctx.out)
    for at, _, text in sorted(lines, key=lambda line: (line[0], line[1])):
        print(f"{at:%Y-%m-%d %H:%M:%S}  {text}", file=ctx.out)
    return EXIT_OK


def sample_context(cfg: config.Config) -> dict[str, Any]:
    """Realistic data for rendering every template offline."""
    from automation.model import Assessment, Brief, Person, Snapshot, State, Ticket

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
    context = template_context(snapshot, assessment, cfg.workflow, cfg.policy, org, now)
    context.update(
        engineer="Sam Engineer", reason="The customer's staging system is down.",
        informed="The account manager", notes="We rolled back the upgrade; pushes work again.",
        internal_notes="Root cause suspected in the Gitaly config; see the customer's logs.",
        macro_body=None, available_until="17:00 UTC", next_engineer="Francesca Rossi",
        permalink="https://example.slack.com/archives/C0123/p1767603600000100",
        account_manager="marco@example.com", ase="giulia@example.com",
        coverage_hours="05:00-17:00 America/Los_Angeles", resumes_at=now,
        brief={"planned": "Upgrade to 17.2", "when": now, "problems": "Long migrations",
               "solutions": "Roll back with the backup", "architecture": "3 Gitaly nodes"},
        briefs=[Brief(ticket_id=12000, organization_id=1, organization="Example Corp",
                      author="Ash ASE", planned="Upgrade to 17.2", when=now,
                      url="https://example.zendesk.com/agent/tickets/12000", filed_at=now)],
    )
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
    if cfg.templates_path is not None:
        for path in sorted(cfg.templates_path.glob("*.j2")):
            if path.stem not in REGISTRY:
                print(f"warning: {path} overrides no template (a typo?); known: "
                      f"{', '.join(sorted(REGISTRY))}", file=ctx.out)
    for name in sorted(REGISTRY):
        try:
            rendered = templates.render(name, context)
        except TemplateError as exc:
            failures += 1
            print(f"template {name}: FAILED: {exc}", file=ctx.out)
            continue
        visibility = "public" if rendered.public else "internal"
        print(f"template {name} ({visibility}): ok: {rendered.first_line[:70]}", file=ctx.out)
    if cfg.pagerduty is not None:
        pd = cfg.pagerduty
        print(f"pagerduty: {pd.url}, service {pd.service_id}, escalation policy "
              f"{pd.escalation_policy_id}, managers "
              f"{pd.managers_service_id or '(none: no manager pages)'}; acknowledgement "
              f"fallback {pd.acknowledge_fallback_minutes:g} min", file=ctx.out)
    if cfg.slack is not None:
        print(f"slack: {cfg.slack.url}, default channel {cfg.slack.default_channel}, "
              f"{len(cfg.slack.channels)} channel rule(s), {len(cfg.slack.regions)} region(s)",
              file=ctx.out)
    wanted = [config.ZENDESK_TOKEN_ENV]
    wanted += [config.PAGERDUTY_TOKEN_ENV] if cfg.pagerduty else []
    wanted += [config.SLACK_TOKEN_ENV] if cfg.slack else []
    for name in wanted:
        if not ctx.environ.get(name, "").strip():
            print(f"warning: {name} is not set; tick and run will refuse to start",
                  file=ctx.out)
    if failures:
        print(f"error: {failures} template(s) failed to render", file=ctx.err)
        return EXIT_CONFIG
    return EXIT_OK


def read_text(value: str, flag: str, ctx: Context) -> str:
    """A flag's FILE, or standard input for '-'."""
    if value == "-":
        return ctx.stdin.read()
    try:
        return Path(value).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{flag} {value}: no such file (give a file, or - for stdin)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {value}: cannot read it as UTF-8 text: {exc}") from None


def build_commands(args: argparse.Namespace, ctx: Context) -> Commands:
    commands = wiring.build_commands(load_config(args, ctx), ctx.clock, ctx.environ)
    ctx.closers.append(commands.close)
    return commands


def confirmed(text: str, args: argparse.Namespace, ctx: Context) -> bool:
    """--yes, or the preview shown and 'y' typed on a terminal."""
    if args.yes:
        return True
    if not ctx.stdin.isatty():
        raise UsageError("not sending without --yes when standard input is not a terminal "
                         "(preview it with --dry-run)")
    print(text, file=ctx.out)
    print("\nSend this? [y/N] ", end="", file=ctx.out, flush=True)
    if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
        print("not sent", file=ctx.out)
        return False
    return True


def confirm_and_send(commands: Commands, plan: Plan, args: argparse.Namespace,
                     ctx: Context) -> int:
    """--dry-run previews; otherwise --yes or a 'y' typed on a terminal sends."""
    text = preview(plan)
    if args.dry_run:
        print(text, file=ctx.out)
        print("\ndry run: nothing was sent", file=ctx.out)
        return EXIT_OK
    if not confirmed(text, args, ctx):
        return EXIT_OK
    for sent in commands.send(plan):
        if sent.step == "slack":
            print(sent.note, file=ctx.out)
            continue
        if sent.skipped:
            print(f"#{plan.snapshot.ticket.id} {sent.step}: already on the ticket, skipped",
                  file=ctx.out)
            continue
        visibility = "public" if sent.public else "internal"
        note = f" ({sent.note})" if sent.note else ""
        print(f"#{plan.snapshot.ticket.id} {sent.step}: posted {visibility}"
              f"{' comment ' + str(sent.comment_id) if sent.comment_id else ''}{note}",
              file=ctx.out)
    return EXIT_OK


def cmd_manual_step(step: Step) -> Callable[[argparse.Namespace, Context], int]:
    def command(args: argparse.Namespace, ctx: Context) -> int:
        commands = build_commands(args, ctx)
        plan = commands.plan_step(args.ticket, step, args.as_email, args.force)
        return confirm_and_send(commands, plan, args, ctx)
    return command


def cmd_post_call(args: argparse.Namespace, ctx: Context) -> int:
    if args.notes == "-" and args.internal == "-":
        raise UsageError("--notes and --internal cannot both read standard input")
    notes = read_text(args.notes, "--notes", ctx)
    internal = read_text(args.internal, "--internal", ctx) if args.internal else None
    commands = build_commands(args, ctx)
    macro = commands.config.macros.get("post_call")
    plan = commands.plan_post_call(args.ticket, notes, internal, args.as_email, args.until,
                                   args.next_engineer, macro, args.force)
    return confirm_and_send(commands, plan, args, ctx)


def cmd_brief(args: argparse.Namespace, ctx: Context) -> int:
    fields: dict[str, str] = {}
    if args.file:
        fields.update(parse_brief_file(read_text(args.file, "--file", ctx), args.file))
    elif args.edit:
        fields.update(edit_brief(ctx))
    for name in BRIEF_FIELDS:
        if getattr(args, name):
            fields[name] = getattr(args, name)
    commands = build_commands(args, ctx)
    plan = commands.plan_brief(args.ticket, fields, args.as_email)
    return confirm_and_send(commands, plan, args, ctx)


def edit_brief(ctx: Context) -> dict[str, str]:
    import subprocess
    import tempfile

    editor = ctx.environ.get("VISUAL") or ctx.environ.get("EDITOR")
    if not editor:
        raise UsageError("--edit needs $EDITOR (or give --file, or the --planned ... flags)")
    skeleton = "".join(f"## {name.title()}\n\n" for name in BRIEF_FIELDS)
    with tempfile.NamedTemporaryFile("w+", suffix=".md", delete=False) as handle:
        handle.write(skeleton)
        path = handle.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        return parse_brief_file(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UsageError(f"--edit: the editor {editor!r} failed: {exc}") from None
    finally:
        Path(path).unlink(missing_ok=True)


def cmd_briefs(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    found = Store(cfg.state_path).briefs(args.org, ctx.clock.now() if args.upcoming else None)
    if args.json:
        json.dump([{"ticket_id": b.ticket_id, "organization_id": b.organization_id,
                    "organization": b.organization, "author": b.author, "planned": b.planned,
                    "when": b.when.isoformat(), "url": b.url} for b in found], ctx.out, indent=2)
        print(file=ctx.out)
        return EXIT_OK
    if not found:
        print("no briefs on file" + (" for that organization" if args.org else ""), file=ctx.out)
    for b in found:
        print(f"{b.when:%Y-%m-%d %H:%M %Z}  {b.organization or '-'}  {b.planned}  "
              f"(by {b.author}, #{b.ticket_id} {b.url})", file=ctx.out)
    return EXIT_OK


def cmd_not_emergency(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    plan = commands.plan_not_emergency(args.ticket, args.reason, args.inform, args.as_email)
    return confirm_and_send(commands, plan, args, ctx)


def cmd_demo(args: argparse.Namespace, ctx: Context) -> int:
    logging.getLogger("automation").setLevel(logging.ERROR if not args.verbose else logging.DEBUG)
    return run_demo(ctx.out, args.scenario, args.speed)


SANDBOX_CONFIG = """# Written by `emergency sandbox serve`: points the worker at the local sandbox.
# export ZENDESK_API_TOKEN={token} PAGERDUTY_API_TOKEN={pd_token} SLACK_BOT_TOKEN={slack_token}
[zendesk]
url = "{url}"
email = "{email}"

[workflow]
bridge_url = "https://bridge.example.com/emergency"
poll_interval_seconds = 10
bridges = {{ "francesca@example.com" = "https://bridge.example.com/francesca" }}

[state]
path = "sandbox-state.sqlite3"

[pagerduty]
url = "{pd_url}"
ca_file = "{pd_ca}"
from_email = "{email}"
service_id = "{pd_service}"
escalation_policy_id = "{pd_policy}"
managers_service_id = "{pd_managers}"

[slack]
url = "{slack_url}"
default_channel = "{channel}"
"""


def cmd_sandbox(args: argparse.Namespace, ctx: Context) -> int:
    from automation.clock import ScaledClock
    from automation.sandbox import Sandbox, seed_account

    sandbox = Sandbox(clock=ScaledClock(speed=args.speed), port=args.port)
    try:
        sandbox.start()
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror}") \
            from None
    try:
        account = seed_account(sandbox)
        ticket_id = sandbox.zendesk.create_ticket(
            account.requester_id, "Production down: every git push fails with 502",
            "Since 08:50 no one can push. Our release is blocked.", priority="urgent",
            organization_id=account.organization_id)
        config_path = Path(args.write_config)
        config_path.write_text(SANDBOX_CONFIG.format(
            url=sandbox.url, email=sandbox.email, token=sandbox.token,
            pd_token=sandbox.pagerduty.token, slack_token=sandbox.slack.token,
            pd_url=sandbox.pagerduty_url, pd_ca=sandbox.pagerduty_ca,
            pd_service=account.pd_service_id, pd_policy=account.pd_policy_id,
            pd_managers=account.pd_managers_service_id, slack_url=sandbox.slack_url,
            channel=account.self_managed_channel), encoding="utf-8")
        print(f"sandbox on 127.0.0.1: Zendesk {sandbox.url} (API user {sandbox.email}), "
              f"Slack {sandbox.slack_url}, PagerDuty {sandbox.pagerduty_url}; "
              f"urgent ticket #{ticket_id} is waiting", file=ctx.out)
        print(f"wrote {config_path}. In another shell:\n"
              f"  export ZENDESK_API_TOKEN={sandbox.token} "
              f"PAGERDUTY_API_TOKEN={sandbox.pagerduty.token} "
              f"SLACK_BOT_TOKEN={sandbox.slack.token}\n"
              f"  emergency --config {config_path} tick\n"
              f"  emergency --config {config_path} status\n"
              f"  emergency --config {config_path} timeline {ticket_id}\n"
              f"  emergency --config {config_path} oncall\n"
              "Ctrl-C stops the sandbox.", file=ctx.out, flush=True)
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        sandbox.stop()
    return EXIT_OK


def cmd_page(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    preview_text = commands.page(args.ticket, args.engineer, dry_run=True)
    if args.dry_run or preview_text.startswith(f"#{args.ticket}: already paged"):
        print(preview_text, file=ctx.out)
        return EXIT_OK
    if not confirmed(preview_text.removesuffix("\ndry run: nothing was sent"), args, ctx):
        return EXIT_OK
    print(commands.page(args.ticket, args.engineer, dry_run=False), file=ctx.out)
    return EXIT_OK


def cmd_oncall(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    pagerduty = build_pagerduty(cfg, ctx)
    if pagerduty is None or cfg.pagerduty is None:
        raise ConfigError(f"{cfg.source}: [pagerduty]: missing section (oncall reads PagerDuty)")
    at = args.at or ctx.clock.now()
    policy = cfg.pagerduty.escalation_policy_id
    if args.federal:
        federal = cfg.pagerduty.federal
        if federal is None:
            raise ConfigError(f"{cfg.source}: [pagerduty.federal]: missing section "
                              "(--federal reads its escalation policy and hours)")
        policy = federal.escalation_policy_id
        hours = coverage_at(at, federal.timezone, *federal.coverage)
        state = "open now" if hours.open_now else \
            f"closed now; opens {hours.opens_at:%Y-%m-%d %H:%M} UTC"
        print(f"US Federal coverage {hours.hours} ({state}); shifts "
              f"{', '.join(federal.shifts)} {federal.timezone}", file=ctx.out)
    current, following = pagerduty.now_and_next(policy, at)

    def shift(entry: Any) -> str:
        start = f"{entry.start:%Y-%m-%d %H:%M}" if entry.start else "always"
        end = f"{entry.end:%Y-%m-%d %H:%M} UTC" if entry.end else "further notice"
        return f"{entry.user.name} <{entry.user.email}>, {start} until {end}"

    print(f"on call at {at:%Y-%m-%d %H:%M %Z}: {shift(current) if current else 'nobody'}",
          file=ctx.out)
    print(f"next: {shift(following) if following else 'nobody scheduled'}", file=ctx.out)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Context], int]] = {
    "tick": cmd_tick,
    "run": cmd_run,
    "status": cmd_status,
    "timeline": cmd_timeline,
    "check": cmd_check,
    "ack": cmd_manual_step(Step.ACKNOWLEDGE),
    "follow-up": cmd_manual_step(Step.FOLLOW_UP),
    "close": cmd_manual_step(Step.CLOSE),
    "post-call": cmd_post_call,
    "brief": cmd_brief,
    "briefs": cmd_briefs,
    "not-emergency": cmd_not_emergency,
    "page": cmd_page,
    "oncall": cmd_oncall,
    "demo": cmd_demo,
    "sandbox": cmd_sandbox,
}


def main() -> None:
    sys.exit(run())
