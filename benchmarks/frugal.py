"""What a pass costs as the number of tracked emergencies grows, against the sandbox, side by
side with a naive poller (one listing, then one read of every tracked ticket, every pass).

    python benchmarks/frugal.py                 # N = 10, 100, 1000, 3000
    python benchmarks/frugal.py --sizes 10 100

Requests and writes are exact (the sandbox logs every request; the test suite asserts them);
CPU and time depend on the machine and are printed as ratios, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.sandbox import Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.wiring import build_worker

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SIZES = (10, 100, 1000, 3000)


@dataclass(frozen=True)
class Cost:
    """One idle pass: requests and writes (exact), CPU and wall seconds (this machine)."""

    requests: int
    writes: int
    cpu: float
    wall: float


def measure(n: int) -> tuple[Cost, Cost, int]:
    """An idle pass over n acknowledged emergencies, the worker's and the naive poller's, and
    the writes of the pass that acknowledged them (n: one each)."""
    clock = FakeClock(START)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        cfg = sandbox_config(sandbox, account, Path(tmp) / "state.sqlite3",
                             # No follow-up falls due while 3,000 acknowledgements go out
                             # (at 80 writes a minute, 38 minutes): the next pass is idle.
                             workflow=WorkflowConfig(bridge_url="https://bridge.example/x",
                                                     follow_up_after_minutes=120),
                             slack=False, pagerduty=False)
        # A view: search lists at most 1,000 (past it, windows by creation time).
        cfg = replace(cfg, zendesk=replace(cfg.zendesk, view_id=account.view_id))
        worker = build_worker(cfg, clock, sandbox_environ(sandbox))
        for i in range(n):
            sandbox.zendesk.create_ticket(account.requester_id, f"Down {i}", "Nothing works.")
        clock.advance(timedelta(minutes=1))
        sandbox.clear_requests()
        worker.run_once()  # every acknowledgement, paced to the update budget
        acknowledged = _writes(sandbox)
        clock.advance(timedelta(minutes=1))
        ours = _timed(sandbox, worker.run_once)
        naive = _timed(sandbox, lambda: _naive_pass(sandbox, account.view_id))
        worker.close()
    return ours, naive, acknowledged


def _naive_pass(sandbox: Sandbox, view_id: int) -> None:
    """One listing (all its pages), then every listed ticket read again."""
    with requests.Session() as session:
        session.auth = sandbox.auth
        url: str | None = f"{sandbox.url}/api/v2/views/{view_id}/tickets.json"
        params: dict[str, str] | None = {"per_page": "100"}
        ids: list[int] = []
        while url:
            data = session.get(url, params=params, timeout=10).json()
            ids += [t["id"] for t in data["tickets"]]
            url, params = data.get("next_page"), None
        for ticket_id in ids:
            session.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json", timeout=10).json()


def _timed(sandbox: Sandbox, work: object) -> Cost:
    sandbox.clear_requests()
    cpu, wall = time.process_time(), time.perf_counter()
    work()  # type: ignore[operator]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Cost(len(sandbox.requests), _writes(sandbox), cpu, wall)


def _writes(sandbox: Sandbox) -> int:
    return len([r for r in sandbox.requests if r.method != "GET"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    print("idle pass over N acknowledged emergencies: the worker vs a naive poller "
          "(ratio: naive / worker; CPU and time include the sandbox, in this process)")
    print(f"{'N':>6} {'requests':>16} {'ratio':>7} {'writes':>7} {'CPU ms':>16} {'ratio':>7} "
          f"{'time ms':>16} {'ratio':>7} {'first pass writes':>18}")
    for n in args.sizes:
        ours, naive, acknowledged = measure(n)
        print(f"{n:>6} {ours.requests:>7} vs {naive.requests:>6} "
              f"{naive.requests / ours.requests:>6.0f}x {ours.writes:>7} "
              f"{ours.cpu * 1000:>7.0f} vs {naive.cpu * 1000:>6.0f} "
              f"{naive.cpu / max(ours.cpu, 1e-9):>6.1f}x "
              f"{ours.wall * 1000:>7.0f} vs {naive.wall * 1000:>6.0f} "
              f"{naive.wall / max(ours.wall, 1e-9):>6.1f}x {acknowledged:>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
