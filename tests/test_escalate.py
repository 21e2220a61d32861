"""`emergency escalate`: "if you're stuck, contact the manager on-call" — their page once per
emergency, an internal note saying why, and a line in the emergency's thread."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from automation import cli
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from tests.test_e2e_pagerduty import pd_cli, urgent

REASON = "Gitaly <crashes> on start; no known fix"


def escalate_cli(sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
                 *argv: str, managers: bool = True) -> tuple[int, str, str]:
    """The CLI with the Support Managers' service (unless not ``managers``) and Slack on."""
    extra = (f'managers_service_id = "{account.pd_managers_service_id}"\n' if managers else "")
    extra += (f'[slack]\nurl = "{sandbox.slack_url}"\n'
              f'default_channel = "{account.self_managed_channel}"\n')
    return pd_cli(sandbox, account, clock, tmp_path, *argv, extra=extra)


def manager_pages(sandbox: Sandbox, account: Account) -> list[dict]:
    return [i for i in sandbox.pagerduty.incidents()
            if i["service"]["id"] == account.pd_managers_service_id]


def test_escalate_pages_the_manager_once_with_a_note_and_a_line_in_the_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    escalate_cli(sandbox, account, clock, tmp_path, "tick")  # the thread exists
    clock.advance(timedelta(minutes=5))

    code, out, err = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                                  "--reason", REASON, "--yes", "--as", account.agent_email)

    assert code == cli.EXIT_OK, err
    [page] = manager_pages(sandbox, account)
    assert f"the Support Manager on call is paged: incident {page['id']}" in out
    assert page["incident_key"] == f"zendesk-{ticket_id}-escalated"
    assert page["status"] == "triggered"
    note = sandbox.zendesk.comments(ticket_id)[-1]
    assert not note["public"] and "Francesca Rossi is stuck" in note["body"]
    assert REASON in note["body"]
    thread = [m["text"] for m in sandbox.slack.messages(account.self_managed_channel)]
    assert any(f"Support Manager on call is paged (incident {page['id']})" in t
               and "Gitaly &lt;crashes&gt;" in t for t in thread), thread

    again = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                         "--reason", "still stuck", "--yes")
    assert again[0] == cli.EXIT_REFUSED and "escalated already" in again[2]
    assert len(manager_pages(sandbox, account)) == 1


def test_a_lost_note_is_written_on_the_rerun_without_a_second_page(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    clock.advance(timedelta(seconds=3))
    sandbox.faults.server_error("PUT", f"/api/v2/tickets/{ticket_id}", status=503, times=3)

    first = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                         "--reason", REASON, "--yes")
    assert first[0] != cli.EXIT_OK and len(manager_pages(sandbox, account)) == 1
    second = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                          "--reason", REASON, "--yes")

    assert second[0] == cli.EXIT_OK, second[2]
    assert len(manager_pages(sandbox, account)) == 1
    notes = [c for c in sandbox.zendesk.comments(ticket_id) if "is stuck" in c["body"]]
    assert len(notes) == 1


def test_escalate_previews_and_needs_the_managers_service(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, out, _ = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                                "--reason", REASON, "--dry-run")
    assert code == cli.EXIT_OK and "the Support Manager on call is paged" in out
    assert "dry run: nothing was sent" in out and manager_pages(sandbox, account) == []

    code, _, err = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                                "--reason", REASON, "--yes", managers=False)
    assert code == cli.EXIT_CONFIG and "managers_service_id" in err
    code, _, err = escalate_cli(sandbox, account, clock, tmp_path, "escalate", str(ticket_id),
                                "--reason", " ", "--yes")
    assert code == cli.EXIT_CONFIG and "--reason" in err
    assert sandbox.pagerduty.incidents() == []
