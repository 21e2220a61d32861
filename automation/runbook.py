"""The GitLab side of an emergency: one Emergency Runbook issue, closed when it ends.

The runbook's optional step 3: "create a new Issue using the Emergency Runbook Issue
Template". Deciding is pure (`decide`: the ticket's facts in, intents out); `Runbook.carry_out`
makes each write. Exactly once, as for the Slack thread: the issue is recorded on the ticket
(a stamp in the audit with its iid and URL, a tag, an internal note); opening it is claimed
first with a safe update, so two workers never both create one; and the issue carries a label
naming the emergency (`zendesk-<ticket>-<episode>`), looked up before creating, so a crash
between GitLab's answer and the ticket's record never makes a second issue.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from automation import workflow
from automation.config import GitLabConfig, WorkflowConfig
from automation.errors import Conflict, NotFound, Refused, WriteUncertain
from automation.gitlab import GitLab, Issue
from automation.model import (
    CLAIM_TIMEOUT,
    ISSUE_STAMP,
    POST_CALL_STAMP,
    Assessment,
    Snapshot,
    Stamp,
    State,
)
from automation.store import IssueRow, Store
from automation.templates import Templates
from automation.workflow import Page
from automation.zendesk import Zendesk, audit_facts

CLOSED_STEP = "gitlab-issue-closed"
CLOSE_STAMP = "gitlab-issue-closing"  # the worker that closes the issue, on the ticket
CLOSED_TAG = "emergency_gitlab_issue_closed"
CLAIM_TAG = re.compile(r"^emergency_gitlab_claim_(\d+)(?:_[a-z0-9]+)?$")
MAX_TITLE = 255


def marker(ticket_id: int, episode: int) -> str:
    """The label (and description line) naming one emergency's issue."""
    return f"zendesk-{ticket_id}-{episode}"


def issue_tag(iid: int) -> str:
    return f"emergency_gitlab_issue_{iid}"


def text(value: str) -> str:
    """Customer text as data in GitLab Markdown: one line, no markup, no mention, no link."""
    flat = " ".join(value.split())
    flat = re.sub(r"([\\`*_{}\[\]()#+!|<>~])", r"\\\1", flat)
    return flat.replace("@", "@\u200b")  # a zero-width space: `@all` pings nobody


@dataclass(frozen=True)
class Recorded:
    """The emergency's issue as a stamp or this worker's state file knows it."""

    iid: int
    url: str


def recorded_issue(snapshot: Snapshot) -> Recorded | None:
    """This emergency's issue, as the stamp of the write that recorded it says."""
    stamp = snapshot.done().get(ISSUE_STAMP)
    if stamp is None or not stamp.detail.get("iid", "").isdigit():
        return None
    return Recorded(int(stamp.detail["iid"]), stamp.detail.get("url", ""))


def ending(snapshot: Snapshot, assessment: Assessment) -> str | None:
    """Why the emergency is over (bridge closed, post-call notes), or None while it runs."""
    if assessment.state == State.CLOSED_TO_HIGH:
        return "the bridge was closed and the ticket stepped down to HIGH"
    if POST_CALL_STAMP in snapshot.done():
        return "post-call notes were posted on the ticket"
    return None


def engineer_of(snapshot: Snapshot, assessment: Assessment, page: Page | None) -> str | None:
    """Who is on the emergency: who made contact (not the worker), else who has the page."""
    contact = snapshot.people.get(assessment.contact_by or 0)
    if contact is not None and contact.id != snapshot.me:
        return contact.email
    if page is not None:
        return page.acknowledged_by or page.assigned_to
    return None


@dataclass(frozen=True)
class Content:
    """The issue's title, its filled-in header and its labels (the template follows)."""

    title: str
    header: str
    labels: tuple[str, ...]

    def description(self, template: str) -> str:
        return f"{self.header}\n\n---\n\n{template}".rstrip() + "\n"


