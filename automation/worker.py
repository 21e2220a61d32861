"""One pass: read Zendesk's facts → decide the Zendesk step (pure) → write it → decide the
PagerDuty and Slack intents from the same facts (pure) → carry them out, each service under
its own error policy and time budget (executor.py).

Every customer's Zendesk step of a pass is taken before any PagerDuty or Slack write, so a
service that is down delays only itself. `handle_ticket` is the one way to act on a ticket now;
`run_forever` is a thin loop around `run_once`.
"""

from __future__ import annotations

import heapq
import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from automation import workflow
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
    WriteUncertain,
)
from automation.executor import FACTS_BUDGET_SECONDS, Executor
from automation.facts import step_context, tracked
from automation.heartbeat import Heartbeat
from automation.logs import fields
from automation.model import (
    STATE_ENTRY,
    Action,
    Assessment,
    Brief,
    Line,
    Organization,
    Outcome,
    PageStep,
    Person,
    Snapshot,
    State,
    Step,
    Ticket,
)
from automation.store import Entry, Store, TrackedTicket
from automation.templates import Rendered, Templates
from automation.zendesk import Update, Zendesk

if TYPE_CHECKING:
    from automation.chat import Chat
    from automation.handover import Handover
    from automation.paging import Done, Paging, Profile
    from automation.runbook import Made, Runbook

log = logging.getLogger(__name__)

BRIEF_REFRESH = timedelta(minutes=10)
BRIEFS_LOOKED_UP = "briefs looked up"  # the state file's cache: organization -> when

# Writes to one ticket in one pass (a brief link, then the step due; a 409 costs one more).
MAX_WRITES_PER_TICKET = 3
# Rounds of a pass over the tickets that changed in the second they were read.
MAX_SETTLE_ROUNDS = 3

# States of a ticket that is no emergency: listed as one, it must be read again.
QUIET_STATES = (State.CLOSED_TO_HIGH, State.NOT_URGENT, State.SOLVED)

PAGERDUTY = "PagerDuty"
SLACK = "Slack"
GITLAB = "GitLab"


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
    not_found: int = 0  # tickets Zendesk has no record of (a webhook named one, say)
    # Tickets changed in the second of their read, not waited for: how long until they can be.
    unsettled: dict[int, timedelta] = field(default_factory=dict)
    # PagerDuty or Slack refused our credentials: the Zendesk steps went ahead regardless.
    rejected: CredentialsRejected | None = None
    # The state file cannot be used: the pass journalled in memory (customers' steps went on).
    state_problem: str | None = None
    handled: list[Facts] = field(default_factory=list)  # each ticket read, as last seen

    @property
    def ok(self) -> bool:
        return not self.failed and self.state_problem is None


@dataclass(frozen=True)
class Facts:
    """What handling one ticket read: the PagerDuty and Slack parts are decided on these."""

    snapshot: Snapshot
    assessment: Assessment
    page: workflow.Page | None  # None: PagerDuty off, or unavailable this pass
    profile: Profile | None


@dataclass
class Run:
    """One pass (or one ticket handled on its own): its clock reading, report and services."""

    now: datetime
    report: PassReport
    executor: Executor
    handled: list[Facts] = field(default_factory=list)

    @property
    def paging_up(self) -> bool:
        return self.executor.up(PAGERDUTY)


def _due_since(known: TrackedTicket | None, ticket: Ticket, now: datetime) -> datetime:
    """Since when a listed ticket has waited for us: its step's due time, or the change we
    have not seen (a new emergency: since it was last updated); `now` for neither."""
    moments = [now]
    if known is not None and known.due_at is not None:
        moments.append(known.due_at)
    if known is None or known.updated_at != ticket.updated_stamp:
        moments.append(ticket.updated_at)
    return min(moments)


