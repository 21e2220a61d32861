"""One pass: discover → snapshot → decide → act → record. `run_forever` is a thin loop around it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from automation import workflow
from automation.chat import Chat
from automation.clock import Clock
from automation.config import Config
from automation.errors import (
    AutomationError,
    Conflict,
    CredentialsRejected,
    NotFound,
    Rejected,
    TemplateError,
    Unreachable,
    UpstreamError,
    WriteUncertain,
)
from automation.facts import read_snapshot, template_context
from automation.model import (
    Action,
    Assessment,
    Brief,
    Person,
    Snapshot,
    State,
    Step,
    Ticket,
)
from automation.paging import Paging
from automation.slack import escape
from automation.store import Entry, Store, TrackedTicket
from automation.templates import Rendered, Templates
from automation.zendesk import Zendesk

log = logging.getLogger(__name__)

# The line each step leaves in the emergency's Slack thread.
ECHOES = {
    Step.OFF_HOURS: "Outside the US Federal coverage hours: nobody was paged; the off-hours "
                    "reply went to the customer, and the on-call is paged when coverage opens",
    Step.ACKNOWLEDGE: "Acknowledgement posted on the ticket (public): the bridge is offered",
    Step.FOLLOW_UP: "No reply {follow_up} min after contact: follow-up sent to the customer",
    Step.CLOSE: "No reply {total} min after contact: bridge closed, priority set to HIGH",
}

PAGE_ECHOES = {
    "paged": "On-call paged in PagerDuty: {detail}",
    "incident-resolved": "PagerDuty: {detail} (resolved = engaged, not fixed)",
    "manager-paged": "Second emergency: {detail}",
}
BUSY_STATES = (State.NEW, State.AWAITING_CUSTOMER, State.FOLLOWED_UP, State.ENGAGED)

BRIEF_REFRESH = timedelta(minutes=10)

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
    # PagerDuty or Slack refused our credentials: the Zendesk steps went ahead regardless.
    rejected: CredentialsRejected | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


class Worker:
    def __init__(self, zendesk: Zendesk, store: Store, templates: Templates, config: Config,
                 clock: Clock, chat: Chat | None = None, paging: Paging | None = None) -> None:
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.settings = config.workflow
        self.policy = config.policy
        self.clock = clock
        self.query = config.zendesk.query
        self.view_id = config.zendesk.view_id
        self.actor = zendesk.email
        self.chat = chat
        self.paging = paging
        self._briefs_read_at: dict[int, datetime] = {}

    def close(self) -> None:
        """Release connections (PagerDuty's client keeps a pool)."""
        if self.paging is not None:
            self.paging.close()

    def now(self) -> datetime:
        """Zendesk's time when its answers carry it (timers run on its clock), else ours."""
        return self.zendesk.server_time or self.clock.now()

    def run_once(self) -> PassReport:
        """One pass over every emergency. Unreachable/credential errors end the pass."""
        listing = self.zendesk.find_emergencies(self.query, self.view_id)
        now = self.now()
        report = PassReport(now=now, listed=len(listing))
        paging_up = self._begin_paging(report)
        tracked = self.store.tracked()
        for ticket in listing:
            known = tracked.get(ticket.id)
            if known is not None and known.updated_at == ticket.updated_stamp and not (
                    known.due_at is not None and known.due_at <= now) and not (
                    self.chat is not None and self.chat.wants(ticket.id)) and not (
                    paging_up and self.paging is not None and self.paging.wants(ticket, now)):
                continue  # nothing moved here or in PagerDuty, nothing is due: no read
            report.read += 1
            self.handle(ticket.id, now, report, known.state if known else None, paging_up)
        for ticket_id in self.store.deactivate_except({t.id for t in listing}):
            log.info("ticket %s is no longer listed as an emergency", ticket_id)
        if self.chat is not None:
            report.slack_pending += self.chat.drain(now, skip={t.id for t in listing})
            report.rejected = report.rejected or self.chat.rejected
            self.chat.rejected = None
        return report

    def _begin_paging(self, report: PassReport) -> bool:
        """Read PagerDuty once for the pass; when it fails, Zendesk steps still go ahead."""
        if self.paging is None:
            return False
        try:
            self.paging.begin_pass()
            return True
        except CredentialsRejected as exc:
            report.rejected = exc
            return False
        except UpstreamError as exc:
            log.warning("PagerDuty unavailable this pass: %s", exc)
            report.failed.append(StepResult(0, "pagerduty", "failed", str(exc)))
            return False

    def handle(self, ticket_id: int, now: datetime, report: PassReport,
               known_state: str | None, paging_up: bool = False) -> None:
        """Read, decide and act on one ticket until it has nothing due (or attempts run out)."""
        pending: tuple[Action, Rendered] | None = None  # a write whose answer was lost
        step = "-"
        last: tuple[Snapshot, Assessment, workflow.Page | None] | None = None
        try:
            for attempt in range(MAX_ATTEMPTS_PER_TICKET):
                snapshot = read_snapshot(self.zendesk, ticket_id)
                snapshot = replace(snapshot, briefs=tuple(self._briefs(snapshot, now)))
                page = self._page_facts(snapshot, now) if paging_up else None
                coverage = self.paging.profile(snapshot.ticket, now).coverage \
                    if self.paging is not None else None
                assessment = workflow.assess(snapshot, now, self.policy, page, coverage)
                if pending is not None:
                    self._confirm(pending, snapshot, now, report)
                    pending = None
                known_state = self._track(snapshot, assessment, now, known_state)
                last = (snapshot, assessment, page)
                action = workflow.plan(assessment, now, snapshot)
                if action is None:
                    return
                step = action.step
                if attempt == MAX_ATTEMPTS_PER_TICKET - 1:
                    break  # the last read only looks: never write on what we cannot confirm
                if action.step is Step.RESET:
                    self._reset(snapshot, action, now)
                    continue
                author = self._author(action)
                rendered = self._render(action, snapshot, assessment, now, author)
                try:
                    update = self.zendesk.update(snapshot.ticket, rendered, action.tags_to_add,
                                                 action.priority, author.id if author else None)
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
                self._journal(now, action, "posted", rendered, comment_id=update.comment_id,
                              detail=self._ack_detail(action, author, rendered),
                              actor=author.email if author else "")
                self._echo(action, now, author)
                report.posted.append(StepResult(ticket_id, step, "posted", rendered.first_line))
                log.info("ticket %s: %s posted (%s)", ticket_id, step,
                         "public" if rendered.public else "internal")
            self._fail(report, now, ticket_id, step, "the ticket kept changing under "
                       f"{MAX_ATTEMPTS_PER_TICKET} reads; trying again next pass")
        except (NotFound, Rejected, TemplateError) as exc:
            self._fail(report, now, ticket_id, step, str(exc))
        finally:
            if last is not None and self.paging is not None and paging_up:
                self._page(*last, now, report)
            if self.chat is not None and last is not None:
                live = last[1].state in workflow.LIVE_STATES
                report.slack_pending += self.chat.serve(last[0], now, live)

    def _briefs(self, snapshot: Snapshot, now: datetime) -> list[Brief]:
        """The organization's briefs: filed from anywhere (found on Zendesk) or from here.

        Looked up only while a live emergency still needs its brief linked, and at most once
        per organization every BRIEF_REFRESH.
        """
        ticket = snapshot.ticket
        org_id = ticket.organization_id
        if org_id is None:
            return []
        wanted = (ticket.priority == workflow.EMERGENCY_PRIORITY
                  and not workflow.is_finished(snapshot)
                  and workflow.BRIEF_LINKED_TAG not in ticket.tags)
        looked = self._briefs_read_at.get(org_id)
        if wanted and (looked is None or now - looked >= BRIEF_REFRESH):
            try:
                for brief in self.zendesk.find_briefs(org_id):
                    self.store.add_brief(brief)
                self._briefs_read_at[org_id] = now
            except (NotFound, Rejected) as exc:
                log.warning("briefs of organization %s not read: %s", org_id, exc)
        return self.store.briefs_for(org_id)

    def _reset(self, snapshot: Snapshot, action: Action, now: datetime) -> None:
        """Urgent again: clear the earlier emergency's markers (no comment); then re-read."""
        try:
            self.zendesk.update(snapshot.ticket, None, tags_to_remove=action.tags_to_remove)
        except (Conflict, WriteUncertain) as exc:
            log.info("ticket %s: reset not confirmed (%s); re-reading", action.ticket_id, exc)
            return
        self.store.record(Entry(at=now, ticket_id=action.ticket_id, step=action.step,
                                outcome="done", actor=self.actor,
                                detail="urgent again: cleared " + ", ".join(
                                    action.tags_to_remove)))

    def _page_facts(self, snapshot: Snapshot, now: datetime) -> workflow.Page | None:
        if self.paging is None:
            return None
        try:
            return self.paging.page_for(snapshot, now)
        except UpstreamError as exc:
            log.warning("ticket %s: PagerDuty facts unavailable: %s", snapshot.ticket.id, exc)
            return None

    def _author(self, action: Action) -> Person | None:
        """The engineer who acknowledged the page, as a Zendesk agent (None: the API user)."""
        if not action.author_email:
            return None
        person = self.zendesk.person_by_email(action.author_email)
        if person is None or not person.is_agent:
            log.warning("%s acknowledged the page but is no Zendesk agent: posting as the team",
                        action.author_email)
            return None
        return person

    def _page(self, snapshot: Snapshot, assessment: Assessment, page: workflow.Page | None,
              now: datetime, report: PassReport) -> None:
        """PagerDuty's part, after the Zendesk step: a failure here is a failed step."""
        assert self.paging is not None
        try:
            page = page or self.paging.page_for(snapshot, now)
            done = self.paging.act(snapshot, assessment, page, now, self._busy(now))
        except UpstreamError as exc:
            self._fail(report, now, snapshot.ticket.id, "pagerduty", str(exc))
            return
        finally:
            self.paging.remember(snapshot.ticket.id)
        for item in done:
            self.store.record(Entry(at=now, ticket_id=item.ticket_id, step=item.step,
                                    outcome="done", actor="PagerDuty", detail=item.detail))
            report.posted.append(StepResult(item.ticket_id, item.step, "done", item.detail))
            log.info("ticket %s: %s", item.ticket_id, item.detail)
            if self.chat is not None:
                self.chat.echo(item.ticket_id, item.step, PAGE_ECHOES[item.step].format(
                    detail=item.detail), now)
                if item.step == "manager-paged":
                    organization = self.zendesk.organization(snapshot.ticket.organization_id)
                    self.chat.ping_region(snapshot.ticket, organization, now,
                                          "second emergency while the on-call is busy")

    def _busy(self, now: datetime) -> dict[str, int]:
        """Engineers on an emergency right now: who made contact recently, and on which ticket."""
        assert self.paging is not None
        since = now - timedelta(minutes=self.paging.config.busy_for_minutes)
        busy: dict[str, int] = {}
        for tracked in self.store.tracked(active_only=True).values():
            if tracked.contact_email and tracked.contact_at and tracked.contact_at >= since \
                    and tracked.state in BUSY_STATES:
                busy.setdefault(tracked.contact_email.lower(), tracked.ticket_id)
        return busy

    def _fallback(self, action: Action) -> bool:
        """An acknowledgement posted from the team because nobody acknowledged the page."""
        return (action.step is Step.ACKNOWLEDGE and self.policy.acknowledge_fallback is not None
                and not action.author_email)

    def _ack_detail(self, action: Action, author: Person | None, rendered: Rendered) -> str:
        if self._fallback(action):
            minutes = int((self.policy.acknowledge_fallback or timedelta()).total_seconds() // 60)
            return (f"nobody acknowledged the page within {minutes} min: posted from the team; "
                    "the page keeps escalating")
        if action.author_email:
            return f"as {author.name if author else action.author_email}, who acknowledged " \
                   "the page"
        return rendered.first_line

    def _echo(self, action: Action, now: datetime, author: Person | None = None) -> None:
        """One line in the emergency's Slack thread for each step the worker made."""
        if self.chat is None or action.step not in ECHOES:
            return
        if action.step is Step.ACKNOWLEDGE and (self._fallback(action) or action.author_email):
            text = (f"Acknowledgement posted as {escape(author.name)}, who acknowledged the "
                    "page" if author else "Acknowledgement posted from the team: "
                    f"{self._ack_detail(action, author, Rendered('', '', True))}")
            self.chat.echo(action.ticket_id, action.step, text, now)
            return
        text = ECHOES[action.step].format(
            follow_up=int(self.policy.follow_up_after.total_seconds() // 60),
            total=int((self.policy.follow_up_after + self.policy.close_after
                       ).total_seconds() // 60))
        self.chat.echo(action.ticket_id, action.step, text, now)

    def _render(self, action: Action, snapshot: Snapshot, assessment: Assessment,
                now: datetime, author: Person | None = None) -> Rendered:
        organization = self.zendesk.organization(snapshot.ticket.organization_id)
        context = template_context(snapshot, assessment, self.settings, self.policy, organization,
                                   now)
        if action.author_email:
            context["bridge_url"] = self.settings.bridge_for(action.author_email)
            context["engineer"] = author.name if author else None
        if action.step is Step.OFF_HOURS and self.paging is not None:
            coverage = self.paging.profile(snapshot.ticket, now).coverage
            context["coverage_hours"] = coverage.hours if coverage else ""
            context["resumes_at"] = coverage.opens_at if coverage else None
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
        contact = snapshot.people.get(assessment.contact_by or 0)
        self.store.track(TrackedTicket(
            ticket_id=ticket.id, subject=ticket.subject, updated_at=ticket.updated_stamp,
            state=assessment.state, next_step=assessment.next_step,
            due_at=assessment.due_at, active=assessment.state not in (State.SOLVED,),
            seen_at=now, contact_email=contact.email if contact else None,
            contact_at=assessment.contact_at,
        ))
        return assessment.state

    def _journal(self, now: datetime, action: Action, outcome: str, rendered: Rendered,
                 comment_id: int | None = None, detail: str = "", actor: str = "") -> None:
        self.store.record(Entry(at=now, ticket_id=action.ticket_id, step=action.step,
                                outcome=outcome, actor=actor or self.actor,
                                public=rendered.public,
                                comment_id=comment_id, detail=detail or rendered.first_line))

    def _fail(self, report: PassReport, now: datetime, ticket_id: int, step: str,
              reason: str) -> None:
        log.warning("ticket %s: step failed: %s", ticket_id, reason)
        self.store.record(Entry(at=now, ticket_id=ticket_id, step=step, outcome="failed",
                                actor=self.actor, detail=reason))
        report.failed.append(StepResult(ticket_id, step, "failed", reason))

    def run_forever(self, stop: threading.Event, interval_seconds: float | None = None) -> None:
        """Passes on a timer until ``stop`` is set; the pass in hand always finishes."""
        interval = self.settings.poll_interval_seconds if interval_seconds is None \
            else interval_seconds
        while not stop.is_set():
            try:
                report = self.run_once()
                if report.rejected is not None:
                    log.error("%s; its part of the workflow waits until this is fixed",
                              report.rejected)
                if report.posted or report.failed:
                    log.info("pass: %d listed, %d read, %d posted, %d failed", report.listed,
                             report.read, len(report.posted), len(report.failed))
            except CredentialsRejected:
                raise
            except Unreachable as exc:
                log.warning("pass skipped: %s", exc)
            except AutomationError as exc:
                log.warning("pass failed: %s", exc)
            except Exception:  # noqa: BLE001 - a bug: keep its traceback, keep the service up
                log.exception("pass failed on an unexpected error; the next pass tries again")
            stop.wait(interval)
