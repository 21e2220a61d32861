"""Small builders for the model's frozen facts: Person, Comment, Ticket, Snapshot.

Every builder takes keyword overrides and fills the rest with plausible defaults. Times are
timezone-aware UTC datetimes; ``at(minutes)`` is a point relative to ``T0``, the default moment
a ticket is created.

A snapshot's comments are used exactly as given, and (as in Zendesk) the first one is the
ticket's description: start a conversation with ``description()`` unless a test is about the
description itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from automation.model import (
    Brief,
    Comment,
    Episode,
    Organization,
    Person,
    PriorityChange,
    Snapshot,
    Stamp,
    Ticket,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

TICKET_ID = 12345
CUSTOMER_ID = 1  # the requester
CC_ID = 2  # another end-user copied on the ticket
AGENT_ID = 100
ADMIN_ID = 101
BOT_ID = 900  # the API user the worker signs in as (an agent)
EPISODE_ID = 5000  # the audit that made the ticket urgent (the emergency's id)

_comment_ids = itertools.count(1_000)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    """``T0`` plus an offset: ``at(15)`` is fifteen minutes after the ticket was created."""
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def stamp(when: datetime) -> str:
    """Zendesk's timestamp format, e.g. ``2026-01-05T09:00:00Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# People ---------------------------------------------------------------------------------------


def make_person(**overrides: Any) -> Person:
    fields: dict[str, Any] = {"id": CUSTOMER_ID, "name": "Dana Customer",
                              "email": "dana@customer.example", "role": "end-user"}
    fields.update(overrides)
    return Person(**fields)


def customer(**overrides: Any) -> Person:
    """The requester, an end-user."""
    return make_person(**overrides)


def cc(**overrides: Any) -> Person:
    """Another end-user on the ticket (a CC or follower from the customer's side)."""
    fields: dict[str, Any] = {"id": CC_ID, "name": "Casey Colleague",
                              "email": "casey@customer.example", "role": "end-user"}
    fields.update(overrides)
    return make_person(**fields)


def agent(**overrides: Any) -> Person:
    """A human support engineer."""
    fields: dict[str, Any] = {"id": AGENT_ID, "name": "Alex Engineer",
                              "email": "alex@support.example", "role": "agent"}
    fields.update(overrides)
    return make_person(**fields)


def admin(**overrides: Any) -> Person:
    fields: dict[str, Any] = {"id": ADMIN_ID, "name": "Morgan Admin",
                              "email": "morgan@support.example", "role": "admin"}
    fields.update(overrides)
    return make_person(**fields)


def bot(**overrides: Any) -> Person:
    """The automation's own API user (an agent)."""
    fields: dict[str, Any] = {"id": BOT_ID, "name": "Emergency Bot",
                              "email": "emergency-bot@support.example", "role": "agent"}
    fields.update(overrides)
    return make_person(**fields)


def default_people() -> dict[int, Person]:
    """Everyone the default builders refer to, by id."""
    return {p.id: p for p in (customer(), cc(), agent(), admin(), bot())}


# Comments -------------------------------------------------------------------------------------


def make_comment(author: Person | int = CUSTOMER_ID, *, public: bool = True,
                 created_at: datetime = T0, body: str = "A comment.",
                 id: int | None = None) -> Comment:
    """A comment by ``author`` (a Person, or just an id, e.g. one missing from ``people``)."""
    author_id = author.id if isinstance(author, Person) else author
    return Comment(id=next(_comment_ids) if id is None else id, author_id=author_id,
                   public=public, created_at=created_at, body=body)


def description(author: Person | int = CUSTOMER_ID, *, created_at: datetime = T0,
                body: str = "Production is down: every request returns 502.") -> Comment:
    """The ticket's first comment (public, by the requester unless told otherwise)."""
    return make_comment(author, public=True, created_at=created_at, body=body)


def public_reply(author: Person | int, created_at: datetime, body: str = "A reply.") -> Comment:
    return make_comment(author, public=True, created_at=created_at, body=body)