class Worker:
    def __init__(self, zendesk: Zendesk, store: Store, templates: Templates, config: Config,
                 clock: Clock, chat: Chat | None = None, paging: Paging | None = None,
                 runbook: Runbook | None = None, handover: Handover | None = None) -> None:
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
        self.runbook = runbook
        self.handover = handover
        self._slack_checked = False

    def close(self) -> None:
        """Release connections (PagerDuty's and GitLab's clients keep a pool)."""
        if self.paging is not None:
            self.paging.close()
        if self.runbook is not None:
            self.runbook.close()

    def now(self) -> datetime:
        """Zendesk's time (timers run on its clock): its latest `Date`, moved on by our clock
        since (a ticket handled on its own reads nothing before this), else our clock."""
        return self.zendesk.time_now() or self.clock.now()

    # --- the two ways in -----------------------------------------------------------------------

    def run_once(self) -> PassReport:
        """One pass over every emergency, the most overdue first. Unreachable/credential
        errors of Zendesk end it."""
        listing = self.zendesk.find_emergencies(self.query, self.view_id)
        run = self._begin(len(listing))
        # The live emergencies' rows only: a state file's history of ended ones is not read
        # at every pass. A listed ticket without one is new, or urgent again: its row alone.
        tracked = self.store.tracked(active_only=True)
        wanted: dict[int, tuple[datetime, str | None]] = {}
        later: list[tuple[datetime, int, str | None]] = []
        for ticket in listing:
            known = tracked.get(ticket.id) or self.store.tracked_ticket(ticket.id)
            if known is not None and not self._moved(known, ticket, run):
                if known.due_at is not None:  # read when it falls due, should the pass last
                    later.append((known.due_at, ticket.id, known.state))
                continue  # nothing moved here or in PagerDuty, nothing is due: no read
            wanted[ticket.id] = (_due_since(known, ticket, run.now),
                                 known.state if known else None)
        self._handle_all(wanted, run, later)
        for ticket_id in self.store.deactivate_except({t.id for t in listing}):
            log.info("ticket %s is no longer listed as an emergency", ticket_id,
                     extra={"ticket": ticket_id})
        self._finish(run, drain_except={t.id for t in listing})
        return run.report

    def handle_ticket(self, ticket_id: int, settle: bool = True) -> PassReport:
        """Read, decide and act on one ticket now, as a pass would (a command, a webhook).
        ``settle=False``: a ticket changed in the second of its read is not waited for here;
        the report's `unsettled` says when to handle it again (`serve` has other work)."""
        run = self._begin(0)
        known = self.store.tracked_ticket(ticket_id)
        self._handle_all({ticket_id: (run.now, known.state if known else None)}, run, [],
                         settle=settle)
        self._finish(run, drain_except=None)
        return run.report

    def _handle_all(self, tickets: dict[int, tuple[datetime, str | None]], run: Run,
                    later: list[tuple[datetime, int, str | None]],
                    settle: bool = True) -> None:
        """Each ticket's Zendesk steps, the most overdue first; a ticket of `later` (its step
        due later, as last tracked) goes next as soon as that time comes, however long the
        pass (writes are paced): a timer is kept to the second, a backlog waits one write.
        One changed in the second we read it is read again once that second is safely past
        (Snapshot.unsettled_for): the others do not wait for it."""
        heapq.heapify(later)
        seen: set[int] = set()
        for round_ in range(MAX_SETTLE_ROUNDS):
            agenda = [(due, ticket_id, state) for ticket_id, (due, state) in tickets.items()]
            heapq.heapify(agenda)
            unsettled: dict[int, tuple[datetime, str | None]] = {}
            wait = timedelta()
            while True:
                run.now = self.now()  # a long pass keeps the time: steps fall due during it
                if later and later[0][0] <= run.now:
                    due, ticket_id, known_state = heapq.heappop(later)
                elif agenda:
                    due, ticket_id, known_state = heapq.heappop(agenda)
                else:
                    break
                run.report.read += ticket_id not in seen  # tickets read, not reads
                seen.add(ticket_id)
                left = self._handle(ticket_id, run, known_state,
                                    last=round_ == MAX_SETTLE_ROUNDS - 1)
                if left:
                    unsettled[ticket_id], wait = (due, known_state), max(wait, left)
            if not unsettled:
                return
            if not settle:
                run.report.unsettled = {ticket_id: wait for ticket_id in unsettled}
                return
            self.clock.sleep(wait.total_seconds())
            tickets = unsettled

    def _begin(self, listed: int) -> Run:
        """The pass's clock reading, and PagerDuty's facts (one quick try: customers wait)."""
        executor = Executor(self.clock)
        if self.paging is not None:
            executor.add(PAGERDUTY, self.paging.pd)
        if self.chat is not None:
            executor.add(SLACK, self.chat.slack)
        if self.runbook is not None:
            executor.add(GITLAB, self.runbook.gitlab)
        now = self.now()
        run = Run(now, PassReport(now=now, listed=listed), executor)
        if self.paging is not None:
            executor.call(PAGERDUTY, 0, "PagerDuty listing", self.paging.begin_pass,
                          limit_seconds=FACTS_BUDGET_SECONDS)
        return run

    def _moved(self, known: TrackedTicket, ticket: Ticket, run: Run) -> bool:
        """Whether a tracked ticket needs a read: it changed, a step is due, or Slack or
        PagerDuty have work for it."""
        if known.updated_at != ticket.updated_stamp:
            return True
        if known.state in QUIET_STATES:
            # Listed as an emergency, yet we last saw it stepped down or solved: it changed in
            # the very second of our read (Zendesk's updated_at has whole seconds).
            return True
        if known.due_at is not None and known.due_at <= run.now:
            return True
        if self.chat is not None and run.executor.up(SLACK) and self.chat.wants(ticket.id):
            return True
        if self.runbook is not None and run.executor.up(GITLAB) \
                and self.runbook.wants(ticket.id, known.state):
            return True
        if self.handover is not None and self.handover.wants(ticket.id):
            return True
        return self.paging is not None and run.paging_up and self.paging.wants(
            ticket, self._profile(ticket, None, run.now), run.now)

    def _finish(self, run: Run, drain_except: set[int] | None) -> None:
        """After every Zendesk step: PagerDuty's part, then GitLab's (whose links the thread
        carries), then Slack's, for each ticket handled."""
        for facts in run.handled:
            self._page(facts, run)
        for facts in run.handled:
            self._runbook(facts, run)
        if self.runbook is not None and drain_except is not None:
            self._close_issues(run, {facts.snapshot.ticket.id for facts in run.handled})
        for facts in run.handled:
            self._chat(facts, run)
        for facts in run.handled:
            self._handover(facts, run)
        if self.chat is not None and drain_except is not None:
            run.report.slack_pending += self.chat.drain(run.executor, run.now, drain_except)
        if self.chat is not None and not self._slack_checked and run.executor.up(SLACK):
            # Once a process: a refused token must not wait for a line to be said.
            self._slack_checked, _ = run.executor.call(
                SLACK, 0, "Slack token", self.chat.slack.auth_test,
                limit_seconds=FACTS_BUDGET_SECONDS)
        self._report_troubles(run)
        run.report.handled = list(run.handled)
        if self.store.problem is not None:
            run.report.state_problem = self.store.problem
            log.error("%s", self.store.problem)  # once a pass, until the worker restarts

    def _report_troubles(self, run: Run) -> None:
        """A refused token is reported after the pass (exit 3); PagerDuty's other failures
        are failed steps; Slack's are one failure for the pass (its lines wait, journalled):
        nothing that failed looks like success to cron."""
        slack_failed = gitlab_failed = False
        for trouble in run.executor.troubles:
            error = trouble.error
            if isinstance(error, CredentialsRejected):
                run.report.rejected = run.report.rejected or error
            elif trouble.service == PAGERDUTY:
                self._fail(run, trouble.ticket_id, "pagerduty", str(error))
            elif error.service == SLACK and not slack_failed:
                slack_failed = True
                self._fail(run, 0, "slack", f"{error}; its lines wait for the next pass")
            elif trouble.service == GITLAB and not gitlab_failed:
                gitlab_failed = True
                self._fail(run, trouble.ticket_id, "gitlab",
                           f"{error}; the runbook issue waits for the next pass")

    # --- Zendesk: read, decide, write ----------------------------------------------------------

    def _handle(self, ticket_id: int, run: Run, known_state: str | None,
                last: bool = False) -> timedelta:
        """Read, decide and write until the ticket has nothing due; how long to wait before
        reading it again when it changed too recently to act on (zero: done)."""
        step = "-"
        facts: Facts | None = None
        try:
            facts = self._read(ticket_id, run)
            for attempt in range(MAX_WRITES_PER_TICKET + 1):
                known_state = self._track(facts, run.now, known_state)
                action = workflow.plan(facts.assessment, run.now, facts.snapshot)
                if action is None:
                    break
                step = action.step
                wait = facts.snapshot.unsettled_for()
                if wait and not last:
                    return wait  # handled again in this pass, once the second is past
                if wait or attempt == MAX_WRITES_PER_TICKET:
                    self._fail(run, ticket_id, step, "the ticket kept changing; trying again "
                               "next pass")
                    break
                facts = self._step(action, facts, run)
        except NotFound as exc:
            self._fail(run, ticket_id, step, str(exc))
            run.report.not_found += facts is None  # the ticket itself: Zendesk has none
        except (Rejected, TemplateError) as exc:
            self._fail(run, ticket_id, step, str(exc))
        if facts is not None:
            run.handled.append(facts)
        return timedelta()

    def _step(self, action: Action, facts: Facts, run: Run) -> Facts:
        """One step's write, and the ticket as it is after it: from the write's answer, or
        read again after a conflict or a lost answer (which the ticket then confirms)."""
        outcome = self._write(action, facts, run)
        if isinstance(outcome, Update):
            return self._assessed(self.zendesk.applied(outcome, facts.snapshot), facts, run)
        fresh = self._read(action.ticket_id, run)
        if outcome is not None and action.step in fresh.snapshot.done():  # our stamp landed
            self._posted(action, outcome, run, None,
                         detail="confirmed on re-read after an unanswered write")
        return fresh

    def _read(self, ticket_id: int, run: Run) -> Facts:
        snapshot = self.zendesk.snapshot(ticket_id)
        organization = self.zendesk.organization(snapshot.ticket.organization_id)
        snapshot = replace(snapshot, organization=organization)
        snapshot = replace(snapshot, briefs=tuple(self._briefs(snapshot, run.now)))
        profile = self._profile(snapshot.ticket, organization, run.now) \
            if self.paging is not None else None
        page = self.paging.page_for(snapshot, profile) \
            if self.paging is not None and profile is not None and run.paging_up else None
        return Facts(snapshot, workflow.assess(snapshot, run.now, self.policy, page,
                                               profile.coverage if profile else None),
                     page, profile)

    def _assessed(self, snapshot: Snapshot, before: Facts, run: Run) -> Facts:
        """The facts again for a snapshot that changed by our own write."""
        profile, page = before.profile, before.page
        assessment = workflow.assess(snapshot, run.now, self.policy, page,
                                     profile.coverage if profile else None)
        return Facts(snapshot, assessment, page, profile)

    def _profile(self, ticket: Ticket, organization: Organization | None,
                 now: datetime) -> Profile:
        """Which on-call answers the ticket; its organization is read (cached) only when the
        US Federal rule needs its tags."""
        from automation.paging import profile_for

        assert self.paging is not None
        if organization is None and self.paging.config.federal is not None:
            organization = self.zendesk.organization(ticket.organization_id)
        return profile_for(self.paging.config, ticket, organization, now)

    def _write(self, action: Action, facts: Facts, run: Run) -> Update | Rendered | None:
        """Make one step's write, stamped with its step and emergency: Zendesk's answer, or
        what was sent when the answer was lost (None: refused as a conflict)."""
        author = self._author(action)
        rendered = self._render(action, facts, run.now, author)
        ticket_id = action.ticket_id
        try:
            update = self.zendesk.update(
                facts.snapshot.ticket, rendered, action.tags_to_add, action.priority,
                author.id if author else None, action.tags_to_remove,
                stamp={"step": str(action.step), "episode": action.episode})
        except Conflict as exc:
            log.info("ticket %s changed while %s was being sent; re-reading", ticket_id,
                     action.step, extra=fields(ticket_id, action.step))
            self._journal(run.now, action, Outcome.CONFLICT, rendered, detail=str(exc))
            return None
        except WriteUncertain as exc:
            log.warning("ticket %s: %s; re-reading to see whether it landed", ticket_id, exc,
                        extra=fields(ticket_id, action.step))
            self._journal(run.now, action, Outcome.UNCERTAIN, rendered, detail=str(exc))
            return rendered
        self._posted(action, rendered, run, author, update.comment_id)
        log.info("ticket %s: %s posted (%s)", ticket_id, action.step,
                 "public" if rendered.public else "internal",
                 extra=fields(ticket_id, action.step))
        return update

    def _posted(self, action: Action, rendered: Rendered, run: Run, author: Person | None,
                comment_id: int | None = None, detail: str = "") -> None:
        """A step is on the ticket: journal it, echo it in the thread, report it."""
        self._journal(run.now, action, Outcome.POSTED, rendered, comment_id=comment_id,
                      detail=detail or self._ack_detail(action, author, rendered),
                      actor=author.email if author else "")
        self._echo(action, run.now, author)
        run.report.posted.append(StepResult(action.ticket_id, action.step, Outcome.POSTED,
                                            rendered.first_line))

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
        # When they were last looked up is kept in the state file: a tick from cron, a process
        # a minute, looks no more often than one worker does.
        if wanted and not self.store.recall(BRIEFS_LOOKED_UP, [org_id], now - BRIEF_REFRESH):
            try:
                for brief in self.zendesk.find_briefs(org_id):
                    self.store.add_brief(brief)
                self.store.keep(BRIEFS_LOOKED_UP, org_id, {"id": org_id}, now)
            except (NotFound, Rejected) as exc:
                log.warning("briefs of organization %s not read: %s", org_id, exc)
        return self.store.briefs_for(org_id)

    def _author(self, action: Action) -> Person | None:
        """The engineer who acknowledged the page, as a Zendesk agent (None: the API user)."""
        if not action.author_email:
            return None
        person = self.zendesk.person_by_email(action.author_email)
        if person is None or not person.is_agent:
            log.warning("%s acknowledged the page but is no Zendesk agent: posting as the team",
                        action.author_email, extra=fields(action.ticket_id, action.step))
            return None
        return person

    def _render(self, action: Action, facts: Facts, now: datetime,
                author: Person | None = None) -> Rendered:
        posted_as = (action.author_email, author.name if author else None) \
            if action.author_email else None
        context = step_context(facts.snapshot, facts.assessment, self.settings, self.policy,
                               now, action.step, posted_as,
                               facts.profile.coverage if facts.profile else None)
        return self.templates.render(action.template, context)

    # --- PagerDuty's part and Slack's ----------------------------------------------------------

    def _page(self, facts: Facts, run: Run) -> None:
        """PagerDuty's intents for the ticket, decided on the pass's facts, then carried out."""
        if self.paging is None or facts.page is None or facts.profile is None \
                or not run.paging_up:
            return
        from automation.paging import decide

        ticket, page = facts.snapshot.ticket, facts.page
        for _ in range(2):  # a page just sent is decided on again: its engineer may be busy
            intents = decide(facts.snapshot, facts.assessment, page, facts.profile,
                             self.paging.config, run.now, self._busy(run.now),
                             self.zendesk.email)
            paged = False
            for intent in intents:
                ok, done = run.executor.call(PAGERDUTY, ticket.id, "pagerduty",
                                             partial(self.paging.carry_out, intent))
                if not ok:
                    return  # its page is looked at again next pass
                if done is not None:
                    self._paged(done, facts, run)
                    paged = paged or done.step is PageStep.PAGED
            if not paged:
                break
            page = self.paging.page_for(facts.snapshot, facts.profile)
        self.paging.remember(ticket.id)

    def _paged(self, done: Done, facts: Facts, run: Run) -> None:
        from automation.chat import page_line

        self.store.record(Entry(at=run.now, ticket_id=done.ticket_id, step=done.step,
                                outcome=Outcome.DONE, actor="PagerDuty", detail=done.detail))
        run.report.posted.append(StepResult(done.ticket_id, done.step, Outcome.DONE,
                                            done.detail))
        log.info("ticket %s: %s", done.ticket_id, done.detail,
                 extra=fields(done.ticket_id, done.step))
        if self.chat is None:
            return
        self.chat.echo(done.ticket_id, done.step, page_line(done.step, done.detail), run.now)
        if done.step is PageStep.MANAGER_PAGED:
            self.chat.ping_region(facts.snapshot.ticket, facts.snapshot.organization, run.now,
                                  "second emergency while the on-call is busy")

    def _chat(self, facts: Facts, run: Run) -> None:
        """Slack's intents for the ticket: its thread, then its queued lines."""
        if self.chat is None:
            return
        ticket_id = facts.snapshot.ticket.id
        if run.executor.up(SLACK):
            live = facts.assessment.state in workflow.LIVE_STATES
            for intent in self.chat.plan(facts.snapshot, live):
                ok, _ = run.executor.call(SLACK, ticket_id, "Slack thread", partial(
                    self.chat.carry_out, intent, facts.snapshot, run.now))
                if not ok:
                    break
        run.report.slack_pending += len(self.chat.store.outbox(ticket_id))

    def _runbook(self, facts: Facts, run: Run) -> None:
        """GitLab's intents for the ticket: its Emergency Runbook issue, opened or closed."""
        if self.runbook is None or not run.executor.up(GITLAB):
            return
        for intent in self.runbook.plan(facts.snapshot, facts.assessment, facts.page):
            ok, made = run.executor.call(GITLAB, facts.snapshot.ticket.id, "GitLab issue",
                                         partial(self.runbook.carry_out, intent,
                                                 facts.snapshot, run.now))
            if not ok:
                return  # looked at again next pass
            if made is not None:
                self._made(made, run)

    def _close_issues(self, run: Run, skip: set[int]) -> None:
        """Issues still to close of tickets this pass did not handle (the emergency ended
        while GitLab was down, or another worker claimed the close): closed now, unless that
        worker's claim is still fresh."""
        assert self.runbook is not None
        for row in self.runbook.pending_closes(skip):
            ok, made = run.executor.call(GITLAB, row.ticket_id, "GitLab issue",
                                         partial(self.runbook.close_later, row, run.now))
            if ok and made is not None:
                self._made(made, run)

    def _made(self, made: Made, run: Run) -> None:
        """A GitLab write: journalled, reported, and linked from the Slack thread."""
        self.store.record(Entry(at=run.now, ticket_id=made.ticket_id, step=made.step,
                                outcome=Outcome.DONE, actor="GitLab",
                                detail=f"{made.detail}: {made.url}"))
        run.report.posted.append(StepResult(made.ticket_id, made.step, Outcome.DONE,
                                            made.detail))
        log.info("ticket %s: %s", made.ticket_id, made.detail,
                 extra=fields(made.ticket_id, made.step))
        if self.chat is not None:
            from automation.chat import issue_line

            self.chat.echo(made.ticket_id, made.step, issue_line(made.detail, made.url),
                           run.now)

    def _handover(self, facts: Facts, run: Run) -> None:
        """Runbook step 5: the engineer who took the emergency is on an FRT or SLA Hawk shift:
        ask in the rotation's channel for someone to take it over (once, see handover.py)."""
        if self.handover is None:
            return
        from automation.handover import decide, pending, taker

        snapshot, ticket_id = facts.snapshot, facts.snapshot.ticket.id
        live = facts.assessment.state in workflow.LIVE_STATES
        who = taker(snapshot, facts.assessment, facts.page, self.zendesk.email)
        if not live or who is None or not pending(snapshot, self.handover.rotations):
            self.handover.settle(ticket_id, owed=False)
            return
        owed = True  # until every request due is recorded (a service down: next pass)
        if run.paging_up and run.executor.up(SLACK):
            ok, on_call = run.executor.call(PAGERDUTY, ticket_id, "PagerDuty on-calls",
                                            partial(self.handover.on_call, who))
            owed = not ok
            for ask in decide(snapshot, live, who, self.handover.rotations, on_call or {}):
                ok, detail = run.executor.call(SLACK, ticket_id, "Slack hand-over", partial(
                    self.handover.carry_out, ask, snapshot, run.now))
                owed = owed or detail is None
                if detail is not None:
                    run.report.posted.append(StepResult(ticket_id, "slack-handover",
                                                        Outcome.DONE, detail))
        self.handover.settle(ticket_id, owed)

    def _busy(self, now: datetime) -> dict[str, int]:
        """Engineers on an emergency right now: who made contact recently, and on which ticket."""
        assert self.paging is not None
        since = now - timedelta(minutes=self.paging.config.busy_for_minutes)
        busy: dict[str, int] = {}
        for known in self.store.tracked(active_only=True).values():
            if known.contact_email and known.contact_at and known.contact_at >= since \
                    and known.state in workflow.LIVE_STATES:
                busy.setdefault(known.contact_email.lower(), known.ticket_id)
        return busy

    # --- the journal and the thread's lines ----------------------------------------------------

    def _fallback(self, action: Action) -> bool:
        """An acknowledgement posted from the team because nobody acknowledged the page."""
        return (action.step is Step.ACKNOWLEDGE and self.policy.acknowledge_fallback is not None
                and not action.author_email)

    def _ack_detail(self, action: Action, author: Person | None, rendered: Rendered) -> str:
        from automation.chat import fallback_detail

        if self._fallback(action):
            return fallback_detail(self.policy)
        if action.author_email:
            return f"as {author.name if author else action.author_email}, who acknowledged " \
                   "the page"
        return rendered.first_line

    def _echo(self, action: Action, now: datetime, author: Person | None = None) -> None:
        """One line in the emergency's Slack thread for each step the worker made."""
        if self.chat is None:
            return
        from automation.chat import step_line

        posted_as = (author.name if author else None) if action.author_email else None
        text = step_line(action.step, self.policy, posted_as,
                         fallback=self._fallback(action) or bool(action.author_email))
        if text is not None:
            self.chat.echo(action.ticket_id, action.step, text, now)

    def _track(self, facts: Facts, now: datetime, known_state: str | None) -> str:
        snapshot, assessment = facts.snapshot, facts.assessment
        ticket = snapshot.ticket
        if assessment.state != known_state:
            detail = ticket.subject if known_state is None else f"was {known_state}"
            self.store.record(Entry(at=now, ticket_id=ticket.id, step=STATE_ENTRY,
                                    outcome=assessment.state, detail=detail))
            if (self.chat is not None and assessment.state == State.ENGAGED
                    and assessment.replied_at is not None):
                from automation.chat import replied_line

                self.chat.echo(ticket.id, Line.REPLIED, replied_line(assessment.replied_at),
                               now)
        self.store.track(tracked(snapshot, assessment, now))
        return assessment.state

    def _journal(self, now: datetime, action: Action, outcome: Outcome, rendered: Rendered,
                 comment_id: int | None = None, detail: str = "", actor: str = "") -> None:
        self.store.record(Entry(at=now, ticket_id=action.ticket_id, step=action.step,
                                outcome=outcome, actor=actor or self.actor,
                                public=rendered.public,
                                comment_id=comment_id, detail=detail or rendered.first_line))

    def _fail(self, run: Run, ticket_id: int, step: str, reason: str) -> None:
        if ticket_id:
            log.warning("ticket %s: step failed: %s", ticket_id, reason,
                        extra=fields(ticket_id, step))
        self.store.record(Entry(at=run.now, ticket_id=ticket_id, step=step,
                                outcome=Outcome.FAILED, actor=self.actor, detail=reason))
        run.report.failed.append(StepResult(ticket_id, step, Outcome.FAILED, reason))

    def run_forever(self, stop: threading.Event, interval_seconds: float | None = None) -> None:
        """Passes on a timer until ``stop`` is set; the pass in hand always finishes. Every
        ``heartbeat_passes`` passes, one line says the worker is alive."""
        interval = self.settings.poll_interval_seconds if interval_seconds is None \
            else interval_seconds
        heartbeat = Heartbeat(self.settings.heartbeat_passes)
        while not stop.is_set():
            started = self.clock.now()
            failures = self._run_pass()
            heartbeat.beat(self.clock.now() - started, failures,
                           lambda: len(self.store.tracked(active_only=True)))
            stop.wait(interval)

    def _run_pass(self) -> int:
        """One pass of `run_forever`, which nothing but a refused Zendesk token stops; how
        many failures it had (see `passed`; 1 for a pass that failed as a whole)."""
        try:
            report = self.run_once()
        except CredentialsRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - logged; a bug keeps its traceback
            failed_pass(exc)
            return 1
        return passed(report)


def passed(report: PassReport) -> int:
    """Say what a pass did, as `run` and `serve` both say it; how many failures it had
    (failed steps, a refused token, the state file unusable), as the heartbeat counts them."""
    if report.rejected is not None:
        log.error("%s; its part of the workflow waits until this is fixed", report.rejected)
    if report.posted or report.failed:
        log.info("pass: %d listed, %d read, %d posted, %d failed", report.listed,
                 report.read, len(report.posted), len(report.failed))
    return len(report.failed) + (report.rejected is not None) \
        + (report.state_problem is not None)


def failed_pass(exc: Exception) -> str:
    """Say why a pass failed as a whole, as `run` and `serve` both say it; its outcome
    (Zendesk unreachable, a known failure, or a bug, which keeps its traceback)."""
    if isinstance(exc, Unreachable):
        log.warning("pass skipped: %s", exc)
        return "zendesk unreachable"
    if isinstance(exc, AutomationError):
        log.warning("pass failed: %s", exc)
        return "failed"
    log.error("pass failed on an unexpected error; the next pass tries again", exc_info=exc)
    return "bug"
