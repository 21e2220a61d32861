"""The Slack side of an emergency: one thread per ticket, and one line per step in it.

The thread's `ts` is written on the ticket itself (a tag, with an internal note carrying the
permalink), so a restarted or second worker finds it. Starting a thread is claimed first with
a safe update of a tag, so two workers never both post a parent; a claim this worker made
(recorded in its state file) never blocks itself. Lines for the thread wait in the journal's
outbox until they are posted: Slack being down delays only Slack. Every line's text is made
here; deciding what Slack needs is pure (`decide`), `Chat.carry_out` does it.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from automation.config import Region, Rotation, SlackConfig
from automation.errors import (
    Conflict,
    CredentialsRejected,
    Rejected,
    UpstreamError,
    WriteUncertain,
)
from automation.executor import Executor
from automation.facts import thread_note_context
from automation.mentions import TOKEN, group_token, token_name, user_token
from automation.model import (
    CLAIM_TIMEOUT,
    THREAD_STAMP,
    Brief,
    Line,
    Organization,
    PageStep,
    Snapshot,
    Step,
    Ticket,
)
from automation.slack import Slack, escape, link, mention_group, mention_user
from automation.store import Store
from automation.templates import Templates
from automation.workflow import Policy
from automation.zendesk import Zendesk

log = logging.getLogger(__name__)

THREAD_TAG = re.compile(r"^emergency_slack_thread_([a-z0-9]+)_(\d+)_(\d+)$")
# A claim names its time and the worker process that made it (two workers may claim in the
# same second: each must tell its own claim from the other's).
CLAIM_TAG = re.compile(r"^emergency_slack_claim_(\d+)(?:_[a-z0-9]+)?$")
OPENING_KINDS = (Line.CC, Line.ASE, Line.BRIEF)
SERVICE = "Slack"


@dataclass(frozen=True)
class Thread:
    channel: str
    ts: str


def thread_tag(thread: Thread) -> str:
    # Zendesk lowercases tags; Slack ids are uppercase, so this is undone when reading.
    return f"emergency_slack_thread_{thread.channel.lower()}_{thread.ts.replace('.', '_')}"


def thread_from_stamps(snapshot: Snapshot) -> Thread | None:
    """The ticket's thread, as the stamp of the write that recorded it says (a thread tag
    copied from another ticket names that ticket's thread: it does not count)."""
    for stamp in snapshot.stamps:
        channel, ts = stamp.detail.get("channel"), stamp.detail.get("ts")
        if stamp.step == THREAD_STAMP and channel and ts:
            return Thread(channel, ts)
    return None


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


# --- every line the thread carries (customer text escaped here, never elsewhere) -------------