def internal_note(author: Person | int, created_at: datetime,
                  body: str = "Internal note.") -> Comment:
    return make_comment(author, public=False, created_at=created_at, body=body)


# Tickets and snapshots ------------------------------------------------------------------------


def make_ticket(**overrides: Any) -> Ticket:
    """An open, urgent ticket created at ``T0``; ``tags`` may be any iterable of strings.

    ``updated_at`` defaults to ``created_at`` and ``updated_stamp`` to ``updated_at`` in
    Zendesk's format, so overriding one time keeps the others consistent.
    """
    created_at = overrides.get("created_at", T0)
    updated_at = overrides.get("updated_at", created_at)
    fields: dict[str, Any] = {
        "id": TICKET_ID,
        "subject": "Production is down: 502 on every request",
        "status": "open",
        "priority": "urgent",
        "tags": (),
        "requester_id": CUSTOMER_ID,
        "organization_id": None,
        "created_at": created_at,
        "updated_at": updated_at,
        "updated_stamp": stamp(updated_at),
        "url": "",
    }
    fields.update(overrides)
    fields["tags"] = tuple(fields["tags"])
    if not fields["url"]:
        fields["url"] = f"https://acme.zendesk.com/agent/tickets/{fields['id']}"
    return Ticket(**fields)


def make_snapshot(comments: Iterable[Comment] = (), *, ticket: Ticket | None = None,
                  people: dict[int, Person] | None = None,
                  organization: Organization | None = None, briefs: Iterable[Brief] = (),
                  done: Iterable[str] = (), stamps: Iterable[Stamp] = (),
                  episode: Episode | None = None, ccs: Iterable[int] = (CC_ID,),
                  priorities: Iterable[PriorityChange] = (),
                  **ticket_overrides: Any) -> Snapshot:
    """A snapshot of ``ticket`` (or ``make_ticket(**ticket_overrides)``) with ``comments``.

    ``people`` defaults to ``default_people()``; pass a dict to leave someone out. When the
    ticket is built here and ``updated_at`` is not given, it is the newest comment's time.
    The emergency (``episode``) runs from the ticket's creation unless given; ``done`` names
    steps its audits stamp (in this emergency), ``stamps`` adds any others; ``priorities``
    is the priority's history in the audits (the report's emergencies).
    """
    comments = tuple(comments)
    if ticket is None:
        if comments and "updated_at" not in ticket_overrides:
            created = ticket_overrides.get("created_at", T0)
            ticket_overrides["updated_at"] = max([created, *(c.created_at for c in comments)])
        ticket = make_ticket(**ticket_overrides)
    elif ticket_overrides:
        raise TypeError("pass either ticket= or ticket field overrides, not both")
    episode = episode or Episode(EPISODE_ID, ticket.created_at)
    made = tuple(Stamp(str(step), episode.id, next(_comment_ids), ticket.created_at)
                 for step in done)
    return Snapshot(ticket=ticket, comments=comments,
                    people=default_people() if people is None else dict(people),
                    organization=organization, briefs=tuple(briefs), episode=episode,
                    stamps=made + tuple(stamps), ccs=frozenset(ccs),
                    priorities=tuple(priorities))


def make_organization(**overrides: Any) -> Organization:
    fields: dict[str, Any] = {"id": 7, "name": "Example Corp"}
    fields.update(overrides)
    return Organization(**fields)


def make_brief(**overrides: Any) -> Brief:
    """A pre-task brief filed a day before ``T0`` for work planned at ``T0``."""
    fields: dict[str, Any] = {
        "ticket_id": 12000, "organization_id": 7, "organization": "Example Corp",
        "author": "Ash Engineer", "planned": "Upgrade to 17.2", "when": T0,
        "url": "https://acme.zendesk.com/agent/tickets/12000", "filed_at": T0 - timedelta(days=1),
    }
    fields.update(overrides)
    return Brief(**fields)
