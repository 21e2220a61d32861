"""config.toml: validated whole; every complaint is one line naming file, key and expectation."""

from __future__ import annotations

import copy
import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from automation import config
from automation.config import (
    DEFAULT_QUERY,
    ZENDESK_TOKEN_ENV,
    ChannelRule,
    FederalConfig,
    GitLabConfig,
    PagerDutyConfig,
    Rotation,
    SlackConfig,
    WorkflowConfig,
    ZendeskConfig,
    load,
    parse,
    zendesk_token,
)
from automation.errors import ConfigError
from automation.workflow import Policy

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "automation" / "config.example.toml"  # what `emergency init` writes

VALID: dict[str, Any] = {
    "zendesk": {"url": "https://acme.zendesk.com", "email": "bot@acme.example"},
    "workflow": {"bridge_url": "https://zoom.example.com/j/123"},
}

VALID_TOML = """\
[zendesk]
url = "https://acme.zendesk.com"
email = "bot@acme.example"

[workflow]
bridge_url = "https://zoom.example.com/j/123"
"""


def data(**sections: dict[str, Any]) -> dict[str, Any]:
    """VALID with each given section's keys merged in (a value of ``None`` removes the key)."""
    result = copy.deepcopy(VALID)
    for name, keys in sections.items():
        section = result.setdefault(name, {})
        for key, value in keys.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return result


def config_error(raw: dict[str, Any], source: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(raw, source)
    return str(caught.value)


def assert_one_line_naming(message: str, source: Path, *fragments: str) -> None:
    assert "\n" not in message
    assert str(source) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"


# The example file -----------------------------------------------------------------------------


def test_example_config_is_refused_only_for_its_placeholder(tmp_path):
    # the unedited example names no real account: refused, saying what to change
    with pytest.raises(ConfigError, match=r"\[zendesk\] url: expected your own account's URL"):
        load(EXAMPLE)

    # when its URL is filled in, everything else in it is valid
    edited = tmp_path / "config.toml"
    edited.write_text(EXAMPLE.read_text().replace("your-subdomain", "acme"))
    cfg = load(edited)

    # with its state file beside it and the runbook's timings
    assert cfg.source == edited
    assert cfg.zendesk.url == "https://acme.zendesk.com"
    assert cfg.zendesk.email == "emergency-bot@example.com"
    assert cfg.zendesk.view_id is None
    assert cfg.workflow.bridge_url.startswith("https://")
    assert cfg.policy == Policy(follow_up_after=timedelta(minutes=15),
                                         close_after=timedelta(minutes=15))
    assert cfg.state_path == tmp_path / "emergency-state.sqlite3"
    assert cfg.templates_path is None


@pytest.mark.parametrize("settings", [ZendeskConfig, WorkflowConfig, PagerDutyConfig,
                                      SlackConfig, ChannelRule, FederalConfig, GitLabConfig,
                                      Rotation])
def test_example_config_documents_every_setting(settings):
    # given the example file's text (commented-out keys count as documented)
    text = EXAMPLE.read_text(encoding="utf-8")

    # then every setting appears in it as `key = ...`
    for field in dataclasses.fields(settings):
        pattern = rf"^#?\s*({field.name}\s*=|\[{{1,2}}\w+\.{field.name}\]{{1,2}})"
        assert re.search(pattern, text, re.MULTILINE), field.name


def test_valid_minimal_file_loads_with_defaults(source):
    # given only the required keys
    source.write_text(VALID_TOML, encoding="utf-8")

    # when loaded
    cfg = load(source)

    # then the rest takes its defaults
    assert cfg.zendesk.url == "https://acme.zendesk.com"
    assert cfg.zendesk.query == DEFAULT_QUERY
    assert cfg.policy == Policy()
    assert cfg.state_path == source.parent.resolve() / "emergency-state.sqlite3"


def test_url_trailing_slash_is_dropped(source):
    cfg = parse(data(zendesk={"url": "https://acme.zendesk.com/"}), source)
    assert cfg.zendesk.url == "https://acme.zendesk.com"


def test_workflow_timings_become_the_policy(source):
    # given non-default timings
    raw = data(workflow={"follow_up_after_minutes": 20, "close_after_minutes": 8})

    # when parsed
    cfg = parse(raw, source)

    # then the workflow's policy carries them
    assert cfg.policy == Policy(follow_up_after=timedelta(minutes=20),
                                         close_after=timedelta(minutes=8))


# File-level errors ----------------------------------------------------------------------------


def test_missing_file_is_a_config_error_naming_the_file(tmp_path):
    # given a path with no file
    missing = tmp_path / "nowhere" / "config.toml"

    # when loaded
    with pytest.raises(ConfigError) as caught:
        load(missing)

    # then one line names the file and how to point at another
    assert_one_line_naming(str(caught.value), missing, "no such file", "--config")


def test_invalid_toml_is_a_config_error_naming_the_file(source):
    # given a file that is not TOML
    source.write_text('[zendesk\nurl = "https://acme.zendesk.com"\n', encoding="utf-8")

    # when loaded
    with pytest.raises(ConfigError) as caught:
        load(source)

    # then one line names the file and says it is not valid TOML
    assert_one_line_naming(str(caught.value), source, "not valid TOML", "line 1")


def test_non_utf8_file_is_a_config_error(source):
    source.write_bytes(b'[zendesk]\nurl = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load(source)
    assert_one_line_naming(str(caught.value), source, "not valid TOML")


# Sections -------------------------------------------------------------------------------------


def test_missing_zendesk_section_is_named(source):
    raw = data()
    del raw["zendesk"]
    message = config_error(raw, source)
    assert_one_line_naming(message, source, "[zendesk]", "missing", "url", "email")


def test_unknown_section_is_named_with_the_known_ones(source):
    raw = data()
    raw["workflows"] = {"bridge_url": "https://zoom.example.com/j/1"}
    message = config_error(raw, source)
    assert_one_line_naming(message, source, "[workflows]", "unknown section", "workflow")


def test_section_that_is_not_a_table_is_named(source):
    raw = data()
    raw["zendesk"] = "https://acme.zendesk.com"
    message = config_error(raw, source)
    assert_one_line_naming(message, source, "[zendesk]", "expected a table")


# Keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "key"), [("zendesk", "url"), ("zendesk", "email"),
                                              ("workflow", "bridge_url")])
