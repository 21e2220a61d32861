"""The Slack side of an emergency: one thread per ticket, and one line per step in it.

The thread's `ts` is written on the ticket itself (a tag, with an internal note carrying the
permalink), so a restarted or second worker finds it. Starting a thread is claimed first with
a safe update of a tag, so two workers never both post a parent. Lines for the thread wait in
the journal's outbox until they are posted: Slack being down delays only Slack.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from automation.clock import Clock
from automation.config import Region, SlackConfig
from automation.errors import Conflict, CredentialsRejected, UpstreamError, WriteUncertain
from automation.model import Organization, Snapshot, Ticket
from automation.slack import Slack, escape, link, mention_group, mention_user
from automation.store import Store
from automation.templates import Templates
from automation.zendesk import Zendesk

log = logging.getLogger(__name__)

THREAD_TAG = re.compile(r"^emergency_slack_thread_([a-z0-9]+)_(\d+)_(\d+)$")
CLAIM_TAG = re.compile(r"^emergency_slack_claim_(\d+)$")
# A claim older than this whose thread never got recorded (a worker died) may be taken over.
CLAIM_TIMEOUT = timedelta(minutes=5)
OPENING_KINDS = ("cc", "ase", "brief")


@dataclass(frozen=True)
class Thread:
    channel: str
    ts: str


def thread_tag(thread: Thread) -> str:
    # Zendesk lowercases tags; Slack ids are uppercase, so this is undone when reading.
    return f"emergency_slack_thread_{thread.channel.lower()}_{thread.ts.replace('.', '_')}"


def thread_from_tags(tags: tuple[str, ...]) -> Thread | None:
    for tag in tags:
        match = THREAD_TAG.match(tag)
        if match:
            return Thread(match.group(1).upper(), f"{match.group(2)}.{match.group(3)}")
    return None


def claim_from_tags(tags: tuple[str, ...]) -> datetime | None:
    for tag in tags:
        match = CLAIM_TAG.match(tag)
        if match:
            return datetime.fromtimestamp(int(match.group(1)), tz=UTC)
    return None


def claim_tags(tags: tuple[str, ...]) -> list[str]:
    return [tag for tag in tags if CLAIM_TAG.match(tag)]


def pick_channel(config: SlackConfig, ticket: Ticket, organization: Organization | None) -> str:
    """The first rule that matches the ticket picks the channel; else the default."""
    org_tags = set(organization.tags) if organization else set()
    org_fields = {k: str(v) for k, v in (organization.fields if organization else {}).items()}
    for rule in config.channels:
        if (set(rule.tags) & set(ticket.tags) or ticket.brand_id in rule.brands
                or ticket.form_id in rule.forms or set(rule.organization_tags) & org_tags
                or any(org_fields.get(k) == v for k, v in rule.organization_fields)):
            return rule.channel
    return config.default_channel


def pick_region(config: SlackConfig, organization: Organization | None,
                now: datetime) -> Region | None:
    """The organization's region when its field names one, else the region on shift now."""
    wanted = str((organization.fields if organization else {}).get(config.region_field) or "")
    for region in config.regions:
        if wanted and region.name.lower() == wanted.lower():
            return region
    moment = now.astimezone(UTC).time()
    return next((r for r in config.regions if r.covers(moment)), None)


def ticket_link(zendesk: Zendesk, ticket: Ticket) -> str:
    return link(zendesk.agent_url(ticket.id), f"#{ticket.id}")


def parent_text(zendesk: Zendesk, ticket: Ticket, organization: Organization | None) -> str:
    org = f" — {escape(organization.name)}" if organization else ""
    return (f"Thread for emergency ticket {ticket_link(zendesk, ticket)}: "
            f"{escape(ticket.subject)}{org}")


