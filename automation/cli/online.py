"""`emergency check --online`: each service's token, then every id config.toml gives for it,
tried against the service itself; `check.py` checks the same file offline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import methodcaller
from typing import TYPE_CHECKING, Generic, TypeVar

from automation import config
from automation.cli.exits import EXIT_CONFIG, EXIT_OK, EXIT_UNREACHABLE
from automation.errors import (
    AutomationError,
    ConfigError,
    CredentialsRejected,
    NotFound,
    Unreachable,
)

if TYPE_CHECKING:
    from automation.gitlab import GitLab
    from automation.pagerduty import PagerDuty
    from automation.slack import Slack
    from automation.zendesk import Zendesk

Client = TypeVar("Client")


# How long one request of `check --online` may retry (as [zendesk] max_retry_seconds' default):
# an unreachable service is reported within seconds.
ONLINE_RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class Probe:
    """One token or configured id tried against its service: what it is, or what is wrong."""

    service: str  # zendesk, slack, pagerduty
    item: str  # what was tried, e.g. "view 360001 ([zendesk] view_id)"
    detail: str  # ok: what the service said; else what is wrong and what was expected
    code: int = EXIT_OK  # EXIT_CONFIG: a wrong id; EXIT_UNREACHABLE: a token refused, no answer
    checked: bool = True  # False: not tried, the service having failed before it

    @property
    def ok(self) -> bool:
        return self.checked and self.code == EXIT_OK


@dataclass(frozen=True)
class OnlineCheck:
    probes: list[Probe]

    @property
    def failures(self) -> int:
        return sum(1 for p in self.probes if p.code != EXIT_OK)

    @property
    def unchecked(self) -> int:
        return sum(1 for p in self.probes if not p.checked)

    @property
    def exit_code(self) -> int:
        """3 when a token was refused or a service did not answer, else 2 for a wrong id."""
        codes = {p.code for p in self.probes}
        return next((c for c in (EXIT_UNREACHABLE, EXIT_CONFIG) if c in codes), EXIT_OK)


class _Wrong(Exception):
    """Raised by a probe whose service answered, but not what config.toml expects."""

    def __init__(self, text: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(text)
        self.code = code


class _Prober(Generic[Client]):
    """One service's probes, in order. After a refused token or no answer the rest are listed
    as not checked: each would fail the same way, after its own retries."""

    def __init__(self, service: str, client: Client | ConfigError) -> None:
        self.service = service
        self.client = client
        self.probes: list[Probe] = []
        self.stopped = ""

    def run(self, item: str, attempt: Callable[[Client], str], missing: str = "") -> None:
        """Record what ``attempt`` found; ``missing`` says what was expected on a 404."""
        if self.stopped:
            self.probes.append(Probe(self.service, item, self.stopped, checked=False))
        elif isinstance(self.client, ConfigError):  # e.g. its token is not set
            self.probes.append(Probe(self.service, item, str(self.client), EXIT_CONFIG))
            self.stopped = "no client to try it with"
        else:
            self.probes.append(self._probe(item, attempt, self.client, missing))

    def _probe(self, item: str, attempt: Callable[[Client], str], client: Client,
               missing: str) -> Probe:
        try:
            return Probe(self.service, item, attempt(client))
        except _Wrong as exc:
            code, detail = exc.code, str(exc)
        except NotFound as exc:
            code, detail = EXIT_CONFIG, f"{missing or 'not found'}; {exc}"
        except CredentialsRejected as exc:
            code, detail = EXIT_UNREACHABLE, str(exc)
            self.stopped = "the token was refused"
        except Unreachable as exc:
            code, detail = EXIT_UNREACHABLE, str(exc)
            self.stopped = "the service did not answer"
        except AutomationError as exc:  # a request refused as invalid, or lacking a scope
            code, detail = EXIT_CONFIG, str(exc)
        if code == EXIT_UNREACHABLE:
            self.stopped = self.stopped or "the credentials were not taken"
        return Probe(self.service, item, detail, code)


def check_online(cfg: config.Config, zendesk: Zendesk | ConfigError,
                 slack: Slack | ConfigError | None,
                 pagerduty: PagerDuty | ConfigError | None,
                 gitlab: GitLab | ConfigError | None = None) -> OnlineCheck:
    """Try each service's token, then every id config.toml gives for it."""
    probes = _zendesk_probes(cfg, zendesk)
    if cfg.slack is not None and slack is not None:
        probes += _slack_probes(cfg.slack, slack)
    if cfg.pagerduty is not None and pagerduty is not None:
        probes += _pagerduty_probes(cfg.pagerduty, pagerduty)
    if cfg.gitlab is not None and gitlab is not None:
        probes += _gitlab_probes(cfg.gitlab, gitlab)
    return OnlineCheck(probes)


def _gitlab_probes(cfg: config.GitLabConfig, gitlab: GitLab | ConfigError) -> list[Probe]:
    prober = _Prober("gitlab", gitlab)
    prober.run("token", lambda gl: f"signs in as @{gl.whoami()}")
    prober.run(f"template {cfg.template!r} in {cfg.project} ([gitlab] project, template)",
               lambda gl: f"{len(gl.template(cfg.template))} characters",
               "no such project, or no issue template of that name in it; expected the "
               "project's path (group/name) and the name of a file in its "
               ".gitlab/issue_templates/, without .md")
    return prober.probes


