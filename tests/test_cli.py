"""The command line as an operator meets it: exit codes, one-line errors, status and timeline."""

from __future__ import annotations

import argparse
import io
import json
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest

from automation import cli
from automation.cli.parser import build_parser
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from automation.sandbox.server import DEFAULT_EMAIL
from tests.conftest import BRIDGE, TOKEN, emergency_ticket

OFFLINE = "https://acme.zendesk.com"  # for commands that never reach Zendesk


def write_config(tmp_path: Path, url: str = OFFLINE, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[zendesk]\nurl = "{url}"\nemail = "{DEFAULT_EMAIL}"\nmax_retry_seconds = 5\n\n'
        f'[workflow]\nbridge_url = "{BRIDGE}"\n\n[state]\npath = "state.sqlite3"\n{extra}'
    )
    return path


def emergency(*argv: str, clock: FakeClock | None = None,
              environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"ZENDESK_API_TOKEN": TOKEN} if environ is None else environ
    code = cli.run(list(argv), out=out, err=err, environ=env, clock=clock or FakeClock())
    return code, out.getvalue(), err.getvalue()


def test_tick_posts_due_steps_and_exits_zero(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    config = write_config(tmp_path, sandbox.url)

    code, out, _ = emergency("--config", str(config), "tick", clock=clock)

    assert code == cli.EXIT_OK
    assert "#1 acknowledge: posted" in out
    assert "1 emergency listed, 1 read, 1 posted, 0 failed" in out


def test_tick_exits_one_when_a_step_failed(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422)

    code, out, _ = emergency("--config", str(write_config(tmp_path, sandbox.url)), "tick",
                             clock=clock)

    assert code == cli.EXIT_STEP_FAILED
    assert "#1 acknowledge: FAILED" in out


def test_wrong_token_exits_three_with_one_line_and_no_secret(
        tmp_path: Path, sandbox: Sandbox, clock: FakeClock) -> None:
    wrong = "s3cr3t-but-wrong-zendesk-token-1234"

    code, out, err = emergency("--config", str(write_config(tmp_path, sandbox.url)), "tick",
                               clock=clock, environ={"ZENDESK_API_TOKEN": wrong})

    assert code == cli.EXIT_UNREACHABLE
    assert err.count("\n") == 1 and err.startswith("error: Zendesk GET /api/v2/search.json")
    assert "HTTP 401" in err
    assert wrong not in out + err and "Traceback" not in err


def test_unreachable_zendesk_exits_three_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, url=f"http://127.0.0.1:{port}")
    config.write_text(config.read_text().replace("max_retry_seconds = 5\n", ""))  # default
    clock = FakeClock()
    started = clock.now()

    code, out, err = emergency("--config", str(config), "tick", clock=clock)

    # reported within 10 s, each retry said as it happens, then one line saying why
    assert code == cli.EXIT_UNREACHABLE
    *retries, last = err.splitlines()
    assert retries and all("WARNING Zendesk GET" in r and "retrying" in r for r in retries)
    assert last.startswith("error: ") and "connection failed" in last
    assert clock.now() - started <= timedelta(seconds=10)
    assert TOKEN not in out + err


def test_missing_token_is_a_configuration_error(tmp_path: Path) -> None:
    code, _, err = emergency("--config", str(write_config(tmp_path)), "tick", environ={})

    assert code == cli.EXIT_CONFIG
    assert err == "error: ZENDESK_API_TOKEN is not set: export the API token of the " \
                  "[zendesk] email user\n"


def test_bad_config_names_file_key_and_expectation(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('bridge_url = "', 'bridge_url = "ftp://'))

    code, _, err = emergency("--config", str(config), "tick")

    assert code == cli.EXIT_CONFIG
    assert str(config) in err and "[workflow]" in err
    assert err.count("\n") == 1


def test_config_from_environment_variable(tmp_path: Path, sandbox: Sandbox) -> None:
    config = write_config(tmp_path, sandbox.url)

    code, out, _ = emergency("status", environ={"EMERGENCY_CONFIG": str(config)})

    assert code == cli.EXIT_OK
    assert "no emergencies tracked" in out