class Chat:
    """Keeps each live emergency's Slack thread and posts the lines queued for it."""

    def __init__(self, slack: Slack, zendesk: Zendesk, store: Store, templates: Templates,
                 config: SlackConfig, clock: Clock) -> None:
        self.slack = slack
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.config = config
        self.clock = clock
        # Slack refused our token during the pass: the worker reports it after the pass.
        self.rejected: CredentialsRejected | None = None

    # --- what the worker calls -----------------------------------------------------------------

    def wants(self, ticket_id: int) -> bool:
        """Whether this ticket has Slack work left (so the worker re-reads it)."""
        return self.store.thread(ticket_id) is None or bool(self.store.outbox(ticket_id))

    def echo(self, ticket_id: int, kind: str, text: str, now: datetime) -> None:
        """Queue one line for the ticket's thread; it is posted when the thread exists."""
        self.store.enqueue(ticket_id, kind, text, now)

    def serve(self, snapshot: Snapshot, now: datetime, live: bool) -> int:
        """Make sure a live emergency has its thread, then post its queued lines.

        Returns how many lines are still pending. Slack errors are logged, never raised:
        the customer-visible steps never wait on Slack.
        """
        ticket_id = snapshot.ticket.id
        try:
            thread = self._thread(snapshot, now, start=live)
            if thread is not None:
                self._flush(ticket_id, thread, now)
        except UpstreamError as exc:
            self._note(exc, ticket_id)
        except Conflict:
            log.info("ticket %s changed while its Slack thread was being recorded", ticket_id)
        return len(self.store.outbox(ticket_id))

    def _note(self, exc: UpstreamError, ticket_id: int) -> None:
        """A refused token is reported once after the pass; anything else is logged now."""
        if isinstance(exc, CredentialsRejected) and exc.service == "Slack":
            self.rejected = exc
            return
        log.warning("ticket %s: Slack work pending: %s", ticket_id, exc)

    def drain(self, now: datetime, skip: set[int]) -> int:
        """Post the lines still waiting for tickets no longer listed (e.g. just stepped down
        to HIGH while Slack was down); returns how many are still pending."""
        pending = 0
        for ticket_id in sorted({q.ticket_id for q in self.store.outbox()} - skip):
            cached = self.store.thread(ticket_id)
            if cached is None:
                continue
            try:
                self._flush(ticket_id, Thread(*cached), now)
            except UpstreamError as exc:
                self._note(exc, ticket_id)
            pending += len(self.store.outbox(ticket_id))
        return pending

    # --- the thread ----------------------------------------------------------------------------

    def _thread(self, snapshot: Snapshot, now: datetime, start: bool) -> Thread | None:
        ticket = snapshot.ticket
        known = thread_from_tags(ticket.tags)
        if known is not None:
            self.store.remember_thread(ticket.id, known.channel, known.ts)
            return known
        cached = self.store.thread(ticket.id)
        if cached is not None:
            # Ours, but not yet written on the ticket (Slack or Zendesk failed halfway):
            # write it now, so other workers find it and the ASE note is there.
            return self._record(snapshot, Thread(*cached), now,
                                self.zendesk.organization(ticket.organization_id), opened=False)
        if not start:
            return None
        organization = self.zendesk.organization(ticket.organization_id)
        channel = pick_channel(self.config, ticket, organization)
        marker = f"/agent/tickets/{ticket.id}|"
        claimed_at = claim_from_tags(ticket.tags)
        if claimed_at is not None and now - claimed_at < CLAIM_TIMEOUT:
            # Another worker (or this one, before a crash) is starting it: adopt it if it exists.
            existing = self.slack.find_message(channel, marker, oldest=ticket.created_at)
            return self._record(snapshot, Thread(channel, existing.ts), now, organization,
                                opened=False) if existing else None
        # No claim, or one whose worker died: claim it (a safe update only one worker wins).
        claim = f"emergency_slack_claim_{int(now.timestamp())}"
        try:
            self.zendesk.update(ticket, None, [claim], tags_to_remove=claim_tags(ticket.tags))
        except Conflict:
            # The ticket moved since it was read (often our own page tag): look again.
            fresh = self.zendesk.ticket(ticket.id)
            fresh_claim = claim_from_tags(fresh.tags)
            if thread_from_tags(fresh.tags) or (
                    fresh_claim is not None and now - fresh_claim < CLAIM_TIMEOUT):
                return None  # another worker is on it; the next pass reads what it did
            self.zendesk.update(fresh, None, [claim], tags_to_remove=claim_tags(fresh.tags))
        existing = self.slack.find_message(channel, marker, oldest=ticket.created_at)
        if existing is not None:
            return self._record(snapshot, Thread(channel, existing.ts), now, organization,
                                opened=False)
        try:
            posted = self.slack.post(channel, parent_text(self.zendesk, ticket, organization))
        except WriteUncertain:
            found = self.slack.find_message(channel, marker, oldest=ticket.created_at)
            if found is None:
                raise
            posted = found
        return self._record(snapshot, Thread(posted.channel, posted.ts), now, organization,
                            opened=True)

    def _record(self, snapshot: Snapshot, thread: Thread, now: datetime,
                organization: Organization | None, opened: bool) -> Thread:
        """Open the thread (cc, ASE, brief) and write it on the ticket for every worker."""
        ticket = snapshot.ticket
        self.store.remember_thread(ticket.id, thread.channel, thread.ts)
        fields = organization.fields if organization else {}
        manager = self.person(fields.get(self.config.account_manager_field))
        ase = self.person(fields.get(self.config.ase_field))
        if opened:
            if manager:
                self.echo(ticket.id, "cc", f"cc {manager[1]} (account manager)", now)
            if ase:
                self.echo(ticket.id, "ase", f"{ase[1]} your account "
                          f"{escape(organization.name) if organization else ''} has an emergency: "
                          "you know them best, can you help the on-call engineer?", now)
            for brief in snapshot.briefs:
                self.echo(ticket.id, "brief", "Pre-task brief on file: "
                          f"{link(brief.url, brief.planned)} by {escape(brief.author)} "
                          f"({brief.when:%Y-%m-%d %H:%M %Z})", now)
        permalink = self.slack.permalink(thread.channel, thread.ts)
        note = self.templates.render("slack_thread_note", {
            "permalink": permalink, "account_manager": manager[0] if manager else None,
            "ase": ase[0] if ase else None})
        self.zendesk.ensure_tags(ticket, [thread_tag(thread)], note,
                                 done=lambda fresh: thread_from_tags(fresh.tags) is not None)
        return thread

    def person(self, email: object) -> tuple[str, str] | None:
        """(plain name for Zendesk, Slack mention) of a person given by email in the org."""
        if not isinstance(email, str) or "@" not in email:
            return None
        try:
            user_id = self.slack.user_id_by_email(email)
        except UpstreamError as exc:
            # Slack down or refusing: name them plainly; nothing else waits on Slack.
            if isinstance(exc, CredentialsRejected):
                self.rejected = exc
            else:
                log.warning("Slack: could not look up %s: %s", email, exc)
            user_id = None
        return (email, mention_user(user_id)) if user_id else (email, escape(email))

    def _flush(self, ticket_id: int, thread: Thread, now: datetime) -> None:
        # The thread's opening lines (cc, ASE, brief) come before the steps' echoes.
        queued = sorted(self.store.outbox(ticket_id),
                        key=lambda q: (q.kind not in OPENING_KINDS, q.id))
        if not queued:
            return
        # A line already in the thread (a restart, a lost answer) is not posted again.
        try:
            already = {m.text for m in self.slack.thread_replies(thread.channel, thread.ts)}
        except UpstreamError as exc:
            for line in queued:
                self.store.mark_failed(line.id, str(exc))
            raise
        for line in queued:
            if line.text in already:
                self.store.mark_sent(line.id, now)
                continue
            try:
                self.slack.post(thread.channel, line.text, thread_ts=thread.ts)
            except UpstreamError as exc:
                self.store.mark_failed(line.id, str(exc))
                raise
            self.store.mark_sent(line.id, now)
            already.add(line.text)

    def account_manager(self, organization: Organization | None) -> tuple[str, str] | None:
        fields = organization.fields if organization else {}
        return self.person(fields.get(self.config.account_manager_field))

    def ping_region(self, ticket: Ticket, organization: Organization | None, now: datetime,
                    reason: str) -> None:
        """Queue a ping of the regional group on shift (busy on-call)."""
        region = pick_region(self.config, organization, now)
        if region is None:
            return
        group_id = self.slack.usergroup_id(region.group)
        who = mention_group(group_id) if group_id else f"@{escape(region.group)}"
        self.echo(ticket.id, "region", f"{who} {escape(reason)}: "
                  f"{ticket_link(self.zendesk, ticket)} needs an engineer", now)
