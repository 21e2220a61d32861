"""The kinds of ticket every template must render for, before the worker starts.

A template override that fails on one kind of ticket (no organization, a requester without a
name, several briefs, Unicode, a federal ticket outside its hours, ...) would fail for that
customer only, in the middle of the night, while every pass looks healthy. So `check`, `tick`
and `run` first render each template with each shape below, through the very context
builders the worker and the commands use (`facts.py`), and refuse to start when one fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from automation.config import Config
from automation.errors import TemplateError
from automation.facts import command_context, step_context, thread_note_context
from automation.model import (
    Assessment,
    Brief,
    Comment,
    Organization,
    Person,
    Snapshot,
    State,
    Step,
    Ticket,
)
from automation.templates import REGISTRY, Templates
from automation.workflow import Coverage

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REQUESTER, AGENT, ENGINEER = 1, 100, 101

# The worker's step templates, and which step renders each.
STEP_TEMPLATES = {"acknowledgement": Step.ACKNOWLEDGE, "follow_up": Step.FOLLOW_UP,
                  "bridge_closed": Step.CLOSE, "off_hours": Step.OFF_HOURS,
                  "brief_link": Step.LINK_BRIEF}


@dataclass(frozen=True)
class Shape:
    """One kind of ticket, as the templates see it."""

    name: str
    subject: str = "Production is down: 502 on every request"
    requester: Person | None = Person(REQUESTER, "Dana Customer", "dana@example.com",
                                      "end-user")
    organization: Organization | None = Organization(
        1, "Example Corp", {"account_manager": "marco@example.com", "ase": "giulia@example.com"})
    briefs: int = 1
    contact: bool = True  # someone made contact (the follow-up and the close come after it)
    engineer: str | None = None  # who acknowledged the page or ran the command (None: team)
    coverage: Coverage | None = None
    command_input: dict[str, Any] = field(default_factory=dict)


def shapes() -> list[Shape]:
    """Realistic tickets, each unlike the others in what a template may stumble on."""
    closed = Coverage(False, None, NOW + timedelta(hours=8), "05:00-17:00 America/Los_Angeles")
    return [
        Shape("a typical emergency"),
        Shape("a ticket without an organization", organization=None, briefs=0),
        Shape("a requester without a name",
              requester=Person(REQUESTER, "", "noname@example.com", "end-user")),
        Shape("a requester Zendesk could not find", requester=None),
        Shape("an organization without briefs or account people",
              organization=Organization(2, "Initech"), briefs=0),
        Shape("several briefs", briefs=3),
        Shape("no contact made yet", contact=False),
        Shape("acknowledged by the engineer who took the page", engineer="Francesca Rossi",
              contact=False),
        Shape("Unicode everywhere", subject="Сервис недоступен — 服务中断 🚨 «urgent»",
              requester=Person(REQUESTER, "Zoë Ørsted-Nakamura", "zoe@example.com",
                               "end-user"),
              organization=Organization(3, "Société Générale d'Été ☀", {"ase": "ä@example.com"})),
        Shape("a US Federal ticket outside coverage hours", coverage=closed, contact=False,
              organization=Organization(4, "Agency of Examples", tags=("us_federal",))),
        Shape("a command with every optional input left out",
              command_input={"available_until": None, "next_engineer": None,
                             "macro_body": None, "internal_notes": ""}),
    ]


def validate(templates: Templates, cfg: Config) -> None:
    """Render every template for every shape; the first failure is a TemplateError naming
    the template, its line and the shape."""
    for shape in shapes():
        for name, context in contexts(shape, cfg):
            try:
                templates.render(name, context)
            except TemplateError as exc:
                raise TemplateError(f"{exc} (for {shape.name})") from None


def contexts(shape: Shape, cfg: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(template, the context its caller passes it) for every registered template."""
    snapshot, assessment = _facts(shape)
    for name, step in STEP_TEMPLATES.items():
        posted_as = ("engineer@example.com", shape.engineer) \
            if step is Step.ACKNOWLEDGE and shape.engineer else None
        yield name, step_context(snapshot, assessment, cfg.workflow, cfg.policy, NOW, step,
                                 posted_as, shape.coverage)
    author = ("engineer@example.com", shape.engineer) if shape.engineer else None
    base = command_context(snapshot, assessment, cfg.workflow, cfg.policy,
                           snapshot.organization, NOW, author)
    inputs = _command_input(shape)
    yield "post_call", {k: v for k, v in {**base, **inputs}.items() if k != "internal_notes"}
    yield "post_call_internal", {**base, **inputs}
    yield "not_emergency", {**base, "reason": "Only the staging system is affected.",
                            "informed": "The account manager"}
    yield "escalation", {**base, "reason": "The upgrade fails and no known fix applies.",
                         "manager_service": "Support Managers"}
    yield "brief", {**base, "brief": {"planned": "Upgrade to 17.2", "when": NOW,
                                      "problems": "", "solutions": "", "architecture": ""}}
    fields = shape.organization.fields if shape.organization else {}
    yield "slack_thread_note", thread_note_context(
        "https://example.slack.com/archives/C0123/p1767603600000100",
        _text(fields.get("account_manager")), _text(fields.get("ase")))
    yield "gitlab_issue_note", {"issue": {
        "url": "https://gitlab.example.com/support/emergencies/-/issues/7", "iid": 7,
        "project": "support/emergencies"}}
    missing = set(REGISTRY) - set(STEP_TEMPLATES) - {
        "post_call", "post_call_internal", "not_emergency", "escalation", "brief",
        "slack_thread_note", "gitlab_issue_note"}
    assert not missing, f"no shape context for {missing}"


