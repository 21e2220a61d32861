"""Reads and writes one emergency costs, from the worker's first sight of it to the bridge
closed, against the sandbox: besides the shared listing, the target is at most 3 writes and
8 reads (the ticket, its audits, and who is on it, once per step).

    python -m benchmarks.lifecycle            # the worker alone (Zendesk)
    python -m benchmarks.lifecycle --passes 40
    python -m benchmarks.lifecycle --tick     # a fresh `emergency tick` process a pass

Counts are exact (the sandbox logs every request); the test suite asserts them too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.config import Config, WorkflowConfig
from automation.sandbox import Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.wiring import build_worker

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LISTING = ("/api/v2/search.json", "/api/v2/views/")


def lifecycle(passes: int = 40, seen_after: timedelta = timedelta(minutes=1),
              mode: str = "run") -> Counter[str]:
    """Requests of one silent customer's emergency, by kind: reads, writes, listings; and
    "naive": the reads of a poller reading the ticket once a pass while it is urgent.
    ``mode``: "run", one worker for every pass; "tick", each pass an `emergency tick`
    process, as cron runs it (only the state file is kept from one pass to the next);
    "fresh", each pass a new worker in this process, its clock a year ahead of Zendesk's."""
    clock = FakeClock(START)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        cfg = sandbox_config(sandbox, account, Path(tmp) / "state.sqlite3",
                             workflow=WorkflowConfig(bridge_url="https://bridge.example/x"),
                             slack=False, pagerduty=False)
        ticket_id = sandbox.zendesk.create_ticket(
            account.requester_id, "Production down", "Nothing works.", priority="urgent",
            organization_id=account.organization_id)
        clock.advance(seen_after)  # search runs about a minute behind
        sandbox.clear_requests()
        naive = _passes(sandbox, clock, cfg, passes, mode,
                        lambda: sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent")
        counts = count(sandbox)
        counts["naive"] = naive
        return counts


def _passes(sandbox: Sandbox, clock: FakeClock, cfg: Config, passes: int, mode: str,
            urgent: Callable[[], bool]) -> int:
    """Run the passes a minute apart; how many began with the ticket urgent."""
    from benchmarks.ticks import tick, write_config

    environ, config = sandbox_environ(sandbox), write_config(cfg)
    worker = build_worker(cfg, clock, environ) if mode == "run" else None
    naive = 0
    for _ in range(passes):
        naive += urgent()
        if worker is not None:
            worker.run_once()
        elif mode == "tick":
            tick(config, sandbox.token)
        else:  # what a process keeps is the state file; its clock is not Zendesk's
            fresh = build_worker(cfg, FakeClock(clock.now() + timedelta(days=365)), environ)
            fresh.run_once()
            fresh.close()
        clock.advance(timedelta(minutes=1))
    if worker is not None:
        worker.close()
    return naive


def count(sandbox: Sandbox) -> Counter[str]:
    counts: Counter[str] = Counter()
    for request in sandbox.requests:
        if request.path.startswith(LISTING):
            counts["listing"] += 1
        elif request.method == "GET":
            counts["read"] += 1
            counts[f"read {kind_of(request.path)}"] += 1
        else:
            counts["write"] += 1
    return counts


def kind_of(path: str) -> str:
    """What a read asked for: the ticket, its audits, the people on it, its organization."""
    for part, kind in (("/audits", "audits"), ("/users", "users"),
                       ("/organizations/", "organization"), ("/tickets/", "ticket")):
        if part in path:
            return kind
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=40, help="one pass a minute")
    parser.add_argument("--tick", action="store_true",
                        help="each pass an `emergency tick` process, as from cron")
    args = parser.parse_args(argv)
    counts = lifecycle(args.passes, mode="tick" if args.tick else "run")
    naive = counts["naive"]  # a poller reading the ticket once a pass while it is urgent
    print(f"one emergency, ack -> follow-up -> bridge closed, {args.passes} passes a minute "
          f"apart, {'a tick process' if args.tick else 'one worker'} a pass")
    print(f"  writes: {counts['write']} (target <= 3)")
    print(f"  reads besides the listing: {counts['read']} (target <= 8; a naive poller: "
          f"{naive}, ratio {naive / max(counts['read'], 1):.1f}x)")
    for kind, n in sorted(counts.items()):
        if kind.startswith("read "):
            print(f"    {kind[5:]}: {n}")
    print(f"  searches: {counts['listing']} (the listing, one a pass; and the account's "
          "briefs, looked up every 10 minutes until one is linked)")
    return 0 if counts["write"] <= 3 and counts["read"] <= 8 else 1


if __name__ == "__main__":
    sys.exit(main())
