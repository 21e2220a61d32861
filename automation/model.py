"""Frozen facts read from Zendesk, and the decisions the workflow makes from them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    email: str
    role: str  # "end-user", "agent" or "admin", as Zendesk names them

    @property
    def is_agent(self) -> bool:
        return self.role in ("agent", "admin")


@dataclass(frozen=True)
class Organization:
    id: int
    name: str
    fields: dict[str, object] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comment:
    id: int
    author_id: int
    public: bool
    created_at: datetime
    body: str
    audit_id: int | None = None  # the update that made it (its stamp says whether it is ours)
    # A note Zendesk writes itself (a merge, a trigger's reply): neither contact nor a reply.
    system: bool = False


@dataclass(frozen=True)
class Stamp:
    """What one of our writes says in its audit (`metadata.custom`), which nobody can edit,
    and which no follow-up or cloned ticket inherits: the step and the emergency it is for."""

    step: str  # a Step, a PageStep, or THREAD_STAMP
    episode: int  # the audit at which the ticket last became urgent (see Episode)
    audit_id: int
    at: datetime
    detail: dict[str, str] = field(default_factory=dict)  # e.g. the incident, the thread


@dataclass(frozen=True)
class Episode:
    """One emergency on a ticket: from the audit that last made it urgent."""

    id: int  # that audit's id: every stamp of this emergency names it
    started_at: datetime


@dataclass(frozen=True)
class PriorityChange:
    """One change of the ticket's priority in its audits (its creation included): the
    history the report reads every emergency, past and running, from."""

    audit_id: int
    at: datetime
    priority: str | None  # None: the priority was cleared


# How far Zendesk's `Date` must be past a ticket's `updated_at` before we act on the read.
SETTLED = timedelta(seconds=2)

# The stamp that records an emergency's Slack thread (its channel and ts in the detail).
THREAD_STAMP = "slack-thread"
# The stamp that records an emergency's GitLab issue (its iid and URL in the detail).
ISSUE_STAMP = "gitlab-issue"
# The stamp of `emergency post-call`'s public notes (its issue is closed after them).
POST_CALL_STAMP = "post-call"
# A claim stamped on a ticket (a Slack thread, a hand-over, an issue's close) that was not
# carried out within this time is another worker's to take over.
CLAIM_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class Ticket:
    id: int
    subject: str
    status: str
    priority: str | None
    tags: tuple[str, ...]
    requester_id: int
    organization_id: int | None
    created_at: datetime
    updated_at: datetime
    # The raw `updated_at` string, sent back verbatim as `updated_stamp`.
    updated_stamp: str
    url: str = ""
    brand_id: int | None = None
    form_id: int | None = None


@dataclass(frozen=True)
class Brief:
    """An ASE's pre-task brief: the internal note lives on `ticket_id`; this is its index."""

    ticket_id: int
    organization_id: int | None
    organization: str
    author: str
    planned: str
    when: datetime
    url: str
    filed_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """Everything the workflow needs to know about one ticket, read in one go."""

    ticket: Ticket
    comments: tuple[Comment, ...]
    people: dict[int, Person]
    organization: Organization | None = None
    briefs: tuple[Brief, ...] = ()  # the organization's pre-task briefs, from the journal
    me: int | None = None  # the worker's own Zendesk user
    # From the audits: the emergency now running (None: the ticket never was urgent), and
    # every stamp our writes left, of this emergency and of earlier ones.
    episode: Episode | None = None
    stamps: tuple[Stamp, ...] = ()
    ccs: frozenset[int] = frozenset()  # the ticket's CCs (email CCs and collaborators)
    # Zendesk's time (its `Date`) when the ticket was read: `updated_at` is in whole seconds,
    # so a snapshot is acted on only once that second is safely past (Snapshot.unsettled_for).
    read_at: datetime | None = None
    # Every change of priority in the audits, oldest first (each raise to urgent is an
    # emergency: see automation.report).
    priorities: tuple[PriorityChange, ...] = ()

    def author(self, comment: Comment) -> Person | None:
        return self.people.get(comment.author_id)

    @property
    def urgent_since(self) -> datetime | None:
        return self.episode.started_at if self.episode is not None else None

    @property
    def episode_id(self) -> int:
        """This emergency's id for stamps; 0 when the audits show no raise to urgent."""
        return self.episode.id if self.episode is not None else 0

    def done(self) -> dict[str, Stamp]:
        """This emergency's stamps by step (the first of each)."""
        found: dict[str, Stamp] = {}
        for stamp in self.stamps:
            if stamp.episode == self.episode_id:
                found.setdefault(stamp.step, stamp)
        return found

    def unsettled_for(self) -> timedelta:
        """How long before a write decided on this read is safe (zero: now).

        Zendesk's `updated_at` has whole seconds: a write made later in the same second as our
        read leaves it unchanged, and `safe_update` would then accept a write decided on a
        stale read. Our read happened less than a second before the `Date` of its answer (d),
        so with updated_at u it happened after d - 1; a write after it changes updated_at
        whenever d - 1 >= u + 1, that is d - u >= 2 s. Below that: wait, and read again.
        """
        if self.read_at is None:
            return timedelta()
        return max(SETTLED - (self.read_at - self.ticket.updated_at), timedelta())