def step_line(step: Step, policy: Policy, posted_as: str | None = None,
              fallback: bool = False) -> str | None:
    """The thread's line for one of the worker's Zendesk steps (None: the step has none)."""
    minutes = int(policy.follow_up_after.total_seconds() // 60)
    total = int((policy.follow_up_after + policy.close_after).total_seconds() // 60)
    if step is Step.ACKNOWLEDGE and posted_as:
        return f"Acknowledgement posted as {escape(posted_as)}, who acknowledged the page"
    if step is Step.ACKNOWLEDGE and fallback:
        return f"Acknowledgement posted from the team: {fallback_detail(policy)}"
    return {
        Step.OFF_HOURS: "Outside the US Federal coverage hours: nobody was paged; the off-hours "
                        "reply went to the customer, and the on-call is paged when coverage "
                        "opens",
        Step.ACKNOWLEDGE: "Acknowledgement posted on the ticket (public): the bridge is offered",
        Step.FOLLOW_UP: f"No reply {minutes} min after contact: follow-up sent to the customer",
        Step.CLOSE: f"No reply {total} min after contact: bridge closed, priority set to HIGH",
    }.get(step)


def fallback_detail(policy: Policy) -> str:
    minutes = int((policy.acknowledge_fallback or timedelta()).total_seconds() // 60)
    return (f"nobody acknowledged the page within {minutes} min: posted from the team; "
            "the page keeps escalating")


def manual_step_line(step: Step, who: str) -> str:
    """The thread's line for a step an engineer sent by hand (`ack`, `follow-up`, `close`)."""
    return {Step.ACKNOWLEDGE: f"Acknowledgement posted by hand by {escape(who)} (public): the "
                              "bridge is offered",
            Step.FOLLOW_UP: f"Follow-up sent by hand by {escape(who)}",
            Step.CLOSE: f"Bridge closed by hand by {escape(who)}: priority set to HIGH"}[step]


def post_call_line(engineer: str, next_engineer: str | None) -> str:
    """Post-call notes, tagging the next on-call (``next_engineer``: a mention, or None)."""
    handoff = f" Hand-off: {next_engineer} is the next on-call engineer." if next_engineer \
        else ""
    return f"Post-call notes posted by {escape(engineer)}.{handoff}"


def not_emergency_line(engineer: str, reason: str, manager: str | None) -> str:
    """"Assume good intent": the ticket may not be an emergency (``manager``: a mention)."""
    told = f" cc {manager} (account manager)" if manager else ""
    return (f"{escape(engineer)} thinks this may not meet the emergency definition: "
            f"{escape(reason.strip())}. Assume good intent: priority and SLA unchanged.{told}")


def escalation_line(engineer: str, reason: str, incident: str) -> str:
    """"If you're stuck": the engineer escalated, and the Support Manager on call is paged."""
    return (f"{escape(engineer)} is stuck and escalated: the Support Manager on call is paged "
            f"({escape(incident)}). Why: {escape(reason.strip())}")


def page_line(step: PageStep, detail: str) -> str:
    """The thread's line for a PagerDuty step."""
    return {PageStep.PAGED: f"On-call paged in PagerDuty: {detail}",
            PageStep.INCIDENT_RESOLVED: f"PagerDuty: {detail} (resolved = engaged, not fixed)",
            PageStep.MANAGER_PAGED: f"Second emergency: {detail}"}[step]


def issue_line(detail: str, url: str) -> str:
    """The thread's line for the emergency's GitLab issue (opened, closed)."""
    return f"{escape(detail)}: {link(url, url)}"


def replied_line(at: datetime) -> str:
    return f"The customer replied at {at:%H:%M} UTC: timers stopped"


def cc_line(manager: str) -> str:
    return f"cc {manager} (account manager)"


def ase_line(ase: str, organization: Organization | None) -> str:
    return (f"{ase} your account {escape(organization.name) if organization else ''} has an "
            "emergency: you know them best, can you help the on-call engineer?")


def brief_line(brief: Brief) -> str:
    return (f"Pre-task brief on file: {link(brief.url, brief.planned)} by "
            f"{escape(brief.author)} ({brief.when:%Y-%m-%d %H:%M %Z})")


def region_line(region: Region, reason: str, ticket_link_text: str) -> str:
    return (f"{group_token(region.group)} {escape(reason)}: {ticket_link_text} needs an "
            "engineer")


def handover_heading(rotation: Rotation, ticket_link_text: str) -> str:
    """How a hand-over request starts: also what finds it again in the rotation's channel."""
    return f"{escape(rotation.name)} hand-over for emergency {ticket_link_text}"


def handover_line(rotation: Rotation, engineer_email: str, ticket_link_text: str,
                  organization: Organization | None, thread_permalink: str) -> str:
    """Runbook step 5: the engineer who took the emergency is on ``rotation``'s shift."""
    ping = f"{group_token(rotation.group)} " if rotation.group else ""
    org = f" ({escape(organization.name)})" if organization else ""
    engineer = user_token(engineer_email) or escape(engineer_email)
    shift = escape(rotation.name)
    return (f"{ping}{handover_heading(rotation, ticket_link_text)}{org}: {engineer} is on the "
            f"{shift} shift and has just taken this customer emergency. Can someone take over "
            f"the {shift} duties? Emergency thread: {link(thread_permalink, 'open')}")


def ticket_link(zendesk: Zendesk, ticket: Ticket) -> str:
    return link(zendesk.agent_url(ticket.id), f"#{ticket.id}")


def parent_text(zendesk: Zendesk, ticket: Ticket, organization: Organization | None) -> str:
    org = f" — {escape(organization.name)}" if organization else ""
    return (f"Thread for emergency ticket {ticket_link(zendesk, ticket)}: "
            f"{escape(ticket.subject)}{org}")


def account_people(config: SlackConfig,
                   organization: Organization | None) -> tuple[str | None, str | None]:
    """The organization's account manager and ASE (its fields name them by email), as
    mentions; None for one it does not name."""
    fields = organization.fields if organization else {}
    return (user_token(fields.get(config.account_manager_field)),
            user_token(fields.get(config.ase_field)))


def opening_lines(config: SlackConfig, snapshot: Snapshot) -> list[tuple[Line, str]]:
    """A new thread's first lines: the account manager cc'd, the ASE pinged, the briefs."""
    organization = snapshot.organization
    lines: list[tuple[Line, str]] = []
    manager, ase = account_people(config, organization)
    if manager:
        lines.append((Line.CC, cc_line(manager)))
    if ase:
        lines.append((Line.ASE, ase_line(ase, organization)))
    lines += [(Line.BRIEF, brief_line(brief)) for brief in snapshot.briefs]
    return lines


# --- intents: what Slack needs for one ticket now --------------------------------------------

@dataclass(frozen=True)
class Record:
    """Our thread is not on the ticket yet (Slack or Zendesk failed halfway): write it."""

    thread: Thread


@dataclass(frozen=True)
class Start:
    """A live emergency without a thread: claim it on the ticket, then open it."""

    channel: str


@dataclass(frozen=True)
class Flush:
    """Post the lines queued for the ticket's thread."""


Intent = Record | Start | Flush


def decide(snapshot: Snapshot, config: SlackConfig, live: bool, ours: Thread | None,
           queued: bool) -> list[Intent]:
    """What Slack needs for this ticket now (pure): its thread, then its queued lines."""
    intents: list[Intent] = []
    on_ticket = thread_from_stamps(snapshot)
    if on_ticket is None and ours is not None:
        intents.append(Record(ours))
    elif on_ticket is None and ours is None:
        if not live:
            return []
        intents.append(Start(pick_channel(config, snapshot.ticket, snapshot.organization)))
    if queued or on_ticket is None:
        intents.append(Flush())
    return intents


class Chat:
    """Keeps each live emergency's Slack thread and posts the lines queued for it."""

    def __init__(self, slack: Slack, zendesk: Zendesk, store: Store, templates: Templates,
                 config: SlackConfig) -> None:
        self.slack = slack
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.config = config
        # Slack refused our token during a command: the command reports it.
        self.rejected: CredentialsRejected | None = None
        self._nonce = secrets.token_hex(3)

    # --- what the worker and the commands call -------------------------------------------------

    def wants(self, ticket_id: int) -> bool:
        """Whether this ticket has Slack work left (so the worker re-reads it)."""
        return self.store.thread(ticket_id) is None or bool(self.store.outbox(ticket_id))

    def echo(self, ticket_id: int, kind: str, text: str, now: datetime) -> None:
        """Queue one line for the ticket's thread; it is posted when the thread exists."""
        self.store.enqueue(ticket_id, kind, text, now)

    def ping_region(self, ticket: Ticket, organization: Organization | None, now: datetime,
                    reason: str) -> None:
        """Queue a ping of the regional group on shift (the on-call is busy)."""
        region = pick_region(self.config, organization, now)
        if region is not None:
            self.echo(ticket.id, Line.REGION,
                      region_line(region, reason, ticket_link(self.zendesk, ticket)), now)

    def plan(self, snapshot: Snapshot, live: bool) -> list[Intent]:
        """The facts Slack's part is decided on (the thread we know, lines waiting), decided."""
        ticket_id = snapshot.ticket.id
        on_ticket = thread_from_stamps(snapshot)
        if on_ticket is not None:
            self.store.remember_thread(ticket_id, on_ticket.channel, on_ticket.ts)
        ours = self.store.thread(ticket_id)
        return decide(snapshot, self.config, live, Thread(*ours) if ours else None,
                      bool(self.store.outbox(ticket_id)))

    def carry_out(self, intent: Intent, snapshot: Snapshot, now: datetime) -> None:
        if isinstance(intent, Record):
            self._record(snapshot, intent.thread)
        elif isinstance(intent, Start):
            self._start(snapshot, intent.channel, now)
        else:
            self._flush(snapshot.ticket.id, now)

    def serve(self, snapshot: Snapshot, now: datetime, live: bool) -> int:
        """Slack's part for one ticket at once (the commands); how many lines still wait."""
        executor = Executor(self.slack.clock)
        executor.add(SERVICE, self.slack)
        for intent in self.plan(snapshot, live):
            executor.call(SERVICE, snapshot.ticket.id, "Slack thread",
                          partial(self.carry_out, intent, snapshot, now))
        if isinstance(executor.down(SERVICE), CredentialsRejected):
            self.rejected = executor.down(SERVICE)  # type: ignore[assignment]
        return len(self.store.outbox(snapshot.ticket.id))

    def drain(self, executor: Executor, now: datetime, skip: set[int]) -> int:
        """Post the lines still waiting for tickets no longer listed (e.g. just stepped down
        to HIGH while Slack was down); returns how many are still pending."""
        pending = 0
        for ticket_id in sorted({q.ticket_id for q in self.store.outbox()} - skip):
            if self.store.thread(ticket_id) is not None:
                executor.call(SERVICE, ticket_id, "Slack lines",
                              partial(self._flush, ticket_id, now))
                pending += len(self.store.outbox(ticket_id))
        return pending

    # --- the thread ----------------------------------------------------------------------------

    def _start(self, before: Snapshot, channel: str, now: datetime) -> None:
        snapshot = self._settled(before)
        if snapshot is None:
            return
        ticket = snapshot.ticket
        if thread_from_stamps(snapshot) is not None:
            return  # recorded by another worker since the pass read the ticket
        claimed_at = claim_from_tags(ticket.tags)
        mine = any(self.store.claimed(ticket.id, tag) for tag in claim_tags(ticket.tags))
        if claimed_at is not None and not mine and now - claimed_at < CLAIM_TIMEOUT:
            # Another worker is starting it: adopt its thread once it exists.
            existing = self._find_parent(channel, ticket)
            if existing is not None:
                self._record(snapshot, existing)
            return
        if not mine or claimed_at is None or now - claimed_at >= CLAIM_TIMEOUT:
            # Ours but stale: another worker may take it over, so it is claimed afresh.
            claimed = self._claim(snapshot, now)
            if claimed is None:
                return  # another worker is on it; the next pass reads what it did
            snapshot = claimed
        existing = self._find_parent(channel, ticket)
        if existing is not None:
            self._record(snapshot, existing)
            return
        self._open(snapshot, channel, now)

    def _settled(self, snapshot: Snapshot) -> Snapshot | None:
        """The ticket read afresh (the pass's PagerDuty part may have written to it since),
        once its last change is safely in the past: the claim is a safe update. None: it
        keeps changing (next pass)."""
        return self.zendesk.settled(self.zendesk.fresh(snapshot), tries=3)

    def _claim(self, snapshot: Snapshot, now: datetime) -> Snapshot | None:
        """Claim the thread with a safe update only one worker wins: the ticket after our
        claim, or None when another worker's claim or thread came first."""
        claim = f"emergency_slack_claim_{int(now.timestamp())}_{self._nonce}"
        self.store.remember_claim(snapshot.ticket.id, claim)  # ours, even if the answer is lost
        ticket = snapshot.ticket
        try:
            update = self.zendesk.update(ticket, None, [claim],
                                         tags_to_remove=claim_tags(ticket.tags))
            return self.zendesk.applied(update, snapshot)
        except (Conflict, WriteUncertain):
            pass  # the ticket moved (often our own page stamp): look at it again next pass
        fresh = self.zendesk.fresh(snapshot)
        if claim in fresh.ticket.tags:  # our answer was lost, but the claim is there
            return fresh
        return None

    def _find_parent(self, channel: str, ticket: Ticket) -> Thread | None:
        found = self.slack.find_message(channel, f"/agent/tickets/{ticket.id}|",
                                        oldest=ticket.created_at)
        return Thread(channel, found.ts) if found is not None else None

    def _open(self, snapshot: Snapshot, channel: str, now: datetime) -> None:
        ticket = snapshot.ticket
        try:
            posted = self.slack.post(channel, parent_text(self.zendesk, ticket,
                                                          snapshot.organization))
            thread = Thread(posted.channel, posted.ts)
        except WriteUncertain:
            found = self._find_parent(channel, ticket)
            if found is None:
                raise
            thread = found
        self.store.remember_thread(ticket.id, thread.channel, thread.ts)
        for kind, text in opening_lines(self.config, snapshot):
            self.echo(ticket.id, kind, text, now)
        self._record(snapshot, thread)

    def _record(self, snapshot: Snapshot, thread: Thread) -> None:
        """Write the thread on the ticket (tag and an internal note) for every worker."""
        ticket = snapshot.ticket
        self.store.remember_thread(ticket.id, thread.channel, thread.ts)
        manager, ase = account_people(self.config, snapshot.organization)
        note = self.templates.render("slack_thread_note", thread_note_context(
            self.slack.permalink(thread.channel, thread.ts),
            token_name(manager) if manager else None, token_name(ase) if ase else None))
        self.zendesk.record(snapshot, [thread_tag(thread)], {
            "step": THREAD_STAMP, "episode": snapshot.episode_id,
            "channel": thread.channel, "ts": thread.ts}, note)

    # --- the lines -----------------------------------------------------------------------------

    def resolve(self, text: str) -> str:
        """A queued line as posted: its people and groups mentioned (plainly if unknown)."""
        def mention(match: re.Match[str]) -> str:
            kind, name = match.groups()
            if kind == "user":
                user_id = self.slack.user_id_by_email(name)
                return mention_user(user_id) if user_id else escape(name)
            group_id = self.slack.usergroup_id(name)
            return mention_group(group_id) if group_id else f"@{escape(name)}"
        return TOKEN.sub(mention, text)

    def _flush(self, ticket_id: int, now: datetime) -> None:
        cached = self.store.thread(ticket_id)
        # The thread's opening lines (cc, ASE, brief) come before the steps' echoes.
        queued = sorted(self.store.outbox(ticket_id),
                        key=lambda q: (q.kind not in OPENING_KINDS, q.id))
        if cached is None or not queued:
            return
        thread = Thread(*cached)
        # A line already in the thread (a restart, a lost answer) is not posted again.
        refused: Rejected | None = None
        try:
            already = {m.text for m in self.slack.thread_replies(thread.channel, thread.ts)}
            for line in queued:
                text = self.resolve(line.text)
                if text not in already:
                    try:
                        self.slack.post(thread.channel, text, thread_ts=thread.ts)
                    except Rejected as exc:  # this line refused: the next ones still go
                        self.store.mark_failed(line.id, str(exc))
                        refused = exc
                        continue
                    already.add(text)
                self.store.mark_sent(line.id, now)
        except UpstreamError as exc:
            for line in self.store.outbox(ticket_id):
                self.store.mark_failed(line.id, str(exc))
            raise
        if refused is not None:
            raise refused
