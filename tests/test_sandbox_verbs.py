"""`emergency sandbox ticket|reply|ack|advance`: a person trying the worker by hand plays the
customer, the engineer and time against `emergency sandbox serve`, without curl."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from automation import cli
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox, sandbox_environ
from automation.sandbox.config_file import STATE_FILE, write_config_file
from automation.store import Store
from tests.test_cli import emergency

START = datetime(2026, 1, 5, tzinfo=UTC)


def config_for(sandbox: Sandbox, account: Account, tmp_path: Path) -> str:
    return str(write_config_file(tmp_path / "sandbox.toml", sandbox, account))


def verb(config: str, *argv: str, clock: FakeClock, sandbox: Sandbox) -> tuple[int, str, str]:
    return emergency("--config", config, *argv, clock=clock, environ=sandbox_environ(sandbox))


def test_the_readme_walk_through_plays_a_whole_emergency(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    config = config_for(sandbox, account, tmp_path)

    code, out, err = verb(config, "sandbox", "ticket", "--org", "Globex",
                          clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_OK, err
    ticket_id = int(out.split()[0].lstrip("#"))
    ticket = sandbox.zendesk.ticket(ticket_id)
    requester = sandbox.zendesk.user(ticket["requester_id"])
    assert ticket["priority"] == "urgent" and requester["role"] == "end-user"
    assert sandbox.zendesk.organization(ticket["organization_id"])["name"] == "Globex"
    assert f"#{ticket_id} urgent ticket from Globex IT team (Globex) at 2026-01-05 09:00:00" \
        in out

    clock.advance(timedelta(minutes=3))  # past trigger_after_minutes: the worker pages
    assert verb(config, "tick", clock=clock, sandbox=sandbox)[0] == cli.EXIT_OK
    code, out, err = verb(config, "sandbox", "ack", str(ticket_id), clock=clock,
                          sandbox=sandbox)
    assert code == cli.EXIT_OK, err
    assert "acknowledged by Francesca Rossi at 2026-01-05 09:03:" in out
    verb(config, "tick", clock=clock, sandbox=sandbox)
    [ack] = [c for c in sandbox.zendesk.public_comments(ticket_id)
             if c["author_id"] == account.agent_id]  # posted as the engineer who took it

    was = clock.now()
    code, out, _ = verb(config, "sandbox", "advance", "16m", clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_OK and clock.now() == was + timedelta(minutes=16)
    assert out == f"sandbox clock: {clock.now():%Y-%m-%d %H:%M:%S} UTC\n"
    verb(config, "tick", clock=clock, sandbox=sandbox)
    assert len(sandbox.zendesk.public_comments(ticket_id)) == 3  # the customer's, ack, follow-up

    code, out, _ = verb(config, "sandbox", "reply", str(ticket_id), "--body", "On the bridge",
                        clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_OK and f"#{ticket_id} Globex IT team answered" in out
    assert sandbox.zendesk.public_comments(ticket_id)[-1]["body"] == "On the bridge"
    verb(config, "sandbox", "advance", "20m", clock=clock, sandbox=sandbox)
    verb(config, "tick", clock=clock, sandbox=sandbox)
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"  # every timer stopped


def test_a_second_ticket_for_an_organization_comes_from_the_same_customer(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    config = config_for(sandbox, account, tmp_path)
    for _ in range(2):
        verb(config, "sandbox", "ticket", "--org", "Globex", clock=clock, sandbox=sandbox)
    code, _, _ = verb(config, "sandbox", "ticket", "--subject", "Geo is down",
                      clock=clock, sandbox=sandbox)

    assert code == cli.EXIT_OK
    tickets = sandbox.zendesk.tickets()[-3:]
    assert tickets[0]["requester_id"] == tickets[1]["requester_id"] != account.requester_id
    assert tickets[2]["requester_id"] == account.requester_id  # Acme Corp by default
    assert tickets[2]["subject"] == "Geo is down"


def test_ack_names_the_engineer_or_says_why_it_cannot(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    config = config_for(sandbox, account, tmp_path)
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Down", "Help",
                                              organization_id=account.organization_id)

    code, _, err = verb(config, "sandbox", "ack", str(ticket_id), clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_NOT_FOUND and "has no page yet" in err and err.count("\n") == 1

    clock.advance(timedelta(minutes=3))
    verb(config, "tick", clock=clock, sandbox=sandbox)
    code, out, _ = verb(config, "sandbox", "ack", str(ticket_id), "--engineer",
                        account.second_agent_email, clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_OK and "acknowledged by Ravi Patel" in out
    [incident] = sandbox.pagerduty.incidents()
    assert incident["status"] == "acknowledged"
    sandbox.pagerduty.resolve(incident["id"], account.pd_ravi_id)

    code, _, err = verb(config, "sandbox", "ack", str(ticket_id), clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_REFUSED and "already resolved" in err
    code, _, err = verb(config, "sandbox", "ack", "999", clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_NOT_FOUND and "no ticket #999" in err


def test_bad_input_is_one_line_and_changes_nothing(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    config = config_for(sandbox, account, tmp_path)
    before = clock.now()

    for argv in (["advance", "0"], ["advance", "soon"], ["reply", "x"]):
        code, _, err = verb(config, "sandbox", *argv, clock=clock, sandbox=sandbox)
        assert code == cli.EXIT_CONFIG and err.count("\n") == 1, argv
    assert clock.now() == before


def test_verbs_never_talk_to_a_real_zendesk(tmp_path: Path, clock: FakeClock) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[zendesk]\nurl = "https://acme.zendesk.com"\nemail = "a@example.com"\n'
                      '[workflow]\nbridge_url = "https://bridge.example.com/x"\n')

    code, _, err = emergency("--config", str(config), "sandbox", "ticket", clock=clock)

    assert code == cli.EXIT_CONFIG and "is not the sandbox" in err


def test_no_sandbox_running_is_one_line_naming_how_to_start_one(
        tmp_path: Path, clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'[zendesk]\nurl = "http://127.0.0.1:{port}"\nemail = "a@example.com"\n'
                      '[workflow]\nbridge_url = "https://bridge.example.com/x"\n')

    code, _, err = emergency("--config", str(config), "sandbox", "advance", "5m", clock=clock)

    assert code == cli.EXIT_UNREACHABLE and "emergency sandbox serve" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_new_sandbox_starts_its_state_file_afresh(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # Given the state file of an earlier sandbox in the folder, its ticket #1 with a thread
    config = config_for(sandbox, account, tmp_path)
    earlier = Store(tmp_path / STATE_FILE)
    earlier.keep("user", 1, {"id": 1, "name": "someone of the earlier sandbox"}, START)
    earlier.close()

    # When the next sandbox writes its config there
    config_for(sandbox, account, tmp_path)

    # Then its worker starts from an empty state file, beside that config
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("sandbox-state")] == []
    code, out, err = verb(config, "status", "--all", clock=clock, sandbox=sandbox)
    assert code == cli.EXIT_OK, err
    assert not Store(tmp_path / STATE_FILE).recall("user", [1], START)
