"""The PagerDuty side of an emergency: find its page, page when nobody did, resolve after
contact, and page the Support Manager when the on-call already has an emergency.

Deciding is pure (`decide`: facts and ``now`` in, intents out); `Paging.carry_out` makes
each write. The worker never acknowledges an incident for anyone: that would silence the
page. Each write is keyed (`zendesk-<ticket id>`, `zendesk-<ticket id>-manager`) and recorded
on the ticket with a tag, so a restart or a second worker pages nobody twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from automation.config import PagerDutyConfig
from automation.model import (
    Assessment,
    Organization,
    PageStep,
    Snapshot,
    State,
    Step,
    Ticket,
)
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


def manager_tag(incident_id: str) -> str:
    """The Support Manager's page, for people (a tag of its own: never taken for the page)."""
    return f"emergency_manager_incident_{incident_id.lower()}"


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


def page_title(ticket: Ticket) -> str:
    return f"Emergency: Zendesk ticket #{ticket.id}: {ticket.subject}"


def page_ticket(pd: PagerDuty, zendesk: Zendesk, snapshot: Snapshot, service_id: str,
                details: str, assignee_id: str | None = None) -> Incident:
    """Trigger the ticket's incident (keyed, so never twice) and record it on the ticket: a
    tag for people, and a stamp in the audit (with the incident) that decides."""
    ticket = snapshot.ticket
    incident = pd.trigger(service_id, page_title(ticket), incident_key(ticket.id), details,
                          assignee_id=assignee_id)
    zendesk.record(snapshot, [PAGED_TAG, incident_tag(incident.id)],
                   episode_stamp(snapshot, PageStep.PAGED, incident=incident.id))
    return incident


def episode_stamp(snapshot: Snapshot, step: str, **detail: str) -> dict[str, object]:
    """The stamp of a write for this emergency."""
    return {"step": str(step), "episode": snapshot.episode_id,
            **detail}


def recorded_incident(snapshot: Snapshot) -> str | None:
    """The incident our page of this emergency opened, as its stamp says."""
    stamp = snapshot.done().get(PageStep.PAGED)
    return stamp.detail.get("incident") if stamp is not None else None


@dataclass(frozen=True)
class Profile:
    """Which on-call answers a ticket: its service, escalation policy and coverage hours."""

    name: str
    service_id: str
    escalation_policy_id: str
    coverage: Coverage | None  # None: around the clock


def profile_for(config: PagerDutyConfig, ticket: Ticket, organization: Organization | None,
                now: datetime) -> Profile:
    """US Federal when the federal rule matches the ticket, else the Customer Support one."""
    federal = config.federal
    if federal is not None and federal.applies_to(organization.tags if organization else (),
                                                  ticket.brand_id, ticket.form_id):
        return Profile("US Federal", federal.service_id, federal.escalation_policy_id,
                       coverage_at(now, federal.timezone, *federal.coverage))
    return Profile("Customer Support", config.service_id, config.escalation_policy_id, None)


# --- intents: what PagerDuty needs for one ticket now ----------------------------------------

@dataclass(frozen=True)
class Trigger:
    """Page the on-call of ``profile`` (unless a person already handled this emergency)."""

    snapshot: Snapshot
    profile: Profile


@dataclass(frozen=True)
class Resolve:
    """Resolve the page: the emergency is engaged (contact made by ``who`` at ``when``)."""

    snapshot: Snapshot
    incident_id: str
    who: str
    when: datetime | None


@dataclass(frozen=True)
class PageManager:
    """The on-call ``engineer`` is busy on ``other_ticket``: page the Support Manager."""

    snapshot: Snapshot
    engineer: str
    other_ticket: int


Intent = Trigger | Resolve | PageManager


@dataclass(frozen=True)
class Done:
    """One PagerDuty write made (for the report, the journal and the thread)."""

    ticket_id: int
    step: PageStep
    detail: str
    incident_id: str = ""


