"""config.toml: loaded and validated whole before anything runs; secrets come from env."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automation.errors import ConfigError
from automation.workflow import Policy

DEFAULT_PATH = "config.toml"
CONFIG_ENV = "EMERGENCY_CONFIG"
ZENDESK_TOKEN_ENV = "ZENDESK_API_TOKEN"
SLACK_TOKEN_ENV = "SLACK_BOT_TOKEN"
ZENDESK_WEBHOOK_SECRET_ENV = "ZENDESK_WEBHOOK_SECRET"
PAGERDUTY_WEBHOOK_SECRET_ENV = "PAGERDUTY_WEBHOOK_SECRET"
WEB_TOKEN_ENV = "EMERGENCY_WEB_TOKEN"
PAGERDUTY_TOKEN_ENV = "PAGERDUTY_API_TOKEN"
GITLAB_TOKEN_ENV = "GITLAB_TOKEN"
DEFAULT_QUERY = "type:ticket priority:urgent status<solved"
# The example config.toml's URL, left unedited.
PLACEHOLDER = "your-subdomain"
# A key that looks like a credential: the error says where secrets go instead.
SECRET_KEY = re.compile(r"token|secret|password|api_key|apikey", re.IGNORECASE)
SECRET_ENV = {"zendesk": ZENDESK_TOKEN_ENV, "pagerduty": PAGERDUTY_TOKEN_ENV,
              "slack": SLACK_TOKEN_ENV, "gitlab": GITLAB_TOKEN_ENV}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_HEARTBEAT_PASSES = 100_000


@dataclass(frozen=True)
class ZendeskConfig:
    url: str
    email: str
    search: str = ""  # extra search terms, e.g. "tags:premium brand:123"
    view_id: int | None = None
    timeout_seconds: float = 10.0
    max_retry_seconds: float = 10.0
    # The worker's share of the account's 100 ticket updates a minute (people save too).
    updates_per_minute: float = 80

    @property
    def query(self) -> str:
        return f"{DEFAULT_QUERY} {self.search}".strip()


@dataclass(frozen=True)
class WorkflowConfig:
    bridge_url: str
    signature: str = "The Support Team"
    follow_up_after_minutes: float = 15
    close_after_minutes: float = 15
    poll_interval_seconds: float = 60
    # `run` (and `serve`) log that they are alive every this many passes; 0: never.
    heartbeat_passes: int = 60
    # Each engineer's own bridge, by email (else bridge_url).
    bridges: dict[str, str] = field(default_factory=dict)

    def bridge_for(self, email: str | None) -> str:
        return self.bridges.get((email or "").lower(), self.bridge_url)


@dataclass(frozen=True)
class ServerConfig:
    """`[server]`: where `emergency serve` listens."""

    host: str = "127.0.0.1"
    port: int = 8080

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")


def parse_listen(value: str) -> ServerConfig:
    """HOST:PORT (an IPv6 host in brackets), e.g. 127.0.0.1:8080 or [::]:8080."""
    match = re.fullmatch(r"(?:\[([0-9a-fA-F:]+)\]|([^\s:\[\]]+)):(\d{1,5})", value.strip())
    if match is None or not 0 < int(match.group(3)) <= 65535:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:8080 or 0.0.0.0:8080, got {value!r}")
    return ServerConfig(host=match.group(1) or match.group(2), port=int(match.group(3)))


@dataclass(frozen=True)
class FederalConfig:
    """`[pagerduty.federal]`: the US Federal on-call, its own service and coverage hours."""

    service_id: str
    escalation_policy_id: str
    organization_tags: tuple[str, ...] = ()
    brands: tuple[int, ...] = ()
    forms: tuple[int, ...] = ()
    timezone: str = "America/Los_Angeles"
    coverage: tuple[time, time] = (time(5, 0), time(17, 0))
    shifts: tuple[str, ...] = ("05:00-11:00", "11:00-17:00")

    def applies_to(self, tags: tuple[str, ...], brand_id: int | None,
                   form_id: int | None) -> bool:
        """`tags` are the organization's: the rule names the accounts, brands or forms."""
        return bool(set(self.organization_tags) & set(tags)) or brand_id in self.brands \
            or form_id in self.forms


