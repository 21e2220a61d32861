"""US Federal on-call: its own service and coverage hours; outside them, no page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock
from automation.config import (
    FederalConfig,
    PagerDutyConfig,
    WorkflowConfig,
)
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from automation.workflow import coverage_at
from tests.conftest import sandbox_worker

# 2026-01-05 09:00 UTC is 01:00 in Los Angeles: outside 05:00-17:00.
NIGHT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles


def test_coverage_in_los_angeles_follows_daylight_saving() -> None:
    winter = coverage_at(DAY, "America/Los_Angeles", time(5), time(17))
    summer = coverage_at(datetime(2026, 7, 1, 12, 30, tzinfo=UTC), "America/Los_Angeles",
                         time(5), time(17))

    assert winter.open_now and winter.opened_at == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    assert summer.open_now and summer.opened_at == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def test_outside_coverage_the_next_window_is_named() -> None:
    night = coverage_at(NIGHT, "America/Los_Angeles", time(5), time(17))
    late = coverage_at(datetime(2026, 1, 6, 2, 0, tzinfo=UTC), "America/Los_Angeles",
                       time(5), time(17))

    assert not night.open_now and night.opens_at == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    assert not late.open_now and late.opens_at == datetime(2026, 1, 6, 13, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NIGHT)


@pytest.fixture
def federal(sandbox: Sandbox, account: Account) -> dict[str, object]:
    pd = sandbox.pagerduty
    engineer = pd.add_user("Dana Fed", "dana.fed@example.com")
    policy = pd.add_escalation_policy("US Federal Escalation Policy")
    schedule = pd.add_schedule("US Federal", "America/Los_Angeles")
    pd.add_oncall(engineer, policy, schedule, None, None)
    service = pd.add_service("US Federal Support", policy)
    org = sandbox.zendesk.add_organization("Agency of Examples", tags=["us_federal"])
    requester = sandbox.zendesk.add_user("Pat Agency", "pat@agency.example.gov", "end-user",
                                         org)
    return {"service": service, "policy": policy, "org": org, "requester": requester}


@pytest.fixture
def worker(sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
           federal: dict[str, object]) -> Iterator[Worker]:
    config = PagerDutyConfig(
        from_email=sandbox.email, service_id=account.pd_service_id,
        escalation_policy_id=account.pd_policy_id, url=sandbox.pagerduty_url,
        federal=FederalConfig(service_id=str(federal["service"]),
                              escalation_policy_id=str(federal["policy"]),
                              organization_tags=("us_federal",)))
    made = sandbox_worker(sandbox, account, clock, tmp_path / "state.sqlite3",
                          workflow=WorkflowConfig(bridge_url="https://b.example/x"),
                          slack=True, pagerduty=config)
    yield made
    made.close()


def federal_ticket(sandbox: Sandbox, federal: dict[str, object]) -> int:
    return sandbox.zendesk.create_ticket(int(str(federal["requester"])), "Agency portal down",
                                         "Nothing loads", priority="urgent",
                                         organization_id=int(str(federal["org"])))


def play(worker: Worker, clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        worker.run_once()
        clock.advance(timedelta(minutes=1))


def test_outside_coverage_the_off_hours_reply_goes_out_and_nobody_is_paged(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        federal: dict[str, object]) -> None:
    ticket_id = federal_ticket(sandbox, federal)

    play(worker, clock, 45)

    public = [c for c in sandbox.zendesk.public_comments(ticket_id)
              if c["author_id"] == account.admin_id]
    assert len(public) == 1  # no follow-up, no bridge closed: the reply offered no bridge
    assert "05:00-17:00 America/Los_Angeles" in public[0]["body"]
    assert "2026-01-05 13:00 UTC" in public[0]["body"]
    assert sandbox.pagerduty.incidents() == []
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"
    slack = [m["text"] for m in sandbox.slack.messages(account.self_managed_channel)]
    assert any("Outside the US Federal coverage hours" in t for t in slack)


def test_when_coverage_opens_the_federal_on_call_is_paged(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        federal: dict[str, object]) -> None:
    ticket_id = federal_ticket(sandbox, federal)
    play(worker, clock, 2)
    clock.set(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))

    play(worker, clock, 5)

    [incident] = sandbox.pagerduty.incidents()
    assert incident["service"]["id"] == federal["service"]
    assert incident["incident_key"] == f"zendesk-{ticket_id}"
    public = [c for c in sandbox.zendesk.public_comments(ticket_id)
              if c["author_id"] == account.admin_id]
    assert len(public) == 1  # the acknowledgement waits for Dana, counted from 05:00 PT

    play(worker, clock, 20)

    public = [c for c in sandbox.zendesk.public_comments(ticket_id)
              if c["author_id"] == account.admin_id]
    assert len(public) == 2 and "bridge" in public[1]["body"]


def test_inside_coverage_a_federal_ticket_pages_the_federal_service(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        federal: dict[str, object]) -> None:
    clock.set(DAY)
    ticket_id = federal_ticket(sandbox, federal)
    other = sandbox.zendesk.create_ticket(account.requester_id, "Acme down", "x",
                                          priority="urgent",
                                          organization_id=account.organization_id)

    play(worker, clock, 4)

    services = {i["incident_key"]: i["service"]["id"] for i in sandbox.pagerduty.incidents()}
    assert services == {f"zendesk-{ticket_id}": federal["service"],
                        f"zendesk-{other}": account.pd_service_id}


def test_oncall_federal_shows_coverage_shifts_and_who(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        federal: dict[str, object]) -> None:
    import io

    from automation import cli

    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
        '[workflow]\nbridge_url = "https://b.example/x"\n'
        f'[pagerduty]\nurl = "{sandbox.pagerduty_url}"\nca_file = "{sandbox.pagerduty_ca}"\n'
        f'from_email = "{sandbox.email}"\nservice_id = "{account.pd_service_id}"\n'
        f'escalation_policy_id = "{account.pd_policy_id}"\n'
        f'[pagerduty.federal]\nservice_id = "{federal["service"]}"\n'
        f'escalation_policy_id = "{federal["policy"]}"\norganization_tags = ["us_federal"]\n')
    out = io.StringIO()

    code = cli.run(["--config", str(config), "oncall", "--federal"], out=out,
                   err=io.StringIO(), clock=clock,
                   environ={"ZENDESK_API_TOKEN": sandbox.token,
                            "PAGERDUTY_API_TOKEN": "sandbox-pagerduty-token"})

    assert code == cli.EXIT_OK
    lines = out.getvalue().splitlines()
    assert lines[0] == ("US Federal coverage 05:00-17:00 America/Los_Angeles (closed now; "
                        "opens 2026-01-05 13:00 UTC); shifts 05:00-11:00, 11:00-17:00 "
                        "America/Los_Angeles")
    assert "Dana Fed" in lines[1]