def decide(snapshot: Snapshot, assessment: Assessment, page: Page, profile: Profile,
           config: PagerDutyConfig, now: datetime, busy: dict[str, int],
           bot_email: str) -> list[Intent]:
    """Everything PagerDuty needs for this ticket now, in the runbook's order (pure)."""
    ticket = snapshot.ticket
    if assessment.state in (State.SOLVED, State.NOT_URGENT, State.CLOSED_TO_HIGH):
        return []
    done = snapshot.done()
    unpaged = page.incident_id is None and PageStep.PAGED not in done
    if assessment.contact_at is not None:
        if not engaged(snapshot, assessment, page, bot_email):
            # Only the team's fallback answered: nobody has the page, so it must ring (the
            # worker may have seen the ticket late, or PagerDuty was down until now).
            return [Trigger(snapshot, profile)] if unpaged and open_now(profile) \
                and due_to_trigger(ticket, config, now) else []
        # Only the page that brought someone to the ticket is resolved by its contact: a
        # page sent by hand afterwards (to reach an engineer) is the person's to close.
        answered = page.created_at is None or page.created_at <= assessment.contact_at
        if page.incident_id and page.status in ("triggered", "acknowledged") and answered:
            who = snapshot.people.get(assessment.contact_by or 0)
            return [Resolve(snapshot, page.incident_id,
                            who.name if who else f"user {assessment.contact_by}",
                            assessment.contact_at)]
        return []
    if not open_now(profile):
        return []  # outside coverage: the off-hours reply, no page
    intents: list[Intent] = []
    if unpaged and due_to_trigger(ticket, config, now):
        intents.append(Trigger(snapshot, profile))
    other = busy.get((page.assigned_to or "").lower())
    if (page.incident_id is not None and config.managers_service_id
            and PageStep.MANAGER_PAGED not in done and other is not None
            and other != ticket.id):
        intents.append(PageManager(snapshot, page.assigned_to or "", other))
    return intents


def open_now(profile: Profile) -> bool:
    """Whether the profile's on-call is paged now (always, but outside coverage hours)."""
    return profile.coverage is None or profile.coverage.open_now


def engaged(snapshot: Snapshot, assessment: Assessment, page: Page, bot_email: str) -> bool:
    """A person is on it: they acknowledged the page, or made contact themselves.

    The team's fallback acknowledgement is contact too, but nobody has taken the page
    yet: it keeps escalating until a person acknowledges it.
    """
    if page.status == "acknowledged":
        return True
    ack = snapshot.done().get(Step.ACKNOWLEDGE)
    if ack is not None and ack.detail.get("by") == "hand":
        return True  # an engineer acknowledged by hand (`emergency ack`), as the team
    author = snapshot.people.get(assessment.contact_by or 0)
    return author is not None and author.email.lower() != bot_email.lower()


def due_to_trigger(ticket: Ticket, config: PagerDutyConfig, now: datetime) -> bool:
    """Paging is on, and Zendesk's own PagerDuty integration has had its chance."""
    return (config.trigger_incidents
            and now >= ticket.created_at + timedelta(minutes=config.trigger_after_minutes))


