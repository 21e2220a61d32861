"""PagerDuty end to end: the worker with PagerDuty (and Slack) on, against the sandboxes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from automation import cli
from automation.clock import FakeClock
from automation.config import PagerDutyConfig, WorkflowConfig
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from tests.conftest import sandbox_worker

PD_TOKEN = "sandbox-pagerduty-token"
FRANCESCA_BRIDGE = "https://zoom.example.com/j/francesca"


def pd_config(account: Account, sandbox: Sandbox) -> PagerDutyConfig:
    return PagerDutyConfig(from_email=sandbox.email, service_id=account.pd_service_id,
                           escalation_policy_id=account.pd_policy_id, url=sandbox.pagerduty_url,
                           managers_service_id=account.pd_managers_service_id)


def worker_for(sandbox: Sandbox, account: Account, clock: FakeClock, state: Path,
               slack: bool = True) -> Worker:
    settings = WorkflowConfig(bridge_url="https://bridge.example.com/team",
                              bridges={"francesca@example.com": FRANCESCA_BRIDGE})
    return sandbox_worker(sandbox, account, clock, state, workflow=settings, slack=slack,
                          pagerduty=pd_config(account, sandbox))


@pytest.fixture
def worker(sandbox: Sandbox, account: Account, clock: FakeClock,
           tmp_path: Path) -> Iterator[Worker]:
    made = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    yield made
    made.close()


def urgent(sandbox: Sandbox, account: Account, subject: str = "Production down") -> int:
    return sandbox.zendesk.create_ticket(account.requester_id, subject, "Help",
                                         priority="urgent",
                                         organization_id=account.organization_id)


def play(worker: Worker, clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        worker.run_once()
        clock.advance(timedelta(minutes=1))


def incident_for(sandbox: Sandbox, ticket_id: int, managers: bool = False) -> dict:
    key = f"zendesk-{ticket_id}" + ("-manager" if managers else "")
    [incident] = [i for i in sandbox.pagerduty.incidents() if i["incident_key"] == key]
    return incident


def public_agent_comments(sandbox: Sandbox, account: Account, ticket_id: int) -> list[dict]:
    agents = {account.admin_id, account.agent_id, account.second_agent_id}
    return [c for c in sandbox.zendesk.public_comments(ticket_id) if c["author_id"] in agents]


def test_no_acknowledgement_before_a_person_acknowledges_then_as_that_engineer(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)

    play(worker, clock, 5)

    assert public_agent_comments(sandbox, account, ticket_id) == []
    incident = incident_for(sandbox, ticket_id)  # the worker paged after its grace period
    assert incident["status"] == "triggered"

    sandbox.pagerduty.acknowledge(incident["id"], account.pd_francesca_id)
    play(worker, clock, 2)

    [ack] = public_agent_comments(sandbox, account, ticket_id)
    assert ack["author_id"] == account.agent_id
    assert FRANCESCA_BRIDGE in ack["body"] and "Francesca Rossi" in ack["body"]


@pytest.mark.sockets  # the worker's PagerDuty client over TLS with the sandbox's CA
def test_incident_is_resolved_strictly_after_the_contact_comment_exists(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    play(worker, clock, 3)
    incident = incident_for(sandbox, ticket_id)
    sandbox.pagerduty.acknowledge(incident["id"], account.pd_francesca_id)
    assert incident_for(sandbox, ticket_id)["status"] == "acknowledged"

    play(worker, clock, 2)

    resolved = incident_for(sandbox, ticket_id)
    assert resolved["status"] == "resolved"
    [contact] = public_agent_comments(sandbox, account, ticket_id)
    [note] = sandbox.pagerduty.notes(incident["id"])
    assert f"#{ticket_id}" in note["content"] and "Francesca Rossi" in note["content"]
    assert note["created_at"] >= contact["created_at"]
    assert resolved["last_status_change_at"] >= contact["created_at"]


def test_the_worker_never_acknowledges_and_the_fallback_keeps_the_page_escalating(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)

    play(worker, clock, 19)
    assert public_agent_comments(sandbox, account, ticket_id) == []
    play(worker, clock, 3)

    [ack] = public_agent_comments(sandbox, account, ticket_id)
    assert ack["author_id"] == account.admin_id
    assert incident_for(sandbox, ticket_id)["status"] == "triggered"  # still paging
    assert not sandbox.pagerduty.calls("PUT", r"/incidents/.*")
    entries = [e.detail for e in worker.store.journal(ticket_id) if e.step == "acknowledge"]
    assert any("nobody acknowledged the page within 20 min" in d for d in entries)


def test_busy_on_call_pages_the_manager_once_however_many_passes(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    first = urgent(sandbox, account, "First emergency")
    play(worker, clock, 3)
    sandbox.pagerduty.acknowledge(incident_for(sandbox, first)["id"], account.pd_francesca_id)
    play(worker, clock, 2)  # Francesca made contact on the first one
    second = urgent(sandbox, account, "Second emergency")

    play(worker, clock, 10)

    manager_page = incident_for(sandbox, second, managers=True)
    assert manager_page["service"]["id"] == account.pd_managers_service_id
    assert "francesca@example.com" in manager_page["title"]
    assert len([i for i in sandbox.pagerduty.incidents()
                if i["service"]["id"] == account.pd_managers_service_id]) == 1
    thread = [m["text"] for m in sandbox.slack.messages(account.self_managed_channel)]
    assert any("Support Manager paged" in t for t in thread)
    assert sum("Second emergency: on-call" in t for t in thread) == 1


def test_no_manager_page_when_the_on_call_is_free(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    urgent(sandbox, account)

    play(worker, clock, 10)

    assert [i for i in sandbox.pagerduty.incidents()
            if i["service"]["id"] == account.pd_managers_service_id] == []


def test_pagerduty_429_with_retry_after_is_honoured_without_stalling_the_pass(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    sandbox.pagerduty.faults.rate_limit("GET", "/incidents", retry_after=20, times=1)
    started = clock.now()

    report = worker.run_once()

    # The pass does not wait the pause out: PagerDuty's part waits for a later pass.
    assert clock.now() - started < timedelta(seconds=20)
    assert [f.step for f in report.failed] == ["pagerduty"]
    listings = len(sandbox.pagerduty.calls("GET", "/incidents"))
    clock.advance(timedelta(seconds=10))
    worker.run_once()  # still paused: no request goes to PagerDuty before Retry-After
    assert len(sandbox.pagerduty.calls("GET", "/incidents")) == listings
    play(worker, clock, 4)
    assert incident_for(sandbox, ticket_id)["status"] == "triggered"


def test_wrong_pagerduty_token_is_one_line_exit_three_no_secret(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
        '[workflow]\nbridge_url = "https://b.example/x"\n'
        f'[pagerduty]\nurl = "{sandbox.pagerduty_url}"\nca_file = "{sandbox.pagerduty_ca}"\n'
        f'from_email = "{sandbox.email}"\nservice_id = "{account.pd_service_id}"\n'
        f'escalation_policy_id = "{account.pd_policy_id}"\n')
    urgent(sandbox, account)
    wrong = "pd-wrong-token-SECRETVALUE-9z9z"
    out, err = io.StringIO(), io.StringIO()

    code = cli.run(["--config", str(config), "tick"], out=out, err=err, clock=clock,
                   environ={"ZENDESK_API_TOKEN": sandbox.token, "PAGERDUTY_API_TOKEN": wrong})

    assert code == cli.EXIT_UNREACHABLE
    text = err.getvalue()
    assert text.count("\n") == 1 and text.startswith("error: PagerDuty"), text
    assert "SECRETVALUE" not in out.getvalue() + text and wrong[-4:] not in out.getvalue() + text
    assert "PAGERDUTY_API_TOKEN" in text
    assert "pass at" in out.getvalue()  # the Zendesk part of the pass still ran
    assert "0 posted, 1 failed" in out.getvalue()  # and its summary does not look healthy


def pd_cli(sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path, *argv: str,
           from_email: str | None = None, extra: str = "") -> tuple[int, str, str]:
    """The CLI with [pagerduty] on (``extra``: more of [pagerduty], then other sections)."""
    config = tmp_path / "pd-config.toml"
    config.write_text(
        f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
        '[workflow]\nbridge_url = "https://b.example/x"\n'
        f'[pagerduty]\nurl = "{sandbox.pagerduty_url}"\nca_file = "{sandbox.pagerduty_ca}"\n'
        f'from_email = "{from_email or sandbox.email}"\nservice_id = "{account.pd_service_id}"\n'
        f'escalation_policy_id = "{account.pd_policy_id}"\n{extra}')
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["--config", str(config), *argv], out=out, err=err, clock=clock,
                   environ={"ZENDESK_API_TOKEN": sandbox.token, "PAGERDUTY_API_TOKEN": PD_TOKEN,
                            "SLACK_BOT_TOKEN": sandbox.slack.token})
    return code, out.getvalue(), err.getvalue()


def test_page_by_hand_is_idempotent_per_ticket(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, out, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id),
                            "--engineer", account.second_agent_email, "--yes")
    again = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id), "--engineer",
                   account.second_agent_email, "--yes")

    assert code == cli.EXIT_OK, err
    assert "assigned to Ravi Patel" in out
    assert again[0] == cli.EXIT_OK and "already paged" in again[1]
    incident = incident_for(sandbox, ticket_id)
    assert [a["assignee"]["id"] for a in incident["assignments"]] == [account.pd_ravi_id]
    assert "emergency_paged" in sandbox.zendesk.ticket(ticket_id)["tags"]


def test_page_dry_run_names_the_on_call_and_sends_nothing(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, out, _ = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id),
                          "--dry-run")

    assert code == cli.EXIT_OK and "would page Francesca Rossi" in out
    assert sandbox.pagerduty.incidents() == []


def test_paging_someone_with_their_own_identity_is_refused(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id),
                          "--engineer", "francesca@example.com", "--yes",
                          from_email="francesca@example.com")

    assert code == cli.EXIT_REFUSED and "their own PagerDuty identity" in err
    assert err.count("\n") == 1
    assert sandbox.pagerduty.incidents() == []


def test_paging_someone_else_when_a_page_is_open_is_refused_not_faked(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id), "--yes")

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id),
                          "--engineer", account.second_agent_email, "--yes")

    assert code == cli.EXIT_REFUSED and "already has an open page" in err
    assert "assigned to Francesca Rossi" in err
    assert len(sandbox.pagerduty.incidents()) == 1


def test_a_page_sent_by_hand_after_contact_is_not_resolved_by_the_worker(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "Calling you now", public=True)
    clock.advance(timedelta(minutes=1))
    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id),
                          "--engineer", account.second_agent_email, "--yes")
    assert code == cli.EXIT_OK, err

    play(worker, clock, 5)

    assert incident_for(sandbox, ticket_id)["status"] == "triggered"


def test_page_without_yes_off_a_terminal_sends_nothing(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id))

    assert code == cli.EXIT_CONFIG and "--yes" in err
    assert sandbox.pagerduty.incidents() == []


def test_oncall_now_and_next_with_shift_ends(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    code, out, _ = pd_cli(sandbox, account, clock, tmp_path, "oncall")

    assert code == cli.EXIT_OK
    now_line, next_line = out.splitlines()
    assert "Francesca Rossi" in now_line and "until 2026-01-05 17:00 UTC" in now_line
    assert next_line.startswith("next: Ravi Patel") and "17:00" in next_line

    code, out, _ = pd_cli(sandbox, account, clock, tmp_path, "oncall", "--at",
                          "2026-01-05T18:00:00+00:00")
    assert "Ravi Patel" in out.splitlines()[0]


def test_post_call_hand_off_comes_from_the_on_call_schedule(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    notes = tmp_path / "notes.md"
    notes.write_text("Rolled back; all good.")

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "post-call", str(ticket_id),
                          "--notes", str(notes), "--yes", "--as", account.agent_email)

    assert code == cli.EXIT_OK, err
    body = sandbox.zendesk.public_comments(ticket_id)[-1]["body"]
    assert "Francesca Rossi will be on call until 17:00 UTC" in body
    assert "After that, Ravi Patel will be responding" in body


def test_post_call_by_someone_off_call_names_the_on_call_for_follow_up(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    notes = tmp_path / "notes.md"
    notes.write_text("Rolled back; all good.")

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "post-call", str(ticket_id),
                          "--notes", str(notes), "--yes", "--as", account.second_agent_email)

    assert code == cli.EXIT_OK, err
    body = sandbox.zendesk.public_comments(ticket_id)[-1]["body"]
    assert "Ravi Patel will be on call" not in body
    assert "Francesca Rossi will be responding" in body


def test_the_follow_up_offers_the_bridge_the_engineer_offered_at_contact(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    play(worker, clock, 3)
    sandbox.pagerduty.acknowledge(incident_for(sandbox, ticket_id)["id"], account.pd_francesca_id)

    play(worker, clock, 20)

    ack, follow_up = public_agent_comments(sandbox, account, ticket_id)
    assert FRANCESCA_BRIDGE in ack["body"] and FRANCESCA_BRIDGE in follow_up["body"]
    assert "https://bridge.example.com/team" not in follow_up["body"]


@pytest.mark.parametrize("late_by", ["the worker", "PagerDuty"])
def test_an_emergency_first_handled_after_the_fallback_is_still_paged(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        late_by: str) -> None:
    # given an emergency nobody paged for 22 minutes: the worker was not running, or
    # PagerDuty was down on every pass
    ticket_id = urgent(sandbox, account)
    if late_by == "PagerDuty":
        sandbox.faults.server_error("*", "", 503, times=None, service="pagerduty")
        play(worker, clock, 22)
        sandbox.faults.clear()
    else:
        clock.advance(timedelta(minutes=22))

    # when the worker's passes go through
    play(worker, clock, 2)

    # then the team's acknowledgement went out once, and the page rings (it keeps
    # escalating until a person takes it, as the journal says)
    assert len(public_agent_comments(sandbox, account, ticket_id)) == 1
    assert incident_for(sandbox, ticket_id)["status"] == "triggered"


@pytest.mark.parametrize("person", ["acknowledges, then the worker resolves",
                                    "resolves it directly"])
def test_a_page_a_person_handled_is_never_sent_again_after_the_teams_fallback(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        person: str) -> None:
    # given Zendesk's own integration paged (the ticket in the title, no key of ours), and
    # nobody took the page for 20 minutes: the team's fallback acknowledgement went out
    ticket_id = urgent(sandbox, account)
    incident_id = sandbox.pagerduty.trigger(account.pd_service_id,
                                            f"Zendesk ticket #{ticket_id}: Production down",
                                            None)
    play(worker, clock, 21)
    assert len(public_agent_comments(sandbox, account, ticket_id)) == 1

    # when a person then takes the page
    if person.startswith("acknowledges"):
        sandbox.pagerduty.acknowledge(incident_id, account.pd_francesca_id)
    else:
        sandbox.pagerduty.resolve(incident_id, account.pd_francesca_id)
    play(worker, clock, 5)

    # then nobody is paged again for this emergency
    assert [i["id"] for i in sandbox.pagerduty.incidents()] == [incident_id]
    assert sandbox.pagerduty.incident(incident_id)["status"] == "resolved"


def test_an_acknowledgement_by_hand_counts_as_a_person_on_it(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock,
        tmp_path: Path) -> None:
    # given an engineer who acknowledged by hand (as the team) before any page went out
    ticket_id = urgent(sandbox, account)
    config = tmp_path / "config.toml"
    config.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                      '[workflow]\nbridge_url = "https://b.example/x"\n')
    clock.advance(timedelta(seconds=5))
    code = cli.run(["--config", str(config), "ack", str(ticket_id), "--yes"],
                   out=io.StringIO(), err=io.StringIO(), clock=clock,
                   environ={"ZENDESK_API_TOKEN": sandbox.token})
    assert code == cli.EXIT_OK

    # when the worker's passes go on
    play(worker, clock, 5)

    # then a person is on it: nobody is paged
    assert sandbox.pagerduty.incidents() == []


def test_paging_by_hand_for_a_ticket_that_is_not_urgent_asks_for_force(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Slow builds", "Meh",
                                              priority="normal")

    code, _, err = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id), "--yes")

    assert code == cli.EXIT_REFUSED and "pass --force to page for it anyway" in err
    assert sandbox.pagerduty.incidents() == []
    code, _, _ = pd_cli(sandbox, account, clock, tmp_path, "page", str(ticket_id), "--yes",
                        "--force")
    assert code == cli.EXIT_OK and len(sandbox.pagerduty.incidents()) == 1


def test_oncall_is_who_is_on_call_by_the_services_clock(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    clock.advance(timedelta(hours=9))  # the sandbox's clock: 18:00, Ravi's shift
    code, out, _ = pd_cli(sandbox, account, FakeClock(), tmp_path, "oncall")  # 09:00

    assert code == cli.EXIT_OK
    assert out.splitlines()[0].startswith("on call at 2026-01-05 18:00 UTC: Ravi Patel")


@pytest.mark.parametrize("skew", [timedelta(hours=-30), timedelta(seconds=-5),
                                  timedelta(seconds=5), timedelta(hours=30)])
def test_a_machine_clock_apart_from_the_services_clock_changes_nothing(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        skew: timedelta) -> None:
    """The services share one clock; this machine's may be off (or, against the sandbox at
    --speed 60, hours behind): every time the worker sends is the services' time."""
    machine = FakeClock(clock.now() + skew)
    worker = worker_for(sandbox, account, machine, tmp_path / "state.sqlite3")
    ticket_id = urgent(sandbox, account)
    try:
        reports = []
        for _ in range(5):
            reports.append(worker.run_once())
            clock.advance(timedelta(minutes=1))
            machine.advance(timedelta(minutes=1))
        sandbox.pagerduty.acknowledge(incident_for(sandbox, ticket_id)["id"],
                                      account.pd_francesca_id)
        for _ in range(2):
            reports.append(worker.run_once())
            clock.advance(timedelta(minutes=1))
            machine.advance(timedelta(minutes=1))
    finally:
        worker.close()

    assert [r.failed for r in reports if not r.ok] == []
    [ack] = public_agent_comments(sandbox, account, ticket_id)
    assert ack["author_id"] == account.agent_id
