"""What a command needs from outside the process, handed to every handler."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from automation import config
from automation.clock import Clock

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


def load_config(args: argparse.Namespace, ctx: Context) -> config.Config:
    """The config file the command line or the environment names, validated whole."""
    return config.load(config.resolve_path(args.config, ctx.environ))


def service_now(cfg: config.Config, ctx: Context) -> datetime:
    """Zendesk's time, which every timer runs on; this machine's when Zendesk does not answer."""
    from automation.zendesk import clock_reading

    now = clock_reading(cfg.zendesk.url)
    if now is None:
        log.warning("Zendesk (%s) did not answer within 2 s: times are this machine's clock",
                    cfg.zendesk.url)
        return ctx.clock.now()
    return now