class Paging:
    """Reads the open incidents once per pass, and carries out the PagerDuty intents."""

    def __init__(self, pagerduty: PagerDuty, zendesk: Zendesk, config: PagerDutyConfig) -> None:
        self.pd = pagerduty
        self.zendesk = zendesk
        self.config = config
        self.open: list[Incident] = []
        self._emails: dict[str, str] = {}  # PagerDuty user id -> email, for this pass
        self._seen_status: dict[int, tuple[str | None, str | None]] = {}
        # Tickets whose page a person already resolved: never paged again by this process.
        self._handled_elsewhere: set[tuple[int, int]] = set()  # (ticket, emergency)

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

    def begin_pass(self) -> None:
        """The pass's PagerDuty facts: one listing, and who acknowledged or holds each page."""
        self.open = self.pd.open_incidents(self.service_ids)
        people = {i.acknowledger_ids[-1] for i in self.open if i.acknowledger_ids}
        people |= {i.assignee_ids[0] for i in self.open if i.assignee_ids}
        self._emails = {user_id: self.pd.user(user_id).email for user_id in sorted(people)}

    def incident_for(self, ticket_id: int, service_id: str) -> Incident | None:
        return next((i for i in self.open if i.service_id == service_id
                     and matches_ticket(i, ticket_id)), None)

    def page_for(self, snapshot: Snapshot, profile: Profile) -> Page:
        """The ticket's page among the pass's open incidents (facts for the workflow)."""
        incident = self.incident_for(snapshot.ticket.id, profile.service_id)
        if incident is None:
            recorded = recorded_incident(snapshot)
            return Page(incident_id=recorded, status="resolved" if recorded else None)
        acknowledged_by, acknowledged_at = None, None
        if incident.status == "acknowledged" and incident.acknowledger_ids:
            acknowledged_by = self._emails.get(incident.acknowledger_ids[-1])
            acknowledged_at = incident.acknowledged_at
        assigned_to = self._emails.get(incident.assignee_ids[0]) if incident.assignee_ids \
            else None
        return Page(incident_id=incident.id, status=incident.status,
                    acknowledged_by=acknowledged_by, created_at=incident.created_at,
                    assigned_to=assigned_to, url=incident.html_url or None,
                    acknowledged_at=acknowledged_at)

    def wants(self, ticket: Ticket, profile: Profile, now: datetime) -> bool:
        """Whether the ticket needs a read for PagerDuty's sake: its page moved since this
        process last looked (an acknowledgement changes nothing on the Zendesk ticket), or it
        is time to page for it."""
        incident = self.incident_for(ticket.id, profile.service_id)
        seen = (incident.id, incident.status) if incident else (None, None)
        if self._seen_status.get(ticket.id) != seen:
            return True
        closed = profile.coverage is not None and not profile.coverage.open_now
        # The listing has no audits: the page tag is the hint here; a read decides.
        return (incident is None and not closed
                and not any(t == ticket.id for t, _ in self._handled_elsewhere)
                and PAGED_TAG not in ticket.tags and incident_from_tags(ticket.tags) is None
                and due_to_trigger(ticket, self.config, now))

    def remember(self, ticket_id: int) -> None:
        """This ticket's page as seen now: it is read again only when that changes."""
        incident = next((i for i in self.open if matches_ticket(i, ticket_id)
                         and i.service_id != self.config.managers_service_id), None)
        self._seen_status[ticket_id] = (incident.id, incident.status) if incident else (
            None, None)

    # --- the writes ----------------------------------------------------------------------------

    def carry_out(self, intent: Intent) -> Done | None:
        """Make one PagerDuty write; None when it turned out not to be needed."""
        if isinstance(intent, Trigger):
            return self._trigger(intent)
        if isinstance(intent, Resolve):
            return self._resolve(intent)
        return self._page_manager(intent)

    def _trigger(self, intent: Trigger) -> Done | None:
        snapshot, profile = intent.snapshot, intent.profile
        ticket = snapshot.ticket
        if (ticket.id, snapshot.episode_id) in self._handled_elsewhere \
                or self._handled(snapshot, profile):
            return None
        incident = page_ticket(self.pd, self.zendesk, snapshot, profile.service_id,
                               f"Customer emergency on Zendesk: "
                               f"{self.zendesk.agent_url(ticket.id)}")
        self.open.append(incident)
        for user_id in incident.assignee_ids[:1]:  # who it rings: are they busy elsewhere?
            self._emails[user_id] = self.pd.user(user_id).email
        return Done(ticket.id, PageStep.PAGED,
                    f"incident {incident.id} on the {profile.name} service", incident.id)

    def _handled(self, snapshot: Snapshot, profile: Profile) -> bool:
        """This emergency already had a page that a person handled: ours (by its key), or
        one Zendesk's own PagerDuty integration opened (the ticket in its title), now
        resolved. One from before the ticket last became urgent belongs to an earlier one."""
        ticket, since = snapshot.ticket, snapshot.urgent_since
        earlier = self.pd.incident_by_key(incident_key(ticket.id), [profile.service_id])
        if earlier is None or (since is not None and earlier.created_at < since):
            earlier = next((i for i in self.pd.incidents_since([profile.service_id],
                                                               since or ticket.created_at)
                            if matches_ticket(i, ticket.id)), None)
        if earlier is not None and (since is None or earlier.created_at >= since):
            self._handled_elsewhere.add((ticket.id, snapshot.episode_id))
            return True
        return False

    def _page_manager(self, intent: PageManager) -> Done:
        ticket, engineer, other = intent.snapshot.ticket, intent.engineer, intent.other_ticket
        assert self.config.managers_service_id is not None
        incident = self.pd.trigger(
            self.config.managers_service_id,
            f"Second emergency: Zendesk ticket #{ticket.id} while the on-call ({engineer}) "
            f"handles #{other}",
            manager_key(ticket.id),
            f"The on-call engineer {engineer} is already on emergency #{other} "
            f"({self.zendesk.agent_url(other)}). Find an engineer for "
            f"{self.zendesk.agent_url(ticket.id)}.")
        self.zendesk.record(intent.snapshot, [MANAGER_PAGED_TAG, manager_tag(incident.id)],
                            episode_stamp(intent.snapshot, PageStep.MANAGER_PAGED,
                                          incident=incident.id))
        return Done(ticket.id, PageStep.MANAGER_PAGED,
                    f"on-call {engineer} is busy with #{other}: Support Manager paged "
                    f"(incident {incident.id})", incident.id)

    def _resolve(self, intent: Resolve) -> Done:
        ticket = intent.snapshot.ticket
        when = f"{intent.when:%Y-%m-%d %H:%M} UTC" if intent.when else ""
        self.pd.add_note(intent.incident_id, (
            f"Customer contacted on Zendesk ticket #{ticket.id} "
            f"({self.zendesk.agent_url(ticket.id)}) by {intent.who} at {when}. Resolving the "
            "page: here 'resolved' means the emergency is engaged, not fixed."))
        self.pd.resolve(intent.incident_id)
        return Done(ticket.id, PageStep.INCIDENT_RESOLVED,
                    f"incident {intent.incident_id} resolved after contact by {intent.who}",
                    intent.incident_id)