def _zendesk_probes(cfg: config.Config, zendesk: Zendesk | ConfigError) -> list[Probe]:
    prober = _Prober("zendesk", zendesk)
    prober.run("API user", lambda zd: _api_user(zd, cfg.zendesk.email))
    view_id = cfg.zendesk.view_id
    if view_id is not None:
        prober.run(f"view {view_id} ([zendesk] view_id)",
                   lambda zd: f"{zd.view_title(view_id)!r}",
                   "no such view; expected the id of a view the API user can read (the "
                   "number at the end of the view's address in Zendesk)")
    title = cfg.macros.get("post_call")
    if title:
        prober.run("macro ([macros] post_call)", lambda zd: f"{title!r}, id {zd.macro_id(title)}",
                   "expected the exact title of an active macro, as Zendesk shows it")
    return prober.probes


def _api_user(zendesk: Zendesk, email: str) -> str:
    user = zendesk.api_user()
    if user is None:
        raise _Wrong("Zendesk answered as its anonymous user: it took no credentials; check "
                     "[zendesk] email and ZENDESK_API_TOKEN (an API token of that user)",
                     EXIT_UNREACHABLE)
    if user.email.lower() != email.lower():
        raise _Wrong(f"the token signs in as {user.email}; expected [zendesk] email {email}")
    if user.role not in ("agent", "admin"):
        raise _Wrong(f"{user.email} is an {user.role}; expected an agent or admin (the worker "
                     "posts as this user): give it an agent role, or name an agent in "
                     "[zendesk] email")
    return f"{user.email} ({user.name}), {user.role}"


def _slack_probes(cfg: config.SlackConfig, slack: Slack | ConfigError) -> list[Probe]:
    prober = _Prober("slack", slack)
    prober.run("token", _bot)
    for channel_id, keys in _channel_uses(cfg):
        prober.run(f"channel {channel_id} ({keys})", partial(_channel, channel_id=channel_id),
                   "no channel with this id that the bot can see; expected a channel id like "
                   "C0123ABCD (in Slack: the channel's details, at the bottom; a private "
                   "channel shows only once the app is invited)")
    for region in cfg.regions:
        prober.run(f"group @{region.group} ([[slack.regions]] {region.name})",
                   partial(_group, handle=region.group))
    return prober.probes


def _bot(slack: Slack) -> str:
    me = slack.auth_test()
    return f"bot @{me.user} ({me.user_id}) in {me.team or me.team_id}"


def _channel_uses(cfg: config.SlackConfig) -> list[tuple[str, str]]:
    """Each channel id once, with the keys that name it."""
    uses: dict[str, list[str]] = {cfg.default_channel: ["default_channel"]}
    for number, rule in enumerate(cfg.channels, 1):
        uses.setdefault(rule.channel, []).append(f"[[slack.channels]] {number}")
    return [(channel, ", ".join(keys)) for channel, keys in uses.items()]


def _channel(slack: Slack, channel_id: str) -> str:
    info = slack.channel_info(channel_id)
    if info.is_archived:
        raise _Wrong(f"#{info.name} is archived; expected a channel in use (unarchive it, or "
                     "name another)")
    if not info.is_member:
        # A bot reads a channel's history only from inside: it would not find its threads.
        raise _Wrong(f"the bot is not in #{info.name}; invite the app there (/invite "
                     f"@{slack.auth_test().user} in #{info.name})")
    return f"#{info.name}, the bot is a member"


def _group(slack: Slack, handle: str) -> str:
    group_id = slack.usergroup_id(handle)
    if group_id is None:
        raise _Wrong(f"no user group @{handle}; expected the handle of a Slack user group "
                     "(in Slack: People, User groups)")
    return group_id


def _pagerduty_probes(cfg: config.PagerDutyConfig,
                      pagerduty: PagerDuty | ConfigError) -> list[Probe]:
    prober = _Prober("pagerduty", pagerduty)
    prober.run("token", _token_kind)
    federal = cfg.federal
    for key, service_id in (
            ("service_id", cfg.service_id), ("managers_service_id", cfg.managers_service_id),
            ("[pagerduty.federal] service_id", federal.service_id if federal else None)):
        if service_id:
            prober.run(f"service {service_id} ({key})",
                       methodcaller("service_name", service_id),
                       "no such service; expected the id at the end of the service's address "
                       "in PagerDuty (.../service-directory/PXXXXXX)")
    for key, policy_id in (
            ("escalation_policy_id", cfg.escalation_policy_id),
            ("[pagerduty.federal] escalation_policy_id",
             federal.escalation_policy_id if federal else None)):
        if policy_id:
            prober.run(f"escalation policy {policy_id} ({key})",
                       methodcaller("escalation_policy_name", policy_id),
                       "no such escalation policy; expected the id at the end of its address "
                       "in PagerDuty (.../escalation_policies/PXXXXXX)")
    prober.run(f"user {cfg.from_email} (from_email)",
               partial(_from_user, email=cfg.from_email))
    return prober.probes


def _token_kind(pagerduty: PagerDuty) -> str:
    owner = pagerduty.token_owner()
    if owner is None:
        return "an account-level REST API token"
    return (f"a user token of {owner.name} <{owner.email}>: PagerDuty records every write as "
            "theirs, and `page` refuses to page them")


def _from_user(pagerduty: PagerDuty, email: str) -> str:
    user = pagerduty.user_by_email(email)
    if user is None:
        raise _Wrong("no PagerDuty user has this email; expected a user of the account (a bot "
                     "user, say): PagerDuty takes a write only From one of its users")
    return f"{user.name} ({user.id})"
