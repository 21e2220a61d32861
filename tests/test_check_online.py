"""`emergency check --online` against the sandbox: every token and configured id, one line each."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from automation import cli
from automation.cli.online import ONLINE_RETRY_SECONDS, check_online
from automation.clock import FakeClock
from automation.config import load
from automation.model import Person
from automation.sandbox import URGENT_VIEW_ID, Account, Sandbox, sandbox_environ
from automation.sandbox.config_file import config_text

POST_CALL = "Support::Self-Managed::Post Customer Call"


def write_config(sandbox: Sandbox, account: Account, tmp_path: Path, *,
                 replace: tuple[str, str] = ("", ""), extra: str = "") -> Path:
    """The config `sandbox serve` writes, with a view, a macro, a channel rule, a region and
    US Federal on top (their ids the seeded account's)."""
    text = config_text(sandbox, account).replace(
        'email = "', f"view_id = {URGENT_VIEW_ID}\nemail = \"", 1)
    text += (f'\n[[slack.channels]]\nchannel = "{account.saas_channel}"\ntags = ["saas"]\n'
             '\n[[slack.regions]]\nname = "Americas"\ngroup = "support-team-americas"\n'
             'hours = "13:00-21:00"\n'
             f'\n[pagerduty.federal]\nservice_id = "{account.pd_managers_service_id}"\n'
             f'escalation_policy_id = "{account.pd_team.support_managers_policy_id}"\n'
             'organization_tags = ["us_federal"]\n'
             f'\n[macros]\npost_call = "{POST_CALL}"\n{extra}')
    if replace[0]:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1])
    path = tmp_path / "sandbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def post_call_macro(sandbox: Sandbox) -> int:
    return sandbox.zendesk.add_macro(POST_CALL, "Summary of our call:")


@pytest.fixture
def config(sandbox: Sandbox, account: Account, tmp_path: Path) -> Path:
    return write_config(sandbox, account, tmp_path)


def check(config: Path, clock: FakeClock, environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["--config", str(config), "check", "--online"], out=out, err=err,
                   environ=environ, clock=clock)
    return code, out.getvalue(), err.getvalue()


def online_lines(out: str) -> dict[str, str]:
    """`service item` -> `verdict: detail`, for the lines --online adds."""
    lines = [line for line in out.splitlines()
             if line.startswith(("zendesk ", "slack ", "pagerduty ", "gitlab "))]
    return dict(line.split(": ", 1) for line in lines)  # type: ignore[misc]


def test_every_token_and_id_of_the_seeded_sandbox_is_ok(
        sandbox: Sandbox, account: Account, config: Path, clock: FakeClock,
        post_call_macro: int) -> None:
    bot_id = sandbox.pagerduty.user_id_by_email(sandbox.email)

    code, out, err = check(config, clock, sandbox_environ(sandbox))

    lines = {k: v for k, v in online_lines(out).items()
             if not k.startswith("gitlab ")}  # GitLab's: a test of their own
    assert code == cli.EXIT_OK, out + err
    assert err == ""
    assert lines == {
        "zendesk API user": "ok: automation@example.com (Emergency Automation), admin",
        f"zendesk view {URGENT_VIEW_ID} ([zendesk] view_id)": "ok: 'Urgent unsolved tickets'",
        "zendesk macro ([macros] post_call)": f"ok: '{POST_CALL}', id {post_call_macro}",
        "slack token": f"ok: bot @emergency-automation ({sandbox.slack.bot_user_id}) in "
                       "Sandbox",
        f"slack channel {account.self_managed_channel} (default_channel)":
            "ok: #support_self-managed, the bot is a member",
        f"slack channel {account.saas_channel} ([[slack.channels]] 1)":
            "ok: #support_gitlab-com, the bot is a member",
        "slack group @support-team-americas ([[slack.regions]] Americas)":
            f"ok: {account.americas_group_id}",
        "pagerduty token": "ok: an account-level REST API token",
        f"pagerduty service {account.pd_service_id} (service_id)": "ok: Customer Support",
        f"pagerduty service {account.pd_managers_service_id} (managers_service_id)":
            "ok: Support Managers",
        f"pagerduty service {account.pd_managers_service_id} ([pagerduty.federal] "
        "service_id)": "ok: Support Managers",
        f"pagerduty escalation policy {account.pd_policy_id} (escalation_policy_id)":
            "ok: Customer Support Escalation Policy",
        f"pagerduty escalation policy {account.pd_team.support_managers_policy_id} "
        "([pagerduty.federal] escalation_policy_id)": "ok: Support Managers Escalation Policy",
        "pagerduty user automation@example.com (from_email)":
            f"ok: Emergency Automation ({bot_id})",
    }


def test_check_without_online_asks_no_service(
        sandbox: Sandbox, config: Path, clock: FakeClock) -> None:
    sandbox.clear_requests()
    out = io.StringIO()

    code = cli.run(["--config", str(config), "check"], out=out, err=io.StringIO(),
                   environ=sandbox_environ(sandbox), clock=clock)

    assert code == cli.EXIT_OK
    assert sandbox.requests == [] and online_lines(out.getvalue()) == {}


