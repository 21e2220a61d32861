"""Engineers' commands end to end: the CLI against the sandbox over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from automation import cli
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                    '[workflow]\nbridge_url = "https://bridge.example.com/x"\n'
                    '[macros]\npost_call = "Support::Self-Managed::Post Customer Call"\n')
    return str(path)


def emergency(sandbox: Sandbox, clock: FakeClock, *argv: str, stdin: str = ""
              ) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(list(argv), out=out, err=err, clock=clock, stdin=io.StringIO(stdin),
                   environ={"ZENDESK_API_TOKEN": sandbox.token})
    return code, out.getvalue(), err.getvalue()


def urgent(sandbox: Sandbox, account: Account) -> int:
    return sandbox.zendesk.create_ticket(account.requester_id, "Down", "Help!",
                                         priority="urgent",
                                         organization_id=account.organization_id)


def test_post_call_through_the_macro_as_the_engineer(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock,
        tmp_path: Path) -> None:
    sandbox.zendesk.add_macro("Support::Self-Managed::Post Customer Call",
                              "Summary of our call:", public=True)
    ticket_id = urgent(sandbox, account)
    notes = tmp_path / "notes.md"
    notes.write_text("Rolled back the 17.2 upgrade; pushes work again.")

    code, out, err = emergency(sandbox, clock, "--config", config, "post-call", str(ticket_id),
                               "--notes", str(notes), "--internal", "-", "--yes",
                               "--as", account.agent_email, "--until", "17:00 UTC",
                               stdin="gitaly-2 disk was full; DBA unaware.")

    assert code == cli.EXIT_OK, err
    comments = sandbox.zendesk.comments(ticket_id)[1:]
    assert [(c["public"], c["author_id"]) for c in comments] == [
        (True, account.agent_id), (False, account.agent_id)]
    public, internal = comments
    assert public["body"].count("Summary of our call:") == 1  # the macro's text
    assert "Rolled back" in public["body"] and "17:00 UTC" in public["body"]
    assert "DBA unaware" in internal["body"] and "DBA unaware" not in public["body"]


def test_dry_run_sends_no_write_at_all(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    sandbox.clear_requests()

    for command in (["ack"], ["not-emergency", "--reason", "x"],
                    ["brief", "--planned", "Upgrade", "--when", "2026-01-06T02:00:00Z"]):
        code, out, _ = emergency(sandbox, clock, "--config", config, command[0],
                                 str(ticket_id), *command[1:], "--dry-run")
        assert code == cli.EXIT_OK and "dry run: nothing was sent" in out

    assert {r.method for r in sandbox.requests} == {"GET"}
    assert len(sandbox.zendesk.comments(ticket_id)) == 1


def test_manual_ack_then_the_worker_never_acknowledges_again(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)

    code, _, _ = emergency(sandbox, clock, "--config", config, "ack", str(ticket_id), "--yes",
                           "--as", account.agent_email)
    assert code == cli.EXIT_OK
    emergency(sandbox, clock, "--config", config, "tick")
    code, _, err = emergency(sandbox, clock, "--config", config, "ack", str(ticket_id),
                             "--yes")

    assert code == cli.EXIT_REFUSED and "already has contact: Francesca Rossi" in err
    assert len(sandbox.zendesk.public_comments(ticket_id)) == 2


def test_refusals_on_the_sandbox(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock) -> None:
    solved = urgent(sandbox, account)
    sandbox.zendesk.solve(solved)
    normal = sandbox.zendesk.create_ticket(account.requester_id, "Question", "How do I?",
                                           priority="normal")

    assert emergency(sandbox, clock, "--config", config, "ack", "99999", "--yes")[0] == \
        cli.EXIT_NOT_FOUND
    assert emergency(sandbox, clock, "--config", config, "close", str(solved), "--yes")[0] == \
        cli.EXIT_REFUSED
    assert emergency(sandbox, clock, "--config", config, "ack", str(normal), "--yes")[0] == \
        cli.EXIT_REFUSED
    assert {r.method for r in sandbox.requests if r.path.startswith("/api/v2/tickets")} == \
        {"GET"}


def test_brief_shows_up_linked_on_the_organizations_next_emergency(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock) -> None:
    planning = sandbox.zendesk.create_ticket(account.requester_id, "Upgrade planning",
                                             "Heads-up", priority="normal",
                                             organization_id=account.organization_id)
    code, _, err = emergency(sandbox, clock, "--config", config, "brief", str(planning),
                             "--planned", "Upgrade to 17.2", "--when", "2026-01-06T02:00:00Z",
                             "--problems", "Long migrations", "--yes",
                             "--as", "giulia.verdi@example.com")
    assert code == cli.EXIT_OK, err
    ticket_id = urgent(sandbox, account)

    emergency(sandbox, clock, "--config", config, "tick")

    link, ack = sandbox.zendesk.comments(ticket_id)[1:]
    assert link["public"] is False and "Upgrade to 17.2" in link["body"]
    assert f"/agent/tickets/{planning}" in link["body"] and "Giulia Verdi" in link["body"]
    assert ack["public"] is True


def test_a_macro_with_an_internal_comment_never_starts_public_notes(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock,
        tmp_path: Path) -> None:
    sandbox.zendesk.add_macro("Support::Self-Managed::Post Customer Call",
                              "Internal checklist: verify the customer's licence", public=False)
    ticket_id = urgent(sandbox, account)
    notes = tmp_path / "notes.md"
    notes.write_text("All good.")

    code, _, err = emergency(sandbox, clock, "--config", config, "post-call", str(ticket_id),
                             "--notes", str(notes), "--yes")

    assert code == cli.EXIT_CONFIG and "adds an internal comment" in err
    assert len(sandbox.zendesk.comments(ticket_id)) == 1


def test_a_brief_filed_from_another_machine_is_found_on_zendesk(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    def config_with_state(name: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "config.toml"
        path.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                        '[workflow]\nbridge_url = "https://bridge.example.com/x"\n')
        return str(path)

    ase_laptop, worker_server = config_with_state("laptop"), config_with_state("server")
    planning = sandbox.zendesk.create_ticket(account.requester_id, "Upgrade planning",
                                             "Heads-up", priority="normal",
                                             organization_id=account.organization_id)
    code, _, err = emergency(sandbox, clock, "--config", ase_laptop, "brief", str(planning),
                             "--planned", "Geo failover test", "--when",
                             "2026-01-05T07:30:00-01:00", "--yes",
                             "--as", "giulia.verdi@example.com")
    assert code == cli.EXIT_OK, err
    ticket_id = urgent(sandbox, account)

    emergency(sandbox, clock, "--config", worker_server, "tick")

    link = sandbox.zendesk.comments(ticket_id)[1]
    assert link["public"] is False and "Geo failover test" in link["body"]
    assert "(2026-01-05 08:30 UTC)" in link["body"] and "Giulia Verdi" in link["body"]
    code, out, _ = emergency(sandbox, clock, "--config", worker_server, "briefs", "--org",
                             "Acme")
    assert "Geo failover test" in out


def test_follow_up_and_close_by_hand_on_the_sandbox(
        sandbox: Sandbox, account: Account, config: str, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    emergency(sandbox, clock, "--config", config, "ack", str(ticket_id), "--yes")

    follow = emergency(sandbox, clock, "--config", config, "follow-up", str(ticket_id), "--yes")
    close = emergency(sandbox, clock, "--config", config, "close", str(ticket_id), "--yes")
    emergency(sandbox, clock, "--config", config, "tick")

    assert follow[0] == close[0] == cli.EXIT_OK
    public = sandbox.zendesk.public_comments(ticket_id)[1:]
    assert len(public) == 3 and "other arrangements" in public[1]["body"]
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "high"
