"""What a pass or a command reads about one ticket, and what its templates may use."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from automation import workflow
from automation.config import WorkflowConfig
from automation.model import Assessment, Snapshot
from automation.zendesk import Zendesk


def read_snapshot(zendesk: Zendesk, ticket_id: int) -> Snapshot:
    """The ticket as the workflow needs it; its audits too when contact might predate it."""
    snapshot = zendesk.snapshot(ticket_id)
    if workflow.needs_history(snapshot):
        history = zendesk.history(ticket_id)
        snapshot = replace(snapshot, urgent_since=history.urgent_since,
                           tags_added_at=history.tags_added_at)
    return snapshot


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
