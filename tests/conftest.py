from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import responses

from automation.clock import FakeClock
from automation.config import DEFAULT_QUERY, WorkflowConfig
from automation.sandbox import Account, Sandbox, seed_account
from automation.store import Store
from automation.templates import Templates
from automation.worker import Worker
from automation.zendesk import Zendesk
from tests.zendesk_double import BASE, ZendeskDouble

TOKEN = "s3cr3t-zendesk-token-1234"
BRIDGE = "https://zoom.example.com/j/123"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[Sandbox]:
    """The fake Zendesk, Slack and PagerDuty on 127.0.0.1, on the test's clock."""
    with Sandbox(clock=clock) as running:
        yield running


@pytest.fixture
def account(sandbox: Sandbox) -> Account:
    return seed_account(sandbox)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def double(rsps: responses.RequestsMock, clock: FakeClock) -> ZendeskDouble:
    return ZendeskDouble(rsps, clock)


def make_worker(clock: FakeClock, state: Path) -> Worker:
    zendesk = Zendesk(BASE, "bot@example.com", TOKEN, clock, timeout=5, max_retry_seconds=60)
    return Worker(zendesk, Store(state), Templates(), WorkflowConfig(bridge_url=BRIDGE), clock,
                  DEFAULT_QUERY)


@pytest.fixture
def worker(clock: FakeClock, tmp_path: Path, double: ZendeskDouble) -> Worker:
    return make_worker(clock, tmp_path / "state.sqlite3")


def play_together(workers: list[Worker], clock: FakeClock, minutes: int) -> None:
    """Each simulated minute, every worker runs a pass at the same time (threads)."""
    for _ in range(minutes):
        threads = [threading.Thread(target=w.run_once) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(timedelta(minutes=1))
