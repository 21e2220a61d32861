"""`emergency check`: the config and every template, checked offline with sample data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automation import config
from automation.errors import TemplateError

if TYPE_CHECKING:
    from automation.templates import Templates


@dataclass(frozen=True)
class TemplateCheck:
    """One template rendered with sample data: its first line, or why it failed."""

    name: str
    public: bool = False
    first_line: str = ""
    error: TemplateError | None = None


@dataclass(frozen=True)
class ConfigCheck:
    config: config.Config
    stray_overrides: list[Path] = field(default_factory=list)  # *.j2 that override nothing
    templates: list[TemplateCheck] = field(default_factory=list)
    unset_tokens: list[str] = field(default_factory=list)  # environment variables not set

    @property
    def failures(self) -> int:
        return sum(1 for t in self.templates if t.error is not None)


def check_config(cfg: config.Config, environ: Mapping[str, str]) -> ConfigCheck:
    """Render every template offline and list what tick and run would miss."""
    from automation.templates import REGISTRY, Templates

    stray: list[Path] = []
    if cfg.templates_path is not None:
        stray = [path for path in sorted(cfg.templates_path.glob("*.j2"))
                 if path.stem not in REGISTRY]
    templates = Templates(cfg.templates_path)
    checks = [_check_template(templates, cfg, name) for name in sorted(REGISTRY)]
    wanted = [config.ZENDESK_TOKEN_ENV]
    wanted += [config.PAGERDUTY_TOKEN_ENV] if cfg.pagerduty else []
    wanted += [config.SLACK_TOKEN_ENV] if cfg.slack else []
    unset = [name for name in wanted if config.secret(name, environ) is None]
    return ConfigCheck(cfg, stray, checks, unset)


def _check_template(templates: Templates, cfg: config.Config, name: str) -> TemplateCheck:
    """The template rendered for every kind of ticket (shapes.py): its first failure, or the
    first line it gives for a typical emergency."""
    from automation.shapes import contexts, shapes

    first: TemplateCheck | None = None
    for shape in shapes():
        context = next(c for n, c in contexts(shape, cfg) if n == name)
        try:
            rendered = templates.render(name, context)
        except TemplateError as exc:
            return TemplateCheck(name, error=TemplateError(f"{exc} (for {shape.name})"))
        first = first or TemplateCheck(name, rendered.public, rendered.first_line)
    assert first is not None
    return first


def sample_context(cfg: config.Config) -> dict[str, Any]:
    """Realistic data for rendering every template offline."""
    from automation.facts import template_context
    from automation.model import Assessment, Brief, Person, Snapshot, State, Ticket

    now = datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    ticket = Ticket(id=12345, subject="Production is down: 502 on every request",
                    status="open", priority="urgent", tags=(), requester_id=1,
                    organization_id=None, created_at=now, updated_at=now,
                    updated_stamp="2026-01-05T09:00:00Z")
    snapshot = Snapshot(ticket=ticket, comments=(),
                        people={1: Person(1, "Dana Customer", "dana@example.com", "end-user")})
    assessment = Assessment(ticket_id=ticket.id, state=State.AWAITING_CUSTOMER, next_step=None,
                            due_at=None, contact_at=now)
    org = type("SampleOrganization", (), {"name": "Example Corp"})()
    context = template_context(snapshot, assessment, cfg.workflow, cfg.policy, org, now)
    context.update(
        engineer="Sam Engineer", reason="The customer's staging system is down.",
        informed="The account manager", notes="We rolled back the upgrade; pushes work again.",
        internal_notes="Root cause suspected in the Gitaly config; see the customer's logs.",
        macro_body=None, available_until="17:00 UTC", next_engineer="Francesca Rossi",
        permalink="https://example.slack.com/archives/C0123/p1767603600000100",
        account_manager="marco@example.com", ase="giulia@example.com",
        manager_service="the Support Managers service",
        issue={"url": "https://gitlab.example.com/support/emergencies/-/issues/7", "iid": 7,
               "project": "support/emergencies"},
        coverage_hours="05:00-17:00 America/Los_Angeles", resumes_at=now,
        brief={"planned": "Upgrade to 17.2", "when": now, "problems": "Long migrations",
               "solutions": "Roll back with the backup", "architecture": "3 Gitaly nodes"},
        briefs=[Brief(ticket_id=12000, organization_id=1, organization="Example Corp",
                      author="Ash ASE", planned="Upgrade to 17.2", when=now,
                      url="https://example.zendesk.com/agent/tickets/12000", filed_at=now)],
    )
    return context
