"""`emergency serve`'s worker loop: passes on the poll, a ticket at once when a webhook names
it, and each live emergency at its step's due time, on the second.

One thread owns the worker and does all of it, one ticket at a time: webhooks only add a
ticket to a set (several deliveries for one ticket are one handling), so nothing a webhook
does can race a pass. What the HTTP side shows is published by that thread as plain data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from automation.clock import Clock
from automation.errors import AutomationError, CredentialsRejected, Unreachable
from automation.heartbeat import Heartbeat
from automation.metrics import Metrics
from automation.store import TrackedTicket
from automation.webhooks import UNKNOWN_TICKET
from automation.worker import Facts, PassReport, Worker, failed_pass, passed

log = logging.getLogger(__name__)

# A ticket still due after it was handled (its read was not settled, a write failed) is tried
# again this much later, not in a tight loop.
RETRY_DUE = timedelta(seconds=5)
# The most a wait lasts: the clock may be moved (tests, the sandbox) and the loop must see it.
MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Emergency:
    """One live emergency as the status page shows it."""

    ticket_id: int
    subject: str
    state: str
    next_step: str | None
    due_at: datetime | None
    seen_at: datetime
    updated_at: str
    url: str = ""
    organization: str | None = None
    engineer: str | None = None  # who is on it: who made contact, or holds the page
    incident_id: str | None = None
    incident_url: str | None = None
    incident_status: str | None = None
    thread_url: str | None = None
    briefs: tuple[tuple[str, str], ...] = ()  # (what is planned, the brief's link)

    def as_json(self) -> dict[str, Any]:
        """The objects of `status --json`, and what the page shows besides."""
        return {"ticket_id": self.ticket_id, "state": self.state, "next_step": self.next_step,
                "due_at": self.due_at.isoformat() if self.due_at else None,
                "subject": self.subject, "updated_at": self.updated_at,
                "seen_at": self.seen_at.isoformat(), "url": self.url,
                "organization": self.organization, "engineer": self.engineer,
                "incident": {"id": self.incident_id, "status": self.incident_status,
                             "url": self.incident_url} if self.incident_id else None,
                "slack_thread": self.thread_url,
                "briefs": [{"planned": planned, "url": url} for planned, url in self.briefs]}


@dataclass
class Health:
    """What `/readyz` answers from."""

    last_pass_at: datetime | None = None  # on our clock
    zendesk_error: str | None = None


@dataclass
class _Extra:
    organization: str | None = None
    engineer: str | None = None
    incident: tuple[str | None, str | None, str | None] = (None, None, None)
    briefs: tuple[tuple[str, str], ...] = ()
    page_due_at: datetime | None = None  # when the worker pages for it, if nobody has yet


@dataclass
class Service:
    worker: Worker
    clock: Clock
    poll_seconds: float
    metrics: Metrics = field(default_factory=Metrics)
    health: Health = field(default_factory=Health)
    emergencies: tuple[Emergency, ...] = ()
    _hints: dict[int, str] = field(default_factory=dict)  # ticket -> the webhook's source
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _next_poll: datetime | None = None
    _retry_at: dict[int, datetime] = field(default_factory=dict)
    _extras: dict[int, _Extra] = field(default_factory=dict)
    _contacted: set[tuple[int, int]] = field(default_factory=set)
    _page_checked: set[int] = field(default_factory=set)  # woken once to page: the poll after
    _paging_failed: set[int] = field(default_factory=set)  # their PagerDuty step failed
    _live: dict[int, TrackedTicket] | None = None  # the live rows at the end of the last step
    _settling: dict[int, datetime] = field(default_factory=dict)  # read again at (Zendesk's)
    _heartbeat: Heartbeat | None = None
    # The clock moves only when slept on (a test's FakeClock): a ticket changed in the second
    # of its read is then waited for in place, as `run` does, for nothing else moves time.
    settle_in_place: bool = False

    def __post_init__(self) -> None:
        self.metrics.watch_rate_limits(self._rate_limits)
        self._heartbeat = Heartbeat(self.worker.settings.heartbeat_passes)

    # --- from the HTTP side ------------------------------------------------------------------

    def hint(self, ticket_id: int, source: str = "webhook") -> None:
        """Handle this ticket soon (a webhook named it); repeated hints are one handling."""
        with self._wake:
            self._hints[ticket_id] = source
            self._wake.notify()

    # --- the loop ------------------------------------------------------------------------------

    def serve_forever(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: wake for a pass, a hint or a due step. The work in hand
        always finishes."""
        # The clock's seconds in wall-clock seconds: the sandbox's clock may run faster.
        speed = float(getattr(self.clock, "speed", 1.0))
        while not stop.is_set():
            self.step()
            with self._wake:
                if not self._hints and not stop.is_set():
                    self._wake.wait(min(self.seconds_to_next() / speed, MAX_WAIT_SECONDS))

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        with self._wake:
            self._wake.notify()

    def step(self) -> None:
        """What is due now: a pass when the poll says so, then every hinted or due ticket."""
        now = self.clock.now()
        if self._next_poll is None or now >= self._next_poll:
            self._next_poll = now + timedelta(seconds=self.poll_seconds)
            self._pass()
        with self._wake:
            hinted, self._hints = self._hints, {}
        for ticket_id in sorted(hinted):
            self._handle(ticket_id, "webhook", hinted[ticket_id])
        for ticket_id, at in sorted(self._settling.items()):
            if at <= self.service_now() and ticket_id not in hinted:
                del self._settling[ticket_id]
                self._handle(ticket_id, "settled")
        for ticket_id in self._due():
            extra = self._extras.get(ticket_id)
            if extra and extra.page_due_at and extra.page_due_at <= self.service_now():
                self._page_checked.add(ticket_id)  # once: a page that cannot go out waits
            if ticket_id not in hinted:
                self._handle(ticket_id, "due")
        self._publish()

    def seconds_to_next(self) -> float:
        """Seconds (on our clock) until the next poll or the earliest due step."""
        now = self.clock.now()
        waits = [(self._next_poll - now).total_seconds()] if self._next_poll else [0.0]
        service_now = self.service_now()
        waits += [(at - service_now).total_seconds() for at in self._settling.values()]
        for ticket_id, due_at in self._due_times(self._live):  # as the step left them
            retry = self._retry_at.get(ticket_id)
            wake_at = max(due_at, retry) if retry else due_at
            waits.append((wake_at - service_now).total_seconds())
        return max(min(waits), 0.0)

    # --- inside --------------------------------------------------------------------------------

    def _pass(self) -> None:
        started = self.clock.now()
        due = {t.ticket_id: (t.next_step, t.due_at)
               for t in self.worker.store.tracked(active_only=True).values()}
        try:
            report = self.worker.run_once()
        except CredentialsRejected:
            raise  # the service cannot go on without Zendesk; the operator must act
        except Exception as exc:  # noqa: BLE001 - logged; a bug keeps its traceback
            if isinstance(exc, Unreachable):
                self.health.zendesk_error = str(exc)
            self.metrics.passes.labels(failed_pass(exc)).inc()
            self._beat(started, 1)
            return
        self.health.zendesk_error = None
        self.health.last_pass_at = self.clock.now()
        self.metrics.passes.labels("ok" if report.ok else "step failed").inc()
        self.metrics.pass_seconds.observe((self.clock.now() - started).total_seconds())
        self._learn(report, due, whole_pass=True)
        self._beat(started, passed(report))

    def _beat(self, started: datetime, failures: int) -> None:
        """The heartbeat line every `heartbeat_passes` passes, as `run` says it."""
        assert self._heartbeat is not None
        self._heartbeat.beat(self.clock.now() - started, failures,
                             lambda: len(self.worker.store.tracked(active_only=True)))

    def _handle(self, ticket_id: int, reason: str, source: str | None = None) -> None:
        """One ticket, through the worker's one way in; a failure waits for the next wake.
        ``source``: the webhook that named it (a ticket Zendesk does not know is counted)."""
        known = self.worker.store.tracked_ticket(ticket_id)
        due = {ticket_id: (known.next_step, known.due_at)} if known else {}
        self.metrics.handlings.labels(reason).inc()
        try:
            # Not waiting here for a ticket's second to pass: the loop wakes for it then, and
            # meanwhile handles the other webhooks and timers.
            report = self.worker.handle_ticket(ticket_id, settle=self.settle_in_place)
        except CredentialsRejected:
            raise
        except AutomationError as exc:
            log.warning("ticket %s (%s): %s", ticket_id, reason, exc)
            self._retry_at[ticket_id] = self.service_now() + RETRY_DUE
            return
        except Exception:  # noqa: BLE001 - a bug: keep its traceback, keep the service up
            log.exception("ticket %s (%s) failed on an unexpected error", ticket_id, reason)
            self._retry_at[ticket_id] = self.service_now() + RETRY_DUE
            return
        self._learn(report, due)
        for unsettled, wait in report.unsettled.items():
            self._settling[unsettled] = self.service_now() + wait
        if report.not_found and source is not None:
            self.metrics.webhooks.labels(source, UNKNOWN_TICKET).inc()
        after = self.worker.store.tracked_ticket(ticket_id)
        if after is not None and after.due_at is not None and after.due_at <= report.now:
            self._retry_at[ticket_id] = self.service_now() + RETRY_DUE
        else:
            self._retry_at.pop(ticket_id, None)

    def _learn(self, report: PassReport, due: dict[int, tuple[str | None, datetime | None]],
               whole_pass: bool = False) -> None:
        """Count what the pass or handling did, and keep what the page shows of each ticket."""
        for result in report.posted:
            self.metrics.steps.labels(result.step, "posted").inc()
            step, due_at = due.get(result.ticket_id, (None, None))
            if due_at is not None and step == result.step:
                late = (self.service_now() - due_at).total_seconds()
                self.metrics.lateness_seconds.labels(result.step).observe(max(late, 0.0))
        for result in report.failed:
            self.metrics.steps.labels(result.step, "failed").inc()
        self._count_paging(report, whole_pass)
        for facts in report.handled:
            self._remember(facts)

    def _count_paging(self, report: PassReport, whole_pass: bool) -> None:
        """The PagerDuty steps waiting: the tickets whose step PagerDuty refused, at least one
        while it does not answer at all (its failure is then ticket 0's). With PagerDuty up,
        a pass looks at every ticket that needs it; a ticket handled alone at itself only."""
        failed = {r.ticket_id for r in report.failed if r.step == "pagerduty"}
        if 0 not in failed:
            if whole_pass:
                self._paging_failed.clear()
            self._paging_failed -= {facts.snapshot.ticket.id for facts in report.handled}
        self._paging_failed |= failed
        known = len(self._paging_failed - {0})
        self.metrics.pending.labels("pagerduty").set(max(known, int(0 in self._paging_failed)))

    def _remember(self, facts: Facts) -> None:
        snapshot, assessment, page = facts.snapshot, facts.assessment, facts.page
        ticket = snapshot.ticket
        contact = snapshot.people.get(assessment.contact_by or 0)
        engineer = (contact.name or contact.email) if contact else None
        if engineer is None and page is not None:
            engineer = page.acknowledged_by  # took the page, not yet on the ticket
        paging = self.worker.paging
        page_due_at = None
        if paging is not None and paging.config.trigger_incidents and page is not None \
                and page.incident_id is None and assessment.next_step is not None:
            page_due_at = ticket.created_at + timedelta(
                minutes=paging.config.trigger_after_minutes)
        self._extras[ticket.id] = _Extra(
            organization=snapshot.organization.name if snapshot.organization else None,
            engineer=engineer,
            incident=(page.incident_id, page.url, page.status) if page else (None, None, None),
            briefs=tuple((b.planned, b.url) for b in snapshot.briefs), page_due_at=page_due_at)
        since, contact_at = snapshot.urgent_since, assessment.contact_at
        episode = (ticket.id, snapshot.episode_id)
        if since is not None and contact_at is not None and episode not in self._contacted:
            self._contacted.add(episode)
            self.metrics.contact_seconds.observe(max((contact_at - since).total_seconds(), 0))

    def _due(self) -> list[int]:
        """Live emergencies whose step is due now (and not waiting out a failed try)."""
        now = self.service_now()
        return [ticket_id for ticket_id, due_at in self._due_times()
                if due_at <= now and self._retry_at.get(ticket_id, due_at) <= now]

    def _due_times(self, live: dict[int, TrackedTicket] | None = None
                   ) -> Iterable[tuple[int, datetime]]:
        """Each live emergency's next due time: its step's, or when it is to be paged
        (``live``: the rows as last read, else read now)."""
        if live is None:
            live = self.worker.store.tracked(active_only=True)
        for tracked in live.values():
            times = [tracked.due_at] if tracked.due_at and tracked.next_step else []
            extra = self._extras.get(tracked.ticket_id)
            if extra and extra.page_due_at and tracked.ticket_id not in self._page_checked:
                times.append(extra.page_due_at)
            if times:
                yield tracked.ticket_id, min(times)

    def service_now(self) -> datetime:
        """Zendesk's time now (due times are on its clock), else ours."""
        return self.worker.now()

    def _publish(self) -> None:
        live = self._live = self.worker.store.tracked(active_only=True)
        self._forget_all_but(set(live))
        tracked = live.values()
        threads = self.worker.store.threads()  # one read, not one a ticket
        self.emergencies = tuple(self._emergency(t, threads.get(t.ticket_id)) for t in sorted(
            tracked, key=lambda t: (t.due_at is None, t.due_at or t.seen_at, t.ticket_id)))
        self.metrics.set_live(e.state for e in self.emergencies)
        chat = self.worker.chat
        self.metrics.pending.labels("slack").set(
            len(self.worker.store.outbox()) if chat is not None else 0)

    def _forget_all_but(self, live: set[int]) -> None:
        """What the loop keeps for each ticket, kept for live emergencies only: a ticket that
        ended is not carried for the life of the process, and one urgent again is woken for
        its new page as a new one is."""
        for kept in (self._extras, self._retry_at):
            for ticket_id in set(kept) - live:
                del kept[ticket_id]
        self._page_checked &= live

    def _emergency(self, tracked: TrackedTicket, thread: tuple[str, str] | None) -> Emergency:
        extra = self._extras.get(tracked.ticket_id, _Extra())
        incident_id, incident_url, incident_status = extra.incident
        return Emergency(
            ticket_id=tracked.ticket_id, subject=tracked.subject, state=tracked.state,
            next_step=tracked.next_step, due_at=tracked.due_at, seen_at=tracked.seen_at,
            updated_at=tracked.updated_at, url=self.worker.zendesk.agent_url(tracked.ticket_id),
            organization=extra.organization,
            engineer=extra.engineer,
            incident_id=incident_id, incident_url=incident_url,
            incident_status=incident_status,
            thread_url=_thread_url(*thread) if thread else None, briefs=extra.briefs)

    def _rate_limits(self) -> Iterable[tuple[str, int, float]]:
        pauses = [self.worker.zendesk.session.pause]
        if self.worker.paging is not None:
            pauses.append(self.worker.paging.pd.pause)
        if self.worker.chat is not None:
            pauses.append(self.worker.chat.slack.pause)
        return [(p.service, p.waits, p.waited_seconds) for p in pauses]


def _thread_url(channel: str, ts: str) -> str:
    """Slack's link to a message, which opens the thread in the workspace it belongs to."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"

