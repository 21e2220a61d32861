"""What a pass or a command reads about one ticket, and what its templates may use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from automation import workflow
from automation.config import WorkflowConfig
from automation.model import Assessment, Snapshot, State, Step
from automation.store import TrackedTicket


def template_context(snapshot: Snapshot, assessment: Assessment, settings: WorkflowConfig,
                     policy: workflow.Policy, organization: Any,
                     now: datetime) -> dict[str, Any]:
    """Everything a template may use. Customer text arrives here as data only."""
    ticket = snapshot.ticket
    requester = snapshot.people.get(ticket.requester_id)
    # The bridge stays the one offered at contact (the engineer's own, when they made it).
    contact = snapshot.people.get(assessment.contact_by or 0)
    bridge = settings.bridge_for(contact.email if contact else None)
    return {
        "ticket": {"id": ticket.id, "subject": ticket.subject, "url": ticket.url,
                   "priority": ticket.priority},
        "requester": {"name": requester.name if requester and requester.name else "there",
                      "email": requester.email if requester else ""},
        "organization": {"name": organization.name} if organization else None,
        "bridge_url": bridge,
        "signature": settings.signature,
        "engineer": None,
        "contact_at": assessment.contact_at,
        "follow_up_after": policy.follow_up_after,
        "close_after": policy.close_after,
        "now": now,
    }


def step_context(snapshot: Snapshot, assessment: Assessment, settings: WorkflowConfig,
                 policy: workflow.Policy, now: datetime, step: Step,
                 posted_as: tuple[str, str | None] | None = None,
                 coverage: workflow.Coverage | None = None) -> dict[str, Any]:
    """What the worker's step templates get: ``posted_as`` is (email, name) of the engineer
    who acknowledged the page (name None: not a Zendesk agent); ``coverage`` for off-hours."""
    context = template_context(snapshot, assessment, settings, policy, snapshot.organization,
                               now)
    if posted_as is not None:
        context["bridge_url"] = settings.bridge_for(posted_as[0])
        context["engineer"] = posted_as[1]
    if step is Step.OFF_HOURS:
        context["coverage_hours"] = coverage.hours if coverage else ""
        context["resumes_at"] = coverage.opens_at if coverage else None
    context["briefs"] = workflow.relevant_briefs(snapshot, now)
    return context


def thread_note_context(permalink: str, account_manager: str | None,
                        ase: str | None) -> dict[str, Any]:
    """What the internal note recording an emergency's Slack thread gets (emails, not ids)."""
    return {"permalink": permalink, "account_manager": account_manager, "ase": ase}


def command_context(snapshot: Snapshot, assessment: Assessment, settings: WorkflowConfig,
                    policy: workflow.Policy, organization: Any, now: datetime,
                    author: tuple[str, str] | None) -> dict[str, Any]:
    """What an engineer's command's templates get: ``author`` is (email, name) of `--as`
    (None: signed by the team); each command adds its own input on top."""
    context = template_context(snapshot, assessment, settings, policy, organization, now)
    context["engineer"] = author[1] if author else settings.signature
    if author is not None and assessment.contact_at is None:
        context["bridge_url"] = settings.bridge_for(author[0])
    return context


def tracked(snapshot: Snapshot, assessment: Assessment, now: datetime) -> TrackedTicket:
    """What `status` shows of a ticket, as a pass or a command last saw it."""
    ticket = snapshot.ticket
    contact = snapshot.people.get(assessment.contact_by or 0)
    return TrackedTicket(
        ticket_id=ticket.id, subject=ticket.subject, updated_at=ticket.updated_stamp,
        state=assessment.state, next_step=assessment.next_step, due_at=assessment.due_at,
        active=assessment.state != State.SOLVED, seen_at=now,
        contact_email=contact.email if contact else None, contact_at=assessment.contact_at)
