"""One wiring of the worker and the commands, used by the CLI, the demo and the tests.

Integrations are imported only when their section is configured, so a Zendesk-only `tick`
never loads the PagerDuty, Slack or GitLab clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from automation import config as settings
from automation.clock import Clock
from automation.config import Config
from automation.store import Store
from automation.templates import Templates
from automation.zendesk import Zendesk

VALIDATED = 0  # the state file's cache key of the templates last validated
EVER = datetime(1970, 1, 1, tzinfo=UTC)

if TYPE_CHECKING:
    from automation.chat import Chat
    from automation.commands import Commands
    from automation.gitlab import GitLab
    from automation.pagerduty import PagerDuty
    from automation.runbook import Runbook
    from automation.slack import Slack
    from automation.worker import Worker


def build_zendesk(cfg: Config, clock: Clock, environ: Mapping[str, str],
                  store: Store | None = None) -> Zendesk:
    """Zendesk's adapter; with the state file, users and organizations are kept in it."""
    token = settings.zendesk_token(environ)
    return Zendesk(cfg.zendesk.url, cfg.zendesk.email, token, clock,
                   timeout=cfg.zendesk.timeout_seconds,
                   max_retry_seconds=cfg.zendesk.max_retry_seconds,
                   updates_per_minute=cfg.zendesk.updates_per_minute, cache=store)


def build_pagerduty(cfg: Config, clock: Clock, environ: Mapping[str, str]) -> PagerDuty | None:
    """PagerDuty's client when `[pagerduty]` is configured (close it when done)."""
    if cfg.pagerduty is None:
        return None
    from automation.pagerduty import PagerDuty

    pd = cfg.pagerduty
    return PagerDuty(settings.pagerduty_token(environ), pd.from_email, clock, base_url=pd.url,
                     verify=str(pd.ca_file) if pd.ca_file else True)


def build_slack(cfg: Config, clock: Clock, environ: Mapping[str, str]) -> Slack | None:
    """Slack's client when `[slack]` is configured."""
    if cfg.slack is None:
        return None
    from automation.slack import Slack

    return Slack(settings.slack_token(environ), clock, base_url=cfg.slack.url)


def build_chat(cfg: Config, clock: Clock, environ: Mapping[str, str], zendesk: Zendesk,
               store: Store, templates: Templates) -> Chat | None:
    """The Slack side, when `[slack]` is configured."""
    slack = build_slack(cfg, clock, environ)
    if slack is None or cfg.slack is None:
        return None
    from automation.chat import Chat

    return Chat(slack, zendesk, store, templates, cfg.slack)


def build_gitlab(cfg: Config, clock: Clock, environ: Mapping[str, str]) -> GitLab | None:
    """GitLab's client when `[gitlab]` is configured."""
    if cfg.gitlab is None:
        return None
    from automation.gitlab import GitLab

    gl = cfg.gitlab
    return GitLab(gl.url, settings.gitlab_token(environ), gl.project, clock,
                  timeout=gl.timeout_seconds)


def build_runbook(cfg: Config, clock: Clock, environ: Mapping[str, str], zendesk: Zendesk,
                  store: Store, templates: Templates) -> Runbook | None:
    """The Emergency Runbook issues in GitLab, when `[gitlab]` is configured."""
    gitlab = build_gitlab(cfg, clock, environ)
    if gitlab is None or cfg.gitlab is None:
        return None
    from automation.runbook import Runbook

    return Runbook(gitlab, zendesk, store, templates, cfg.gitlab, cfg.workflow)


def build_worker(cfg: Config, clock: Clock, environ: Mapping[str, str]) -> Worker:
    """The worker for `tick`, `run` and the demo: Zendesk, and what config.toml switches on.

    Every template is rendered first for every kind of ticket (shapes.py): one that fails is
    a TemplateError before any pass, never a customer left without their message.
    """
    from automation.worker import Worker

    templates = Templates(cfg.templates_path)
    store = Store(cfg.state_path)
    validate_once(templates, cfg, store)
    zendesk = build_zendesk(cfg, clock, environ, store)
    paging = None
    pagerduty = build_pagerduty(cfg, clock, environ)
    if pagerduty is not None and cfg.pagerduty is not None:
        from automation.paging import Paging

        paging = Paging(pagerduty, zendesk, cfg.pagerduty)
    chat = build_chat(cfg, clock, environ, zendesk, store, templates)
    runbook = build_runbook(cfg, clock, environ, zendesk, store, templates)
    handover = None
    if chat is not None and pagerduty is not None and cfg.pagerduty is not None \
            and cfg.pagerduty.rotations:
        from automation.handover import Handover

        handover = Handover(pagerduty, chat, cfg.pagerduty.rotations)
    return Worker(zendesk, store, templates, cfg, clock, chat=chat, paging=paging,
                  runbook=runbook, handover=handover)


def validate_once(templates: Templates, cfg: Config, store: Store) -> None:
    """`shapes.validate`, unless this process or this state file saw the same templates,
    settings and code pass it: a `tick` a minute from cron then loads no Jinja when it has
    nothing to write, and a process that builds many workers (the demo, the tests) renders
    every template for every kind of ticket once."""
    import hashlib

    from automation import __version__

    # What shapes.validate reads: the templates, [workflow] and [policy], and its own code.
    seen = f"{__version__}\0{cfg.workflow!r}\0{cfg.policy!r}\0{templates.fingerprint}"
    fingerprint = hashlib.sha256(seen.encode()).hexdigest()
    recorded = any(v.get("fingerprint") == fingerprint
                   for v in store.recall("templates", [VALIDATED], EVER))
    if not recorded and fingerprint not in _validated_here:
        from automation.shapes import validate

        validate(templates, cfg)
    _validated_here.add(fingerprint)
    if not recorded:
        store.keep("templates", VALIDATED, {"id": VALIDATED, "fingerprint": fingerprint},
                   datetime.now(UTC))


_validated_here: set[str] = set()  # the fingerprints this process saw validated


def build_commands(cfg: Config, clock: Clock, environ: Mapping[str, str]) -> Commands:
    """The engineers' commands, with Slack and PagerDuty when configured."""
    from automation.commands import Commands

    templates = Templates(cfg.templates_path)
    store = Store(cfg.state_path)
    zendesk = build_zendesk(cfg, clock, environ, store)
    return Commands(zendesk, store, templates, cfg, clock,
                    chat=build_chat(cfg, clock, environ, zendesk, store, templates),
                    pagerduty=build_pagerduty(cfg, clock, environ),
                    runbook=build_runbook(cfg, clock, environ, zendesk, store, templates))
