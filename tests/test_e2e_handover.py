"""Runbook step 5 end to end: the engineer who takes an emergency during their FRT shift asks
in Slack for someone to take it over; once, whatever restarts and workers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock
from automation.config import Rotation
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from tests.conftest import play_together, sandbox_worker
from tests.test_e2e_pagerduty import incident_for, pd_config, public_agent_comments, urgent


@dataclass(frozen=True)
class Frt:
    schedule_id: str
    policy_id: str
    channel: str
    group_id: str

    @property
    def rotation(self) -> Rotation:
        return Rotation(name="FRT", schedule_id=self.schedule_id, channel=self.channel,
                        group="frt-team")


@pytest.fixture
def frt(sandbox: Sandbox, account: Account) -> Frt:
    """The FRT rotation: its PagerDuty schedule (nobody on it yet) and Slack channel."""
    return Frt(schedule_id=sandbox.pagerduty.add_schedule("FRT"),
               policy_id=sandbox.pagerduty.add_escalation_policy("FRT"),
               channel=sandbox.slack.add_channel("support_frt"),
               group_id=sandbox.slack.add_usergroup("frt-team", "FRT engineers"))


def on_frt(sandbox: Sandbox, frt: Frt, user_id: str, start: datetime, end: datetime) -> None:
    sandbox.pagerduty.add_oncall(user_id, frt.policy_id, frt.schedule_id, start, end)


def make_worker(sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt,
                state: Path) -> Worker:
    pagerduty = replace(pd_config(account, sandbox), rotations=(frt.rotation,))
    return sandbox_worker(sandbox, account, clock, state, slack=True, pagerduty=pagerduty)


def play(workers: list[Worker], clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        for worker in workers:
            worker.run_once()
        clock.advance(timedelta(minutes=1))


def handovers(sandbox: Sandbox, frt: Frt) -> list[str]:
    return [m["text"] for m in sandbox.slack.messages(frt.channel)]


def francesca_on_frt_all_day(sandbox: Sandbox, account: Account, clock: FakeClock,
                             frt: Frt) -> None:
    """Her FRT shift began an hour ago and ends in seven."""
    on_frt(sandbox, frt, account.pd_francesca_id, clock.now() - timedelta(hours=1),
           clock.now() + timedelta(hours=7))


def take(sandbox: Sandbox, account: Account, ticket_id: int) -> None:
    """Francesca acknowledges the page: she takes the emergency."""
    sandbox.pagerduty.acknowledge(incident_for(sandbox, ticket_id)["id"], account.pd_francesca_id)


def test_handover_is_asked_once_when_the_engineer_is_on_frt(
        sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt, tmp_path: Path) -> None:
    francesca_on_frt_all_day(sandbox, account, clock, frt)
    worker = make_worker(sandbox, account, clock, frt, tmp_path / "state.sqlite3")
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 3)
    assert handovers(sandbox, frt) == []

    take(sandbox, account, ticket_id)
    play([worker], clock, 2)

    [text] = handovers(sandbox, frt)
    assert text.startswith(f"<!subteam^{frt.group_id}> FRT hand-over for emergency "
                           f"<{sandbox.url}/agent/tickets/{ticket_id}|#{ticket_id}> (Acme Corp)")
    assert f"<@{account.slack_agent_id}> is on the FRT shift" in text
    assert "take over the FRT duties" in text and "/archives/" in text  # the thread's link
    [thread] = [m for m in sandbox.slack.messages(account.self_managed_channel)
                if m.get("thread_ts") in (None, m["ts"])]
    assert thread["ts"].replace(".", "") in text  # the permalink names the thread's message

    play([worker], clock, 5)
    worker.close()
    restarted = make_worker(sandbox, account, clock, frt, tmp_path / "lost.sqlite3")
    play([restarted], clock, 40)  # its state file lost; follow-up, bridge closed
    restarted.close()

    assert len(handovers(sandbox, frt)) == 1
    assert len(public_agent_comments(sandbox, account, ticket_id)) == 3


def test_two_workers_ask_once(sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt,
                              tmp_path: Path) -> None:
    francesca_on_frt_all_day(sandbox, account, clock, frt)
    workers = [make_worker(sandbox, account, clock, frt, tmp_path / f"{name}.sqlite3")
               for name in ("one", "two")]
    ticket_id = urgent(sandbox, account)
    play_together(workers, clock, 3)

    take(sandbox, account, ticket_id)
    play_together(workers, clock, 10)
    for worker in workers:
        worker.close()

    [text] = handovers(sandbox, frt)
    assert f"|#{ticket_id}>" in text
    stamps = [a for a in sandbox.zendesk.audits(ticket_id)
              if "slack-handover:frt" in str(a.get("metadata"))]
    assert len(stamps) == 1


@pytest.mark.parametrize("shift", ["someone else's", "ended before she took it"])
def test_no_handover_when_the_engineer_is_not_on_frt_when_she_takes_it(
        sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt, tmp_path: Path,
        shift: str) -> None:
    start = clock.now() - timedelta(hours=1)
    if shift == "someone else's":
        on_frt(sandbox, frt, account.pd_ravi_id, start, start + timedelta(hours=8))
    else:  # her FRT shift ends at minute 4; she acknowledges the page at minute 5
        on_frt(sandbox, frt, account.pd_francesca_id, start, clock.now() + timedelta(minutes=4))
    worker = make_worker(sandbox, account, clock, frt, tmp_path / "state.sqlite3")
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 5)

    take(sandbox, account, ticket_id)
    play([worker], clock, 10)
    worker.close()

    assert public_agent_comments(sandbox, account, ticket_id)[0]["author_id"] == \
        account.agent_id  # she took it: the acknowledgement went out as her
    assert handovers(sandbox, frt) == []
    assert "emergency_handover_claim_frt" not in sandbox.zendesk.ticket(ticket_id)["tags"]


def test_a_slack_outage_delays_only_the_handover(
        sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt, tmp_path: Path) -> None:
    francesca_on_frt_all_day(sandbox, account, clock, frt)
    worker = make_worker(sandbox, account, clock, frt, tmp_path / "state.sqlite3")
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 3)
    sandbox.slack.faults.outage(times=None)

    take(sandbox, account, ticket_id)
    play([worker], clock, 3)

    assert handovers(sandbox, frt) == []
    [ack] = public_agent_comments(sandbox, account, ticket_id)  # Zendesk's step on time
    assert ack["author_id"] == account.agent_id
    assert incident_for(sandbox, ticket_id)["status"] == "resolved"  # PagerDuty's too

    sandbox.slack.faults.clear()
    play([worker], clock, 5)
    worker.close()

    assert len(handovers(sandbox, frt)) == 1


def test_a_claimant_that_died_before_asking_is_taken_over_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, frt: Frt, tmp_path: Path) -> None:
    francesca_on_frt_all_day(sandbox, account, clock, frt)
    first = make_worker(sandbox, account, clock, frt, tmp_path / "first.sqlite3")
    ticket_id = urgent(sandbox, account)
    play([first], clock, 3)
    take(sandbox, account, ticket_id)
    sandbox.slack.faults.drop("chat.getPermalink", times=None)
    play([first], clock, 1)  # it claims the request, then Slack fails; then it is gone
    first.close()
    assert "emergency_handover_claim_frt" in sandbox.zendesk.ticket(ticket_id)["tags"]
    sandbox.slack.faults.clear()

    second = make_worker(sandbox, account, clock, frt, tmp_path / "second.sqlite3")
    play([second], clock, 3)
    assert handovers(sandbox, frt) == []  # the claim may be a live worker's: it waits

    play([second], clock, 10)
    second.close()

    assert len(handovers(sandbox, frt)) == 1