@pytest.mark.parametrize("bad", ["abc", "0", "-4", "12a"])
def test_bad_ticket_number_is_refused(tmp_path: Path, bad: str) -> None:
    code, _, err = emergency("--config", str(write_config(tmp_path)), "timeline", bad)

    assert code == cli.EXIT_CONFIG
    assert "expected a ticket number like 12345" in err


def test_unknown_ticket_exits_four(tmp_path: Path, sandbox: Sandbox) -> None:
    code, _, err = emergency("--config", str(write_config(tmp_path, sandbox.url)), "timeline",
                             "999")

    assert code == cli.EXIT_NOT_FOUND
    assert "HTTP 404" in err and err.count("\n") == 1


def test_status_json_and_timeline_follow_a_whole_lifecycle(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    config = str(write_config(tmp_path, sandbox.url))
    emergency_ticket(sandbox, account, subject="Gitaly timeouts on every push")
    emergency_ticket(sandbox, account, subject="Database failover loop")
    sandbox.zendesk.add_comment(2, account.agent_id, "On it, calling you now.")
    clock.advance(timedelta(minutes=1))  # settled: the acknowledgement is stamped at the tick
    emergency("--config", config, "tick", clock=clock)

    _, out, _ = emergency("--config", config, "status", "--json", clock=clock)
    rows = {row["ticket_id"]: row for row in json.loads(out)}
    assert rows[1]["state"] == "awaiting-customer" and rows[1]["next_step"] == "follow-up"
    assert rows[1]["due_at"] == (clock.now() + timedelta(minutes=15)).isoformat()
    assert rows[2]["state"] == "awaiting-customer"

    for _ in range(2):
        clock.advance(timedelta(minutes=15))
        emergency("--config", config, "tick", clock=clock)

    _, out, _ = emergency("--config", config, "status", "--json", "--all", clock=clock)
    rows = {row["ticket_id"]: row for row in json.loads(out)}
    assert rows[1]["state"] == "closed-to-high" and rows[1]["next_step"] is None
    assert set(rows[1]) >= {"ticket_id", "state", "next_step", "due_at"}

    code, out, _ = emergency("--config", config, "timeline", "1", clock=clock)
    assert code == cli.EXIT_OK
    steps = [line for line in out.splitlines() if "journal" in line and "posted" in line]
    assert [s.split()[4] for s in steps] == ["acknowledge", "follow-up", "close"]
    comment_lines = [line for line in out.splitlines() if "zendesk" in line]
    assert len(comment_lines) == 4  # the description and three public steps
    times = [line[:19] for line in out.splitlines()[1:]]
    assert times == sorted(times)


def test_check_renders_every_template_offline(tmp_path: Path) -> None:
    code, out, _ = emergency("--config", str(write_config(tmp_path)), "check")

    assert code == cli.EXIT_OK
    assert "template follow_up (public): ok" in out
    assert "template not_emergency (internal): ok" in out


def test_check_names_a_broken_template_and_its_line(tmp_path: Path) -> None:
    overrides = tmp_path / "my-templates"
    overrides.mkdir()
    (overrides / "follow_up.j2").write_text("Hello {{ requester.name }}\n{{ no_such_thing }}\n")
    config = write_config(tmp_path, extra='\n[templates]\npath = "my-templates"\n')

    code, out, _ = emergency("--config", str(config), "check")

    assert code == cli.EXIT_CONFIG
    assert "follow_up.j2 line 2" in out and "no_such_thing" in out


def with_override(tmp_path: Path, name: str, source: str, url: str = OFFLINE) -> Path:
    overrides = tmp_path / "my-templates"
    overrides.mkdir(exist_ok=True)
    (overrides / f"{name}.j2").write_text(source, encoding="utf-8")
    return write_config(tmp_path, url, extra='\n[templates]\npath = "my-templates"\n')


# Each line fails for one kind of ticket only: the sample that renders fine is not enough.
ONE_SHAPE_FAILS = [
    ("acknowledgement", "Hello, {{ organization.name }} team.\n{{ bridge_url }}",
     "without an organization"),
    ("follow_up", "Since {{ contact_at.strftime('%H:%M') }}: {{ bridge_url }}", None),
    ("acknowledgement", "Hours: {{ coverage_hours }}", "a typical emergency"),
    ("brief_link", "Read {{ briefs[0].url }} first", "without an organization"),
    ("post_call", "{{ notes }} Next: {{ next_engineer.upper() }}", "every optional input"),
    ("acknowledgement", "Hi {{ requester.email.split('@')[1] }}", "could not find"),
]


@pytest.mark.parametrize(("name", "source", "shape"), ONE_SHAPE_FAILS)
def test_tick_refuses_a_template_that_fails_for_one_kind_of_ticket_before_any_pass(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock,
        name: str, source: str, shape: str | None) -> None:
    emergency_ticket(sandbox, account)
    config = with_override(tmp_path, name, source, sandbox.url)
    sandbox.clear_requests()

    code, out, err = emergency("--config", str(config), "tick", clock=clock)

    assert code == cli.EXIT_CONFIG
    assert f"template {name}.j2 line 1" in err and "Traceback" not in err
    assert shape is None or shape in err
    assert sandbox.requests == []  # refused before any pass: nothing read, nothing sent
    code, out, _ = emergency("--config", str(config), "check")
    assert code == cli.EXIT_CONFIG and f"{name}.j2 line 1" in out


def test_shipped_templates_render_for_every_kind_of_ticket(tmp_path: Path) -> None:
    from automation.config import load
    from automation.shapes import contexts, shapes, validate
    from automation.templates import REGISTRY, Templates

    cfg = load(write_config(tmp_path))

    validate(Templates(), cfg)  # raises on the first failure

    for shape in shapes():
        assert {name for name, _ in contexts(shape, cfg)} == set(REGISTRY)


@pytest.mark.parametrize("interval", ["0", "-5", "inf", "1e20", "nan", "soon", "3601"])
def test_run_interval_out_of_range_is_one_line_exit_two(tmp_path: Path, interval: str) -> None:
    code, _, err = emergency("--config", str(write_config(tmp_path)), "run", "--interval",
                             interval)

    assert code == cli.EXIT_CONFIG
    assert "--interval" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_service_down_is_reported_once_for_the_pass_not_as_a_ticket(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    closed.close()
    config = write_config(tmp_path, sandbox.url, extra=(
        f'\n[pagerduty]\nurl = "https://127.0.0.1:{port}"\nfrom_email = "{DEFAULT_EMAIL}"\n'
        f'service_id = "{account.pd_service_id}"\n'
        f'escalation_policy_id = "{account.pd_policy_id}"\n'))
    environ = {"ZENDESK_API_TOKEN": TOKEN, "PAGERDUTY_API_TOKEN": "pd-token"}

    code, out, err = emergency("--config", str(config), "tick", clock=clock, environ=environ)

    assert code == cli.EXIT_STEP_FAILED
    assert out.count("pagerduty: FAILED") == 1 and "#0" not in out and "ticket 0" not in err


def test_tick_with_a_state_file_that_cannot_be_written_posts_and_says_so(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    config = write_config(tmp_path, sandbox.url)
    (tmp_path / "state.sqlite3").mkdir()  # the state path is a folder: no database there

    code, out, err = emergency("--config", str(config), "tick", clock=clock)

    assert code == cli.EXIT_STEP_FAILED
    assert "#1 acknowledge: posted" in out
    assert "state: FAILED: state file" in out and "journalling in memory" in out
    assert "Traceback" not in err


def test_options_given_after_the_command_work_as_before_it(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))

    before = emergency("--config", config, "check")
    after = emergency("check", "--config", config)

    assert before == after and before[0] == cli.EXIT_OK


def every_command(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser by its command line (`tick`, `sandbox serve`, ...)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {verb}": p for verb, p in every_command(sub).items()})
    return found


def test_every_command_takes_the_global_options_after_it_too() -> None:
    commands = every_command(build_parser())

    assert {"tick", "run", "page", "oncall", "sandbox serve"} <= set(commands)
    for name, command in commands.items():
        options = {o for action in command._actions for o in action.option_strings}
        assert {"--config", "-v", "--log-format"} <= options, name


# One command line for every command, each with its flags and arguments.
EVERY_COMMAND_LINE = [
    ["tick"], ["--config", "a.toml", "-v", "tick"], ["run", "--interval", "30"],
    ["serve", "--listen", "127.0.0.1:9000", "--sandbox"], ["status", "--json", "--all"],
    ["--log-format", "json", "timeline", "5", "--config", "b.toml"], ["check", "--online"],
    ["report", "--since", "2w", "--json"], ["init", "x.toml"], ["demo", "--speed", "60"],
    ["sandbox", "serve", "--port", "0"], ["sandbox", "reply", "3", "--body", "hi"],
    ["ack", "7", "--dry-run"], ["follow-up", "7", "-y"], ["close", "7", "--force"],
    ["post-call", "7", "--notes", "-", "--next", "a@example.com"],
    ["brief", "7", "--planned", "upgrade", "--when", "tonight"], ["briefs", "--org", "Acme"],
    ["escalate", "7", "--reason", "stuck"], ["runbook-issue", "7", "--dry-run"],
    ["not-emergency", "7", "--reason", "a question"], ["page", "7", "--engineer", "a@b.co"],
    ["oncall", "--federal"],
]
WRONG_COMMAND_LINES = [
    ["tick", "--bogus"], ["timeline", "x"], ["nope"], [], ["--log-format", "xml", "tick"],
    ["--config"], ["page"], ["report", "--since", "yesterday"], ["sandbox", "fly"],
]


def test_the_parser_and_the_handlers_name_the_same_commands() -> None:
    from automation.cli import handlers, parser

    assert list(handlers.COMMANDS) == list(parser.COMMANDS)
    assert all(callable(handlers.handler_for(name)) for name in handlers.COMMANDS)
    assert {parser.command_named(line) for line in EVERY_COMMAND_LINE} == set(parser.COMMANDS)


@pytest.mark.parametrize("argv", EVERY_COMMAND_LINE, ids=" ".join)
def test_the_parser_built_for_one_command_reads_its_line_as_the_whole_parser_does(
        argv: list[str]) -> None:
    narrow = build_parser(argv)

    assert len(every_command(narrow)) < len(every_command(build_parser()))
    assert vars(narrow.parse_args(argv)) == vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", WRONG_COMMAND_LINES, ids=" ".join)
def test_a_wrong_line_gets_the_same_error_from_either_parser(argv: list[str]) -> None:
    from automation.cli.parser import UsageError

    with pytest.raises(UsageError) as narrow:
        build_parser(argv).parse_args(argv)
    with pytest.raises(UsageError) as whole:
        build_parser().parse_args(argv)

    assert str(narrow.value) == str(whole.value)


@pytest.mark.parametrize("argv", [["--help"], ["tick", "--help"], ["sandbox", "ack", "-h"]])
def test_help_is_the_same_from_either_parser(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args(argv)
    narrow = capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)

    assert narrow == capsys.readouterr().out and "usage: emergency" in narrow


@pytest.mark.parametrize(("argv", "log_format", "config"), [
    (["page", "7"], "text", None),
    (["--log-format", "json", "--config", "a.toml", "page", "7"], "json", "a.toml"),
    (["page", "7", "--log-format", "json", "--config", "a.toml"], "json", "a.toml"),
    (["--log-format", "json", "oncall", "--config", "a.toml"], "json", "a.toml"),
])
def test_a_global_option_before_the_command_is_kept_after_it(
        argv: list[str], log_format: str, config: str | None) -> None:
    args = build_parser().parse_args(argv)

    assert (args.log_format, args.config, args.verbose) == (log_format, config, False)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_sandbox_serve_with_an_impossible_port_is_one_line_exit_two(port: str) -> None:
    code, _, err = emergency("sandbox", "serve", "--port", port)

    assert code == cli.EXIT_CONFIG
    assert "--port" in err and "0 to 65535" in err and "Traceback" not in err


def test_a_token_in_the_config_file_is_refused_with_where_tokens_go(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="")
    config.write_text(config.read_text().replace(
        "max_retry_seconds = 5", 'max_retry_seconds = 5\napi_token = "zd-SECRET-123"'))

    code, _, err = emergency("--config", str(config), "check")

    assert code == cli.EXIT_CONFIG
    assert "api_token" in err and "ZENDESK_API_TOKEN environment variable" in err
    assert "zd-SECRET-123" not in err


def test_customer_text_cannot_drive_the_operators_terminal(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    evil = "Down \x1b[2J\x1b]0;owned\x07 \x9b31m"
    ticket_id = emergency_ticket(sandbox, account, subject=evil)
    config = str(write_config(tmp_path, sandbox.url))
    emergency("--config", config, "tick", clock=clock)

    for command in (["status"], ["timeline", str(ticket_id)]):
        code, out, _ = emergency("--config", config, *command, clock=clock)
        assert code == cli.EXIT_OK
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
        assert "Down \\x1b[2J" in out


def test_log_lines_say_their_time_in_utc(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422)

    _, _, err = emergency("--config", str(write_config(tmp_path, sandbox.url)), "tick",
                          clock=clock)

    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING ", err, re.MULTILINE), err


@pytest.mark.parametrize("section", ["default_channel", "rule"])
def test_a_slack_channel_given_by_name_is_refused_with_what_to_give(
        tmp_path: Path, section: str) -> None:
    slack = ('\n[slack]\ndefault_channel = "#emergencies"\n' if section == "default_channel"
             else '\n[slack]\ndefault_channel = "C0SELFMNGD"\n[[slack.channels]]\n'
                  'channel = "support-saas"\ntags = ["saas"]\n')
    config = write_config(tmp_path, extra=slack)

    code, _, err = emergency("--config", str(config), "check")

    assert code == cli.EXIT_CONFIG
    assert "a Slack channel id like C0123ABCD" in err and len(err.splitlines()) == 1


def test_a_refused_slack_token_is_noticed_with_nothing_to_post(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    config = write_config(tmp_path, sandbox.url, extra=(
        f'\n[slack]\nurl = "{sandbox.slack_url}"\n'
        f'default_channel = "{account.self_managed_channel}"\n'))
    environ = {"ZENDESK_API_TOKEN": TOKEN, "SLACK_BOT_TOKEN": "xoxb-revoked-SECRET"}

    code, out, err = emergency("--config", str(config), "tick", clock=clock, environ=environ)

    assert code == cli.EXIT_UNREACHABLE
    assert "0 emergencies listed" in out and "1 failed" in out
    assert "Slack" in err and "SECRET" not in out + err


def test_status_shows_a_step_taken_by_hand_at_once(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    ticket_id = emergency_ticket(sandbox, account)
    config = str(write_config(tmp_path, sandbox.url))
    emergency("--config", config, "tick", clock=clock)
    clock.advance(timedelta(minutes=2))
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "I am on the bridge")

    code, _, _ = emergency("--config", config, "close", str(ticket_id), "--yes", clock=clock)

    assert code == cli.EXIT_OK
    code, out, _ = emergency("--config", config, "status", "--json", clock=clock)
    [row] = json.loads(out)
    assert row["state"] == "closed-to-high" and row["next_step"] is None
    assert row["due_at"] is None


def test_brief_help_names_the_sections_as_the_readme_does(
        capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    code, _, _ = emergency("brief", "--help")
    out = capsys.readouterr().out  # argparse prints help itself

    assert code == cli.EXIT_OK
    for section in ("## Planned", "## When", "## Possible problems", "## Suggested solutions",
                    "## Architecture"):
        assert f"`{section}`" in readme and section in " ".join(out.split())


def test_run_refuses_a_template_that_fails_for_one_kind_of_ticket_before_its_first_pass(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    config = with_override(tmp_path, "acknowledgement", "{{ organization.name }}", sandbox.url)
    sandbox.clear_requests()

    code, _, err = emergency("--config", str(config), "run", clock=clock)

    assert code == cli.EXIT_CONFIG and "without an organization" in err
    assert sandbox.requests == []


def test_status_counts_down_on_zendesks_clock_not_this_machines(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    ticket_id = emergency_ticket(sandbox, account)
    config = str(write_config(tmp_path, sandbox.url))
    emergency("--config", config, "tick", clock=clock)
    clock.advance(timedelta(minutes=5))  # the follow-up is due 10 minutes from now
    machine = FakeClock(clock.now() - timedelta(hours=3))  # e.g. the sandbox runs faster

    code, out, _ = emergency("--config", config, "status", clock=machine)

    assert code == cli.EXIT_OK
    row = next(line for line in out.splitlines() if line.split()[0] == str(ticket_id))
    assert "follow-up" in row and "(in 10 min)" in row


def test_status_says_when_zendesk_does_not_answer_and_uses_this_machines_clock(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    config = str(write_config(tmp_path, sandbox.url))
    emergency("--config", config, "tick", clock=clock)
    sandbox.stop()

    code, out, err = emergency("--config", config, "status", clock=clock)

    assert code == cli.EXIT_OK
    assert "(in 15 min)" in out
    assert "did not answer" in err and "this machine's clock" in err


def test_init_writes_the_commented_starter_config_and_never_overwrites(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    example = Path(__file__).parents[1] / "automation" / "config.example.toml"

    code, out, _ = emergency("init", environ={})

    assert code == cli.EXIT_OK and out.startswith("wrote config.toml.")
    written = tmp_path / "config.toml"
    assert written.read_text(encoding="utf-8") == example.read_text(encoding="utf-8")
    written.write_text(written.read_text().replace("your-subdomain", "acme"))
    assert emergency("check", environ={})[0] == cli.EXIT_OK  # filled in, it is a valid config
    edited = written.read_text()

    code, _, err = emergency("init", environ={})
    assert code == cli.EXIT_CONFIG and "already exists" in err and err.count("\n") == 1
    assert written.read_text() == edited

    code, _, _ = emergency("init", environ={"EMERGENCY_CONFIG": "etc.toml"})
    assert code == cli.EXIT_OK and (tmp_path / "etc.toml").exists()
    code, _, err = emergency("init", str(tmp_path / "missing" / "config.toml"), environ={})
    assert code == cli.EXIT_CONFIG and "cannot write" in err
    assert not (tmp_path / "missing").exists()


def test_reading_a_timeline_closes_what_it_opened(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The served page reads a timeline on every request to /tickets/N.
    from automation import config as config_module
    from automation.cli.context import Context, read_timeline
    from automation.store import Store
    from automation.zendesk import ZendeskSession

    closed: list[str] = []
    for kind, cls in (("store", Store), ("session", ZendeskSession)):
        close = cls.close
        monkeypatch.setattr(cls, "close", lambda self, close=close, kind=kind: (
            closed.append(kind), close(self))[1])
    ticket_id = emergency_ticket(sandbox, account)
    cfg = config_module.load(write_config(tmp_path, sandbox.url))
    ctx = Context(io.StringIO(), io.StringIO(), {"ZENDESK_API_TOKEN": TOKEN}, clock, io.StringIO())

    ticket, _ = read_timeline(cfg, ctx, ticket_id)

    assert ticket.id == ticket_id
    assert sorted(closed) == ["session", "store"]


def test_making_the_served_report_closes_the_zendesk_client_it_opened(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from automation import config as config_module
    from automation.cli.context import Context
    from automation.cli.serving import _report
    from automation.zendesk import ZendeskSession

    closed: list[str] = []
    close = ZendeskSession.close
    monkeypatch.setattr(ZendeskSession, "close", lambda self: (closed.append("session"),
                                                               close(self))[1])
    # The page without its charts (their drawing is the report's own tests' business).
    monkeypatch.setattr("automation.report_html.served_page",
                        lambda zendesk, now, federal: f"read {zendesk.api_user().id}; {closed}")
    cfg = config_module.load(write_config(tmp_path, sandbox.url))
    ctx = Context(io.StringIO(), io.StringIO(), {"ZENDESK_API_TOKEN": TOKEN}, clock, io.StringIO())

    page = _report(cfg, ctx, clock.now())

    assert page == f"read {account.admin_id}; []"  # read from Zendesk, then closed
    assert closed == ["session"]
