"""`emergency report`: how the team's emergencies went, from Zendesk's own audits.

Pure computation over snapshots (no I/O, no clock): an emergency is a raise of a ticket to
`urgent` (the ticket's priority history in its audits), so a ticket urgent twice is two; its
figures use the worker's own rules (workflow.find_contact, find_customer_reply, the stamps of
that episode), so the report counts what the worker counted, whoever did the work and from
whichever replica, and a lost state file loses nothing. `gather` is the one read: it finds the
tickets and reads their snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from automation import workflow
from automation.config import FederalConfig
from automation.model import Comment, Episode, PageStep, Snapshot, Step

if TYPE_CHECKING:
    from automation.zendesk import Zendesk

# "Answered within 15 minutes": before the follow-up would have gone out.
ANSWER_WITHIN = timedelta(minutes=15)
TEAM = "the team (fallback)"  # contact by the worker's own API user
NO_CONTACT = "(no contact yet)"
NO_ORGANIZATION = "(no organization)"
# Left by our steps, one of them on every emergency the worker or a person wrote to through
# it (tags are hints: the audits decide what counts; a tag removed by a macro hides a ticket
# that is no longer urgent from the search). emergency_not_qualified: `not-emergency`.
MARKER_TAGS = (workflow.ACKNOWLEDGED_TAG, workflow.FOLLOWED_UP_TAG, workflow.CLOSED_TAG,
               workflow.OFF_HOURS_TAG, workflow.PAGED_TAG, workflow.MANAGER_PAGED_TAG,
               workflow.BRIEF_LINKED_TAG, "emergency_not_qualified")


@dataclass(frozen=True)
class Emergency:
    """One emergency (an episode of one ticket) and how it went."""

    ticket_id: int
    subject: str
    organization: str
    url: str
    episode: int  # the audit that made the ticket urgent
    urgent_at: datetime
    ended_at: datetime | None  # when its priority left urgent (None: still urgent)
    lowered_to: str | None  # the priority it was then given
    contact_at: datetime | None
    contact_by: str | None  # the engineer's name, or TEAM
    contact_kind: str | None  # "engineer" or "team"
    answered_at: datetime | None  # the customer's first public reply after contact
    followed_up: bool
    stepped_down: bool  # the bridge closed and the ticket set to HIGH (our close stamp)
    manager_paged: bool
    off_hours: bool

    @property
    def time_to_contact(self) -> timedelta | None:
        return self.contact_at - self.urgent_at if self.contact_at is not None else None

    @property
    def answered_within(self) -> bool:
        """The customer answered within ANSWER_WITHIN of contact."""
        return self.contact_at is not None and self.answered_at is not None \
            and self.answered_at - self.contact_at <= ANSWER_WITHIN

    @property
    def week(self) -> str:
        return week_of(self.urgent_at)

    def as_json(self) -> dict[str, Any]:
        ttc = self.time_to_contact
        return {
            "ticket_id": self.ticket_id, "subject": self.subject,
            "organization": self.organization, "url": self.url, "episode": self.episode,
            "urgent_at": _iso(self.urgent_at), "ended_at": _iso(self.ended_at),
            "lowered_to": self.lowered_to,
            "contact_at": _iso(self.contact_at),
            "time_to_contact_seconds": ttc.total_seconds() if ttc is not None else None,
            "contact_by": self.contact_by, "contact_kind": self.contact_kind,
            "answered": self.answered_at is not None, "answered_at": _iso(self.answered_at),
            "answered_within_15_minutes": self.answered_within,
            "followed_up": self.followed_up, "stepped_down": self.stepped_down,
            "manager_paged": self.manager_paged, "off_hours": self.off_hours,
        }


@dataclass(frozen=True)
class Figures:
    """One group's aggregate: a week, an organization, an engineer, or all of them."""

    label: str
    emergencies: int
    contacted: int
    p50: timedelta | None  # time to contact, nearest rank, over the contacted ones
    p90: timedelta | None
    stepped_down: float | None  # share of the emergencies stepped down to HIGH
    answered_within: float | None  # share of the contacted ones answered within 15 minutes

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "emergencies": self.emergencies,
                "contacted": self.contacted,
                "time_to_contact_p50_seconds": _seconds(self.p50),
                "time_to_contact_p90_seconds": _seconds(self.p90),
                "share_stepped_down": self.stepped_down,
                "share_answered_within_15_minutes": self.answered_within}


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    emergencies: tuple[Emergency, ...]  # oldest first
    overall: Figures
    by_week: tuple[Figures, ...]  # every week of the window, oldest first (empty ones too)
    by_organization: tuple[Figures, ...]  # most emergencies first
    by_engineer: tuple[Figures, ...]  # who made contact, most emergencies first

    def as_json(self) -> dict[str, Any]:
        return {"since": _iso(self.since), "until": _iso(self.until),
                "emergencies": [e.as_json() for e in self.emergencies],
                "overall": self.overall.as_json(),
                "by_week": [f.as_json() for f in self.by_week],
                "by_organization": [f.as_json() for f in self.by_organization],
                "by_engineer": [f.as_json() for f in self.by_engineer]}