@dataclass(frozen=True)
class Rotation:
    """`[[pagerduty.rotations]]`: a duty (FRT, SLA Hawk) an engineer hands over when they take
    an emergency during their shift (runbook step 5): its PagerDuty schedule, and where to ask."""

    name: str
    schedule_id: str
    channel: str  # a Slack channel id
    group: str | None = None  # a Slack user group handle, pinged with the request


@dataclass(frozen=True)
class PagerDutyConfig:
    from_email: str
    service_id: str  # the Customer Support service
    escalation_policy_id: str  # whose on-call answers emergencies (for `oncall` and hand-offs)
    url: str = "https://api.pagerduty.com"
    ca_file: Path | None = None  # a CA to trust (the sandbox's); else the system's
    managers_service_id: str | None = None  # the Support Managers service
    acknowledge_fallback_minutes: float = 20
    trigger_incidents: bool = True
    trigger_after_minutes: float = 2
    busy_for_minutes: float = 120
    federal: FederalConfig | None = None
    rotations: tuple[Rotation, ...] = ()


@dataclass(frozen=True)
class ChannelRule:
    """`[[slack.channels]]`: the first rule any of whose conditions matches picks the channel."""

    channel: str
    tags: tuple[str, ...] = ()
    brands: tuple[int, ...] = ()
    forms: tuple[int, ...] = ()
    organization_tags: tuple[str, ...] = ()
    # Organization field values, e.g. {"deployment": "saas"}.
    organization_fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Region:
    """`[[slack.regions]]`: a regional support group and the UTC hours it covers."""

    name: str
    group: str  # the Slack user group handle, e.g. support-team-americas
    start: time
    end: time

    def covers(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # spans midnight


@dataclass(frozen=True)
class SlackConfig:
    default_channel: str
    url: str = "https://slack.com/api/"
    channels: tuple[ChannelRule, ...] = ()
    regions: tuple[Region, ...] = ()
    account_manager_field: str = "account_manager"
    ase_field: str = "ase"
    region_field: str = "region"


@dataclass(frozen=True)
class GitLabConfig:
    """`[gitlab]`: where each emergency's Emergency Runbook issue is opened."""

    url: str  # the instance, e.g. https://gitlab.example.com
    project: str  # its path (group/name) or numeric id
    template: str  # the issue template's name in that project
    labels: tuple[str, ...] = ()
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Config:
    source: Path
    zendesk: ZendeskConfig
    workflow: WorkflowConfig
    state_path: Path
    templates_path: Path | None = None
    # Zendesk macros by purpose, e.g. {"post_call": "Support::Self-Managed::Post Customer Call"}.
    macros: dict[str, str] = field(default_factory=dict)
    slack: SlackConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    server: ServerConfig = field(default_factory=lambda: ServerConfig())
    gitlab: GitLabConfig | None = None

    @property
    def policy(self) -> Policy:
        """The runbook's timings; with PagerDuty on, the acknowledgement waits for a person
        (`[pagerduty] acknowledge_fallback_minutes`) before it goes out from the team."""
        fallback = self.pagerduty.acknowledge_fallback_minutes if self.pagerduty else None
        return Policy(
            follow_up_after=timedelta(minutes=self.workflow.follow_up_after_minutes),
            close_after=timedelta(minutes=self.workflow.close_after_minutes),
            acknowledge_fallback=timedelta(minutes=fallback) if fallback is not None else None,
        )


def resolve_path(cli_value: str | None,
                 environ: Mapping[str, str] | None = None) -> Path:
    """`--config`, else `$EMERGENCY_CONFIG`, else ./config.toml."""
    environ = os.environ if environ is None else environ
    return Path(cli_value or environ.get(CONFIG_ENV) or DEFAULT_PATH)


def secret(name: str, environ: Mapping[str, str], missing: str | None = None) -> str | None:
    """A secret from the environment (blank is unset): None, or with ``missing`` a
    ConfigError saying what to export."""
    value = environ.get(name, "").strip()
    if not value and missing is not None:
        raise ConfigError(f"{name} is not set: {missing}")
    return value or None


def zendesk_token(environ: Mapping[str, str] = os.environ) -> str:
    return str(secret(ZENDESK_TOKEN_ENV, environ,
                      "export the API token of the [zendesk] email user"))


def pagerduty_token(environ: Mapping[str, str] = os.environ) -> str:
    return str(secret(PAGERDUTY_TOKEN_ENV, environ,
                      "[pagerduty] is configured, so export a PagerDuty REST API token"))


def slack_token(environ: Mapping[str, str] = os.environ) -> str:
    return str(secret(SLACK_TOKEN_ENV, environ, "[slack] is configured, so export the Slack "
                      "app's bot token (xoxb-...)"))


def gitlab_token(environ: Mapping[str, str] = os.environ) -> str:
    return str(secret(GITLAB_TOKEN_ENV, environ, "[gitlab] is configured, so export a GitLab "
                      "access token with the api scope"))


class _Section:
    """Reads one table of the file, naming file, section and key in every complaint."""

    def __init__(self, source: Path, name: str, data: object, known: set[str]) -> None:
        self.source, self.name = source, name
        if not isinstance(data, dict):
            self.fail(None, "a table", data)
        self.data: dict[str, Any] = data  # type: ignore[assignment]
        unknown = sorted(set(self.data) - known)
        if unknown:
            hint = ""
            if SECRET_KEY.search(unknown[0]):
                env = SECRET_ENV.get(name)
                hint = "; secrets never go in this file: " + (
                    f"set the {env} environment variable instead" if env
                    else "they come from environment variables")
            raise ConfigError(
                f"{source}: [{name}] {unknown[0]}: unknown key; expected one of "
                f"{', '.join(sorted(known))}{hint}"
            )

    def fail(self, key: str | None, expected: str, got: object) -> None:
        where = f"[{self.name}]" + (f" {key}" if key else "")
        raise ConfigError(f"{self.source}: {where}: expected {expected}, got {got!r}")

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise ConfigError(f"{self.source}: [{self.name}] {key}: missing (required)")
            return default
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string", value)
        return str(value).strip()

    def number(self, key: str, default: float, minimum: float = 0,
               maximum: float = 24 * 60, whole: bool = False) -> float:
        value = self.data.get(key, default)
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not minimum <= value <= maximum
                or (whole and value != int(value))):
            self.fail(key, f"a number from {minimum:g} to {maximum:g}"
                      + (", in whole minutes" if whole else ""), value)
        return float(value)

    def count(self, key: str, default: int, maximum: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            self.fail(key, f"a whole number from 0 to {maximum}", value)
        return int(value)

    def url(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail(key, "an http:// or https:// URL", value)
        return value.rstrip("/")

    def api_url(self, key: str, default: str | None = None) -> str:
        """A URL our credentials travel to: https, or plain http only on this machine."""
        value = self.url(key, default)
        if PLACEHOLDER in value:
            self.fail(key, "your own account's URL (the example's placeholder is still there)",
                      value)
        if urlsplit(value).scheme == "http" and urlsplit(value).hostname not in LOOPBACK:
            self.fail(key, "an https:// URL (plain http only for 127.0.0.1 or localhost: "
                      "the token would travel in clear)", value)
        return value


def load(path: Path) -> Config:
    """Read and validate the whole file; raise ConfigError naming file, key and expectation."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; pass --config PATH or set {CONFIG_ENV} "
            "(`emergency init` writes a starter config.toml documenting every key)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path)


def parse(data: dict[str, Any], source: Path) -> Config:
    known_sections = {"zendesk", "workflow", "state", "templates", "macros", "slack",
                      "pagerduty", "server", "gitlab"}
    unknown = sorted(set(data) - known_sections)
    if unknown:
        raise ConfigError(
            f"{source}: [{unknown[0]}]: unknown section; expected "
            f"{', '.join(sorted(known_sections))}"
        )
    if "zendesk" not in data:
        raise ConfigError(f"{source}: [zendesk]: missing section (url and email are required)")
    base = source.resolve().parent
    zendesk = parse_zendesk(source, data["zendesk"])
    pagerduty = parse_pagerduty(source, data["pagerduty"]) if "pagerduty" in data else None
    workflow = parse_workflow(source, data.get("workflow", {}))

    st = _Section(source, "state", data.get("state", {}), {"path"})
    state_path = base / st.text("path", "emergency-state.sqlite3")

    tp = _Section(source, "templates", data.get("templates", {}), {"path"})
    templates_path = base / tp.text("path") if "path" in tp.data else None
    if templates_path is not None and not templates_path.is_dir():
        tp.fail("path", "an existing folder of *.j2 templates", str(templates_path))

    mc = _Section(source, "macros", data.get("macros", {}), {"post_call"})
    macros = {key: mc.text(key) for key in mc.data}

    slack = parse_slack(source, data["slack"]) if "slack" in data else None
    gitlab = parse_gitlab(source, data["gitlab"]) if "gitlab" in data else None
    if pagerduty is not None and pagerduty.rotations and slack is None:
        raise ConfigError(f"{source}: [[pagerduty.rotations]]: the hand-over is asked in "
                          "Slack; expected a [slack] section too")

    return Config(source=source, zendesk=zendesk, workflow=workflow, state_path=state_path,
                  templates_path=templates_path, macros=macros, slack=slack,
                  pagerduty=pagerduty, server=parse_server(source, data.get("server", {})),
                  gitlab=gitlab)


def parse_server(source: Path, data: object) -> ServerConfig:
    sv = _Section(source, "server", data, {"listen"})
    if "listen" not in sv.data:
        return ServerConfig()
    try:
        return parse_listen(sv.text("listen"))
    except ValueError:
        sv.fail("listen", "HOST:PORT, like 127.0.0.1:8080", sv.data["listen"])
        raise  # fail raises


def parse_zendesk(source: Path, data: object) -> ZendeskConfig:
    zd = _Section(source, "zendesk", data,
                  {"url", "email", "search", "view_id", "timeout_seconds", "max_retry_seconds",
                   "updates_per_minute"})
    email = zd.text("email")
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        zd.fail("email", "the API user's email address", email)
    view_id = zd.data.get("view_id")
    if view_id is not None and (isinstance(view_id, bool) or not isinstance(view_id, int)
                                or view_id <= 0):
        zd.fail("view_id", "a positive integer (a Zendesk view id)", view_id)
    if view_id is not None and "search" in zd.data:
        raise ConfigError(f"{source}: [zendesk] view_id and search: expected one of them, not both")
    return ZendeskConfig(
        url=zd.api_url("url"),
        email=email,
        search=zd.text("search", "") if "search" in zd.data else "",
        view_id=view_id,
        timeout_seconds=zd.number("timeout_seconds", 10, minimum=1, maximum=300),
        max_retry_seconds=zd.number("max_retry_seconds", 10, minimum=0, maximum=3600),
        # Zendesk's ticket-update limit is 100 a minute per account on every plan.
        updates_per_minute=zd.number("updates_per_minute", 80, minimum=1, maximum=100),
    )


def parse_workflow(source: Path, data: object) -> WorkflowConfig:
    wf = _Section(source, "workflow", data,
                  {"bridge_url", "signature", "follow_up_after_minutes", "close_after_minutes",
                   "poll_interval_seconds", "heartbeat_passes", "bridges"})
    bridges = wf.data.get("bridges", {})
    if not isinstance(bridges, dict) or not all(
            isinstance(v, str) and urlsplit(v).scheme in ("http", "https")
            for v in bridges.values()):
        wf.fail("bridges", 'a table of engineer email = "https://bridge URL"', bridges)
    return WorkflowConfig(
        bridge_url=wf.url("bridge_url"),
        signature=wf.text("signature", "The Support Team"),
        follow_up_after_minutes=wf.number("follow_up_after_minutes", 15, minimum=1, whole=True),
        close_after_minutes=wf.number("close_after_minutes", 15, minimum=1, whole=True),
        poll_interval_seconds=wf.number("poll_interval_seconds", 60, minimum=1, maximum=3600),
        heartbeat_passes=wf.count("heartbeat_passes", 60, maximum=MAX_HEARTBEAT_PASSES),
        bridges={k.lower(): v for k, v in bridges.items()},
    )


def parse_pagerduty(source: Path, data: object) -> PagerDutyConfig:
    pd = _Section(source, "pagerduty", data, {
        "url", "ca_file", "from_email", "service_id", "escalation_policy_id",
        "managers_service_id", "acknowledge_fallback_minutes", "trigger_incidents",
        "trigger_after_minutes", "busy_for_minutes", "federal", "rotations"})
    trigger = pd.data.get("trigger_incidents", True)
    if not isinstance(trigger, bool):
        pd.fail("trigger_incidents", "true or false", trigger)
    url = pd.url("url", "https://api.pagerduty.com")
    if not url.startswith("https://"):
        pd.fail("url", "an https:// URL (the PagerDuty client refuses plain http)", url)
    ca_file = None
    if "ca_file" in pd.data:
        ca_file = source.resolve().parent / pd.text("ca_file")
        if not ca_file.is_file():
            pd.fail("ca_file", "an existing PEM file", str(ca_file))
    return PagerDutyConfig(
        from_email=pd.text("from_email"), service_id=pd.text("service_id"),
        escalation_policy_id=pd.text("escalation_policy_id"), url=url, ca_file=ca_file,
        managers_service_id=pd.text("managers_service_id")
        if "managers_service_id" in pd.data else None,
        acknowledge_fallback_minutes=pd.number("acknowledge_fallback_minutes", 20, minimum=1,
                                               whole=True),
        trigger_incidents=trigger,
        trigger_after_minutes=pd.number("trigger_after_minutes", 2, minimum=0, whole=True),
        busy_for_minutes=pd.number("busy_for_minutes", 120, minimum=1, whole=True),
        federal=parse_federal(source, pd.data["federal"]) if "federal" in pd.data else None,
        rotations=parse_rotations(source, pd),
    )


def parse_rotations(source: Path, pd: _Section) -> tuple[Rotation, ...]:
    raw_rotations = pd.data.get("rotations", [])
    if not isinstance(raw_rotations, list):
        pd.fail("rotations", "an array of tables ([[pagerduty.rotations]])", raw_rotations)
    rotations: list[Rotation] = []
    for raw in raw_rotations:
        rot = _Section(source, "pagerduty.rotations", raw,
                       {"name", "schedule_id", "channel", "group"})
        rotation = Rotation(name=rot.text("name"), schedule_id=rot.text("schedule_id"),
                            channel=_channel_id(rot, "channel"),
                            group=rot.text("group").lstrip("@") if "group" in rot.data
                            else None)
        if rotation.group is not None and not re.fullmatch(r"[\w.-]+", rotation.group):
            rot.fail("group", "a Slack user group handle like frt-team", rotation.group)
        if any(r.name.lower() == rotation.name.lower() for r in rotations):
            rot.fail("name", "a name no other rotation has", rotation.name)
        rotations.append(rotation)
    return tuple(rotations)


def _hours(section: _Section, key: str, value: str) -> tuple[time, time]:
    start, _, end = value.partition("-")
    if not end:
        section.fail(key, "hours like 05:00-17:00", value)
    return _clock_time(section, key, start.strip()), _clock_time(section, key, end.strip())


def _same_day(section: _Section, key: str, value: str) -> tuple[time, time]:
    start, end = _hours(section, key, value)
    if start >= end:
        section.fail(key, "hours that start and end the same day, like 05:00-17:00", value)
    return start, end


def parse_federal(source: Path, data: object) -> FederalConfig:
    fed = _Section(source, "pagerduty.federal", data, {
        "service_id", "escalation_policy_id", "organization_tags", "brands", "forms",
        "timezone", "coverage", "shifts"})
    zone = fed.text("timezone", "America/Los_Angeles")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        fed.fail("timezone", "an IANA time zone like America/Los_Angeles", zone)
    shifts = _list(fed, "shifts", str, fed.data) or ("05:00-11:00", "11:00-17:00")
    for shift in shifts:
        _same_day(fed, "shifts", shift)
    rule = FederalConfig(
        service_id=fed.text("service_id"), escalation_policy_id=fed.text("escalation_policy_id"),
        organization_tags=_list(fed, "organization_tags", str, fed.data),
        brands=_list(fed, "brands", int, fed.data), forms=_list(fed, "forms", int, fed.data),
        timezone=zone, coverage=_same_day(fed, "coverage", fed.text("coverage", "05:00-17:00")),
        shifts=tuple(shifts))
    if not (rule.organization_tags or rule.brands or rule.forms):
        fed.fail("organization_tags", "a rule: organization_tags, brands or forms", [])
    return rule


def _clock_time(section: _Section, key: str, value: object) -> time:
    try:
        parsed = time.fromisoformat(str(value))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        # The zone is the section's own (UTC, or `timezone`), never part of the time.
        section.fail(key, "a time of day like 13:00, without a zone", value)
    assert parsed is not None
    return parsed


def _list(section: _Section, key: str, kind: type, data: dict[str, Any]) -> tuple[Any, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value):
        section.fail(key, f"a list of {kind.__name__}", value)
    return tuple(value)


# Slack's channel ids (C… public, G… private, D… direct); names like #emergencies change and
# are refused by chat.postMessage's thread replies, so the file takes ids.
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def _channel_id(section: _Section, key: str) -> str:
    value = section.text(key)
    if not CHANNEL_ID.fullmatch(value):
        section.fail(key, "a Slack channel id like C0123ABCD (in Slack: the channel's "
                     "details, at the bottom), not its name", value)
    return value


def parse_slack(source: Path, data: object) -> SlackConfig:
    sl = _Section(source, "slack", data, {"url", "default_channel", "channels", "regions",
                                          "account_manager_field", "ase_field", "region_field"})
    rules = []
    raw_rules = sl.data.get("channels", [])
    if not isinstance(raw_rules, list):
        sl.fail("channels", "an array of tables ([[slack.channels]])", raw_rules)
    for raw in raw_rules:
        rule = _Section(source, "slack.channels", raw,
                        {"channel", "tags", "brands", "forms", "organization_tags",
                         "organization_fields"})
        fields = rule.data.get("organization_fields", {})
        if not isinstance(fields, dict) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in fields.values()):
            rule.fail("organization_fields", 'a table of field = "value"', fields)
        parsed = ChannelRule(channel=_channel_id(rule, "channel"),
                             tags=_list(rule, "tags", str, rule.data),
                             brands=_list(rule, "brands", int, rule.data),
                             forms=_list(rule, "forms", int, rule.data),
                             organization_tags=_list(rule, "organization_tags", str, rule.data),
                             organization_fields=tuple((k, str(v)) for k, v in fields.items()))
        if not (parsed.tags or parsed.brands or parsed.forms or parsed.organization_tags
                or parsed.organization_fields):
            rule.fail("channel", "a rule with tags, brands, forms, organization_tags or "
                      "organization_fields", parsed.channel)
        rules.append(parsed)
    regions = []
    raw_regions = sl.data.get("regions", [])
    if not isinstance(raw_regions, list):
        sl.fail("regions", "an array of tables ([[slack.regions]])", raw_regions)
    for raw in raw_regions:
        region = _Section(source, "slack.regions", raw, {"name", "group", "hours"})
        hours = region.text("hours")
        start, _, end = hours.partition("-")
        if not end:
            region.fail("hours", "UTC hours like 13:00-21:00", hours)
        regions.append(Region(name=region.text("name"), group=region.text("group").lstrip("@"),
                              start=_clock_time(region, "hours", start.strip()),
                              end=_clock_time(region, "hours", end.strip())))
    return SlackConfig(
        default_channel=_channel_id(sl, "default_channel"),
        url=sl.api_url("url", "https://slack.com/api/") + "/",
        channels=tuple(rules), regions=tuple(regions),
        account_manager_field=sl.text("account_manager_field", "account_manager"),
        ase_field=sl.text("ase_field", "ase"),
        region_field=sl.text("region_field", "region"),
    )


# GitLab's label names: any text but a comma (the API's list separator) or a line break.
LABEL = re.compile(r"[^,\n\r]{1,255}")


def parse_gitlab(source: Path, data: object) -> GitLabConfig:
    gl = _Section(source, "gitlab", data, {"url", "project", "template", "labels",
                                           "timeout_seconds"})
    project = gl.text("project")
    if not (project.isdigit() or re.fullmatch(r"[\w.-]+(/[\w.-]+)+", project)):
        gl.fail("project", "the project's path like support/emergencies, or its numeric id",
                project)
    labels = _list(gl, "labels", str, gl.data)
    for label in labels:
        if not LABEL.fullmatch(label) or not label.strip():
            gl.fail("labels", "label names without commas or line breaks", label)
    return GitLabConfig(url=gl.api_url("url"), project=project, template=gl.text("template"),
                        labels=tuple(label.strip() for label in labels),
                        timeout_seconds=gl.number("timeout_seconds", 10.0, 1, 120))
