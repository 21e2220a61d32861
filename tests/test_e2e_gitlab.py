"""The Emergency Runbook issue in GitLab, end to end through the sandbox: one per emergency
whatever happens to the workers, filled from the team's template, closed when the emergency
ends, and a GitLab outage delays nothing but GitLab."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from automation.cli import run as cli_run
from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.model import ISSUE_STAMP, Outcome
from automation.runbook import CLAIM_TIMEOUT, CLOSE_STAMP, CLOSED_STEP
from automation.sandbox import Account, Sandbox, sandbox_environ
from automation.sandbox.config_file import STATE_FILE, write_config_file
from automation.store import Store
from automation.worker import Worker
from tests.conftest import emergency_ticket, play_together, sandbox_worker

BRIDGE = "https://bridge.example.com/team"
EVERY_PATH = re.compile("")


def worker_for(sandbox: Sandbox, account: Account, clock: FakeClock, state: Path,
               **sections: Any) -> Worker:
    return sandbox_worker(sandbox, account, clock, state, gitlab=True,
                          workflow=WorkflowConfig(bridge_url=BRIDGE), **sections)


def play(worker: Worker, clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        worker.run_once()
        clock.advance(timedelta(minutes=1))


def cli_at(config: Path, sandbox: Sandbox, clock: FakeClock) -> Callable[..., tuple[int, str]]:
    """`emergency --config <config> ...` as an engineer runs it: (exit code, what it said)."""
    environ = sandbox_environ(sandbox)

    def emergency(*args: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli_run(["--config", str(config), *args], out=out, err=err, environ=environ,
                       clock=clock)
        return code, out.getvalue() + err.getvalue()
    return emergency


def close_claims(sandbox: Sandbox, ticket_id: int) -> list[dict[str, Any]]:
    """The claims to close the ticket's issue stamped on it, oldest first."""
    return [a["metadata"]["custom"]["emergency_automation"]
            for a in sandbox.zendesk.audits(ticket_id)
            if a["metadata"].get("custom", {}).get("emergency_automation", {}).get("step")
            == CLOSE_STAMP]


def issues(sandbox: Sandbox, account: Account) -> list[dict[str, Any]]:
    return sandbox.gitlab.issues(account.gitlab_project)


def closing_notes(sandbox: Sandbox, account: Account, iid: int) -> list[str]:
    return [n["body"] for n in sandbox.gitlab.notes(account.gitlab_project, iid)
            if not n["system"] and "emergency is over" in n["body"]]


def issue_notes_on_ticket(sandbox: Sandbox, ticket_id: int) -> list[str]:
    return [c["body"] for c in sandbox.zendesk.comments(ticket_id)
            if not c["public"] and "Emergency Runbook issue" in c["body"]]


def test_an_emergency_gets_one_issue_filled_from_the_template_and_closed_when_it_ends(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account, "Production <!channel> @all down",
                                 organization_id=account.organization_id)

    play(worker, clock, 3)

    [issue] = issues(sandbox, account)
    assert issue["title"] == (f"Emergency: Zendesk #{ticket_id} — Acme Corp: "
                              "Production <!channel> @all down")
    description = issue["description"]
    assert f"/agent/tickets/{ticket_id})" in description
    shown = description.replace("\\", "").replace("\u200b", "")  # as GitLab renders it
    assert "Acme Corp — Jordan Lee (jordan.lee@acme.example.com)" in shown
    assert f"**Bridge:** {BRIDGE}" in description
    assert "- [ ] Join the bridge; follow up after 15 minutes of silence" in description
    assert "@all" not in description  # customer text pings nobody
    assert "emergency" in issue["labels"] and issue["state"] == "opened"
    [note] = issue_notes_on_ticket(sandbox, ticket_id)
    assert issue["web_url"] in note
    assert ISSUE_STAMP in str(sandbox.zendesk.audits(ticket_id))

    play(worker, clock, 35)  # no reply: follow-up, then the bridge closed

    [issue] = issues(sandbox, account)
    assert issue["state"] == "closed"
    assert len(closing_notes(sandbox, account, issue["iid"])) == 1
    assert len(issue_notes_on_ticket(sandbox, ticket_id)) == 1


def test_restarts_a_lost_state_file_and_two_workers_open_one_issue(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]
    tickets = [emergency_ticket(sandbox, account, f"Down {n}",
                                organization_id=account.organization_id) for n in (1, 2, 3)]

    play_together(workers, clock, 3)
    (tmp_path / "w1.sqlite3").unlink()  # a lost state file, and a restart of both
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]
    play_together(workers, clock, 40)

    titles = sorted(i["title"] for i in issues(sandbox, account))
    assert titles == sorted(f"Emergency: Zendesk #{t} — Acme Corp: Down {n}"
                            for t, n in zip(tickets, (1, 2, 3), strict=True))
    for issue in issues(sandbox, account):
        assert issue["state"] == "closed"
        assert len(closing_notes(sandbox, account, issue["iid"])) == 1
    for ticket_id in tickets:
        assert len(issue_notes_on_ticket(sandbox, ticket_id)) == 1


