"""Runbook step 5: an engineer who takes an emergency during their FRT or SLA Hawk shift asks
in Slack for someone to take over those duties.

Who took the emergency, and when: the person who acknowledged its page, else the person who
made contact (the team's fallback acknowledgement is nobody). The rotations are PagerDuty
schedules (`[[pagerduty.rotations]]`); whether that person was on one of them at that moment
is decided purely (`decide`) on the schedules' on-calls, and the request is posted once in the
rotation's channel. Once across restarts and workers, as the thread is: a claim stamped on the
ticket first (the first claim of the emergency wins), then the post (looked for in the
channel first, should a claimant have died after posting), then its record on the ticket.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from automation.chat import (
    Chat,
    Thread,
    handover_heading,
    handover_line,
    thread_from_stamps,
    ticket_link,
)
from automation.config import Rotation
from automation.errors import WriteUncertain
from automation.model import CLAIM_TIMEOUT, Assessment, Outcome, Snapshot
from automation.pagerduty import PagerDuty
from automation.store import Entry
from automation.workflow import Page

log = logging.getLogger(__name__)

# Stamps on the ticket, one pair per rotation: `slack-handover:frt` (the channel and ts of
# the request) and `slack-handover-claim:frt` (which worker process asks).
HANDOVER_STAMP = "slack-handover"
CLAIM_STAMP = "slack-handover-claim"


def stamp_step(kind: str, rotation: Rotation) -> str:
    return f"{kind}:{rotation.name.lower()}"


def handover_tag(rotation: Rotation, claim: bool = False) -> str:
    """For people and views (a write without a change makes no audit, so no stamp either)."""
    slug = re.sub(r"[^a-z0-9]+", "_", rotation.name.lower()).strip("_")
    return f"emergency_handover_{'claim_' if claim else ''}{slug}"


@dataclass(frozen=True)
class Taker:
    """The engineer who took the emergency (by email, lower case), and when."""

    email: str
    at: datetime


@dataclass(frozen=True)
class Ask:
    """Ask in ``rotation``'s channel for someone to take over the shift ``taker`` is on."""

    rotation: Rotation
    taker: Taker


def taker(snapshot: Snapshot, assessment: Assessment, page: Page | None,
          bot_email: str) -> Taker | None:
    """Whoever acknowledged the page, else the person who made contact; None: nobody yet
    (or only the team's fallback acknowledgement)."""
    if page is not None and page.acknowledged_by and page.acknowledged_at is not None:
        return Taker(page.acknowledged_by.lower(), page.acknowledged_at)
    author = snapshot.people.get(assessment.contact_by or 0)
    if author is None or assessment.contact_at is None \
            or author.email.lower() == bot_email.lower():
        return None
    return Taker(author.email.lower(), assessment.contact_at)


def pending(snapshot: Snapshot, rotations: Sequence[Rotation]) -> list[Rotation]:
    """The rotations whose hand-over request this emergency has not recorded."""
    done = snapshot.done()
    return [r for r in rotations if stamp_step(HANDOVER_STAMP, r) not in done]


def decide(snapshot: Snapshot, live: bool, who: Taker | None, rotations: Sequence[Rotation],
           on_call: Mapping[str, frozenset[str]]) -> list[Ask]:
    """The hand-over requests due (pure): one per rotation whose schedule had the engineer on
    call when they took this live emergency, unless it is recorded on the ticket already.
    ``on_call``: each schedule's on-call emails at ``who.at``."""
    if not live or who is None:
        return []
    return [Ask(r, who) for r in pending(snapshot, rotations)
            if who.email in on_call.get(r.schedule_id, frozenset())]


