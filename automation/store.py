"""SQLite: the audit journal and the discovery cache. A cache and a log, never a source of truth.

Deleting the file loses history and costs one re-read per ticket, nothing a customer sees:
every decision is made again from the ticket itself. So the file failing never stops the
worker: a file that is not a database is moved aside and a fresh one started; a file that
cannot be written (disk full, read-only) leaves the store in memory for the rest of the
process, and `problem` says what is wrong until then.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from automation.model import Brief

log = logging.getLogger(__name__)
MEMORY = ":memory:"

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    ticket_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    public INTEGER,
    comment_id INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS journal_ticket ON journal (ticket_id, id);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    state TEXT NOT NULL,
    next_step TEXT,
    due_at TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    seen_at TEXT NOT NULL,
    contact_email TEXT,
    contact_at TEXT
);
CREATE TABLE IF NOT EXISTS briefs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL,
    organization_id INTEGER,
    organization TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    planned TEXT NOT NULL,
    planned_for TEXT NOT NULL,
    url TEXT NOT NULL,
    filed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS briefs_organization ON briefs (organization_id, planned_for);
CREATE UNIQUE INDEX IF NOT EXISTS briefs_once ON briefs (ticket_id, planned, planned_for);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (sent_at, ticket_id, id);
CREATE TABLE IF NOT EXISTS threads (
    ticket_id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    ts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    kind TEXT NOT NULL,
    key INTEGER NOT NULL,
    value TEXT NOT NULL,
    read_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS issues (
    ticket_id INTEGER NOT NULL,
    episode INTEGER NOT NULL,
    iid INTEGER NOT NULL,
    url TEXT NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 0,
    closing TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ticket_id, episode)
);
CREATE TABLE IF NOT EXISTS claims (
    ticket_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
"""


@dataclass(frozen=True)
class IssueRow:
    """An emergency's GitLab issue, as this worker knows it."""

    ticket_id: int
    episode: int
    iid: int
    url: str
    recorded: bool  # its stamp is on the ticket
    closing: str | None  # the emergency ended: the note to close it with
    closed: bool


@dataclass(frozen=True)
class Entry:
    """One line of the audit journal."""

    at: datetime
    ticket_id: int
    step: str
    outcome: str  # "posted", "skipped", "conflict", "failed", ...
    actor: str = ""
    public: bool | None = None
    comment_id: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class TrackedTicket:
    """What the last pass learnt of a ticket: enough to skip re-reading it when nothing moved."""

    ticket_id: int
    subject: str
    updated_at: str
    state: str
    next_step: str | None
    due_at: datetime | None
    active: bool
    seen_at: datetime
    contact_email: str | None = None  # who made contact (to know who is busy)
    contact_at: datetime | None = None


