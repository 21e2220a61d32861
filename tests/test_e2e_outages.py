"""One service down never delays another: the customers' Zendesk steps of a pass go out on
time whatever PagerDuty and Slack do, and their lines go out once each when they are back.

Time is the sandbox's clock: every retry and rate-limit wait of the clients is slept on it,
so a pass that waited on a service shows as late comments on the tickets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock
from automation.config import ChannelRule, SlackConfig, WorkflowConfig
from automation.sandbox import Account, Sandbox, sandbox_config, sandbox_environ
from automation.wiring import build_worker
from automation.worker import Worker
from tests.conftest import sandbox_worker

WORKFLOW = WorkflowConfig(bridge_url="https://bridge.example.com/team")
EVERY_PATH = re.compile("")
ON_TIME = timedelta(seconds=5)


def three_emergencies(sandbox: Sandbox, account: Account) -> list[int]:
    return [sandbox.zendesk.create_ticket(account.requester_id, f"Production down {n}",
                                          "Nothing works.", priority="urgent",
                                          organization_id=account.organization_id)
            for n in (1, 2, 3)]


def acknowledged_at(sandbox: Sandbox, ticket_id: int) -> list[datetime]:
    """When each public comment of ours on the ticket was made (the description excluded)."""
    return [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00"))
            for c in sandbox.zendesk.comments(ticket_id)[1:] if c["public"]]


def thread_lines(sandbox: Sandbox, account: Account, ticket_id: int) -> list[str]:
    channel = account.self_managed_channel
    parents = [m for m in sandbox.slack.messages(channel)
               if m.get("thread_ts") in (None, m["ts"])
               and f"/agent/tickets/{ticket_id}|" in m["text"]]
    assert len(parents) == 1, f"#{ticket_id} has {len(parents)} threads"
    return [m["text"] for m in sandbox.slack.thread(channel, parents[0]["ts"])
            if m["ts"] != parents[0]["ts"]]


def slack_503(sandbox: Sandbox) -> None:
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="slack")


def slack_429_for_ten_minutes(sandbox: Sandbox) -> None:
    sandbox.faults.rate_limit("*", EVERY_PATH, 600, times=None, service="slack")


OUTAGES: dict[str, Callable[[Sandbox], None]] = {
    "503 to everything": slack_503,
    "429 with Retry-After: 600": slack_429_for_ten_minutes,
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_slack_down_delays_no_acknowledgement_and_every_line_goes_out_once_after(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        outage: str) -> None:
    worker = sandbox_worker(sandbox, account, clock, tmp_path / "state.sqlite3",
                            workflow=WORKFLOW, slack=True)
    tickets = three_emergencies(sandbox, account)
    OUTAGES[outage](sandbox)
    started = clock.now()

    report = worker.run_once()

    for ticket_id in tickets:
        [at] = acknowledged_at(sandbox, ticket_id)
        assert at - started <= ON_TIME, f"#{ticket_id} acknowledged {at - started} late"
    # cron sees it: one failure for Slack in the pass (exit 1), its lines pending
    assert report.slack_pending >= 3
    assert [(f.ticket_id, f.step) for f in report.failed] == [(0, "slack")]
    # Slack is back a minute later (after the 429's ten minutes): our own claims left by the
    # failed pass do not hold the threads back for five minutes.
    clock.advance(timedelta(minutes=1 if outage.startswith("503") else 10))
    sandbox.slack.faults.clear()
    assert worker.run_once().slack_pending == 0
    worker.run_once()
    for ticket_id in tickets:
        lines = thread_lines(sandbox, account, ticket_id)
        assert len(lines) == len(set(lines)), lines
        assert sum("Acknowledgement posted" in line for line in lines) == 1


def test_slack_refusing_the_token_delays_no_acknowledgement(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    cfg = sandbox_config(sandbox, account, tmp_path / "state.sqlite3", workflow=WORKFLOW,
                         pagerduty=False)
    environ = dict(sandbox_environ(sandbox), SLACK_BOT_TOKEN="xoxb-revoked-0000")
    worker = build_worker(cfg, clock, environ)
    tickets = three_emergencies(sandbox, account)
    started = clock.now()

    report = worker.run_once()

    for ticket_id in tickets:
        [at] = acknowledged_at(sandbox, ticket_id)
        assert at - started <= ON_TIME
    assert report.rejected is not None and report.rejected.service == "Slack"
    assert "xoxb-revoked" not in str(report.rejected)
    fixed = build_worker(cfg, clock, sandbox_environ(sandbox))  # the token is put right
    clock.advance(timedelta(minutes=1))
    fixed.run_once()
    fixed.run_once()
    for ticket_id in tickets:
        lines = thread_lines(sandbox, account, ticket_id)
        assert sum("Acknowledgement posted" in line for line in lines) == 1


@pytest.fixture
def pd_worker(sandbox: Sandbox, account: Account, clock: FakeClock,
              tmp_path: Path) -> Iterator[Worker]:
    made = sandbox_worker(sandbox, account, clock, tmp_path / "state.sqlite3",
                          workflow=WORKFLOW, slack=True, pagerduty=True)
    yield made
    made.close()


def test_pagerduty_down_delays_no_acknowledgement(
        sandbox: Sandbox, account: Account, clock: FakeClock, pd_worker: Worker) -> None:
    tickets = three_emergencies(sandbox, account)
    for _ in range(3):  # the worker pages the on-call (nobody acknowledges)
        pd_worker.run_once()
        clock.advance(timedelta(minutes=1))
    assert len(sandbox.pagerduty.incidents()) == 3
    clock.advance(timedelta(minutes=17))  # the team's acknowledgements are due now...
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None,
                                service="pagerduty")  # ...PagerDuty down
    started = clock.now()

    report = pd_worker.run_once()

    for ticket_id in tickets:
        [at] = acknowledged_at(sandbox, ticket_id)
        assert at - started <= ON_TIME, f"#{ticket_id} acknowledged {at - started} late"
    assert [f.step for f in report.failed] == ["pagerduty"]  # said once, not per ticket
    sandbox.pagerduty.faults.clear()
    clock.advance(timedelta(minutes=1))
    pd_worker.run_once()
    assert len(sandbox.pagerduty.incidents()) == 3  # nobody paged twice
    assert all(i["status"] == "triggered" for i in sandbox.pagerduty.incidents())


def test_pagerduty_failing_mid_pass_skips_it_for_the_rest_of_the_pass(
        sandbox: Sandbox, account: Account, clock: FakeClock, pd_worker: Worker) -> None:
    tickets = three_emergencies(sandbox, account)
    pd_worker.run_once()
    clock.advance(timedelta(minutes=3))
    sandbox.pagerduty.faults.server_error("POST", "/incidents", 503, times=None)

    report = pd_worker.run_once()

    # One attempt to page, then PagerDuty is left alone until the next pass.
    assert len(sandbox.pagerduty.calls("POST", "/incidents")) == 1
    assert [f.step for f in report.failed] == ["pagerduty"]
    sandbox.pagerduty.faults.clear()
    clock.advance(timedelta(minutes=1))
    pd_worker.run_once()
    keys = sorted(i["incident_key"] for i in sandbox.pagerduty.incidents())
    assert keys == sorted(f"zendesk-{t}" for t in tickets)


def test_slack_refusing_one_tickets_channel_holds_back_no_other_emergency(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given a channel rule that points one kind of ticket at a channel that is gone
    slack = SlackConfig(default_channel=account.self_managed_channel,
                        channels=(ChannelRule(channel="C0ARCHIVED", tags=("legacy",)),))
    worker = sandbox_worker(sandbox, account, clock, tmp_path / "state.sqlite3",
                            workflow=WORKFLOW, slack=slack)
    legacy = sandbox.zendesk.create_ticket(account.requester_id, "Old system down", "Help",
                                           priority="urgent", tags=["legacy"])
    current = three_emergencies(sandbox, account)

    for _ in range(3):
        worker.run_once()
        clock.advance(timedelta(minutes=1))

    # then every other emergency has its thread and its lines; the legacy one waits
    for ticket_id in current:
        assert any("Acknowledgement posted" in line
                   for line in thread_lines(sandbox, account, ticket_id))
    assert worker.store.thread(legacy) is None