def test_missing_required_key_is_named(source, section, key):
    message = config_error(data(**{section: {key: None}}), source)
    assert_one_line_naming(message, source, f"[{section}] {key}", "missing")


@pytest.mark.parametrize(("section", "key", "value"), [
    ("zendesk", "url", "acme.zendesk.com"),
    ("zendesk", "url", "ftp://acme.zendesk.com"),
    ("zendesk", "url", "https://"),
    ("workflow", "bridge_url", "zoom.example.com/j/123"),
])
def test_url_without_http_scheme_and_host_is_refused(source, section, key, value):
    message = config_error(data(**{section: {key: value}}), source)
    assert_one_line_naming(message, source, f"[{section}] {key}", "http:// or https://", value)


@pytest.mark.parametrize("email", ["emergency-bot.example.com", "   ", 42])
def test_bad_email_is_refused(source, email):
    message = config_error(data(zendesk={"email": email}), source)
    assert_one_line_naming(message, source, "[zendesk] email", "expected")


@pytest.mark.parametrize(("section", "typo", "meant"), [
    ("workflow", "follow_up_after_minute", "follow_up_after_minutes"),
    ("zendesk", "token", "email"),
    ("state", "file", "path"),
    ("templates", "folder", "path"),
])
def test_unknown_key_is_named_with_the_known_ones(source, section, typo, meant):
    message = config_error(data(**{section: {typo: "x"}}), source)
    assert_one_line_naming(message, source, f"[{section}] {typo}", "unknown key", meant)