def _facts(shape: Shape) -> tuple[Snapshot, Assessment]:
    ticket = Ticket(id=12345, subject=shape.subject, status="open", priority="urgent",
                    tags=(), requester_id=REQUESTER,
                    organization_id=shape.organization.id if shape.organization else None,
                    created_at=NOW, updated_at=NOW, updated_stamp="2026-01-05T09:00:00Z",
                    url="https://example.zendesk.com/api/v2/tickets/12345.json")
    people = {AGENT: Person(AGENT, "Sam Engineer", "sam@example.com", "agent")}
    if shape.requester is not None:
        people[REQUESTER] = shape.requester
    comments: tuple[Comment, ...] = (Comment(1, REQUESTER, True, NOW, "Nothing works."),)
    if shape.contact:
        comments += (Comment(2, AGENT, True, NOW + timedelta(minutes=2), "On it."),)
    briefs = tuple(Brief(ticket_id=12000 + n, organization_id=ticket.organization_id,
                         organization=shape.organization.name if shape.organization else "",
                         author="Ash ASE", planned=f"Upgrade step {n + 1}", when=NOW,
                         url=f"https://example.zendesk.com/agent/tickets/{12000 + n}",
                         filed_at=NOW - timedelta(days=1)) for n in range(shape.briefs))
    snapshot = Snapshot(ticket=ticket, comments=comments, people=people,
                        organization=shape.organization, briefs=briefs)
    contact_at = NOW + timedelta(minutes=2) if shape.contact else None
    assessment = Assessment(ticket_id=ticket.id,
                            state=State.AWAITING_CUSTOMER if shape.contact else State.NEW,
                            next_step=None, due_at=None, contact_at=contact_at,
                            contact_by=AGENT if shape.contact else None)
    return snapshot, assessment


def _command_input(shape: Shape) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "notes": "We rolled back the upgrade; pushes work again.",
        "internal_notes": "Root cause suspected in the Gitaly config.",
        "available_until": "17:00 UTC", "next_engineer": "Ravi Patel",
        "macro_body": "Thank you for joining the call."}
    return {**inputs, **shape.command_input}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