# --- one ticket ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One stretch of a ticket at urgent: from the audit that raised it to the one that
    lowered it (or raised it again: a new emergency), if any."""

    episode: Episode
    ended_by: int | None = None
    ended_at: datetime | None = None
    lowered_to: str | None = None  # the priority it left urgent for (None: raised again)


def spans(snapshot: Snapshot) -> list[Span]:
    """The ticket's emergencies from its priority history; each raise to urgent starts one
    (the worker's episode), a change to anything else ends it."""
    found: list[Span] = []
    for change in snapshot.priorities:
        if found and found[-1].ended_by is None and change.priority != "urgent":
            found[-1] = replace(found[-1], ended_by=change.audit_id, ended_at=change.at,
                                lowered_to=change.priority or "none")
        elif change.priority == "urgent":
            if found and found[-1].ended_by is None:
                found[-1] = replace(found[-1], ended_by=change.audit_id, ended_at=change.at)
            found.append(Span(Episode(change.audit_id, change.at)))
    if not found and snapshot.episode is not None:  # no history given: the running one
        found.append(Span(snapshot.episode))
    return found


def emergencies_of(snapshot: Snapshot, me: int | None,
                   federal: FederalConfig | None = None) -> list[Emergency]:
    """Each emergency on the ticket; ``me`` is the worker's API user (contact by it is the
    team's fallback), ``federal`` the US Federal rule whose hours say what is off-hours."""
    return [_emergency(snapshot, span, me, federal) for span in spans(snapshot)]


def _emergency(snapshot: Snapshot, span: Span, me: int | None,
               federal: FederalConfig | None) -> Emergency:
    # The ticket as it stood during this emergency: its comments up to the audit that ended
    # it (a word in that very update counts), and this episode's stamps.
    view = replace(snapshot, episode=span.episode,
                   comments=tuple(c for c in snapshot.comments if _before_end(c, span)))
    contact = workflow.find_contact(view)
    reply = workflow.find_customer_reply(view, contact) if contact is not None else None
    done = view.done()
    ticket, organization = snapshot.ticket, snapshot.organization
    by, kind = _contact_by(view, contact, me)
    return Emergency(
        ticket_id=ticket.id, subject=ticket.subject,
        organization=organization.name if organization else NO_ORGANIZATION,
        url=ticket.url, episode=span.episode.id, urgent_at=span.episode.started_at,
        ended_at=span.ended_at, lowered_to=span.lowered_to,
        contact_at=contact.created_at if contact else None,
        contact_by=by, contact_kind=kind,
        answered_at=reply.created_at if reply else None,
        followed_up=Step.FOLLOW_UP in done, stepped_down=Step.CLOSE in done,
        manager_paged=PageStep.MANAGER_PAGED in done,
        off_hours=Step.OFF_HOURS in done or _outside_coverage(view, federal))


def _before_end(comment: Comment, span: Span) -> bool:
    if span.ended_by is None:
        return True
    if comment.audit_id is not None:
        return comment.audit_id <= span.ended_by
    return span.ended_at is None or comment.created_at <= span.ended_at


def _contact_by(view: Snapshot, contact: Comment | None,
                me: int | None) -> tuple[str | None, str | None]:
    if contact is None:
        return None, None
    if contact.author_id == me:
        return TEAM, "team"
    person = view.people.get(contact.author_id)
    return (person.name or person.email if person else f"user {contact.author_id}"), "engineer"


def _outside_coverage(view: Snapshot, federal: FederalConfig | None) -> bool:
    """A US Federal ticket raised outside its coverage hours ([pagerduty.federal])."""
    if federal is None or view.episode is None:
        return False
    ticket, organization = view.ticket, view.organization
    if not federal.applies_to(organization.tags if organization else (), ticket.brand_id,
                              ticket.form_id):
        return False
    return not workflow.coverage_at(view.episode.started_at, federal.timezone,
                                    *federal.coverage).open_now


# --- the whole window ----------------------------------------------------------------------


def build_report(snapshots: Iterable[Snapshot], since: datetime, until: datetime,
                 me: int | None, federal: FederalConfig | None = None) -> Report:
    """Every emergency raised in [since, until) on these tickets, and their aggregates."""
    found = sorted((e for snapshot in snapshots for e in emergencies_of(snapshot, me, federal)
                    if since <= e.urgent_at < until),
                   key=lambda e: (e.urgent_at, e.ticket_id, e.episode))
    return Report(
        since=since, until=until, emergencies=tuple(found),
        overall=figures("all emergencies", found),
        by_week=_grouped(found, lambda e: e.week, keep=weeks_between(since, until),
                            ordered=True),
        by_organization=_grouped(found, lambda e: e.organization),
        by_engineer=_grouped(found, lambda e: e.contact_by or NO_CONTACT))


def _grouped(found: Sequence[Emergency], key: Callable[[Emergency], str],
             keep: Iterable[str] = (), ordered: bool = False) -> tuple[Figures, ...]:
    groups: dict[str, list[Emergency]] = {label: [] for label in keep}
    for emergency in found:
        groups.setdefault(key(emergency), []).append(emergency)
    items = sorted(groups.items()) if ordered else sorted(
        groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return tuple(figures(label, members) for label, members in items)


def figures(label: str, group: Sequence[Emergency]) -> Figures:
    times = sorted(t for t in (e.time_to_contact for e in group) if t is not None)
    contacted = len(times)
    return Figures(
        label=label, emergencies=len(group), contacted=contacted,
        p50=percentile(times, 50), p90=percentile(times, 90),
        stepped_down=sum(e.stepped_down for e in group) / len(group) if group else None,
        answered_within=sum(e.answered_within for e in group) / contacted if contacted
        else None)


def percentile(ordered: Sequence[timedelta], p: float) -> timedelta | None:
    """The nearest-rank percentile: the smallest value with at least p% of them at or below
    it (always one of the values; p50 of 1, 2, 3, 4 is 2). None for no values."""
    if not ordered:
        return None
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def weeks_between(since: datetime, until: datetime) -> list[str]:
    """Every ISO week the window touches, oldest first."""
    weeks: list[str] = []
    day = since
    while day < until:
        if week_of(day) not in weeks:
            weeks.append(week_of(day))
        day += timedelta(days=1)
    if until > since and week_of(until - timedelta(microseconds=1)) not in weeks:
        weeks.append(week_of(until - timedelta(microseconds=1)))
    return weeks


def week_of(moment: datetime) -> str:
    """The ISO week (UTC) of a moment, e.g. 2026-W02."""
    year, week, _ = moment.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def search_queries(since: datetime) -> list[str]:
    """What finds every ticket that may have become urgent since `since`: the raise is an
    update, so `updated>=since`; of those, the ones urgent now (solved ones included: solving
    keeps the priority), and the ones our steps marked (stepped down, or lowered by hand after
    we wrote). Several `tags:` terms match any of them."""
    window = f"type:ticket updated>={since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return [f"{window} priority:urgent",
            f"{window} " + " ".join(f"tags:{tag}" for tag in MARKER_TAGS)]


# --- the one read ---------------------------------------------------------------------------


def gather(zendesk: Zendesk, since: datetime, until: datetime,
           federal: FederalConfig | None = None) -> Report:
    """Find the tickets (search_queries), read each one's snapshot and organization, and
    build the report. The worker's API user is read once: its contacts are the team's."""
    ids: set[int] = set()
    for query in search_queries(since):
        ids.update(t.id for t in zendesk.search_all(query))
    me = zendesk.api_user()
    snapshots = []
    for ticket_id in sorted(ids):
        snapshot = zendesk.snapshot(ticket_id)
        snapshots.append(replace(snapshot, organization=zendesk.organization(
            snapshot.ticket.organization_id)))
    return build_report(snapshots, since, until, me.id if me else None, federal)


def minutes(delta: timedelta | None) -> str:
    """A duration as a person reads it: 45 s, 3 min, 1 h 05 min; an em dash for none."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60:02d} s" if seconds % 60 else "")
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _seconds(delta: timedelta | None) -> float | None:
    return delta.total_seconds() if delta is not None else None

