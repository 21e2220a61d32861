"""What a command needs from outside the process, handed to every handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from automation import config
from automation.clock import Clock


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
