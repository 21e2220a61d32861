"""The composition root: reads the command line, runs one command, turns errors into exit codes.

`run(argv)` does the work and returns the exit code; `main()` only wires it to the process.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from automation.cli.context import Context
from automation.cli.exits import EXIT_CONFIG, EXIT_REFUSED, exit_code
from automation.cli.handlers import handler_for
from automation.cli.parser import UsageError, build_parser
from automation.cli.terminal import PrintableStream
from automation.clock import Clock, SystemClock
from automation.errors import AutomationError
from automation.logs import formatter_for, last_resort


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
        err: TextIO | None = None, environ: dict[str, str] | None = None,
        clock: Clock | None = None, stdin: TextIO | None = None) -> int:
    """Run one command; return its exit code. Only AutomationError is turned into a line."""
    ctx = Context(out=PrintableStream(out or sys.stdout),  # type: ignore[arg-type]
                  err=PrintableStream(err or sys.stderr),  # type: ignore[arg-type]
                  environ=dict(os.environ) if environ is None else environ,
                  clock=clock or SystemClock(), stdin=stdin or sys.stdin)
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=ctx.err)
        return EXIT_CONFIG
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    # A service logs each step; a one-shot command prints its result and only warnings.
    level = logging.DEBUG if args.verbose else (
        logging.INFO if args.command in ("run", "serve") else logging.WARNING)
    configure_logging(ctx.err, level, args.log_format)
    try:
        return handler_for(args.command)(args, ctx)
    except AutomationError as exc:
        code = exit_code(exc)
        print(f"{'refused' if code == EXIT_REFUSED else 'error'}: {exc}", file=ctx.err)
        return code
    finally:
        for close in ctx.closers:
            close()


def configure_logging(stream: TextIO, level: int, log_format: str = "text") -> None:
    """The project's log lines on `stream`: text (times in UTC) or one JSON object a line."""
    root = logging.getLogger("automation")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    logging.lastResort = last_resort(stream, log_format)


def main() -> None:
    try:
        code = run()
        # The process ends now: its last garbage collections need not walk every object its
        # imports made (some 25 ms of an idle cron tick's CPU went to tearing them down).
        gc.freeze()
        sys.exit(code)
    except BrokenPipeError:
        # The output went to a reader that left (`emergency check | head`): say nothing more;
        # what the command found was not all said, so it is no success.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