def test_an_issue_created_whose_answer_was_lost_is_found_not_made_twice(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    # GitLab applies the POST, then the connection drops; then Zendesk refuses the record
    sandbox.faults.apply_then_drop("POST", re.compile(r"/issues$"), service="gitlab")
    sandbox.faults.server_error("PUT", re.compile(r"/tickets/\d+"), 503, times=3,
                                service="zendesk", after=2)

    play(worker, clock, 1)
    (tmp_path / "state.sqlite3").unlink()  # and the state file is lost
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    play(worker, clock, 3)

    assert len(issues(sandbox, account)) == 1
    assert len(issue_notes_on_ticket(sandbox, ticket_id)) == 1


def test_gitlab_down_delays_only_gitlab(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3", slack=True)
    tickets = [emergency_ticket(sandbox, account, f"Down {n}",
                                organization_id=account.organization_id) for n in (1, 2)]
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="gitlab")
    started = clock.now()

    report = worker.run_once()

    # every customer acknowledged on time, every Slack thread opened, in the same pass
    for ticket_id in tickets:
        [ack] = [c for c in sandbox.zendesk.comments(ticket_id)[1:] if c["public"]]
        at = datetime.fromisoformat(ack["created_at"].replace("Z", "+00:00"))
        assert at - started <= timedelta(seconds=5)
    parents = [m for m in sandbox.slack.messages(account.self_managed_channel)
               if m.get("thread_ts") in (None, m["ts"])]
    assert len(parents) == 2
    assert not issues(sandbox, account)
    assert [f.step for f in report.failed] == ["gitlab"]  # said once, for cron

    sandbox.faults.clear("gitlab")
    play(worker, clock, 2)

    assert len(issues(sandbox, account)) == 2
    thread = [m["text"] for m in sandbox.slack.messages(account.self_managed_channel)]
    assert sum("Emergency Runbook issue" in t and "opened" in t for t in thread) == 2


def test_an_emergency_that_ended_while_gitlab_was_down_has_its_issue_closed_after(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    emergency_ticket(sandbox, account, organization_id=account.organization_id)
    play(worker, clock, 20)
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="gitlab")
    play(worker, clock, 20)  # bridge closed, ticket stepped down: no longer listed
    [issue] = issues(sandbox, account)
    assert issue["state"] == "opened"

    sandbox.faults.clear("gitlab")
    play(worker, clock, 1)

    [issue] = issues(sandbox, account)
    assert issue["state"] == "closed"


def test_an_issue_left_to_close_is_closed_by_the_next_tick_of_the_same_worker_at_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    worker = worker_for(sandbox, account, clock, state)
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    play(worker, clock, 20)
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="gitlab")
    for _ in range(30):  # it ends while GitLab is down: its close claimed, not made
        if close_claims(sandbox, ticket_id):
            break
        play(worker, clock, 1)
    else:
        pytest.fail("the emergency never ended with its issue's close claimed")
    worker.close()
    sandbox.faults.clear("gitlab")

    play(worker_for(sandbox, account, clock, state), clock, 1)  # a new process, as `tick`

    assert [i["state"] for i in issues(sandbox, account)] == ["closed"]


def test_an_issue_left_to_close_is_closed_though_its_ticket_was_deleted_since(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    play(worker, clock, 20)
    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="gitlab")
    play(worker, clock, 20)  # ended while GitLab was down: its issue is left to close
    sandbox.faults.clear("gitlab")  # and the ticket deleted since:
    deleted = re.compile(rf"/api/v2/tickets/{ticket_id}(\.json|/)")
    sandbox.faults.server_error("GET", deleted, status=404, times=None, service="zendesk")

    play(worker, clock, 2)

    assert [i["state"] for i in issues(sandbox, account)] == ["closed"]
    assert worker.store.issues_to_close() == []


def test_runbook_issue_by_hand_is_previewed_then_opened_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    emergency = cli_at(write_config_file(tmp_path / "sandbox.toml", sandbox, account),
                       sandbox, clock)
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(minutes=1))

    code, text = emergency("runbook-issue", str(ticket_id), "--dry-run")
    assert code == 0 and "dry run: nothing was sent" in text
    assert f"Emergency: Zendesk #{ticket_id} — Acme Corp" in text and "## Emergency Runbook" in text
    assert not issues(sandbox, account)

    code, text = emergency("runbook-issue", str(ticket_id), "--yes")
    assert code == 0 and "Emergency Runbook issue opened" in text
    code, again = emergency("runbook-issue", str(ticket_id), "--yes")
    assert code == 0 and "already has its Emergency Runbook issue" in again
    assert len(issues(sandbox, account)) == 1
    assert len(issue_notes_on_ticket(sandbox, ticket_id)) == 1
    assert sandbox.gitlab.token not in text + again


