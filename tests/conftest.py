from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from automation.clock import FakeClock
from automation.config import WorkflowConfig
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
from automation.sandbox.server import DEFAULT_TOKEN
from automation.store import Store
from automation.wiring import build_worker
from automation.worker import Worker
from tests import in_process

in_process.install()  # requests for this process's sandboxes skip the socket (in_process.py)

TOKEN = DEFAULT_TOKEN  # the sandbox's Zendesk API token
BRIDGE = "https://zoom.example.com/j/123"
REAL_SEND = requests.adapters.HTTPAdapter.send  # as every test must leave it (in_process's)


@pytest.fixture(autouse=True)
def requests_goes_out_again_after_each_test() -> Iterator[None]:
    """No `responses` mock (nor any patch of requests) outlives its test: left behind, it
    answers every later test's request to the sandbox with a refusal, on that process only."""
    yield
    assert requests.adapters.HTTPAdapter.send is REAL_SEND, \
        "requests is still patched after this test (a mock restored after responses stopped?)"


@pytest.fixture(autouse=True)
def sockets_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked `sockets` sends every request over 127.0.0.1, as the product does."""
    if request.node.get_closest_marker("sockets") is None:
        yield
        return
    with in_process.over_sockets():
        yield


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


def make_worker(sandbox: Sandbox, clock: FakeClock, state: Path) -> Worker:
    """The worker against the sandbox's Zendesk (no Slack, no PagerDuty), offering BRIDGE."""
    return sandbox_worker(sandbox, None, clock, state, workflow=WorkflowConfig(bridge_url=BRIDGE))


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
def worker(sandbox: Sandbox, clock: FakeClock, tmp_path: Path) -> Worker:
    return make_worker(sandbox, clock, tmp_path / "state.sqlite3")


def emergency_ticket(sandbox: Sandbox, account: Account, subject: str = "Production down",
                     status: str | None = None, **fields: Any) -> int:
    """A ticket from the seeded requester (urgent unless ``priority`` says otherwise)."""
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, subject,
                                              "Everything is down!", **fields)
    if status is not None:
        sandbox.zendesk.set_status(ticket_id, status)
    return ticket_id


def bot_comments(sandbox: Sandbox, account: Account, ticket_id: int) -> list[str]:
    """The public comments the worker (the API user) wrote on the ticket, oldest first."""
    return [c["body"] for c in sandbox.zendesk.public_comments(ticket_id)
            if c["author_id"] == account.admin_id]


def ticket_puts(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The bodies of the ticket updates Zendesk received (refused or faulted ones too)."""
    return sandbox.request_bodies("PUT", r"/api/v2/tickets/\d+")


def play_together(workers: list[Worker], clock: FakeClock, minutes: int) -> None:
    """Each simulated minute, every worker runs a pass at the same time (threads)."""
    for _ in range(minutes):
        threads = [threading.Thread(target=w.run_once) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(timedelta(minutes=1))


class FullDisk:
    """A state file's connection once the disk is full: reads work, every write fails with
    SQLite's own error (SQLITE_FULL)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        if not sql.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, args)

    def executemany(self, sql: str, args: Any) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("database or disk is full")

    def backup(self, target: sqlite3.Connection) -> None:
        self._db.backup(target)

    def close(self) -> None:
        self._db.close()


def fill_the_disk(store: Store) -> None:
    """From now on the state file's disk is full."""
    store.db = FullDisk(store.db)  # type: ignore[assignment]


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """Collecting imports every test module and rewrites its asserts: objects that live to
    the end, which the garbage collector would go over at every collection during it and at
    every full one after. It is off while collecting, then they are set aside for good (half
    a second of each process's start)."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()
        gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process ends next: its last garbage collection, over everything the tests built,
    would only free memory the exit frees anyway (a second of each run, as `emergency`'s own
    exit skips it)."""
    gc.freeze()