NUMBERS = [("zendesk", "timeout_seconds"), ("zendesk", "max_retry_seconds"),
           ("workflow", "follow_up_after_minutes"), ("workflow", "close_after_minutes"),
           ("workflow", "poll_interval_seconds"), ("zendesk", "updates_per_minute")]


@pytest.mark.parametrize(("section", "key"), NUMBERS)
@pytest.mark.parametrize("value", [-1, -0.5, True, False, "15", [15]])
def test_negative_boolean_or_non_numeric_number_is_refused(source, section, key, value):
    message = config_error(data(**{section: {key: value}}), source)
    assert_one_line_naming(message, source, f"[{section}] {key}", "expected a number")


@pytest.mark.parametrize(("section", "key"), [k for k in NUMBERS if k[1] != "max_retry_seconds"])
def test_zero_duration_is_refused(source, section, key):
    message = config_error(data(**{section: {key: 0}}), source)
    assert_one_line_naming(message, source, f"[{section}] {key}", "expected a number from 1")


def test_writes_are_paced_to_80_a_minute_unless_configured_up_to_zendesks_100(source):
    assert parse(data(), source).zendesk.updates_per_minute == 80
    assert parse(data(zendesk={"updates_per_minute": 40}), source).zendesk.updates_per_minute == 40
    message = config_error(data(zendesk={"updates_per_minute": 101}), source)
    assert_one_line_naming(message, source, "[zendesk] updates_per_minute",
                           "expected a number from 1 to 100, got 101")


def test_zero_retry_budget_is_allowed(source):
    cfg = parse(data(zendesk={"max_retry_seconds": 0}), source)
    assert cfg.zendesk.max_retry_seconds == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e20, 7.5])
def test_non_finite_huge_or_fractional_minutes_are_refused(source, value):
    # given a duration TOML accepts as a float (nan, inf) or one too large for a timedelta
    raw = data(workflow={"follow_up_after_minutes": value})

    # when parsed and its policy is used
    with pytest.raises(ConfigError) as caught:
        _ = parse(raw, source).policy

    # then it is refused up front, naming the key
    assert_one_line_naming(str(caught.value), source, "[workflow] follow_up_after_minutes")


def test_the_heartbeat_is_every_sixty_passes_unless_configured(source):
    assert parse(data(), source).workflow.heartbeat_passes == 60
    assert parse(data(workflow={"heartbeat_passes": 0}), source).workflow.heartbeat_passes == 0
    assert parse(data(workflow={"heartbeat_passes": 5}), source).workflow.heartbeat_passes == 5


@pytest.mark.parametrize("value", [-1, 1.5, True, "60", 100_001])
def test_a_heartbeat_that_is_no_whole_number_of_passes_is_refused(source, value):
    message = config_error(data(workflow={"heartbeat_passes": value}), source)
    assert_one_line_naming(message, source, "[workflow] heartbeat_passes",
                           "expected a whole number from 0 to 100000")


@pytest.mark.parametrize("view_id", [0, -3, True, "360001234567"])
def test_view_id_must_be_a_positive_integer(source, view_id):
    message = config_error(data(zendesk={"view_id": view_id}), source)
    assert_one_line_naming(message, source, "[zendesk] view_id", "positive integer")


def test_view_id_together_with_search_is_refused(source):
    raw = data(zendesk={"view_id": 360001234567, "search": "tags:premium"})
    message = config_error(raw, source)
    assert_one_line_naming(message, source, "[zendesk]", "view_id", "search", "not both")


def test_view_id_alone_is_kept(source):
    cfg = parse(data(zendesk={"view_id": 360001234567}), source)
    assert cfg.zendesk.view_id == 360001234567


