"""A ticket's story from three sources: Zendesk's comments, our journal, and the Slack outbox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from automation.mentions import readable
from automation.model import Comment, Person, Snapshot
from automation.store import Entry, Queued

# Within one second, the order a reader expects: what Zendesk shows, what we did, what Slack got.
SOURCES = ("zendesk", "journal", "slack")


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a ticket's timeline."""

    at: datetime
    source: str  # one of SOURCES
    label: str  # "public"/"internal" ("" when unknown); a Slack line's "posted"/"PENDING"
    what: str  # "comment by NAME (role)", "STEP OUTCOME", or a Slack line's kind
    text: str = ""  # the comment's body, the journal's detail, the Slack line's text
    attempts: int = 0  # a pending Slack line's tries so far
    last_error: str = ""  # and why the last one failed


def ticket_timeline(snapshot: Snapshot, journal: Iterable[Entry],
                    outbox: Iterable[Queued]) -> list[TimelineEntry]:
    """Every comment, journal line and Slack line about the ticket, oldest first."""
    entries = [_comment_entry(comment, snapshot.people) for comment in snapshot.comments]
    entries += [TimelineEntry(entry.at, "journal",
                              {True: "public", False: "internal", None: ""}[entry.public],
                              f"{entry.step} {entry.outcome}", entry.detail)
                for entry in journal]
    entries += [TimelineEntry(queued.sent_at or queued.queued_at, "slack",
                              "posted" if queued.sent_at else "PENDING", queued.kind,
                              readable(queued.text), queued.attempts,
                              "" if queued.sent_at else queued.last_error)
                for queued in outbox]
    return sorted(entries, key=lambda entry: (entry.at, SOURCES.index(entry.source)))


def _comment_entry(comment: Comment, people: Mapping[int, Person]) -> TimelineEntry:
    author = people.get(comment.author_id)
    who = f"{author.name} ({author.role})" if author else f"user {comment.author_id}"
    return TimelineEntry(comment.created_at, "zendesk",
                         "public" if comment.public else "internal", f"comment by {who}",
                         comment.body)
