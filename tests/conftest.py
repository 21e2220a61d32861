from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses

from automation.clock import FakeClock
from automation.config import Config, WorkflowConfig, ZendeskConfig
from automation.sandbox import (
    Account,
    PagerDutySandbox,
    Sandbox,
    SlackSandbox,
    SupportTeam,
    sandbox_config,
    sandbox_environ,
    seed_account,
)
from automation.wiring import build_worker
from automation.worker import Worker
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
    """The seeded account: Zendesk people and Acme Corp, Slack channels, the PagerDuty team."""
    return seed_account(sandbox)


@pytest.fixture
def team(account: Account) -> SupportTeam:
    """The seeded account's PagerDuty: Customer Support and Support Managers on call."""
    assert account.pd_team is not None
    return account.pd_team


@pytest.fixture
def fake_pd(sandbox: Sandbox) -> PagerDutySandbox:
    """The sandbox's PagerDuty, for tests that call it in-process."""
    return sandbox.pagerduty


@pytest.fixture
def fake_slack(sandbox: Sandbox) -> SlackSandbox:
    """The sandbox's Slack, for tests that call it in-process."""
    return sandbox.slack


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def double(rsps: responses.RequestsMock, clock: FakeClock) -> ZendeskDouble:
    return ZendeskDouble(rsps, clock)


def make_worker(clock: FakeClock, state: Path) -> Worker:
    """The worker against the `responses` double of Zendesk, wired as the CLI wires it."""
    cfg = Config(source=state.parent / "config.toml",
                 zendesk=ZendeskConfig(url=BASE, email="bot@example.com", timeout_seconds=5),
                 workflow=WorkflowConfig(bridge_url=BRIDGE), state_path=state)
    return build_worker(cfg, clock, {"ZENDESK_API_TOKEN": TOKEN})


def sandbox_worker(sandbox: Sandbox, account: Account | None, clock: FakeClock, state: Path,
                   **sections: Any) -> Worker:
    """The worker against the sandbox, wired as the CLI wires it; ``sections`` as for
    ``sandbox_config`` (Zendesk only unless `slack`/`pagerduty` are given)."""
    sections.setdefault("slack", False)
    sections.setdefault("pagerduty", False)
    zendesk = sections.pop("zendesk", None)
    cfg = sandbox_config(sandbox, account, state, **sections)
    if zendesk is not None:
        cfg = replace(cfg, zendesk=replace(cfg.zendesk, **zendesk))
    return build_worker(cfg, clock, sandbox_environ(sandbox))


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
