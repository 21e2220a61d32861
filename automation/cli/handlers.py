"""The command handlers: each builds what it needs, runs the command, and hands the result to a
view. Integrations are imported inside the handler that uses them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from automation import config
from automation.cli import views
from automation.cli.context import Context, load_config, read_timeline, service_now
from automation.cli.exits import EXIT_CONFIG, EXIT_OK, EXIT_STEP_FAILED
from automation.errors import ConfigError, InputError
from automation.store import Store

if TYPE_CHECKING:
    from automation.gitlab import GitLab
    from automation.pagerduty import PagerDuty
    from automation.slack import Slack
    from automation.worker import Worker
    from automation.zendesk import Zendesk

log = logging.getLogger("automation")

Handler = Callable[[argparse.Namespace, Context], int]
T = TypeVar("T")


def build_worker(cfg: config.Config, ctx: Context) -> Worker:
    from automation import wiring

    return wiring.build_worker(cfg, ctx.clock, ctx.environ)


def cmd_tick(args: argparse.Namespace, ctx: Context) -> int:
    worker = build_worker(load_config(args, ctx), ctx)
    try:
        report = worker.run_once()
    finally:
        worker.close()
    views.print_pass(report, ctx.out)
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


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    tracked = list(Store(cfg.state_path).tracked(active_only=not args.all).values())
    if args.json:
        views.print_status_json(tracked, ctx.out)
    else:
        views.print_status(tracked, service_now(cfg, ctx), ctx.out)
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace, ctx: Context) -> int:
    ticket, entries = read_timeline(load_config(args, ctx), ctx, args.ticket)
    views.print_timeline(ticket, entries, ctx.out)
    return EXIT_OK


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    from automation.cli.check import check_config
    from automation.templates import REGISTRY

    cfg = load_config(args, ctx)
    views.print_config_source(cfg, ctx.out)
    check = check_config(cfg, ctx.environ)
    views.print_config_check(check, REGISTRY, ctx.out, ctx.err)
    code = EXIT_CONFIG if check.failures else EXIT_OK
    if args.online:
        from automation.cli.online import check_online

        online = check_online(cfg, *_online_clients(cfg, ctx))
        views.print_online_check(online, ctx.out, ctx.err)
        code = max(code, online.exit_code)  # 3 (a token, a service) outranks 2 (the file)
    return code


def _online_clients(cfg: config.Config, ctx: Context) -> tuple[
        Zendesk | ConfigError, Slack | ConfigError | None, PagerDuty | ConfigError | None,
        GitLab | ConfigError | None]:
    """Each service's client, or the ConfigError saying why there is none (its token not set,
    a CA file unreadable); a request retries for seconds, not for a pass's budget."""
    from automation import wiring
    from automation.cli.online import ONLINE_RETRY_SECONDS

    zendesk = _built(lambda: wiring.build_zendesk(cfg, ctx.clock, ctx.environ))
    slack = _built(lambda: wiring.build_slack(cfg, ctx.clock, ctx.environ))
    pagerduty = _built(lambda: wiring.build_pagerduty(cfg, ctx.clock, ctx.environ))
    gitlab = _built(lambda: wiring.build_gitlab(cfg, ctx.clock, ctx.environ))
    for client in (slack, pagerduty, gitlab):
        if client is not None and not isinstance(client, ConfigError):
            client.max_retry_seconds = ONLINE_RETRY_SECONDS
    for closable in (pagerduty, gitlab):
        if closable is not None and not isinstance(closable, ConfigError):
            ctx.closers.append(closable.close)
    return zendesk, slack, pagerduty, gitlab


def _built(build: Callable[[], T]) -> T | ConfigError:
    try:
        return build()
    except ConfigError as exc:
        return exc


def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    from importlib.resources import files

    path = config.resolve_path(args.path or args.config, ctx.environ)
    text = files("automation").joinpath("config.example.toml").read_text(encoding="utf-8")
    try:
        with path.open("x", encoding="utf-8") as starter:  # never over a config in use
            starter.write(text)
    except FileExistsError:
        raise InputError(f"{path}: already exists, left as it is (name another PATH, or "
                         "remove it first)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror}") from None
    views.print_init(path, ctx.out)
    return EXIT_OK


def cmd_briefs(args: argparse.Namespace, ctx: Context) -> int:
    cfg = load_config(args, ctx)
    found = Store(cfg.state_path).briefs(args.org,
                                         service_now(cfg, ctx) if args.upcoming else None)
    if args.json:
        views.print_briefs_json(found, ctx.out)
    else:
        views.print_briefs(found, args.org, ctx.out)
    return EXIT_OK


def cmd_oncall(args: argparse.Namespace, ctx: Context) -> int:
    from automation import wiring
    from automation.workflow import coverage_at

    cfg = load_config(args, ctx)
    pagerduty = wiring.build_pagerduty(cfg, ctx.clock, ctx.environ)
    if pagerduty is None or cfg.pagerduty is None:
        raise ConfigError(f"{cfg.source}: [pagerduty]: missing section (oncall reads PagerDuty)")
    ctx.closers.append(pagerduty.close)
    at = args.at or service_now(cfg, ctx)
    policy = cfg.pagerduty.escalation_policy_id
    if args.federal:
        federal = cfg.pagerduty.federal
        if federal is None:
            raise ConfigError(f"{cfg.source}: [pagerduty.federal]: missing section "
                              "(--federal reads its escalation policy and hours)")
        policy = federal.escalation_policy_id
        views.print_federal_hours(coverage_at(at, federal.timezone, *federal.coverage),
                                  federal, ctx.out)
    current, following = pagerduty.now_and_next(policy, at)
    views.print_oncall(at, current, following, ctx.out)
    return EXIT_OK


# Each command's handler as module:function, imported when that command runs: a cron tick
# loads neither the server, the demo, the report nor the writing commands.
COMMANDS: dict[str, str] = {  # in the parser's order
    "tick": "handlers:cmd_tick",
    "run": "handlers:cmd_run",
    "serve": "serving:cmd_serve",
    "status": "handlers:cmd_status",
    "timeline": "handlers:cmd_timeline",
    "check": "handlers:cmd_check",
    "report": "reporting:cmd_report",
    "init": "handlers:cmd_init",
    "demo": "playground:cmd_demo",
    "sandbox": "playground:cmd_sandbox",
    "ack": "writing:cmd_ack",
    "follow-up": "writing:cmd_follow_up",
    "close": "writing:cmd_close",
    "post-call": "writing:cmd_post_call",
    "brief": "writing:cmd_brief",
    "briefs": "handlers:cmd_briefs",
    "escalate": "writing:cmd_escalate",
    "runbook-issue": "writing:cmd_runbook_issue",
    "not-emergency": "writing:cmd_not_emergency",
    "page": "writing:cmd_page",
    "oncall": "handlers:cmd_oncall",
}


def handler_for(command: str) -> Handler:
    """The function that runs `command`, its module imported now."""
    module, name = COMMANDS[command].split(":")
    handler: Handler = getattr(importlib.import_module(f"automation.cli.{module}"), name)
    return handler
