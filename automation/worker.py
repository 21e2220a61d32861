"""One pass: discover → snapshot → decide → act → record. `run_forever` is a thin loop around it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from automation import workflow
from automation.chat import Chat
from automation.clock import Clock
from automation.config import WorkflowConfig
from automation.errors import (
    AutomationError,
    Conflict,
    CredentialsRejected,
    NotFound,
    Rejected,
    TemplateError,
    Unreachable,
    WriteUncertain,
)
from automation.model import Action, Assessment, Snapshot, State, Step, Ticket
from automation.store import Entry, Store, TrackedTicket
from automation.templates import Rendered, Templates
from automation.zendesk import Zendesk

log = logging.getLogger(__name__)

# The line each step leaves in the emergency's Slack thread.
ECHOES = {
    Step.ACKNOWLEDGE: "Acknowledgement posted on the ticket (public): the bridge is offered",
    Step.FOLLOW_UP: "No reply {follow_up} min after contact: follow-up sent to the customer",
    Step.CLOSE: "No reply {total} min after contact: bridge closed, priority set to HIGH",
}

# Reads of one ticket in one pass: a 409 or an unanswered write costs a re-read each.
MAX_ATTEMPTS_PER_TICKET = 4


@dataclass
class StepResult:
    ticket_id: int
    step: str
    outcome: str
    detail: str = ""


@dataclass
class PassReport:
    """What one pass saw and did."""

    now: datetime
    listed: int = 0
    read: int = 0
    posted: list[StepResult] = field(default_factory=list)
    failed: list[StepResult] = field(default_factory=list)
    slack_pending: int = 0  # lines waiting for Slack (it was down or refused)

    @property
    def ok(self) -> bool:
        return not self.failed


def template_context(snapshot: Snapshot, assessment: Assessment, settings: WorkflowConfig,
                     organization: Any, now: datetime) -> dict[str, Any]:
    """Everything a template may use. Customer text arrives here as data only."""
    ticket = snapshot.ticket
    requester = snapshot.people.get(ticket.requester_id)
    policy = settings.policy
    return {
        "ticket": {"id": ticket.id, "subject": ticket.subject, "url": ticket.url,
                   "priority": ticket.priority},
        "requester": {"name": requester.name if requester and requester.name else "there",
                      "email": requester.email if requester else ""},
        "organization": {"name": organization.name} if organization else None,
        "bridge_url": settings.bridge_url,
        "signature": settings.signature,
        "contact_at": assessment.contact_at,
        "follow_up_after": policy.follow_up_after,
        "close_after": policy.close_after,
        "now": now,
    }


class Worker:
    def __init__(self, zendesk: Zendesk, store: Store, templates: Templates,
                 settings: WorkflowConfig, clock: Clock, query: str,
                 view_id: int | None = None, actor: str = "", chat: Chat | None = None) -> None:
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.settings = settings
        self.policy = settings.policy
        self.clock = clock
        self.query = query
        self.view_id = view_id
        self.actor = actor or zendesk.email
        self.chat = chat

    def now(self) -> datetime:
        """Zendesk's time when its answers carry it (timers run on its clock), else ours."""
        return self.zendesk.server_time or self.clock.now()

    def run_once(self) -> PassReport:
        """One pass over every emergency. Unreachable/credential errors end the pass."""
        listing = self.zendesk.find_emergencies(self.query, self.view_id)
        now = self.now()
        report = PassReport(now=now, listed=len(listing))
        tracked = self.store.tracked()
        for ticket in listing:
            known = tracked.get(ticket.id)
            if known is not None and known.updated_at == ticket.updated_stamp and not (
                    known.due_at is not None and known.due_at <= now) and not (
                    self.chat is not None and self.chat.wants(ticket.id)):
                continue  # nothing moved, nothing is due, nothing waits for Slack: no read
            report.read += 1
            self.handle(ticket.id, now, report, known.state if known else None)
        for ticket_id in self.store.deactivate_except({t.id for t in listing}):
            log.info("ticket %s is no longer listed as an emergency", ticket_id)
        return report

    def handle(self, ticket_id: int, now: datetime, report: PassReport,
               known_state: str | None) -> None:
        """Read, decide and act on one ticket until it has nothing due (or attempts run out)."""
        pending: tuple[Action, Rendered] | None = None  # a write whose answer was lost
        step = "-"
        last: tuple[Snapshot, Assessment] | None = None
        try:
            for attempt in range(MAX_ATTEMPTS_PER_TICKET):
                snapshot = self.zendesk.snapshot(ticket_id)
                snapshot = replace(snapshot, briefs=tuple(
                    self.store.briefs_for(snapshot.ticket.organization_id)))
                assessment = workflow.assess(snapshot, now, self.policy)
                if pending is not None:
                    self._confirm(pending, snapshot, now, report)
                    pending = None
                known_state = self._track(snapshot, assessment, now, known_state)
                last = (snapshot, assessment)
                action = workflow.plan(assessment, now, snapshot)
                if action is None:
                    return
                step = action.step
                if attempt == MAX_ATTEMPTS_PER_TICKET - 1:
                    break  # the last read only looks: never write on what we cannot confirm
                rendered = self._render(action, snapshot, assessment, now)
                try:
                    update = self.zendesk.update(snapshot.ticket, rendered, action.tags_to_add,
                                                 action.priority)
                except Conflict as exc:
                    log.info("ticket %s changed while %s was being sent; re-reading",
                             ticket_id, step)
                    self._journal(now, action, "conflict", rendered, detail=str(exc))
                    continue
                except WriteUncertain as exc:
                    log.warning("ticket %s: %s; re-reading to see whether it landed",
                                ticket_id, exc)
                    self._journal(now, action, "uncertain", rendered, detail=str(exc))
                    pending = (action, rendered)
                    continue
                self._journal(now, action, "posted", rendered, comment_id=update.comment_id)
                self._echo(action, now)
                report.posted.append(StepResult(ticket_id, step, "posted", rendered.first_line))
                log.info("ticket %s: %s posted (%s)", ticket_id, step,
                         "public" if rendered.public else "internal")
            self._fail(report, now, ticket_id, step, "the ticket kept changing under "
                       f"{MAX_ATTEMPTS_PER_TICKET} reads; trying again next pass")
        except (NotFound, Rejected, TemplateError) as exc:
            self._fail(report, now, ticket_id, step, str(exc))
        finally:
            if self.chat is not None and last is not None:
                live = last[1].state in workflow.LIVE_STATES
                report.slack_pending += self.chat.serve(last[0], now, live)

    def _echo(self, action: Action, now: datetime) -> None:
        """One line in the emergency's Slack thread for each step the worker made."""
        if self.chat is None or action.step not in ECHOES:
            return
        text = ECHOES[action.step].format(
            follow_up=int(self.policy.follow_up_after.total_seconds() // 60),
            total=int((self.policy.follow_up_after + self.policy.close_after
                       ).total_seconds() // 60))
        self.chat.echo(action.ticket_id, action.step, text, now)

    def _render(self, action: Action, snapshot: Snapshot, assessment: Assessment,
                now: datetime) -> Rendered:
        organization = self.zendesk.organization(snapshot.ticket.organization_id)
        context = template_context(snapshot, assessment, self.settings, organization, now)
        context["briefs"] = workflow.relevant_briefs(snapshot, now)
        return self.templates.render(action.template, context)

    def _confirm(self, pending: tuple[Action, Rendered], snapshot: Snapshot, now: datetime,
                 report: PassReport) -> None:
        """After an unanswered write: the ticket itself says whether it landed."""
        action, rendered = pending
        if workflow.step_done(snapshot, action.step):
            self._journal(now, action, "posted", rendered,
                          detail="confirmed on re-read after an unanswered write")
            self._echo(action, now)
            report.posted.append(StepResult(action.ticket_id, action.step, "posted",
                                            rendered.first_line))

    def _track(self, snapshot: Snapshot, assessment: Assessment, now: datetime,
               known_state: str | None) -> str:
        ticket: Ticket = snapshot.ticket
        if assessment.state != known_state:
            detail = ticket.subject if known_state is None else f"was {known_state}"
            self.store.record(Entry(at=now, ticket_id=ticket.id, step="state",
                                    outcome=assessment.state, detail=detail))
            if (self.chat is not None and assessment.state == State.ENGAGED
                    and assessment.replied_at is not None):
                self.chat.echo(ticket.id, "replied", "The customer replied at "
                               f"{assessment.replied_at:%H:%M} UTC: timers stopped", now)
        self.store.track(TrackedTicket(
            ticket_id=ticket.id, subject=ticket.subject, updated_at=ticket.updated_stamp,
            state=assessment.state, next_step=assessment.next_step,
            due_at=assessment.due_at, active=assessment.state not in (State.SOLVED,),
            seen_at=now,
        ))
        return assessment.state

    def _journal(self, now: datetime, action: Action, outcome: str, rendered: Rendered,
                 comment_id: int | None = None, detail: str = "") -> None:
        self.store.record(Entry(at=now, ticket_id=action.ticket_id, step=action.step,
                                outcome=outcome, actor=self.actor, public=rendered.public,
                                comment_id=comment_id, detail=detail or rendered.first_line))

    def _fail(self, report: PassReport, now: datetime, ticket_id: int, step: str,
              reason: str) -> None:
        log.warning("ticket %s: step failed: %s", ticket_id, reason)
        self.store.record(Entry(at=now, ticket_id=ticket_id, step=step, outcome="failed",
                                actor=self.actor, detail=reason))
        report.failed.append(StepResult(ticket_id, step, "failed", reason))

    def run_forever(self, stop: threading.Event, interval_seconds: float | None = None) -> None:
        """Passes on a timer until ``stop`` is set; the pass in hand always finishes."""
        interval = interval_seconds or self.settings.poll_interval_seconds
        while not stop.is_set():
            try:
                report = self.run_once()
                if report.posted or report.failed:
                    log.info("pass: %d listed, %d read, %d posted, %d failed", report.listed,
                             report.read, len(report.posted), len(report.failed))
            except CredentialsRejected:
                raise
            except Unreachable as exc:
                log.warning("pass skipped: %s", exc)
            except AutomationError as exc:
                log.warning("pass failed: %s", exc)
            stop.wait(interval)