def closer_dies_after_claiming(sandbox: Sandbox, account: Account, clock: FakeClock,
                               tmp_path: Path) -> tuple[int, Worker]:
    """Two workers on one emergency and its issue; post-call notes end it; the first worker
    stamps its claim to close the issue on the ticket, GitLab fails under it, and it never
    runs again. Returns the ticket and the surviving worker."""
    first = worker_for(sandbox, account, clock, tmp_path / "first.sqlite3")
    second = worker_for(sandbox, account, clock, tmp_path / "second.sqlite3")
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    for _ in range(3):
        for worker in (first, second):
            worker.run_once()
        clock.advance(timedelta(minutes=1))
    [issue] = issues(sandbox, account)
    assert issue["state"] == "opened"
    notes = tmp_path / "notes.md"
    notes.write_text("We rolled back the upgrade.")
    emergency = cli_at(write_config_file(tmp_path / "sandbox.toml", sandbox, account),
                       sandbox, clock)
    code, text = emergency("post-call", str(ticket_id), "--notes", str(notes), "--yes")
    assert code == 0, text
    clock.advance(timedelta(minutes=1))

    sandbox.faults.server_error("*", EVERY_PATH, 503, times=None, service="gitlab")
    first.run_once()
    first.close()  # dead: it never closes the issue it claimed
    sandbox.faults.clear("gitlab")

    claims = close_claims(sandbox, ticket_id)
    assert len(claims) == 1 and claims[0]["by"]  # the claim, naming the dead worker
    [issue] = issues(sandbox, account)
    assert issue["state"] == "opened"
    assert not sandbox.gitlab.calls("PUT", r"/issues/\d+$")
    return ticket_id, second


def test_a_closer_that_died_after_claiming_the_close_is_taken_over_once_its_claim_is_stale(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id, second = closer_dies_after_claiming(sandbox, account, clock, tmp_path)

    clock.advance(CLAIM_TIMEOUT)  # the second worker's next pass: the claim is stale
    second.run_once()

    [issue] = issues(sandbox, account)
    assert issue["state"] == "closed"
    assert len(sandbox.gitlab.calls("PUT", rf"/issues/{issue['iid']}$")) == 1
    assert closing_notes(sandbox, account, issue["iid"]) == [
        "The emergency is over: post-call notes were posted on the ticket. Closing this issue."]

    play(second, clock, 10)  # and never again

    assert [i["state"] for i in issues(sandbox, account)] == ["closed"]
    assert len(sandbox.gitlab.calls("PUT", r"/issues/\d+$")) == 1
    assert len(closing_notes(sandbox, account, issue["iid"])) == 1
    [entry] = [e for e in second.store.journal(ticket_id) if e.step == CLOSED_STEP]
    assert entry.outcome == Outcome.DONE and entry.actor == "GitLab"


def test_a_worker_that_saw_the_dead_closers_claim_while_fresh_still_closes_the_issue(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    _, second = closer_dies_after_claiming(sandbox, account, clock, tmp_path)

    play(second, clock, 2 * int(CLAIM_TIMEOUT.total_seconds() // 60))  # fresh, then stale

    [issue] = issues(sandbox, account)
    assert issue["state"] == "closed"
    assert len(sandbox.gitlab.calls("PUT", r"/issues/\d+$")) == 1
    assert len(closing_notes(sandbox, account, issue["iid"])) == 1


def test_runbook_issue_by_hand_says_so_once_in_the_thread_and_in_the_journal(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # the worker runs without GitLab: it opens the emergency's Slack thread, no issue
    worker = sandbox_worker(sandbox, account, clock, tmp_path / "worker.sqlite3", slack=True,
                            workflow=WorkflowConfig(bridge_url=BRIDGE))
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    play(worker, clock, 2)
    channel = account.self_managed_channel
    [parent] = [m for m in sandbox.slack.messages(channel) if m.get("thread_ts") in
                (None, m["ts"])]
    emergency = cli_at(write_config_file(tmp_path / "sandbox.toml", sandbox, account),
                       sandbox, clock)

    code, text = emergency("runbook-issue", str(ticket_id), "--yes")
    assert code == 0, text
    code, again = emergency("runbook-issue", str(ticket_id), "--yes")
    assert code == 0 and "already has its Emergency Runbook issue" in again

    [issue] = issues(sandbox, account)
    url, project = issue["web_url"], account.gitlab_project
    line = f"Emergency Runbook issue {project}#{issue['iid']} opened: <{url}|{url}>"
    thread = [m["text"] for m in sandbox.slack.thread(channel, parent["ts"])]
    assert thread.count(line) == 1
    assert sum("Emergency Runbook issue" in t for t in thread) == 1
    store = Store(tmp_path / STATE_FILE)  # the command's state file, beside its config
    try:
        entries = [e for e in store.journal(ticket_id) if e.step == ISSUE_STAMP]
    finally:
        store.close()
    assert [(e.outcome, e.actor, e.detail) for e in entries] == [
        (Outcome.DONE, "GitLab",
         f"Emergency Runbook issue {project}#{issue['iid']} opened by hand: {url}")]
