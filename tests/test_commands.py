"""Engineers' commands: previews that send nothing, one write each, and clear refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from automation import cli
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from automation.templates import REGISTRY, Visibility
from tests.conftest import TOKEN, emergency_ticket, ticket_puts
from tests.test_cli import write_config


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def emergency(*argv: str, clock: FakeClock | None = None, stdin: io.StringIO | None = None
              ) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(list(argv), out=out, err=err, environ={"ZENDESK_API_TOKEN": TOKEN},
                   clock=clock or FakeClock(), stdin=stdin or io.StringIO())
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def config(tmp_path: Path, sandbox: Sandbox) -> str:
    return str(write_config(tmp_path, sandbox.url))


def test_manual_ack_posts_once_and_a_second_ack_is_refused_with_when(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)

    code, out, _ = emergency("--config", config, "ack", "1", "--yes")
    assert code == cli.EXIT_OK and "#1 acknowledge: posted public" in out

    code, _, err = emergency("--config", config, "ack", "1", "--yes")
    assert code == cli.EXIT_REFUSED
    assert err.startswith("refused: ticket #1 already has contact: automation@example.com at ")
    assert len([c for c in sandbox.zendesk.public_comments(1)
                if c["author_id"] == account.admin_id]) == 1


def test_dry_run_sends_nothing_and_shows_the_exact_text(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    notes = Path(config).parent / "notes.md"
    notes.write_text("We rolled back the upgrade.")

    code, out, _ = emergency("--config", config, "post-call", "1", "--notes", str(notes),
                             "--dry-run")

    assert code == cli.EXIT_OK
    assert "PUBLIC reply (the customer sees this)" in out
    assert "We rolled back the upgrade." in out and "dry run: nothing was sent" in out
    assert [r for r in sandbox.requests if r.method != "GET"] == []


def test_post_call_posts_public_notes_then_internal_detail(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    sandbox.zendesk.add_comment(1, account.agent_id, "Calling you now")
    stdin = io.StringIO("Disk full on gitaly-2; customer's DBA is unaware of it.")

    code, out, _ = emergency("--config", config, "post-call", "1", "--notes",
                             str(write_notes(config)), "--internal", "-", "--yes",
                             "--until", "17:00 UTC", "--next", "Francesca",
                             "--as", "francesca@example.com", stdin=stdin)

    assert code == cli.EXIT_OK, out
    public, internal = [p["ticket"]["comment"] for p in ticket_puts(sandbox)]
    assert public["public"] is True and internal["public"] is False
    assert "Disk full" in internal["body"] and "Disk full" not in public["body"]
    assert "17:00 UTC" in public["body"] and "Francesca" in public["body"]
    assert public["author_id"] == account.agent_id == internal["author_id"]


def test_post_call_can_use_a_zendesk_macro_text(tmp_path: Path, sandbox: Sandbox,
                                                account: Account) -> None:
    config = write_config(tmp_path, sandbox.url,
                          extra='\n[macros]\npost_call = "Post Customer Call"\n')
    sandbox.zendesk.add_macro("Post Customer Call", "Summary of the call:")
    emergency_ticket(sandbox, account)
    notes = tmp_path / "n.txt"
    notes.write_text("All pushes work again.")

    code, _, _ = emergency("--config", str(config), "post-call", "1", "--notes", str(notes),
                           "--yes")

    assert code == cli.EXIT_OK
    [put] = ticket_puts(sandbox)
    assert "Summary of the call:" in put["ticket"]["comment"]["body"]
    assert put["ticket"]["comment"]["public"] is True


@pytest.mark.parametrize("command", [["ack"], ["follow-up"], ["close"],
                                     ["not-emergency", "--reason", "x"]])
def test_unknown_ticket_is_refused_with_exit_four(
        config: str, sandbox: Sandbox, account: Account, command: list[str]) -> None:
    code, _, err = emergency("--config", config, command[0], "404", *command[1:], "--yes")

    assert code == cli.EXIT_NOT_FOUND and err.count("\n") == 1
    assert ticket_puts(sandbox) == []


def test_solved_ticket_is_refused(config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account, status="solved")

    code, _, err = emergency("--config", config, "follow-up", "1", "--yes")

    assert code == cli.EXIT_REFUSED and "is solved" in err
    assert ticket_puts(sandbox) == []


def test_public_command_on_a_non_emergency_needs_force(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account, priority="normal")

    code, _, err = emergency("--config", config, "ack", "1", "--yes")
    assert code == cli.EXIT_REFUSED and "--force" in err

    code, _, _ = emergency("--config", config, "ack", "1", "--yes", "--force")
    assert code == cli.EXIT_OK and len(ticket_puts(sandbox)) == 1


def test_notes_and_internal_cannot_both_come_from_stdin(config: str) -> None:
    code, _, err = emergency("--config", config, "post-call", "1", "--notes", "-",
                             "--internal", "-", "--yes")

    assert code == cli.EXIT_CONFIG and "standard input" in err


def test_empty_notes_file_is_bad_input(config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    empty = Path(config).parent / "empty.md"
    empty.write_text("  \n")

    code, _, err = emergency("--config", config, "post-call", "1", "--notes", str(empty),
                             "--yes")

    assert code == cli.EXIT_CONFIG and "empty" in err
    assert ticket_puts(sandbox) == []


def test_missing_notes_file_is_a_usage_error(config: str) -> None:
    code, _, err = emergency("--config", config, "post-call", "1", "--notes", "nope.md")

    assert code == cli.EXIT_CONFIG and "no such file" in err


def test_without_yes_off_a_terminal_nothing_is_sent(config: str, sandbox: Sandbox,
                                                    account: Account) -> None:
    emergency_ticket(sandbox, account)

    code, _, err = emergency("--config", config, "ack", "1")

    assert code == cli.EXIT_CONFIG and "--yes" in err
    assert ticket_puts(sandbox) == []


def test_on_a_terminal_the_preview_asks_and_no_means_no(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)

    code, out, _ = emergency("--config", config, "ack", "1", stdin=Tty("n\n"))
    assert code == cli.EXIT_OK and "Send this? [y/N]" in out and "not sent" in out
    assert ticket_puts(sandbox) == []

    code, out, _ = emergency("--config", config, "ack", "1", stdin=Tty("y\n"))
    assert code == cli.EXIT_OK and len(ticket_puts(sandbox)) == 1


def test_not_emergency_is_internal_and_leaves_priority_alone(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)

    code, _, _ = emergency("--config", config, "not-emergency", "1", "--reason",
                           "Only a staging system is affected", "--yes")

    assert code == cli.EXIT_OK
    [put] = ticket_puts(sandbox)
    assert put["ticket"]["comment"]["public"] is False
    assert "priority" not in put["ticket"]
    assert sandbox.zendesk.ticket(1)["priority"] == "urgent"
    assert "Only a staging system is affected" in put["ticket"]["comment"]["body"]


def test_lost_answer_on_a_manual_write_is_confirmed_not_resent(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.apply_then_fail("PUT", "/api/v2/tickets/", status=503)

    code, out, _ = emergency("--config", config, "not-emergency", "1", "--reason", "x", "--yes")

    assert code == cli.EXIT_OK and "confirmed on re-read" in out
    assert len(ticket_puts(sandbox)) == 1


def test_brief_from_markdown_is_internal_and_findable_by_organization(
        config: str, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, priority="normal")
    brief = Path(config).parent / "brief.md"
    brief.write_text("## Planned\nUpgrade to 17.2\n## When\n2026-01-06T02:00:00+00:00\n"
                     "## Problems\nLong background migrations\n## Solutions\nRestore backup\n"
                     "## Architecture\n3 Gitaly nodes, Geo secondary\n")

    code, _, _ = emergency("--config", config, "brief", "1", "--file", str(brief), "--yes",
                           clock=clock)
    assert code == cli.EXIT_OK
    [put] = ticket_puts(sandbox)
    assert put["ticket"]["comment"]["public"] is False
    assert "Long background migrations" in put["ticket"]["comment"]["body"]

    code, out, _ = emergency("--config", config, "briefs", "--org", "acme", "--upcoming",
                             clock=clock)
    assert "Upgrade to 17.2" in out and "#1" in out


def test_brief_with_a_when_that_is_not_a_time_is_bad_input(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account, priority="normal")

    code, _, err = emergency("--config", config, "brief", "1", "--planned", "Upgrade",
                             "--when", "friday night", "--yes")

    assert code == cli.EXIT_CONFIG and "'when' must be a date and time" in err
    assert ticket_puts(sandbox) == []


def test_brief_is_linked_when_that_organization_raises_an_emergency(
        config: str, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, priority="normal")
    emergency("--config", config, "brief", "1", "--planned", "Upgrade to 17.2", "--when",
              "2026-01-06T02:00:00+00:00", "--yes", clock=clock)
    emergency_ticket(sandbox, account)  # the same organization, urgent

    code, _, _ = emergency("--config", config, "tick", clock=clock)

    assert code == cli.EXIT_OK
    link, ack = [p["ticket"] for p in ticket_puts(sandbox)[1:]]
    assert link["comment"]["public"] is False and "Upgrade to 17.2" in link["comment"]["body"]
    assert "/agent/tickets/1" in link["comment"]["body"]
    assert ack["comment"]["public"] is True
    emergency("--config", config, "tick", clock=clock)
    assert len(ticket_puts(sandbox)) == 3


def test_no_internal_text_can_reach_a_public_comment(
        config: str, sandbox: Sandbox, account: Account) -> None:
    secret = "INTERNAL-ONLY-7f3a"
    emergency_ticket(sandbox, account)
    sandbox.zendesk.add_comment(1, account.agent_id, "On it")
    stdin = io.StringIO(secret)

    emergency("--config", config, "post-call", "1", "--notes", str(write_notes(config)),
              "--internal", "-", "--yes", stdin=stdin)
    emergency("--config", config, "not-emergency", "1", "--reason", secret, "--yes")
    emergency("--config", config, "brief", "1", "--planned", secret, "--when",
              "2026-01-06T02:00:00Z", "--yes")

    internal_templates = {n for n, v in REGISTRY.items() if v is Visibility.INTERNAL}
    assert internal_templates >= {"post_call_internal", "not_emergency", "brief"}
    for put in ticket_puts(sandbox):
        comment = put["ticket"]["comment"]
        assert (secret in comment["body"]) == (comment["public"] is False)
    assert all(secret not in c["body"] for c in sandbox.zendesk.public_comments(1))
    authors = [c["author_id"] for c in sandbox.zendesk.public_comments(1)]
    assert authors[:1] == [account.requester_id]


def write_notes(config: str) -> Path:
    path = Path(config).parent / "public-notes.md"
    path.write_text("Pushes work again after the rollback.")
    return path


def test_template_error_in_a_command_names_template_and_line_and_sends_nothing(
        tmp_path: Path, sandbox: Sandbox, account: Account) -> None:
    overrides = tmp_path / "mine"
    overrides.mkdir()
    (overrides / "post_call.j2").write_text("Hello\n{{ notes }}\n{{ misspelled_variable }}\n")
    config = write_config(tmp_path, sandbox.url, extra='\n[templates]\npath = "mine"\n')
    emergency_ticket(sandbox, account)

    code, _, err = emergency("--config", str(config), "post-call", "1", "--notes",
                             str(write_notes(str(config))), "--yes")

    assert code == cli.EXIT_CONFIG
    assert "post_call.j2 line 3" in err and "misspelled_variable" in err
    assert err.count("\n") == 1
    assert ticket_puts(sandbox) == []


def test_brief_written_in_the_editor(config: str, sandbox: Sandbox, account: Account,
                                     tmp_path: Path) -> None:
    import sys

    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\n"
        "open(sys.argv[1], 'w').write('## Planned\\nGeo failover\\n## When\\n"
        "2026-01-06T02:00:00+00:00\\n## Problems\\nReplication lag\\n')\n")
    emergency_ticket(sandbox, account, priority="normal")
    out, err = io.StringIO(), io.StringIO()

    code = cli.run(["--config", config, "brief", "1", "--edit", "--yes"], out=out, err=err,
                   environ={"ZENDESK_API_TOKEN": TOKEN, "EDITOR": f"{sys.executable} {editor}"},
                   clock=FakeClock(), stdin=io.StringIO())

    assert code == cli.EXIT_OK, err.getvalue()
    [put] = ticket_puts(sandbox)
    assert "Geo failover" in put["ticket"]["comment"]["body"]
    assert "Replication lag" in put["ticket"]["comment"]["body"]
    assert put["ticket"]["comment"]["public"] is False


def test_manual_ack_as_an_engineer_offers_their_bridge_and_signs_once(
        tmp_path: Path, sandbox: Sandbox, account: Account) -> None:
    config = write_config(tmp_path, sandbox.url)
    config.write_text(config.read_text().replace(
        "[state]",
        'bridges = { "francesca@example.com" = "https://zoom.example.com/j/fr" }\n\n[state]'))
    emergency_ticket(sandbox, account)

    _, as_her, _ = emergency("--config", str(config), "ack", "1", "--as", "francesca@example.com",
                             "--dry-run")
    _, as_team, _ = emergency("--config", str(config), "ack", "1", "--dry-run")

    assert "https://zoom.example.com/j/fr" in as_her and "Francesca Rossi" in as_her
    assert as_team.count("The Support Team") == 1


def test_a_half_sent_post_call_says_so_and_a_re_run_sends_only_the_rest(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    notes = str(write_notes(config))

    # The public notes go through; the internal ones, the second update, are refused.
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422, after=1)

    code, out, err = emergency("--config", config, "post-call", "1", "--notes", notes,
                               "--internal", "-", "--yes", stdin=io.StringIO("gitaly-2 disk"))

    assert code == cli.EXIT_STEP_FAILED
    assert "post-call posted on ticket #1, but post-call-internal was not" in err
    assert err.count("\n") == 1

    code, out, _ = emergency("--config", config, "post-call", "1", "--notes", notes,
                             "--internal", "-", "--yes", stdin=io.StringIO("gitaly-2 disk"))

    assert code == cli.EXIT_OK
    assert "#1 post-call: already on the ticket, skipped" in out
    comments = [c for c in sandbox.zendesk.comments(1) if c["author_id"] == account.admin_id]
    assert [c["public"] for c in comments] == [True, False]


def test_a_public_template_cannot_read_the_internal_notes(
        tmp_path: Path, sandbox: Sandbox, account: Account) -> None:
    overrides = tmp_path / "mine"
    overrides.mkdir()
    (overrides / "post_call.j2").write_text("{{ notes }}\n{{ internal_notes }}\n")
    config = write_config(tmp_path, sandbox.url, extra='\n[templates]\npath = "mine"\n')
    emergency_ticket(sandbox, account)

    code, _, err = emergency("--config", str(config), "post-call", "1", "--notes",
                             str(write_notes(str(config))), "--internal", "-", "--yes",
                             stdin=io.StringIO("SECRET-INTERNAL"))

    assert code == cli.EXIT_CONFIG and "internal_notes" in err
    assert ticket_puts(sandbox) == []


def test_markdown_brief_tolerates_a_title_and_the_templates_own_labels() -> None:
    from automation.commands import parse_brief_file

    text = ("# Brief for Acme\n\n## What is planned\nUpgrade to 17.2\n## When\n"
            "2026-01-06T02:00:00+00:00\n## Possible problems\n#1 risk: long migrations\n"
            "## Suggested solutions\nRestore\n## Architecture notes\nGeo\n")

    fields = parse_brief_file(text, "-")

    assert fields == {"planned": "Upgrade to 17.2", "when": "2026-01-06T02:00:00+00:00",
                      "problems": "#1 risk: long migrations", "solutions": "Restore",
                      "architecture": "Geo"}


def test_toml_brief_on_standard_input_is_read_as_toml() -> None:
    from automation.commands import parse_brief_file

    fields = parse_brief_file('planned = "Upgrade"\nwhen = 2026-01-06T02:00:00Z\n', "-")

    assert fields["planned"] == "Upgrade" and fields["when"].startswith("2026-01-06")


@pytest.mark.parametrize(("text", "name", "expected"), [
    ("Some notes\n## Planned\nx\n", "-", "text before the first section"),
    ("## Weather\nsunny\n", "b.md", "unknown section"),
    ('planned = "x"\n[architecture]\na = 1\n', "b.toml", "must be text"),
    ('planned = "x"\nweather = "sunny"\n', "b.toml", "unknown key 'weather'"),
])
def test_unusable_brief_files_are_named(text: str, name: str, expected: str) -> None:
    from automation.commands import parse_brief_file
    from automation.errors import InputError

    with pytest.raises(InputError, match=expected):
        parse_brief_file(text, name)


def test_follow_up_and_close_by_hand_each_write_once_with_their_marker(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    sandbox.zendesk.add_comment(1, account.agent_id, "Calling you now")

    follow = emergency("--config", config, "follow-up", "1", "--yes")
    close = emergency("--config", config, "close", "1", "--yes")
    again = emergency("--config", config, "close", "1", "--yes")

    assert follow[0] == close[0] == cli.EXIT_OK
    assert again[0] == cli.EXIT_REFUSED and "already" in again[2]
    follow_put, close_put = (p["ticket"] for p in ticket_puts(sandbox))
    assert "emergency_followed_up" in follow_put["tags"] and "priority" not in follow_put
    assert "emergency_closed_to_high" in close_put["tags"] and close_put["priority"] == "high"
    assert sandbox.zendesk.ticket(1)["priority"] == "high"


def test_follow_up_by_hand_before_any_contact_is_refused(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)

    code, _, err = emergency("--config", config, "follow-up", "1", "--yes")

    assert code == cli.EXIT_REFUSED and "has no contact yet" in err
    assert ticket_puts(sandbox) == []


def test_a_re_run_whose_hand_off_text_changed_still_sends_the_notes_only_once(
        config: str, sandbox: Sandbox, account: Account) -> None:
    emergency_ticket(sandbox, account)
    notes = str(write_notes(config))

    first = emergency("--config", config, "post-call", "1", "--notes", notes, "--yes",
                      "--until", "17:00 UTC")
    second = emergency("--config", config, "post-call", "1", "--notes", notes, "--yes",
                       "--next", "Chris")  # the hand-off moved on between the two runs

    assert first[0] == cli.EXIT_OK
    assert second[0] == cli.EXIT_REFUSED and "nothing was sent" in second[2]
    assert len([c for c in sandbox.zendesk.public_comments(1)
                if c["author_id"] == account.admin_id]) == 1