class Handover:
    """Reads the rotations' on-calls, and asks in Slack (through `Chat`'s adapters)."""

    def __init__(self, pagerduty: PagerDuty, chat: Chat,
                 rotations: Sequence[Rotation]) -> None:
        self.pd = pagerduty
        self.chat = chat
        self.rotations = tuple(rotations)
        self._nonce = secrets.token_hex(3)
        self._on_call: dict[tuple[str, datetime], frozenset[str]] = {}
        self._owed: set[int] = set()  # tickets with a request decided but not yet recorded

    def wants(self, ticket_id: int) -> bool:
        """Whether a request decided for this ticket still waits (so the worker re-reads it)."""
        return ticket_id in self._owed

    def settle(self, ticket_id: int, owed: bool) -> None:
        if owed:
            self._owed.add(ticket_id)
        else:
            self._owed.discard(ticket_id)

    def on_call(self, who: Taker) -> dict[str, frozenset[str]]:
        """Who was on call on each rotation's schedule when ``who`` took the emergency (read
        from PagerDuty once per moment by this process)."""
        missing = sorted({r.schedule_id for r in self.rotations
                          if (r.schedule_id, who.at) not in self._on_call})
        if missing:
            entries = self.pd.oncalls(None, missing, who.at)
            for schedule_id in missing:
                self._on_call[(schedule_id, who.at)] = frozenset(
                    e.user.email.lower() for e in entries
                    if e.schedule_id == schedule_id and e.covers(who.at) and e.user.email)
        return {r.schedule_id: self._on_call[(r.schedule_id, who.at)] for r in self.rotations}

    def carry_out(self, ask: Ask, before: Snapshot, now: datetime) -> str | None:
        """Post the request once and record it on the ticket: what was done, or None when it
        waits (no thread yet, the ticket still changing, another worker's claim)."""
        zendesk = self.chat.zendesk
        snapshot = zendesk.settled(zendesk.fresh(before), tries=3)
        if snapshot is None:
            return None
        step = stamp_step(HANDOVER_STAMP, ask.rotation)
        if step in snapshot.done():
            return None  # recorded by another worker since the pass read the ticket
        thread = thread_from_stamps(snapshot)
        if thread is None:
            return None  # the request links the emergency's thread: once it is open
        claimed = self._claim(snapshot, ask.rotation, now)
        if claimed is None:
            return None
        posted = self._find(claimed, ask.rotation) or self._post(claimed, ask, thread)
        zendesk.record(claimed, [handover_tag(ask.rotation)], {
            "step": step, "episode": claimed.episode_id, "channel": posted.channel,
            "ts": posted.ts})
        detail = (f"asked in {ask.rotation.channel} for someone to take over the "
                  f"{ask.rotation.name} shift of {ask.taker.email}")
        self.chat.store.record(Entry(at=now, ticket_id=snapshot.ticket.id, step=step,
                                     outcome=Outcome.DONE, actor="Slack", detail=detail))
        return detail

    def _claim(self, snapshot: Snapshot, rotation: Rotation, now: datetime) -> Snapshot | None:
        """The ticket once this process holds the request's claim (the emergency's first
        claim wins); None while another worker's claim is fresh."""
        ticket_id, step = snapshot.ticket.id, stamp_step(CLAIM_STAMP, rotation)
        if step not in snapshot.done():
            self.chat.store.remember_claim(ticket_id, f"{step}:{self._nonce}")
            snapshot = self.chat.zendesk.record(
                snapshot, [handover_tag(rotation, claim=True)],
                {"step": step, "episode": snapshot.episode_id, "by": self._nonce})
        claim = snapshot.done()[step]
        mine = self.chat.store.holds(ticket_id, step, claim.detail.get("by", ""), self._nonce)
        if not mine and now - claim.at < CLAIM_TIMEOUT:
            return None  # another worker is asking; the next pass sees its record
        return snapshot

    def _find(self, snapshot: Snapshot, rotation: Rotation) -> Thread | None:
        """The request, when a claimant posted it but died before recording it."""
        ticket = snapshot.ticket
        heading = handover_heading(rotation, ticket_link(self.chat.zendesk, ticket))
        found = self.chat.slack.find_message(rotation.channel, heading,
                                             oldest=snapshot.urgent_since or ticket.created_at)
        return Thread(found.channel, found.ts) if found is not None else None

    def _post(self, snapshot: Snapshot, ask: Ask, thread: Thread) -> Thread:
        slack, rotation = self.chat.slack, ask.rotation
        text = handover_line(rotation, ask.taker.email,
                             ticket_link(self.chat.zendesk, snapshot.ticket),
                             snapshot.organization, slack.permalink(thread.channel, thread.ts))
        try:
            posted = slack.post(rotation.channel, self.chat.resolve(text))
        except WriteUncertain:
            found = self._find(snapshot, rotation)
            if found is None:
                raise
            return found
        log.info("ticket %s: asked in %s for someone to take over %s", snapshot.ticket.id,
                 rotation.channel, rotation.name, extra={"ticket": snapshot.ticket.id})
        return Thread(posted.channel, posted.ts)