def content(snapshot: Snapshot, config: GitLabConfig, settings: WorkflowConfig,
            ticket_url: str, engineer: str | None) -> Content:
    """What the issue says about the emergency (pure; customer text escaped)."""
    ticket = snapshot.ticket
    org = snapshot.organization.name if snapshot.organization else "no organization"
    requester = snapshot.people.get(ticket.requester_id)
    customer = f"{org} — {requester.name} ({requester.email})" if requester else org
    title = " ".join(f"Emergency: Zendesk #{ticket.id} — {org}: {ticket.subject}".split())
    label = marker(ticket.id, snapshot.episode_id)
    header = "\n".join([
        f"**Zendesk ticket:** [#{ticket.id}]({ticket_url}) — {text(ticket.subject)}",
        f"**Customer:** {text(customer)}",
        f"**On-call engineer:** {text(engineer) if engineer else 'not known yet'}",
        f"**Bridge:** {settings.bridge_for(engineer)}",
        f"<!-- emergency-automation: {label} -->"])
    return Content(title[:MAX_TITLE], header, (*config.labels, label))


# --- intents: what GitLab needs for one ticket now -------------------------------------------

@dataclass(frozen=True)
class Record:
    """Our issue is not on the ticket yet (Zendesk failed after GitLab answered): write it."""

    issue: Recorded


@dataclass(frozen=True)
class Open:
    """A live emergency without an issue: claim it, then find or create it, and record it."""

    content: Content


@dataclass(frozen=True)
class Close:
    """The emergency ended: a note on its issue, and the issue closed."""

    issue: Recorded
    note: str


Intent = Record | Open | Close


def decide(snapshot: Snapshot, assessment: Assessment, ours: IssueRow | None,
           wanted: Content) -> list[Intent]:
    """What GitLab needs for this ticket now (pure)."""
    on_ticket = recorded_issue(snapshot)
    known = on_ticket or (Recorded(ours.iid, ours.url) if ours is not None else None)
    intents: list[Intent] = []
    if on_ticket is None and known is not None:
        intents.append(Record(known))
    why = ending(snapshot, assessment)
    if known is None:
        if assessment.state in workflow.LIVE_STATES and why is None:
            intents.append(Open(wanted))
        return intents
    if why is not None and not (ours is not None and ours.closed):
        intents.append(Close(known, f"The emergency is over: {why}. Closing this issue."))
    return intents


@dataclass(frozen=True)
class Made:
    """One GitLab write made (for the journal, the report and the thread)."""

    ticket_id: int
    step: str
    detail: str
    url: str


@dataclass(frozen=True)
class ByHand:
    """What `emergency runbook-issue` found, would open, or opened."""

    ticket_id: int
    url: str
    already: bool = False
    preview: str = ""
    made: Made | None = None

    def text(self) -> str:
        if self.preview:
            return self.preview
        if self.already:
            return f"#{self.ticket_id}: already has its Emergency Runbook issue: {self.url}"
        return f"#{self.ticket_id}: Emergency Runbook issue opened: {self.url}"