def test_a_wrong_zendesk_token_exits_three_and_is_never_printed(
        sandbox: Sandbox, config: Path, clock: FakeClock) -> None:
    wrong = "zd-wrong-SECRET-4321"

    code, out, err = check(config, clock, {**sandbox_environ(sandbox),
                                           "ZENDESK_API_TOKEN": wrong})

    lines = online_lines(out)
    assert code == cli.EXIT_UNREACHABLE
    assert lines["zendesk API user"].startswith("FAILED: Zendesk GET /api/v2/users/me.json: "
                                                "HTTP 401")
    assert "ZENDESK_API_TOKEN" in lines["zendesk API user"]
    assert lines[f"zendesk view {URGENT_VIEW_ID} ([zendesk] view_id)"] == (
        "not checked: the token was refused")
    assert lines["slack token"].startswith("ok: ")  # the other services are still tried
    assert lines["pagerduty token"].startswith("ok: ")
    assert "SECRET" not in out + err and wrong[-4:] not in out + err
    assert err == "error: 1 of 16 online check(s) failed, 2 not checked\n"  # GitLab's 2 too


def test_a_wrong_view_id_exits_two_naming_it(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(sandbox, account, tmp_path,
                          replace=(f"view_id = {URGENT_VIEW_ID}", "view_id = 360999"))

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    verdict = online_lines(out)["zendesk view 360999 ([zendesk] view_id)"]
    assert code == cli.EXIT_CONFIG
    assert verdict.startswith("FAILED: no such view; expected the id of a view")
    assert "HTTP 404" in verdict
    assert sum(not v.startswith("ok: ") for v in online_lines(out).values()) == 1


def test_an_unknown_slack_channel_id_exits_two_naming_the_key(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(sandbox, account, tmp_path, replace=(
        f'default_channel = "{account.self_managed_channel}"',
        'default_channel = "C0NOSUCH01"'))

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    lines = online_lines(out)
    assert code == cli.EXIT_CONFIG
    assert lines["slack channel C0NOSUCH01 (default_channel)"].startswith(
        "FAILED: no channel with this id that the bot can see; expected a channel id like")
    assert "channel_not_found" in lines["slack channel C0NOSUCH01 (default_channel)"]
    assert [v for v in lines.values() if not v.startswith("ok: ")] == [
        lines["slack channel C0NOSUCH01 (default_channel)"]]


def test_a_channel_the_bot_is_not_in_says_to_invite_the_app(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    outside = sandbox.slack.add_channel("support-federal", bot_member=False)
    config = write_config(sandbox, account, tmp_path, extra=(
        f'\n[[slack.channels]]\nchannel = "{outside}"\norganization_tags = ["us_federal"]\n'))

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    assert code == cli.EXIT_CONFIG
    assert online_lines(out)[f"slack channel {outside} ([[slack.channels]] 2)"] == (
        "FAILED: the bot is not in #support-federal; invite the app there "
        "(/invite @emergency-automation in #support-federal)")


def test_a_wrong_pagerduty_service_id_exits_two_and_the_rest_is_still_tried(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(sandbox, account, tmp_path, replace=(
        f'service_id = "{account.pd_service_id}"', 'service_id = "PS99999"'))

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    lines = online_lines(out)
    assert code == cli.EXIT_CONFIG
    assert lines["pagerduty service PS99999 (service_id)"].startswith(
        "FAILED: no such service; expected the id at the end of the service's address")
    assert lines[f"pagerduty escalation policy {account.pd_policy_id} "
                 "(escalation_policy_id)"].startswith("ok: ")
    assert sum(not v.startswith("ok: ") for v in lines.values()) == 1


def test_a_wrong_slack_token_exits_three_and_leaves_the_channels_unchecked(
        sandbox: Sandbox, account: Account, config: Path, clock: FakeClock) -> None:
    wrong = "xoxb-revoked-SECRET-9876"

    code, out, err = check(config, clock, {**sandbox_environ(sandbox), "SLACK_BOT_TOKEN": wrong})

    lines = online_lines(out)
    assert code == cli.EXIT_UNREACHABLE
    assert lines["slack token"].startswith("FAILED: Slack POST auth.test: HTTP 200: invalid_auth")
    assert lines[f"slack channel {account.self_managed_channel} (default_channel)"] == (
        "not checked: the token was refused")
    assert "SECRET" not in out + err and wrong[-4:] not in out + err


def test_slack_down_exits_three_within_seconds_and_leaves_the_rest_unchecked(
        sandbox: Sandbox, account: Account, config: Path, clock: FakeClock) -> None:
    sandbox.slack.faults.outage(times=None)
    started = clock.now()

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    lines = online_lines(out)
    assert code == cli.EXIT_UNREACHABLE
    assert lines["slack token"].startswith("FAILED: Slack POST auth.test: HTTP 503")
    assert lines[f"slack channel {account.saas_channel} ([[slack.channels]] 1)"] == (
        "not checked: the service did not answer")
    assert lines["pagerduty token"].startswith("ok: ")
    assert clock.now() - started <= timedelta(seconds=ONLINE_RETRY_SECONDS)


def test_a_refused_token_outranks_a_wrong_id(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(sandbox, account, tmp_path, replace=(
        f'service_id = "{account.pd_service_id}"', 'service_id = "PS99999"'))

    code, _, _ = check(config, clock, {**sandbox_environ(sandbox), "SLACK_BOT_TOKEN": "xoxb-no"})

    assert code == cli.EXIT_UNREACHABLE


def test_an_unset_token_is_a_configuration_failure_of_its_service_alone(
        sandbox: Sandbox, config: Path, clock: FakeClock) -> None:
    environ = {k: v for k, v in sandbox_environ(sandbox).items() if k != "PAGERDUTY_API_TOKEN"}

    code, out, _ = check(config, clock, environ)

    lines = online_lines(out)
    assert code == cli.EXIT_CONFIG
    assert lines["pagerduty token"].startswith("FAILED: PAGERDUTY_API_TOKEN is not set")
    assert lines["pagerduty user automation@example.com (from_email)"] == (
        "not checked: no client to try it with")
    assert lines["slack token"].startswith("ok: ")


def test_a_from_email_that_is_no_pagerduty_user_exits_two(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    config = write_config(sandbox, account, tmp_path, replace=(
        'from_email = "automation@example.com"', 'from_email = "nobody@example.com"'))

    code, out, _ = check(config, clock, sandbox_environ(sandbox))

    assert code == cli.EXIT_CONFIG
    assert online_lines(out)["pagerduty user nobody@example.com (from_email)"].startswith(
        "FAILED: no PagerDuty user has this email")


class _ApiUserAs:
    """A Zendesk that signs the token in as this person (None: its anonymous user)."""

    def __init__(self, person: Person | None) -> None:
        self.person = person

    def api_user(self) -> Person | None:
        return self.person


@pytest.mark.parametrize(("person", "code", "says"), [
    (Person(7, "Dana", "automation@example.com", "end-user"), cli.EXIT_CONFIG,
     "automation@example.com is an end-user; expected an agent or admin"),
    (Person(7, "Sam", "sam@example.com", "admin"), cli.EXIT_CONFIG,
     "the token signs in as sam@example.com; expected [zendesk] email automation@example.com"),
    (None, cli.EXIT_UNREACHABLE, "Zendesk answered as its anonymous user"),
])
def test_the_api_user_must_be_the_configured_agent(
        config: Path, person: Person | None, code: int, says: str) -> None:
    loaded = load(config)
    cfg = replace(loaded, zendesk=replace(loaded.zendesk, view_id=None), macros={},
                  slack=None, pagerduty=None)

    result = check_online(cfg, _ApiUserAs(person), None, None)  # type: ignore[arg-type]

    [probe] = result.probes
    assert (probe.item, probe.code) == ("API user", code)
    assert probe.detail.startswith(says)
    assert result.exit_code == code


def test_gitlab_token_project_and_template_are_tried(
        sandbox: Sandbox, account: Account, tmp_path: Path, clock: FakeClock) -> None:
    ok = check(write_config(sandbox, account, tmp_path), clock, sandbox_environ(sandbox))
    template = (f"gitlab template {account.gitlab_template!r} in {account.gitlab_project} "
                "([gitlab] project, template)")
    assert ok[0] == cli.EXIT_OK, ok[1] + ok[2]
    assert online_lines(ok[1])["gitlab token"].startswith("ok: signs in as @")
    assert online_lines(ok[1])[template].startswith("ok: ")

    wrong = write_config(sandbox, account, tmp_path, replace=(
        f'template = "{account.gitlab_template}"', 'template = "Emergency Runbok"'))
    code, out, _ = check(wrong, clock, sandbox_environ(sandbox))
    lines = online_lines(out)
    assert code == cli.EXIT_CONFIG
    [verdict] = [v for k, v in lines.items() if k.startswith("gitlab template 'Emergency Runbok'")]
    assert verdict.startswith("FAILED: no such project, or no issue template")

    code, out, err = check(write_config(sandbox, account, tmp_path), clock,
                           {**sandbox_environ(sandbox), "GITLAB_TOKEN": "glpat-wrong-SECRET"})
    assert code == cli.EXIT_UNREACHABLE
    assert online_lines(out)["gitlab token"].startswith("FAILED: ")
    assert online_lines(out)[template] == "not checked: the token was refused"
    assert "SECRET" not in out + err


@pytest.mark.parametrize("variable", ["ZENDESK_API_TOKEN", "SLACK_BOT_TOKEN",
                                      "PAGERDUTY_API_TOKEN", "GITLAB_TOKEN"])
def test_no_character_of_a_refused_token_is_printed_whichever_service_refuses_it(
        sandbox: Sandbox, config: Path, clock: FakeClock, variable: str) -> None:
    wrong = "refused-SECRET-7a7b"

    code, out, err = check(config, clock, {**sandbox_environ(sandbox), variable: wrong})

    assert code == cli.EXIT_UNREACHABLE
    assert "SECRET" not in out + err and wrong[-4:] not in out + err
