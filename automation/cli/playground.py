"""`emergency demo` and `emergency sandbox`: the worker and the fake services to play with."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from automation.cli import views
from automation.cli.context import Context, load_config
from automation.cli.exits import EXIT_OK
from automation.cli.parser import UsageError
from automation.errors import ConfigError

if TYPE_CHECKING:
    from automation.sandbox.server import Sandbox


def cmd_demo(args: argparse.Namespace, ctx: Context) -> int:
    from automation.demo import run_demo

    if args.report:
        from automation.report_html import require_matplotlib

        require_matplotlib()  # said before the night plays, not after
    logging.getLogger("automation").setLevel(logging.ERROR if not args.verbose else logging.DEBUG)
    return run_demo(ctx.out, args.scenario, args.speed,
                    report=Path(args.report) if args.report else None)


def cmd_sandbox(args: argparse.Namespace, ctx: Context) -> int:
    if args.sandbox_command != "serve":
        return sandbox_verb(args, ctx)
    sandbox, ticket_id, config_path = start_sandbox(args.speed, args.port,
                                                    Path(args.write_config))
    try:
        views.print_sandbox_ready(sandbox, ticket_id, config_path, ctx.out)
        _wait_for_stop()
    finally:
        sandbox.stop()
    return EXIT_OK


def start_sandbox(speed: float, port: int, config_path: Path) -> tuple[Sandbox, int, Path]:
    """The fake services, seeded, with one urgent ticket waiting, and a config for them."""
    from automation.clock import ScaledClock
    from automation.sandbox import Sandbox, seed_account
    from automation.sandbox.config_file import write_config_file

    sandbox = Sandbox(clock=ScaledClock(speed=speed), port=port)
    try:
        sandbox.start()
    except OSError as exc:
        raise UsageError(f"--port {port}: cannot listen on 127.0.0.1: {exc.strerror}") \
            from None
    try:
        account = seed_account(sandbox)
        ticket_id = sandbox.zendesk.create_ticket(
            account.requester_id, "Production down: every git push fails with 502",
            "Since 08:50 no one can push. Our release is blocked.", priority="urgent",
            organization_id=account.organization_id)
        return sandbox, ticket_id, write_config_file(config_path, sandbox, account)
    except BaseException:
        sandbox.stop()
        raise


def sandbox_verb(args: argparse.Namespace, ctx: Context) -> int:
    """What a customer, an engineer or time does, asked of the sandbox `serve` runs."""
    from automation.sandbox.control import Remote

    cfg = load_config(args, ctx)
    try:
        remote = Remote(cfg.zendesk.url)
    except ValueError as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None
    verb = args.sandbox_command
    if verb == "ticket":
        answer = remote.new_ticket(args.org, args.subject, args.body)
    elif verb == "reply":
        answer = remote.reply(args.ticket, args.body)
    elif verb == "ack":
        answer = remote.acknowledge(args.ticket, args.engineer)
    else:
        answer = remote.advance(args.duration)
    views.print_sandbox_verb(verb, answer, ctx.out)
    return EXIT_OK


def _wait_for_stop() -> None:
    """Block until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
