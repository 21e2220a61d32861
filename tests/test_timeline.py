"""A ticket's timeline: Zendesk's comments, the journal and Slack lines, merged oldest first."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from automation.cli import views
from automation.model import Comment, Person, Snapshot, Ticket
from automation.store import Entry, Queued
from automation.timeline import ticket_timeline

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def snapshot(*comments: Comment) -> Snapshot:
    ticket = Ticket(id=7, subject="Production down", status="open", priority="urgent",
                    tags=(), requester_id=1, organization_id=None, created_at=T0,
                    updated_at=T0, updated_stamp="2026-01-05T09:00:00Z")
    return Snapshot(ticket=ticket, comments=comments,
                    people={1: Person(1, "Dana Customer", "dana@example.com", "end-user")})


def test_lines_of_one_second_read_zendesk_then_journal_then_slack() -> None:
    later = T0 + timedelta(minutes=3)
    slack = Queued(id=1, ticket_id=7, kind="paged", text="On-call paged", queued_at=T0,
                   sent_at=T0, attempts=1, last_error="")
    journal = Entry(at=T0, ticket_id=7, step="acknowledge", outcome="posted", public=True)
    comment = Comment(id=1, author_id=1, public=True, created_at=T0, body="Help!")
    reply = Comment(id=2, author_id=9, public=False, created_at=later, body="Looking")

    entries = ticket_timeline(snapshot(reply, comment), [journal], [slack])

    assert [(e.source, e.at) for e in entries] == [
        ("zendesk", T0), ("journal", T0), ("slack", T0), ("zendesk", later)]
    assert entries[-1].what == "comment by user 9"


def test_a_pending_slack_line_says_why_and_a_posted_one_does_not() -> None:
    pending = Queued(id=1, ticket_id=7, kind="cc", text="cc the account manager",
                     queued_at=T0, sent_at=None, attempts=3, last_error="ratelimited")
    posted = Queued(id=2, ticket_id=7, kind="ase", text="ping the ASE", queued_at=T0,
                    sent_at=T0, attempts=2, last_error="was down once")
    out = io.StringIO()

    views.print_timeline(snapshot().ticket, ticket_timeline(snapshot(), [], [pending, posted]),
                         out)

    assert out.getvalue().splitlines()[1:] == [
        "2026-01-05 09:00:00  slack    PENDING  cc: cc the account manager "
        "[3 tries; last: ratelimited]",
        "2026-01-05 09:00:00  slack    posted   ase: ping the ASE",
    ]


def test_a_queued_line_names_the_people_it_will_mention_readably() -> None:
    queued = Queued(id=1, ticket_id=7, kind="cc", text="cc <user:marco@example.com> (account "
                    "manager); <group:support-team-americas> needs an engineer", queued_at=T0,
                    sent_at=None, attempts=0, last_error="")

    [entry] = ticket_timeline(snapshot(), [], [queued])

    assert entry.text == ("cc @marco@example.com (account manager); @support-team-americas "
                          "needs an engineer")
