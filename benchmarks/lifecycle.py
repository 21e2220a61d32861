"""Reads and writes one emergency costs, from the worker's first sight of it to the bridge
closed, against the sandbox: besides the shared listing, the target is at most 3 writes and
8 reads (the ticket, its audits, and who is on it, once per step).

    python benchmarks/lifecycle.py            # the worker alone (Zendesk)
    python benchmarks/lifecycle.py --passes 40

Counts are exact (the sandbox logs every request); the test suite asserts them too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.sandbox import Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.wiring import build_worker

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LISTING = ("/api/v2/search.json", "/api/v2/views/")


def lifecycle(passes: int = 40, seen_after: timedelta = timedelta(minutes=1)) -> Counter[str]:
    """Requests of one silent customer's emergency, by kind: reads, writes, listings."""
    clock = FakeClock(START)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        cfg = sandbox_config(sandbox, account, Path(tmp) / "state.sqlite3",
                             workflow=WorkflowConfig(bridge_url="https://bridge.example/x"),
                             slack=False, pagerduty=False)
        worker = build_worker(cfg, clock, sandbox_environ(sandbox))
        sandbox.zendesk.create_ticket(account.requester_id, "Production down", "Nothing works.",
                                      priority="urgent", organization_id=account.organization_id)
        clock.advance(seen_after)  # search runs about a minute behind
        sandbox.clear_requests()
        for _ in range(passes):
            worker.run_once()
            clock.advance(timedelta(minutes=1))
        return count(sandbox)


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
    args = parser.parse_args(argv)
    counts = lifecycle(args.passes)
    naive = 1 + 3 * args.passes  # a poller reading ticket, comments and audits every pass
    print(f"one emergency, ack -> follow-up -> bridge closed, {args.passes} passes a minute apart")
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
