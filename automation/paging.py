"""The PagerDuty side of an emergency: find its page, page when nobody did, resolve after
contact, and page the Support Manager when the on-call already has an emergency.

The worker never acknowledges an incident for anyone: that would silence the page. Each
write is keyed (`zendesk-<ticket id>`, `zendesk-<ticket id>-manager`) and recorded on the
ticket with a tag, so a restart or a second worker pages nobody twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from automation.clock import Clock
from automation.config import PagerDutyConfig
from automation.model import Assessment, Snapshot, State, Ticket
from automation.pagerduty import Incident, PagerDuty
from automation.workflow import (
    INCIDENT_TAG_PREFIX,
    MANAGER_PAGED_TAG,
    PAGED_TAG,
    Coverage,
    Page,
    coverage_at,
)
from automation.zendesk import Zendesk

log = logging.getLogger(__name__)

INCIDENT_TAG = re.compile(rf"^{INCIDENT_TAG_PREFIX}([a-z0-9]+)$")


def incident_key(ticket_id: int) -> str:
    return f"zendesk-{ticket_id}"


def manager_key(ticket_id: int) -> str:
    return f"zendesk-{ticket_id}-manager"


def incident_tag(incident_id: str) -> str:
    return f"{INCIDENT_TAG_PREFIX}{incident_id.lower()}"


def incident_from_tags(tags: tuple[str, ...]) -> str | None:
    for tag in tags:
        match = INCIDENT_TAG.match(tag)
        if match:
            return match.group(1).upper()  # PagerDuty ids are upper case; Zendesk lowers tags
    return None


def matches_ticket(incident: Incident, ticket_id: int) -> bool:
    """Our key, or the ticket's number or URL in the title (Zendesk's own integration)."""
    if incident.incident_key == incident_key(ticket_id):
        return True
    return re.search(rf"(#|/tickets/|ticket )\s*{ticket_id}\b", incident.title) is not None


@dataclass(frozen=True)
class Profile:
    """Which on-call answers a ticket: its service, escalation policy and coverage hours."""

    name: str
    service_id: str
    escalation_policy_id: str
    coverage: Coverage | None  # None: around the clock


@dataclass(frozen=True)
class Done:
    """One PagerDuty write made (for the report and the journal)."""

    ticket_id: int
    step: str
    detail: str


class Paging:
    """Reads the open incidents once per pass; pages, resolves and escalates per ticket."""

    def __init__(self, pagerduty: PagerDuty, zendesk: Zendesk, config: PagerDutyConfig,
                 clock: Clock) -> None:
        self.pd = pagerduty
        self.zendesk = zendesk
        self.config = config
        self.clock = clock
        self.open: list[Incident] = []
        self._seen_status: dict[int, tuple[str | None, str | None]] = {}
        # Tickets whose page a person already resolved: never paged again by this process.
        self._handled_elsewhere: set[int] = set()

    def close(self) -> None:
        self.pd.close()

    @property
    def service_ids(self) -> list[str]:
        ids = [self.config.service_id]
        if self.config.federal is not None:
            ids.append(self.config.federal.service_id)
        if self.config.managers_service_id:
            ids.append(self.config.managers_service_id)
        return ids

    def profile(self, ticket: Ticket, now: datetime) -> Profile:
        """US Federal when the federal rule matches the ticket, else the Customer Support one."""
        federal = self.config.federal
        if federal is not None:
            organization = self.zendesk.organization(ticket.organization_id)
            if federal.applies_to(organization.tags if organization else (), ticket.brand_id,
                                  ticket.form_id):
                return Profile("US Federal", federal.service_id, federal.escalation_policy_id,
                               coverage_at(now, federal.timezone,
                                           *federal.coverage))
        return Profile("Customer Support", self.config.service_id,
                       self.config.escalation_policy_id, None)

    def begin_pass(self) -> None:
        """The one PagerDuty listing of a pass."""
        self.open = self.pd.open_incidents(self.service_ids)

    def page_for(self, snapshot: Snapshot, now: datetime) -> Page:
        """The ticket's incident among the open ones (the facts the workflow decides on)."""
        ticket = snapshot.ticket
        service = self.profile(ticket, now).service_id
        incident = next((i for i in self.open if i.service_id == service
                         and matches_ticket(i, ticket.id)), None)
        if incident is None:
            recorded = incident_from_tags(ticket.tags)
            return Page(incident_id=recorded, status="resolved" if recorded else None)
        acknowledged_by = None
        if incident.status == "acknowledged" and incident.acknowledger_ids:
            acknowledged_by = self.pd.user(incident.acknowledger_ids[-1]).email
        return Page(incident_id=incident.id, status=incident.status,
                    acknowledged_by=acknowledged_by, created_at=incident.created_at)

    def wants(self, ticket: Ticket, now: datetime) -> bool:
        """Whether the ticket needs a read for PagerDuty's sake: its page moved since this
        process last looked (an acknowledgement changes nothing on the Zendesk ticket), or it
        is time to page for it."""
        profile = self.profile(ticket, now)
        incident = next((i for i in self.open if matches_ticket(i, ticket.id)
                         and i.service_id == profile.service_id), None)
        seen = (incident.id, incident.status) if incident else (None, None)
        if self._seen_status.get(ticket.id) != seen:
            return True
        closed = profile.coverage is not None and not profile.coverage.open_now
        return (incident is None and self.config.trigger_incidents and not closed
                and PAGED_TAG not in ticket.tags and ticket.id not in self._handled_elsewhere
                and incident_from_tags(ticket.tags) is None
                and now >= ticket.created_at + timedelta(minutes=self.config.trigger_after_minutes))

    def remember(self, ticket_id: int) -> None:
        incident = next((i for i in self.open if matches_ticket(i, ticket_id)
                         and i.service_id != self.config.managers_service_id), None)
        self._seen_status[ticket_id] = (incident.id, incident.status) if incident else (
            None, None)

    # --- the writes ----------------------------------------------------------------------------

    def act(self, snapshot: Snapshot, assessment: Assessment, page: Page, now: datetime,
            busy: dict[str, int]) -> list[Done]:
        """Everything PagerDuty needs for this ticket now, in the runbook's order."""
        done: list[Done] = []
        ticket = snapshot.ticket
        if assessment.state in (State.SOLVED, State.NOT_URGENT, State.CLOSED_TO_HIGH):
            return done
        if assessment.contact_at is not None:
            # Only the page that brought someone to the ticket is resolved by its contact: a
            # page sent by hand afterwards (to reach an engineer) is the person's to close.
            answered = page.created_at is None or page.created_at <= assessment.contact_at
            if page.incident_id and page.status in ("triggered", "acknowledged") and \
                    answered and self._engaged(snapshot, assessment, page):
                done.append(self._resolve(snapshot, assessment, page.incident_id))
            return done
        incident_id = page.incident_id
        profile = self.profile(ticket, now)
        if profile.coverage is not None and not profile.coverage.open_now:
            return done  # outside coverage: the off-hours reply, no page
        if incident_id is None and ticket.id not in self._handled_elsewhere and \
                self._should_trigger(snapshot, now, profile):
            incident = self._trigger(snapshot, profile)
            done.append(Done(ticket.id, "paged", f"incident {incident.id} on the "
                                                  f"{profile.name} service"))
            self.open.append(incident)
            incident_id = incident.id
        if incident_id is not None and self.config.managers_service_id and \
                MANAGER_PAGED_TAG not in ticket.tags:
            engineer = self._engineer(incident_id)
            other = busy.get(engineer.lower()) if engineer else None
            if other is not None and other != ticket.id:
                done.append(self._page_manager(snapshot, engineer or "", other))
        return done

    def _engaged(self, snapshot: Snapshot, assessment: Assessment, page: Page) -> bool:
        """A person is on it: they acknowledged the page, or made contact themselves.

        The team's fallback acknowledgement is contact too, but nobody has taken the page
        yet: it keeps escalating until a person acknowledges it.
        """
        if page.status == "acknowledged":
            return True
        author = snapshot.people.get(assessment.contact_by or 0)
        return author is not None and author.email.lower() != self.zendesk.email.lower()

    def _should_trigger(self, snapshot: Snapshot, now: datetime, profile: Profile) -> bool:
        ticket = snapshot.ticket
        if not self.config.trigger_incidents or PAGED_TAG in ticket.tags:
            return False
        if now < ticket.created_at + timedelta(minutes=self.config.trigger_after_minutes):
            return False  # give Zendesk's own PagerDuty integration its chance first
        # A resolved incident with our key means a person already handled this emergency's
        # page (one from before the ticket last became urgent belongs to an earlier one).
        earlier = self.pd.incident_by_key(incident_key(ticket.id), [profile.service_id])
        if earlier is not None and (snapshot.urgent_since is None
                                    or earlier.created_at >= snapshot.urgent_since):
            self._handled_elsewhere.add(ticket.id)
            return False
        return True

    def _trigger(self, snapshot: Snapshot, profile: Profile) -> Incident:
        ticket = snapshot.ticket
        url = self.zendesk.agent_url(ticket.id)
        incident = self.pd.trigger(
            profile.service_id, f"Emergency: Zendesk ticket #{ticket.id}: {ticket.subject}",
            incident_key(ticket.id), f"Customer emergency on Zendesk: {url}")
        self.zendesk.ensure_tags(snapshot.ticket, [PAGED_TAG, incident_tag(incident.id)])
        return incident

    def _engineer(self, incident_id: str) -> str | None:
        incident = next((i for i in self.open if i.id == incident_id), None)
        if incident is None or not incident.assignee_ids:
            return None
        return self.pd.user(incident.assignee_ids[0]).email

    def _page_manager(self, snapshot: Snapshot, engineer: str, other_ticket: int) -> Done:
        ticket = snapshot.ticket
        assert self.config.managers_service_id is not None
        incident = self.pd.trigger(
            self.config.managers_service_id,
            f"Second emergency: Zendesk ticket #{ticket.id} while the on-call ({engineer}) "
            f"handles #{other_ticket}",
            manager_key(ticket.id),
            f"The on-call engineer {engineer} is already on emergency #{other_ticket} "
            f"({self.zendesk.agent_url(other_ticket)}). Find an engineer for "
            f"{self.zendesk.agent_url(ticket.id)}.")
        self.zendesk.ensure_tags(snapshot.ticket, [MANAGER_PAGED_TAG])
        return Done(ticket.id, "manager-paged",
                    f"on-call {engineer} is busy with #{other_ticket}: Support Manager paged "
                    f"(incident {incident.id})")

    def _resolve(self, snapshot: Snapshot, assessment: Assessment, incident_id: str) -> Done:
        ticket = snapshot.ticket
        who = snapshot.people.get(assessment.contact_by or 0)
        name = who.name if who else f"user {assessment.contact_by}"
        when = f"{assessment.contact_at:%Y-%m-%d %H:%M} UTC" if assessment.contact_at else ""
        self.pd.add_note(incident_id, (
            f"Customer contacted on Zendesk ticket #{ticket.id} "
            f"({self.zendesk.agent_url(ticket.id)}) by {name} at {when}. Resolving the page: "
            "here 'resolved' means the emergency is engaged, not fixed."))
        self.pd.resolve(incident_id)
        return Done(ticket.id, "incident-resolved", f"incident {incident_id} resolved after "
                                                     f"contact by {name}")
