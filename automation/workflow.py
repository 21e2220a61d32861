"""The runbook as pure functions: given a ticket's facts and ``now``, what state and what is due.

No I/O and no clock here. Every timer is computed from Zendesk's own timestamps, so a restart,
a lost state file or a second worker reaches the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from automation.model import Action, Assessment, Brief, Comment, Snapshot, State, Step

# Written in the same update as the step's comment, as a hint for people and views. What was
# done is what the audits' stamps say (Snapshot.done): tags can be edited, and are copied onto
# follow-up and cloned tickets.
ACKNOWLEDGED_TAG = "emergency_acknowledged"
FOLLOWED_UP_TAG = "emergency_followed_up"
CLOSED_TAG = "emergency_closed_to_high"
BRIEF_LINKED_TAG = "emergency_brief_linked"
OFF_HOURS_TAG = "emergency_off_hours"
MARKER_TAGS = {Step.ACKNOWLEDGE: ACKNOWLEDGED_TAG, Step.FOLLOW_UP: FOLLOWED_UP_TAG,
               Step.CLOSE: CLOSED_TAG, Step.LINK_BRIEF: BRIEF_LINKED_TAG,
               Step.OFF_HOURS: OFF_HOURS_TAG}

# Written by the PagerDuty side (paging.py); an emergency's, like the markers above.
PAGED_TAG = "emergency_paged"
MANAGER_PAGED_TAG = "emergency_manager_paged"
INCIDENT_TAG_PREFIX = "emergency_incident_"

TEMPLATES = {Step.ACKNOWLEDGE: "acknowledgement", Step.FOLLOW_UP: "follow_up",
             Step.CLOSE: "bridge_closed", Step.LINK_BRIEF: "brief_link",
             Step.OFF_HOURS: "off_hours"}

# A brief is worth showing from when it is filed until a few days after the planned work.
BRIEF_RELEVANCE = timedelta(days=3)
# An emergency still running: its thread stays open and its engineer counts as busy.
LIVE_STATES = (State.NEW, State.AWAITING_CUSTOMER, State.FOLLOWED_UP, State.ENGAGED)

EMERGENCY_PRIORITY = "urgent"
STEPPED_DOWN_PRIORITY = "high"
FINISHED_STATUSES = ("solved", "closed")


@dataclass(frozen=True)
class Policy:
    """The runbook's timings (from `[workflow]` in config.toml)."""

    follow_up_after: timedelta = timedelta(minutes=15)
    close_after: timedelta = timedelta(minutes=15)
    # With PagerDuty on: how long the acknowledgement waits for a person (None: it doesn't).
    acknowledge_fallback: timedelta | None = None


@dataclass(frozen=True)
class Page:
    """What PagerDuty says about a ticket's page: facts for the workflow."""

    incident_id: str | None = None
    status: str | None = None  # triggered, acknowledged, resolved; None: no incident found
    acknowledged_by: str | None = None  # the email of the person who acknowledged it
    created_at: datetime | None = None  # when the page went out
    assigned_to: str | None = None  # the email of the person it is assigned to
    url: str | None = None  # where a person opens it in PagerDuty
    acknowledged_at: datetime | None = None  # when that person acknowledged it


@dataclass(frozen=True)
class Coverage:
    """A profile's coverage hours (e.g. US Federal), as facts for one instant."""

    open_now: bool
    opened_at: datetime | None  # when the current window opened (open_now)
    opens_at: datetime  # when the next window opens (not open_now)
    hours: str = ""  # for messages: "05:00-17:00 America/Los_Angeles"