@dataclass(frozen=True)
class Queued:
    """A Slack line waiting for (or already posted in) its emergency's thread."""

    id: int
    ticket_id: int
    kind: str
    text: str
    queued_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # Why the store is not writing its file (None: all is well).
        self.problem: str | None = None
        self._lock = threading.RLock()
        self.db = self._open(str(path))

    def _open(self, path: str) -> sqlite3.Connection:
        """The state file, or a fresh one beside a corrupt one, or memory when neither works."""
        try:
            return self._connect(path)
        except (sqlite3.Error, OSError) as exc:
            if path == MEMORY:
                raise
            first = exc
        if isinstance(first, sqlite3.DatabaseError) and self.path.is_file():
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            try:
                self.path.rename(aside)
                log.error("state file %s is not a usable database (%s): moved aside to %s; "
                          "starting a fresh one", self.path, first, aside)
                return self._connect(path)
            except (sqlite3.Error, OSError) as exc:
                first = exc
        self._degrade(first)
        return self._connect(MEMORY)

    def _connect(self, path: str) -> sqlite3.Connection:
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            # A commit is not flushed to the disk each time, only at checkpoints: a power cut
            # may take the last few lines back, never the file. The ticket's audit trail is
            # the record of what was sent; a state file a few lines short is one restored
            # from a backup, which costs reads, never a duplicate.
            db.execute("PRAGMA synchronous=NORMAL")
            # The tables in one transaction, before the file turns to WAL: a new state file
            # costs a sixth less to make, an existing one half as much to open.
            db.executescript(f"BEGIN; {SCHEMA} COMMIT;")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("SELECT COUNT(*) FROM journal").fetchone()  # a garbage file fails here
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _degrade(self, exc: BaseException) -> None:
        self.problem = (f"state file {self.path} cannot be used ({exc}): journalling in memory "
                        "until the worker restarts; customers' steps go on")
        log.error("%s", self.problem)

    def _run(self, sql: str, args: Iterable[Any] = (), many: bool = False) -> list[Any]:
        """One statement; when the file fails, the rest of the process keeps it in memory."""
        with self._lock:
            try:
                return self._execute(sql, args, many)
            except sqlite3.Error as exc:
                if self.problem is not None:
                    raise  # memory itself failed: a bug
                self._degrade(exc)
                self.db = self._to_memory()
                return self._execute(sql, args, many)

    def _run_many(self, sql: str, args: Iterable[Any]) -> None:
        self._run(sql, list(args), many=True)

    def _execute(self, sql: str, args: Iterable[Any], many: bool) -> list[Any]:
        if many:
            self.db.executemany(sql, args)
            return []
        return self.db.execute(sql, tuple(args)).fetchall()

    def _to_memory(self) -> sqlite3.Connection:
        """A copy of what the file still gives (if anything) in memory."""
        memory = self._connect(MEMORY)
        try:
            self.db.backup(memory)
        except sqlite3.Error:
            log.warning("the state file's contents could not be read: starting empty")
        return memory

    def close(self) -> None:
        self.db.close()

    def record(self, entry: Entry) -> None:
        self._run(
            "INSERT INTO journal (at, ticket_id, step, outcome, actor, public, comment_id, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.at.isoformat(), entry.ticket_id, entry.step, entry.outcome, entry.actor,
             None if entry.public is None else int(entry.public), entry.comment_id, entry.detail),
        )

    def journal(self, ticket_id: int | None = None) -> list[Entry]:
        query = ("SELECT at, ticket_id, step, outcome, actor, public, comment_id, detail"
                 " FROM journal")
        args: tuple[int, ...] = ()
        if ticket_id is not None:
            query += " WHERE ticket_id = ?"
            args = (ticket_id,)
        rows = self._run(query + " ORDER BY id", args)
        return [
            Entry(at=datetime.fromisoformat(at), ticket_id=tid, step=step, outcome=outcome,
                  actor=actor, public=None if public is None else bool(public),
                  comment_id=comment_id, detail=detail)
            for at, tid, step, outcome, actor, public, comment_id, detail in rows
        ]

    def track(self, ticket: TrackedTicket) -> None:
        self._run(
            "INSERT INTO tickets (ticket_id, subject, updated_at, state, next_step, due_at,"
            " active, seen_at, contact_email, contact_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (ticket_id) DO UPDATE SET subject = excluded.subject,"
            " updated_at = excluded.updated_at, state = excluded.state,"
            " next_step = excluded.next_step, due_at = excluded.due_at,"
            " active = excluded.active, seen_at = excluded.seen_at,"
            " contact_email = excluded.contact_email, contact_at = excluded.contact_at",
            (ticket.ticket_id, ticket.subject, ticket.updated_at, ticket.state, ticket.next_step,
             ticket.due_at.isoformat() if ticket.due_at else None, int(ticket.active),
             ticket.seen_at.isoformat(), ticket.contact_email,
             ticket.contact_at.isoformat() if ticket.contact_at else None),
        )

    def deactivate_except(self, ticket_ids: set[int]) -> list[int]:
        """Mark tickets no longer listed as inactive; return the ids that just dropped out."""
        rows = self._run("SELECT ticket_id FROM tickets WHERE active = 1")
        gone = [tid for (tid,) in rows if tid not in ticket_ids]
        self._run_many("UPDATE tickets SET active = 0 WHERE ticket_id = ?",
                       [(tid,) for tid in gone])
        return gone

    def tracked(self, active_only: bool = False) -> dict[int, TrackedTicket]:
        return self._tracked(" WHERE active = 1" if active_only else "", ())

    def tracked_ticket(self, ticket_id: int) -> TrackedTicket | None:
        """One ticket's row (a handling needs no other)."""
        return self._tracked(" WHERE ticket_id = ?", (ticket_id,)).get(ticket_id)

    def threads(self) -> dict[int, tuple[str, str]]:
        """Every recorded Slack thread: ticket -> (channel, ts)."""
        return {tid: (channel, ts)
                for tid, channel, ts in self._run("SELECT ticket_id, channel, ts FROM threads")}

    def _tracked(self, where: str, args: tuple[object, ...]) -> dict[int, TrackedTicket]:
        query = ("SELECT ticket_id, subject, updated_at, state, next_step, due_at, active,"
                 " seen_at, contact_email, contact_at FROM tickets")
        result = {}
        for (tid, subject, updated_at, state, next_step, due_at, active, seen_at, contact_email,
             contact_at) in self._run(query + where + " ORDER BY ticket_id", args):
            result[tid] = TrackedTicket(
                ticket_id=tid, subject=subject, updated_at=updated_at, state=state,
                next_step=next_step, due_at=_time(due_at), active=bool(active),
                seen_at=datetime.fromisoformat(seen_at), contact_email=contact_email,
                contact_at=_time(contact_at),
            )
        return result

    def recall(self, kind: str, ids: Iterable[int], since: datetime) -> list[dict[str, Any]]:
        """What the cache kept of ``kind`` since ``since``: Zendesk's users, organizations and
        API user, when briefs were last looked up, the templates last validated."""
        wanted = sorted(set(ids))
        found: list[dict[str, Any]] = []
        for start in range(0, len(wanted), 500):  # SQLite's bound parameters, with room
            chunk = wanted[start:start + 500]
            rows = self._run(
                f"SELECT value FROM cache WHERE kind = ? AND read_at >= ?"
                f" AND key IN ({', '.join('?' * len(chunk))})",
                (kind, since.astimezone(UTC).isoformat(), *chunk))
            for (value,) in rows:
                try:
                    found.append(json.loads(value))
                except ValueError:
                    continue  # torn or foreign: read from Zendesk again
        return found

    def keep(self, kind: str, key: int, value: dict[str, Any], at: datetime) -> None:
        self._run("INSERT OR REPLACE INTO cache (kind, key, value, read_at) VALUES (?, ?, ?, ?)",
                  (kind, key, json.dumps(value), at.astimezone(UTC).isoformat()))

    def add_brief(self, brief: Brief) -> None:
        self._run(
            "INSERT OR IGNORE INTO briefs (ticket_id, organization_id, organization, author,"
            " planned, planned_for, url, filed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (brief.ticket_id, brief.organization_id, brief.organization, brief.author,
             brief.planned, brief.when.isoformat(), brief.url, brief.filed_at.isoformat()),
        )

    def briefs(self, organization: str | None = None,
               since: datetime | None = None) -> list[Brief]:
        """Briefs, soonest first; `organization` matches an id or part of a name."""
        rows = self._run(
            "SELECT ticket_id, organization_id, organization, author, planned, planned_for, url,"
            " filed_at FROM briefs ORDER BY planned_for, id")
        result = []
        for tid, org_id, org, author, planned, planned_for, url, filed_at in rows:
            brief = Brief(ticket_id=tid, organization_id=org_id, organization=org,
                          author=author, planned=planned,
                          when=datetime.fromisoformat(planned_for), url=url,
                          filed_at=datetime.fromisoformat(filed_at))
            if since is not None and brief.when < since:
                continue
            if organization is not None and not (
                    str(org_id) == organization.strip()
                    or organization.strip().lower() in org.lower()):
                continue
            result.append(brief)
        return result

    def briefs_for(self, organization_id: int | None) -> list[Brief]:
        """Every brief filed for one organization (the worker filters by relevance)."""
        if organization_id is None:
            return []
        return [b for b in self.briefs() if b.organization_id == organization_id]

    # --- Slack: lines waiting for their thread, and the threads themselves ---------------------

    def enqueue(self, ticket_id: int, kind: str, text: str, at: datetime) -> None:
        self._run("INSERT INTO outbox (ticket_id, kind, text, queued_at) VALUES (?, ?, ?, ?)",
                  (ticket_id, kind, text, at.isoformat()))

    def outbox(self, ticket_id: int | None = None, pending_only: bool = True) -> list[Queued]:
        query = ("SELECT id, ticket_id, kind, text, queued_at, sent_at, attempts, last_error"
                 " FROM outbox WHERE 1 = 1")
        args: list[object] = []
        if pending_only:
            query += " AND sent_at IS NULL"
        if ticket_id is not None:
            query += " AND ticket_id = ?"
            args.append(ticket_id)
        return [Queued(id=i, ticket_id=t, kind=k, text=x, queued_at=datetime.fromisoformat(q),
                       sent_at=_time(sent), attempts=a, last_error=e)
                for i, t, k, x, q, sent, a, e in self._run(query + " ORDER BY id", args)]

    def mark_sent(self, queued_id: int, at: datetime) -> None:
        self._run("UPDATE outbox SET sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                  (at.isoformat(), queued_id))

    def mark_failed(self, queued_id: int, error: str) -> None:
        self._run("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                  (error[:300], queued_id))

    def remember_thread(self, ticket_id: int, channel: str, ts: str) -> None:
        self._run("INSERT INTO threads (ticket_id, channel, ts) VALUES (?, ?, ?)"
                  " ON CONFLICT (ticket_id) DO UPDATE SET channel = excluded.channel,"
                  " ts = excluded.ts", (ticket_id, channel, ts))

    def thread(self, ticket_id: int) -> tuple[str, str] | None:
        rows = self._run("SELECT channel, ts FROM threads WHERE ticket_id = ?", (ticket_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def remember_claim(self, ticket_id: int, tag: str) -> None:
        """A claim this worker wrote on a ticket (a Slack thread's, a hand-over's, an issue's
        close), so that it never waits for its own claim, whatever process wrote it."""
        self._run("INSERT OR IGNORE INTO claims (ticket_id, tag) VALUES (?, ?)",
                  (ticket_id, tag))

    def holds(self, ticket_id: int, step: str, by: str, nonce: str) -> bool:
        """Whether the claim of ``step`` stamped by ``by`` is this worker's: this process's
        (its ``nonce``) or an earlier one's on this state file (remembered as
        ``f"{step}:{by}"``)."""
        return by == nonce or self.claimed(ticket_id, f"{step}:{by}")

    def claimed(self, ticket_id: int, tag: str) -> bool:
        return bool(self._run("SELECT 1 FROM claims WHERE ticket_id = ? AND tag = ?",
                              (ticket_id, tag)))

    # --- GitLab's Emergency Runbook issues (the ticket's stamp is the record; this a cache) --

    def remember_issue(self, ticket_id: int, episode: int, iid: int, url: str,
                       recorded: bool = False) -> None:
        self._run("INSERT INTO issues (ticket_id, episode, iid, url, recorded)"
                  " VALUES (?, ?, ?, ?, ?) ON CONFLICT (ticket_id, episode) DO UPDATE SET"
                  " iid = excluded.iid, url = excluded.url,"
                  " recorded = MAX(recorded, excluded.recorded)",
                  (ticket_id, episode, iid, url, int(recorded)))

    def issue(self, ticket_id: int, episode: int) -> IssueRow | None:
        rows = self._run("SELECT ticket_id, episode, iid, url, recorded, closing, closed"
                         " FROM issues WHERE ticket_id = ? AND episode = ?",
                         (ticket_id, episode))
        return IssueRow(*rows[0]) if rows else None

    def latest_issue(self, ticket_id: int) -> IssueRow | None:
        rows = self._run("SELECT ticket_id, episode, iid, url, recorded, closing, closed"
                         " FROM issues WHERE ticket_id = ? ORDER BY episode DESC LIMIT 1",
                         (ticket_id,))
        return IssueRow(*rows[0]) if rows else None

    def close_issue_later(self, ticket_id: int, episode: int, note: str) -> None:
        """The emergency ended: its issue is to be closed with ``note`` (until it is)."""
        self._run("UPDATE issues SET closing = ? WHERE ticket_id = ? AND episode = ?"
                  " AND closing IS NULL", (note, ticket_id, episode))

    def mark_issue_closed(self, ticket_id: int, episode: int) -> None:
        self._run("UPDATE issues SET closed = 1 WHERE ticket_id = ? AND episode = ?",
                  (ticket_id, episode))

    def issues_to_close(self) -> list[IssueRow]:
        rows = self._run("SELECT ticket_id, episode, iid, url, recorded, closing, closed"
                         " FROM issues WHERE closing IS NOT NULL AND closed = 0"
                         " ORDER BY ticket_id")
        return [IssueRow(*row) for row in rows]