class State(enum.StrEnum):
    NEW = "new"  # urgent, nobody has made contact yet
    AWAITING_CUSTOMER = "awaiting-customer"  # contact made, no reply, no follow-up yet
    FOLLOWED_UP = "followed-up"  # follow-up sent, still no reply
    CLOSED_TO_HIGH = "closed-to-high"  # bridge closed, priority stepped down to high
    ENGAGED = "engaged"  # the customer answered: timers stopped
    NOT_URGENT = "not-an-emergency"  # priority is not urgent (and we did not step it down)
    SOLVED = "solved"  # solved or closed: never touched


class Step(enum.StrEnum):
    ACKNOWLEDGE = "acknowledge"
    FOLLOW_UP = "follow-up"
    CLOSE = "close"
    LINK_BRIEF = "link-brief"  # internal: point the on-call at the account's pre-task brief
    OFF_HOURS = "off-hours"  # public: outside the profile's coverage hours, nobody is paged


class PageStep(enum.StrEnum):
    """The PagerDuty side's steps, as the journal and the thread name them."""

    PAGED = "paged"
    INCIDENT_RESOLVED = "incident-resolved"
    MANAGER_PAGED = "manager-paged"


class Outcome(enum.StrEnum):
    """How a step ended, as the journal records it."""

    POSTED = "posted"  # a comment of ours is on the ticket
    DONE = "done"  # a write without a comment (tags, a page) was made
    CONFLICT = "conflict"  # the ticket changed under the write: re-read, decide again
    UNCERTAIN = "uncertain"  # the answer was lost: re-read to see whether it landed
    FAILED = "failed"


class Line(enum.StrEnum):
    """The kinds of line an emergency's Slack thread carries, besides the steps' echoes."""

    CC = "cc"  # the account manager, cc'd when the thread opens
    ASE = "ase"  # the account's ASE, pinged when the thread opens
    BRIEF = "brief"  # a pre-task brief on file
    REPLIED = "replied"  # the customer answered: timers stopped
    REGION = "region"  # the regional group, pinged when the on-call is busy


# Journal rows that are not a step: a change of the emergency's state.
STATE_ENTRY = "state"


@dataclass(frozen=True)
class Assessment:
    """The workflow's reading of one ticket at one instant."""

    ticket_id: int
    state: State
    next_step: Step | None
    due_at: datetime | None
    contact_at: datetime | None = None
    contact_by: int | None = None
    replied_at: datetime | None = None
    acknowledge_as: str | None = None  # the engineer who acknowledged the page (email)

    def is_due(self, now: datetime) -> bool:
        return self.next_step is not None and self.due_at is not None and self.due_at <= now


@dataclass(frozen=True)
class Action:
    """One write due on a ticket: which template to post and the field changes that go with it."""

    ticket_id: int
    step: Step
    template: str
    tags_to_add: tuple[str, ...] = ()
    priority: str | None = None
    author_email: str | None = None  # post as this agent (who acknowledged the page)
    tags_to_remove: tuple[str, ...] = ()
    episode: int = 0  # the emergency the write is for (stamped on its audit)