def coverage_at(now: datetime, zone: str, start: time, end: time) -> Coverage:
    """Coverage from `start` to `end` every day in time zone `zone` (daylight saving included)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    today_start = datetime.combine(local.date(), start, tz)
    today_end = datetime.combine(local.date(), end, tz)
    hours = f"{start:%H:%M}-{end:%H:%M} {zone}"
    if today_start <= local < today_end:
        return Coverage(True, today_start.astimezone(UTC), today_end.astimezone(UTC), hours)
    following = today_start if local < today_start else datetime.combine(
        local.date() + timedelta(days=1), start, tz)
    return Coverage(False, None, following.astimezone(UTC), hours)


def is_finished(snapshot: Snapshot) -> bool:
    """Solved and closed tickets are never touched."""
    return snapshot.ticket.status in FINISHED_STATUSES


def off_hours_note(snapshot: Snapshot) -> Comment | None:
    """Our off-hours reply in this emergency: the comment its stamped update carried."""
    stamp = snapshot.done().get(Step.OFF_HOURS)
    if stamp is None:
        return None
    return next((c for c in snapshot.comments if c.audit_id == stamp.audit_id), None)


def is_customer(snapshot: Snapshot, author_id: int) -> bool:
    """The requester (whatever their role: a partner may be an agent elsewhere), and the
    end-users copied on the ticket."""
    if author_id == snapshot.ticket.requester_id:
        return True
    person = snapshot.people.get(author_id)
    return author_id in snapshot.ccs and (person is None or not person.is_agent)


def is_staff(snapshot: Snapshot, author_id: int) -> bool:
    """Every agent who is not the customer: our engineers, and the worker itself."""
    person = snapshot.people.get(author_id)
    return person is not None and person.is_agent and not is_customer(snapshot, author_id)


def find_contact(snapshot: Snapshot) -> Comment | None:
    """Contact is the first public comment by staff in this emergency, after the description.

    Not contact: the off-hours reply (it offers no bridge, so no timer runs from it), a note
    Zendesk writes itself (a merge), or a comment from before the ticket became urgent.
    """
    skip = off_hours_note(snapshot)
    for comment in snapshot.comments[1:]:
        if comment.public and not comment.system and comment is not skip \
                and is_staff(snapshot, comment.author_id) and in_episode(snapshot, comment):
            return comment
    return None


def in_episode(snapshot: Snapshot, comment: Comment) -> bool:
    """Whether the comment was written in this emergency: after the audit that made the ticket
    urgent (audit ids grow with time; times alone cannot tell two changes of one second)."""
    episode = snapshot.episode
    if episode is None:
        return True
    if comment.audit_id is not None:
        return comment.audit_id >= episode.id
    return comment.created_at >= episode.started_at


def stale_markers(snapshot: Snapshot) -> set[str]:
    """Our marker tags on the ticket that this emergency's stamps do not back: an earlier
    emergency's, or copied onto a follow-up or cloned ticket. Hints only; they are cleared
    with the next step's write."""
    done = snapshot.done()
    backed = {MARKER_TAGS[Step(step)] for step in done if step in MARKER_TAGS}
    return (set(snapshot.ticket.tags) & set(MARKER_TAGS.values())) - backed


def find_customer_reply(snapshot: Snapshot, contact: Comment) -> Comment | None:
    """A reply is a public comment by the customer (or anyone not staff) after contact.

    An author we could not look up counts as the customer: stopping the timers is the safe side.
    """
    comments = list(snapshot.comments)
    for comment in comments[comments.index(contact) + 1:]:
        if comment.public and not comment.system and not is_staff(snapshot, comment.author_id):
            return comment
    return None


def last_public_agent_comment(snapshot: Snapshot) -> Comment | None:
    skip = off_hours_note(snapshot)
    for comment in reversed(snapshot.comments[1:]):
        if comment is not skip and comment.public and not comment.system \
                and is_staff(snapshot, comment.author_id):
            return comment
    return None


def assess(snapshot: Snapshot, now: datetime, policy: Policy,
           page: Page | None = None, coverage: Coverage | None = None) -> Assessment:
    """Derive the emergency's state and its next step (with due time) from the ticket alone.

    With PagerDuty on (a fallback in the policy), the acknowledgement waits for the person who
    acknowledges the page, and goes out from the team once the fallback time has passed.
    """
    ticket = snapshot.ticket
    if is_finished(snapshot):
        return _result(snapshot, State.SOLVED)
    done = snapshot.done()
    contact = find_contact(snapshot)
    if Step.CLOSE in done:
        # Stepped down by us in this emergency (a raise to urgent since starts a new one).
        return _result(snapshot, State.CLOSED_TO_HIGH, contact=contact)
    if ticket.priority != EMERGENCY_PRIORITY:
        return _result(snapshot, State.NOT_URGENT, contact=contact)
    if contact is None:
        return _before_contact(snapshot, policy, page, coverage)
    reply = find_customer_reply(snapshot, contact)
    if reply is not None:
        return _result(snapshot, State.ENGAGED, contact=contact, reply=reply)
    if Step.FOLLOW_UP not in done:
        return _result(snapshot, State.AWAITING_CUSTOMER, Step.FOLLOW_UP,
                       contact.created_at + policy.follow_up_after, contact=contact)
    # The bridge closes a full interval after our last public word (normally the follow-up).
    last_word = last_public_agent_comment(snapshot) or contact
    return _result(snapshot, State.FOLLOWED_UP, Step.CLOSE,
                   last_word.created_at + policy.close_after, contact=contact)