class Runbook:
    """Opens each live emergency's Emergency Runbook issue, and closes it when it ends."""

    def __init__(self, gitlab: GitLab, zendesk: Zendesk, store: Store, templates: Templates,
                 config: GitLabConfig, settings: WorkflowConfig) -> None:
        self.gitlab = gitlab
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.config = config
        self.settings = settings
        self._nonce = secrets.token_hex(3)

    def close(self) -> None:
        self.gitlab.close()

    def wants(self, ticket_id: int, state: str | None) -> bool:
        """Whether a live emergency still needs its issue opened or recorded."""
        row = self.store.latest_issue(ticket_id)
        if row is not None:
            return not row.recorded
        return state in workflow.LIVE_STATES

    def plan(self, snapshot: Snapshot, assessment: Assessment,
             page: Page | None) -> list[Intent]:
        """The facts GitLab's part is decided on (the issue we know), decided."""
        ticket_id, episode = snapshot.ticket.id, snapshot.episode_id
        on_ticket = recorded_issue(snapshot)
        if on_ticket is not None:
            self.store.remember_issue(ticket_id, episode, on_ticket.iid, on_ticket.url,
                                      recorded=True)
        wanted = content(snapshot, self.config, self.settings,
                         self.zendesk.agent_url(ticket_id),
                         engineer_of(snapshot, assessment, page))
        return decide(snapshot, assessment, self.store.issue(ticket_id, episode), wanted)

    def carry_out(self, intent: Intent, snapshot: Snapshot, now: datetime) -> Made | None:
        if isinstance(intent, Record):
            self._record(snapshot, intent.issue)
            return None
        if isinstance(intent, Open):
            return self._open(snapshot, intent.content, now)
        return self._end(snapshot, intent, now)

    def pending_closes(self, skip: set[int]) -> list[IssueRow]:
        """Issues whose emergency ended but that are not closed yet (GitLab was down, or
        another worker claimed the close), but for the tickets in ``skip``."""
        return [row for row in self.store.issues_to_close() if row.ticket_id not in skip]

    def close_later(self, row: IssueRow, now: datetime) -> Made | None:
        """Close it now, unless another worker's claim on the ticket is still fresh (the
        ticket's audits alone say; a ticket deleted since has no claim left to wait for)."""
        try:
            stamps = audit_facts(self.zendesk.audits(row.ticket_id)).stamps
        except NotFound:
            stamps = ()
        claim = next((s for s in stamps if s.step == CLOSE_STAMP and s.episode == row.episode),
                     None)
        if not self._ours(row.ticket_id, claim, now):
            return None
        return self._close(row.ticket_id, row.episode, Recorded(row.iid, row.url),
                           row.closing or "The emergency is over. Closing this issue.")

    # --- by hand (`emergency runbook-issue`) ------------------------------------------------

    def by_hand(self, snapshot: Snapshot, assessment: Assessment, page: Page | None,
                now: datetime, dry_run: bool) -> ByHand:
        """The emergency's issue: the one it has (recorded, or found by its label), else a
        preview of the one that would be opened, else the one just opened."""
        ticket_id, episode = snapshot.ticket.id, snapshot.episode_id
        known = recorded_issue(snapshot)
        row = self.store.issue(ticket_id, episode)
        if known is None and row is not None:
            known = Recorded(row.iid, row.url)
        if known is None:
            found = self.gitlab.find_issue(marker(ticket_id, episode))
            known = Recorded(found.iid, found.url) if found is not None else None
        if known is not None:
            if dry_run:
                return ByHand(ticket_id, known.url, already=True)
            if recorded_issue(snapshot) is None:
                self._record(snapshot, known)
            return ByHand(ticket_id, known.url, already=True)
        wanted = content(snapshot, self.config, self.settings,
                         self.zendesk.agent_url(ticket_id),
                         engineer_of(snapshot, assessment, page))
        if dry_run:
            return ByHand(ticket_id, "", preview=(
                f"would open in {self.config.project}: {wanted.title}\n"
                f"labels: {', '.join(wanted.labels)}\n\n"
                + wanted.description(self.gitlab.template(self.config.template))))
        made = self._open(snapshot, wanted, now)
        if made is None:
            raise Refused(f"ticket #{ticket_id}: another worker is opening its issue (or the "
                          "ticket kept changing); run the command again in a minute")
        return ByHand(ticket_id, made.url, made=made)

    # --- opening -------------------------------------------------------------------------------

    def _open(self, before: Snapshot, wanted: Content, now: datetime) -> Made | None:
        snapshot = self.zendesk.settled(self.zendesk.fresh(before), tries=3)
        if snapshot is None:
            return None  # it keeps changing: next pass
        if recorded_issue(snapshot) is not None:
            return None  # recorded by another worker since the pass read the ticket
        label = marker(snapshot.ticket.id, snapshot.episode_id)
        if not self._mine(snapshot, now):
            existing = self.gitlab.find_issue(label)  # another worker is opening it
            if existing is not None:
                self._record(snapshot, Recorded(existing.iid, existing.url))
            return None
        claimed = self._claim(snapshot, now)
        if claimed is None:
            return None  # another worker is on it; the next pass reads what it did
        issue = self.gitlab.find_issue(label) or self._create(wanted, label)
        self._record(claimed, Recorded(issue.iid, issue.url))
        return Made(snapshot.ticket.id, ISSUE_STAMP, f"Emergency Runbook issue "
                    f"{self.config.project}#{issue.iid} opened", issue.url)

    def _mine(self, snapshot: Snapshot, now: datetime) -> bool:
        """Whether this worker may claim it: no live claim of another worker is on it."""
        ticket = snapshot.ticket
        for tag in ticket.tags:
            match = CLAIM_TAG.match(tag)
            if match and not self.store.claimed(ticket.id, tag):
                at = datetime.fromtimestamp(int(match.group(1)), tz=UTC)
                if now - at < CLAIM_TIMEOUT:
                    return False
        return True

    def _claim(self, snapshot: Snapshot, now: datetime) -> Snapshot | None:
        """A safe update only one worker wins: the ticket after our claim, or None."""
        claim = f"emergency_gitlab_claim_{int(now.timestamp())}_{self._nonce}"
        self.store.remember_claim(snapshot.ticket.id, claim)  # ours, even if the answer is lost
        ticket = snapshot.ticket
        old = [t for t in ticket.tags if CLAIM_TAG.match(t)]
        try:
            update = self.zendesk.update(ticket, None, [claim], tags_to_remove=old)
            return self.zendesk.applied(update, snapshot)
        except (Conflict, WriteUncertain):
            pass
        fresh = self.zendesk.fresh(snapshot)
        if claim in fresh.ticket.tags:  # our answer was lost, but the claim is there
            return fresh
        return None

    def _create(self, wanted: Content, label: str) -> Issue:
        body = wanted.description(self.gitlab.template(self.config.template))
        try:
            return self.gitlab.create_issue(wanted.title, body, list(wanted.labels))
        except WriteUncertain:
            found = self.gitlab.find_issue(label)  # it may have landed before the drop
            if found is None:
                raise
            return found

    def _record(self, snapshot: Snapshot, issue: Recorded) -> None:
        """Write the issue on the ticket (stamp, tag and an internal note) for every worker."""
        ticket = snapshot.ticket
        self.store.remember_issue(ticket.id, snapshot.episode_id, issue.iid, issue.url)
        note = self.templates.render("gitlab_issue_note", {
            "issue": {"url": issue.url, "iid": issue.iid, "project": self.config.project}})
        self.zendesk.record(snapshot, [issue_tag(issue.iid)], {
            "step": ISSUE_STAMP, "episode": snapshot.episode_id,
            "iid": issue.iid, "url": issue.url}, note)
        self.store.remember_issue(ticket.id, snapshot.episode_id, issue.iid, issue.url,
                                  recorded=True)

    # --- closing -------------------------------------------------------------------------------

    def _end(self, snapshot: Snapshot, intent: Close, now: datetime) -> Made | None:
        """Close the issue once, whichever worker saw the end: the one whose stamp (with
        its nonce) is first on the ticket does it; another takes over only if it is stale."""
        ticket_id, episode = snapshot.ticket.id, snapshot.episode_id
        ours = self._ours_to_close(snapshot, now)
        # Kept until the issue is closed, by us or by the worker whose claim came first:
        # should that one die, this row brings us back once its claim is stale, listed or
        # not (`close_later`).
        self.store.close_issue_later(ticket_id, episode, intent.note)
        return self._close(ticket_id, episode, intent.issue, intent.note) if ours else None

    def _ours_to_close(self, snapshot: Snapshot, now: datetime) -> bool:
        """Whether this worker closes the issue: its claim is first on the ticket (stamped
        now if there is none), or another worker's claim has gone stale."""
        ticket_id = snapshot.ticket.id
        claim = snapshot.done().get(CLOSE_STAMP)
        if claim is None:
            # Ours, even if the answer is lost, and for this worker's next process too.
            self.store.remember_claim(ticket_id, f"{CLOSE_STAMP}:{self._nonce}")
            snapshot = self.zendesk.record(snapshot, [CLOSED_TAG], {
                "step": CLOSE_STAMP, "episode": snapshot.episode_id, "by": self._nonce})
            claim = snapshot.done().get(CLOSE_STAMP)
        return self._ours(ticket_id, claim, now)

    def _ours(self, ticket_id: int, claim: Stamp | None, now: datetime) -> bool:
        """No claim, a claim of this worker's (this process or an earlier one on the same
        state file), or another's gone stale."""
        if claim is None:
            return True
        return self.store.holds(ticket_id, CLOSE_STAMP, claim.detail.get("by", ""),
                                self._nonce) or now - claim.at >= CLAIM_TIMEOUT

    def _close(self, ticket_id: int, episode: int, issue: Recorded, note: str) -> Made | None:
        """A note, then the issue closed; neither twice (a person's own close stands)."""
        current = self.gitlab.issue(issue.iid)
        made = None
        if current.state != "closed":
            if note not in self.gitlab.note_bodies(issue.iid):
                self.gitlab.add_note(issue.iid, note)
            self.gitlab.close_issue(issue.iid)
            made = Made(ticket_id, CLOSED_STEP, f"Emergency Runbook issue "
                        f"{self.config.project}#{issue.iid} closed", issue.url or current.url)
        self.store.mark_issue_closed(ticket_id, episode)
        return made
