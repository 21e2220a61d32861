"""What a command needs from outside the process, handed to every handler."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from automation import config
from automation.clock import Clock

if TYPE_CHECKING:
    from automation.model import Ticket
    from automation.timeline import TimelineEntry

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


def read_timeline(cfg: config.Config, ctx: Context,
                  ticket_id: int) -> tuple[Ticket, list[TimelineEntry]]:
    """A ticket's comments from Zendesk, merged with the state file's journal and Slack lines
    (a Zendesk client and a state file connection of its own: the served page calls this
    from another thread than the worker's)."""
    from automation import wiring
    from automation.store import Store
    from automation.timeline import ticket_timeline

    zendesk = wiring.build_zendesk(cfg, ctx.clock, ctx.environ)
    store = Store(cfg.state_path)
    try:  # both closed after: the served page calls this once a request
        snapshot = zendesk.snapshot(ticket_id)
        return snapshot.ticket, ticket_timeline(snapshot, store.journal(ticket_id),
                                                store.outbox(ticket_id, pending_only=False))
    finally:
        store.close()
        zendesk.close()