def _before_contact(snapshot: Snapshot, policy: Policy, page: Page | None,
                    coverage: Coverage | None) -> Assessment:
    """Nobody has made contact yet: when (and as whom) the acknowledgement is due."""
    ticket = snapshot.ticket
    done = snapshot.done()
    if coverage is not None and not coverage.open_now:
        # Outside the profile's hours nobody is paged: the customer hears when we are back.
        if Step.OFF_HOURS not in done:
            return _result(snapshot, State.NEW, Step.OFF_HOURS, ticket.created_at)
        return _result(snapshot, State.NEW, Step.ACKNOWLEDGE, coverage.opens_at + (
            policy.acknowledge_fallback or timedelta()))
    if Step.ACKNOWLEDGE in done or Step.FOLLOW_UP in done:
        # Our acknowledgement is recorded but its comment is not visible as contact:
        # never acknowledge twice; wait for a person.
        return _result(snapshot, State.NEW)
    if policy.acknowledge_fallback is None:
        return _result(snapshot, State.NEW, Step.ACKNOWLEDGE, ticket.created_at)
    if page is not None and page.acknowledged_by:
        return _result(snapshot, State.NEW, Step.ACKNOWLEDGE, ticket.created_at,
                       by=page.acknowledged_by)
    # Nobody has acknowledged the page yet: the team answers at the fallback time, counted
    # from when the page could first go out (the opening of coverage, for off-hours tickets).
    paged_from = max(ticket.created_at, coverage.opened_at) \
        if coverage is not None and coverage.opened_at is not None else ticket.created_at
    return _result(snapshot, State.NEW, Step.ACKNOWLEDGE,
                   paged_from + policy.acknowledge_fallback)


def _result(snapshot: Snapshot, state: State, step: Step | None = None,
            due: datetime | None = None, contact: Comment | None = None,
            reply: Comment | None = None, by: str | None = None) -> Assessment:
    return Assessment(
        ticket_id=snapshot.ticket.id, state=state, next_step=step, due_at=due,
        contact_at=contact.created_at if contact else None,
        contact_by=contact.author_id if contact else None,
        replied_at=reply.created_at if reply else None,
        acknowledge_as=by,
    )


def relevant_briefs(snapshot: Snapshot, now: datetime) -> list[Brief]:
    """The organization's briefs for work that is upcoming or just happened."""
    return [b for b in snapshot.briefs if b.when >= now - BRIEF_RELEVANCE]


def plan(assessment: Assessment, now: datetime, snapshot: Snapshot) -> Action | None:
    """The write that is due now, if any. A brief link comes first: the on-call needs it."""
    episode = snapshot.episode_id
    stale = tuple(sorted(stale_markers(snapshot)))
    if (assessment.state in LIVE_STATES and Step.LINK_BRIEF not in snapshot.done()
            and relevant_briefs(snapshot, now)):
        return Action(ticket_id=assessment.ticket_id, step=Step.LINK_BRIEF,
                      template=TEMPLATES[Step.LINK_BRIEF], tags_to_add=(BRIEF_LINKED_TAG,),
                      tags_to_remove=stale, episode=episode)
    if not assessment.is_due(now) or assessment.next_step is None:
        return None
    step = assessment.next_step
    return Action(
        ticket_id=assessment.ticket_id,
        step=step,
        template=TEMPLATES[step],
        tags_to_add=(MARKER_TAGS[step],),
        priority=STEPPED_DOWN_PRIORITY if step is Step.CLOSE else None,
        author_email=assessment.acknowledge_as if step is Step.ACKNOWLEDGE else None,
        tags_to_remove=stale,
        episode=episode,
    )


def step_done(snapshot: Snapshot, step: Step) -> bool:
    """Whether this emergency's audits record ``step`` (or contact, for the acknowledgement)."""
    if step is Step.ACKNOWLEDGE and find_contact(snapshot) is not None:
        return True
    return step in snapshot.done()
