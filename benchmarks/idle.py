"""N emergencies against the sandbox: the first pass that acknowledges them (paced to the
update budget, or not), and the idle passes after it, the worker's and a naive poller's."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.config import Config, WorkflowConfig
from automation.sandbox import Account, Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.wiring import build_worker
from automation.worker import Worker
from benchmarks.naive import naive_pass

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACCOUNT_LIMIT = 100  # Zendesk's ticket updates a minute for the whole account
UNPACED = 1_000_000.0  # updates a minute: no budget at all


@dataclass(frozen=True)
class Samples:
    """Seconds measured over several passes: median and range."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@dataclass(frozen=True)
class Cost:
    """Idle passes: requests and writes of the last one (exact), the CPU of each (the calling
    thread's only: the sandbox serves from threads of its own)."""

    requests: int
    writes: int
    cpu: Samples


@dataclass(frozen=True)
class FirstPass:
    """The pass that met N new emergencies: its writes (exact), Zendesk's 429s, the busiest
    minute of acknowledgements and the last one's time on the sandbox clock."""

    writes: int
    too_many: int
    peak_per_minute: int
    last_after: timedelta


@dataclass
class Bench:
    """A sandbox whose N emergencies the worker has met once (``first``)."""

    sandbox: Sandbox
    account: Account
    clock: FakeClock
    worker: Worker
    config: Config
    tickets: list[int]
    first: FirstPass


@contextmanager
def met(n: int, updates_per_minute: float = 80) -> Iterator[Bench]:
    """N new emergencies in a view, an account allowed 100 updates a minute, and the worker's
    first pass over them (its writes paced to ``updates_per_minute``)."""
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
        cfg = replace(cfg, zendesk=replace(cfg.zendesk, view_id=account.view_id,
                                           updates_per_minute=updates_per_minute))
        worker = build_worker(cfg, clock, sandbox_environ(sandbox))
        tickets = [sandbox.zendesk.create_ticket(account.requester_id, f"Down {i}",
                                                 "Nothing works.") for i in range(n)]
        sandbox.zendesk.limit_updates(per_minute=ACCOUNT_LIMIT)
        clock.advance(timedelta(minutes=1))
        sandbox.clear_requests()
        start = clock.now()
        try:
            worker.run_once()
            first = first_pass(sandbox, account, tickets, start)
            yield Bench(sandbox, account, clock, worker, cfg, tickets, first)
        finally:
            worker.close()


def first_pass(sandbox: Sandbox, account: Account, tickets: list[int],
               start: datetime) -> FirstPass:
    """What the pass since ``start`` wrote, and when the acknowledgements were posted."""
    posted = sorted(_created(c) for t in tickets for c in sandbox.zendesk.public_comments(t)
                    if c["author_id"] == account.admin_id)
    return FirstPass(writes=len([r for r in sandbox.requests if r.method != "GET"]),
                     too_many=len([r for r in sandbox.requests if r.status == 429]),
                     peak_per_minute=busiest_minute(posted),
                     last_after=(posted[-1] - start) if posted else timedelta())


def busiest_minute(times: list[datetime]) -> int:
    """The most of ``times`` (sorted) within any 60 seconds."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= timedelta(minutes=1):
            first += 1
        most = max(most, last - first + 1)
    return most


def _created(comment: dict[str, str]) -> datetime:
    return datetime.fromisoformat(comment["created_at"].replace("Z", "+00:00"))


def idle_passes(bench: Bench, passes: int, naive_passes: int | None = None) -> tuple[Cost, Cost]:
    """``passes`` idle passes a minute apart, the worker's, and then ``naive_passes`` (as
    many by default) of the naive poller."""
    sandbox = bench.sandbox

    def naive() -> None:
        naive_pass(sandbox.url, sandbox.auth, bench.account.view_id)

    ours = _timed(bench, bench.worker.run_once, passes)
    theirs = _timed(bench, naive, naive_passes or passes)
    return ours, theirs


def _timed(bench: Bench, work: Callable[[], object], passes: int) -> Cost:
    cpu = []
    for _ in range(passes):
        bench.clock.advance(timedelta(minutes=1))
        bench.sandbox.clear_requests()
        # This thread's CPU: the worker's parsing and deciding, not the sandbox's serving
        # (its own threads), which a real Zendesk does on its own machines.
        started = time.thread_time()
        work()
        cpu.append(time.thread_time() - started)
    requests = bench.sandbox.requests
    return Cost(len(requests), len([r for r in requests if r.method != "GET"]),
                Samples(tuple(cpu)))