def test_empty_search_is_refused(source):
    message = config_error(data(zendesk={"search": "  "}), source)
    assert_one_line_naming(message, source, "[zendesk] search", "non-empty string")


# Query ----------------------------------------------------------------------------------------


def test_query_is_the_default_when_there_is_no_search(source):
    cfg = parse(data(), source)
    assert cfg.zendesk.query == DEFAULT_QUERY
    assert "priority:urgent" in cfg.zendesk.query


def test_query_combines_the_default_with_search(source):
    # given extra search terms
    cfg = parse(data(zendesk={"search": "  form:360000123456 tags:premium "}), source)

    # then the query is the default narrowed by them
    assert cfg.zendesk.query == f"{DEFAULT_QUERY} form:360000123456 tags:premium"


# Paths ----------------------------------------------------------------------------------------


def test_state_path_is_relative_to_the_config_files_folder(tmp_path, monkeypatch):
    # given a config in a sub-folder naming a relative state path, and another working dir
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "config.toml").write_text(
        VALID_TOML + '\n[state]\npath = "data/state.sqlite3"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # when loaded through a relative path
    cfg = load(Path("..") / "etc" / "config.toml")

    # then the state file is beside the config, not in the working directory
    assert cfg.state_path == folder.resolve() / "data" / "state.sqlite3"


def test_absolute_state_path_is_kept(source, tmp_path):
    target = tmp_path / "var" / "state.sqlite3"
    cfg = parse(data(state={"path": str(target)}), source)
    assert cfg.state_path == target


def test_templates_path_is_relative_to_the_config_files_folder(source):
    # given an existing folder beside the config
    (source.parent / "my-templates").mkdir()

    # when parsed
    cfg = parse(data(templates={"path": "my-templates"}), source)

    # then it resolves next to the config
    assert cfg.templates_path == source.parent.resolve() / "my-templates"


@pytest.mark.parametrize("make", ["missing", "file"])
def test_templates_path_that_is_not_a_folder_is_refused(source, make):
    # given a templates path that does not exist, or is a file
    if make == "file":
        (source.parent / "my-templates").write_text("not a folder", encoding="utf-8")

    # when parsed
    message = config_error(data(templates={"path": "my-templates"}), source)

    # then the key and the expectation are named
    assert_one_line_naming(message, source, "[templates] path", "folder", "my-templates")


# The API token --------------------------------------------------------------------------------


def test_token_comes_from_the_environment_stripped():
    assert zendesk_token({ZENDESK_TOKEN_ENV: "  abc123token \n"}) == "abc123token"


@pytest.mark.parametrize("environ", [
    pytest.param({"ZENDESK_TOKEN": "s3cr3t-misnamed-token"}, id="missing"),
    pytest.param({ZENDESK_TOKEN_ENV: "", "ZENDESK_TOKEN": "s3cr3t-misnamed-token"}, id="empty"),
    pytest.param({ZENDESK_TOKEN_ENV: "  \t\n", "OTHER": "s3cr3t-misnamed-token"}, id="blank"),
])
def test_missing_or_blank_token_is_a_config_error_without_secrets(environ):
    # when the token is read from an environment that lacks it
    with pytest.raises(ConfigError) as caught:
        zendesk_token(environ)

    # then one line names the variable and never echoes a value
    message = str(caught.value)
    assert "\n" not in message
    assert ZENDESK_TOKEN_ENV in message
    assert "s3cr3t" not in message


def test_token_error_never_reads_the_real_environment_when_given_one(monkeypatch):
    # given a token in the process environment but an empty mapping passed in
    monkeypatch.setenv(ZENDESK_TOKEN_ENV, "s3cr3t-process-token")

    # then the mapping passed in is the one consulted
    with pytest.raises(ConfigError) as caught:
        zendesk_token({})
    assert "s3cr3t" not in str(caught.value)


def test_config_path_comes_from_flag_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    assert config.resolve_path(None) == Path(config.DEFAULT_PATH)
    monkeypatch.setenv(config.CONFIG_ENV, "/etc/emergency.toml")
    assert config.resolve_path(None) == Path("/etc/emergency.toml")
    assert config.resolve_path("mine.toml") == Path("mine.toml")


@pytest.mark.parametrize("coverage", ["22:00-06:00", "17:00-05:00", "05:00+01:00-17:00"])
def test_federal_coverage_must_be_plain_hours_within_one_day(source, coverage):
    raw = data(pagerduty={
        "from_email": "bot@example.com", "service_id": "P1", "escalation_policy_id": "E1",
        "federal": {"service_id": "PF", "escalation_policy_id": "EF",
                    "organization_tags": ["us_federal"], "coverage": coverage}})

    message = config_error(raw, source)

    assert_one_line_naming(message, source, "[pagerduty.federal] coverage")


PAGERDUTY = {"from_email": "bot@example.com", "service_id": "P1", "escalation_policy_id": "E1"}


def test_rotations_are_read_with_their_schedule_channel_and_group(source):
    raw = data(slack={"default_channel": "C0SELFMNGD"}, pagerduty={**PAGERDUTY, "rotations": [
        {"name": "FRT", "schedule_id": "PFRT", "channel": "C0FRTDUTY", "group": "@frt-team"},
        {"name": "SLA Hawk", "schedule_id": "PSLA", "channel": "G0SLAHAWK"}]})

    cfg = parse(raw, source)

    assert cfg.pagerduty is not None and cfg.pagerduty.rotations == (
        Rotation("FRT", "PFRT", "C0FRTDUTY", "frt-team"),
        Rotation("SLA Hawk", "PSLA", "G0SLAHAWK", None))


@pytest.mark.parametrize(("rotation", "key", "expected"), [
    ({"name": "FRT", "schedule_id": "PFRT", "channel": "#frt"}, "channel", "channel id"),
    ({"name": "FRT", "channel": "C0FRTDUTY"}, "schedule_id", "missing"),
    ({"name": "FRT", "schedule_id": "PFRT", "channel": "C0FRTDUTY", "group": "frt team"},
     "group", "user group handle"),
    ({"name": "FRT", "schedule_id": "PFRT", "channel": "C0FRTDUTY", "room": "x"}, "room",
     "unknown key"),
])
def test_a_rotation_is_refused_naming_its_key(source, rotation, key, expected):
    raw = data(slack={"default_channel": "C0SELFMNGD"},
               pagerduty={**PAGERDUTY, "rotations": [rotation]})

    message = config_error(raw, source)

    assert_one_line_naming(message, source, f"[pagerduty.rotations] {key}", expected)


def test_rotations_need_slack(source):
    raw = data(pagerduty={**PAGERDUTY, "rotations": [
        {"name": "FRT", "schedule_id": "PFRT", "channel": "C0FRTDUTY"}]})

    message = config_error(raw, source)

    assert_one_line_naming(message, source, "[[pagerduty.rotations]]", "[slack]")


def test_slack_region_hours_with_a_zone_are_refused(source):
    raw = data(slack={"default_channel": "C1", "regions": [
        {"name": "americas", "group": "support-team-americas", "hours": "13:00+00:00-21:00"}]})

    message = config_error(raw, source)

    assert_one_line_naming(message, source, "[slack.regions] hours", "without a zone")


@pytest.mark.parametrize("url", ["http://acme.zendesk.com", "http://10.0.0.5:8080"])
def test_plain_http_is_refused_except_on_this_machine(source, url):
    message = config_error(data(zendesk={"url": url}), source)

    assert_one_line_naming(message, source, "[zendesk] url", "https://")


def test_plain_http_on_loopback_is_allowed_for_the_sandbox(source):
    cfg = parse(data(zendesk={"url": "http://127.0.0.1:8765"}), source)

    assert cfg.zendesk.url == "http://127.0.0.1:8765"
