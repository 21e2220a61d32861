"""What engineers and ASEs ask for by hand: each a plan that is previewed, then sent once.

A plan is built and rendered completely before anything is sent, so `--dry-run` shows
exactly what would go out and a template error stops everything. Sending re-uses the
worker's guard: a safe update, a re-read after a conflict or a lost answer, and a check on
the ticket itself that the same text is not already there.
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from automation import workflow
from automation.clock import Clock
from automation.config import Config
from automation.errors import (
    AutomationError,
    Conflict,
    InputError,
    Refused,
    WriteUncertain,
)
from automation.facts import command_context, tracked
from automation.logs import fields
from automation.mentions import user_token
from automation.model import POST_CALL_STAMP, Outcome, PageStep, Person, Snapshot, Step
from automation.store import Brief, Entry, Store
from automation.templates import Rendered, Templates
from automation.zendesk import BRIEF_TAG, Zendesk

# Integrations load only when configured (see wiring.py): a Zendesk-only command never
# imports slack_sdk or the PagerDuty client.
if TYPE_CHECKING:
    from automation.chat import Chat
    from automation.pagerduty import Incident, PagerDuty, PdUser
    from automation.runbook import ByHand, Runbook

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 3
NOT_EMERGENCY_TAG = "emergency_not_qualified"
ESCALATED_TAG = "emergency_escalated"
ESCALATED = "escalated"
BRIEF_FIELDS = ("planned", "when", "problems", "solutions", "architecture")


class PartlySent(AutomationError):
    """Raised when some of a command's writes landed and a later one failed."""


@dataclass(frozen=True)
class Write:
    """One update: a rendered comment and the field changes that travel with it."""

    step: str
    rendered: Rendered
    tags_to_add: tuple[str, ...] = ()
    priority: str | None = None
    # Checked on a fresh read just before sending: a reason to stop, or None.
    guard: Callable[[Snapshot], str | None] | None = None
    # A tag written with it that names its input: on the ticket means already sent.
    marker: str | None = None
    stamp_detail: dict[str, str] = field(default_factory=dict)  # more for its stamp


@dataclass(frozen=True)
class Escalation:
    """`escalate`: the page of the Support Manager on call for this emergency (keyed)."""

    service_id: str
    incident_key: str
    title: str
    details: str
    reason: str
    engineer: str  # who escalates (signs the note)


@dataclass
class Plan:
    snapshot: Snapshot
    author: Person | None
    writes: list[Write]
    brief: Brief | None = None
    slack_lines: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    escalation: Escalation | None = None  # the Support Manager's page, before the writes


# A `Sent` that is no write: Slack lines still waiting (its note says how many and why).
SLACK_PENDING = "slack"
# A `Sent` that is no write on the ticket either: what else was done (a page), said as it is.
NOTICE = "notice"


@dataclass(frozen=True)
class Sent:
    step: str
    comment_id: int | None
    public: bool
    note: str = ""
    skipped: bool = False  # its exact text was on the ticket already


@dataclass(frozen=True)
class Page:
    """A page by hand: who would be paged, or the incident that pages them (new or existing)."""

    ticket_id: int
    engineer: PdUser
    service_id: str
    title: str
    incident_key: str
    incident: Incident | None = None  # None: not sent (a dry run)
    assigned: str = ""  # the incident's assignees' names
    already_paged: bool = False  # the open incident already pages this engineer: nothing sent


def normalized(text: str) -> str:
    return " ".join(text.split())


def already_done(snapshot: Snapshot, write: Write) -> bool:
    """The write is on the ticket: its marker (made from the engineer's input, so a re-run
    whose hand-off text changed is still recognised) in a stamp of ours, or exactly its text.
    A marker tag alone does not count: tags are copied onto follow-up tickets."""
    if write.marker is not None and any(s.detail.get("marker") == write.marker
                                        for s in snapshot.stamps):
        return True
    return already_posted(snapshot, write.rendered)


def write_stamp(snapshot: Snapshot, write: Write) -> dict[str, object]:
    """The stamp of a command's write: its step, this emergency, and its input's marker."""
    stamp: dict[str, object] = {"step": str(write.step), "by": "hand",
                                "episode": snapshot.episode_id}
    if write.marker is not None:
        stamp["marker"] = write.marker
    stamp.update(write.stamp_detail)
    return stamp


def input_marker(prefix: str, text: str) -> str:
    """A tag that names a piece of input: the same notes give the same tag."""
    return f"{prefix}_{hashlib.sha256(normalized(text).encode()).hexdigest()[:12]}"


def already_posted(snapshot: Snapshot, rendered: Rendered) -> bool:
    """The same text is on the ticket already (a re-run, or a write whose answer was lost)."""
    wanted = normalized(rendered.body)
    return any(normalized(c.body) == wanted for c in snapshot.comments)


# A Markdown section heading names its field by one of these words.
BRIEF_HEADINGS = {
    "planned": ("planned", "plan"),
    "when": ("when", "date", "schedule"),
    "problems": ("problem", "risk"),
    "solutions": ("solution", "mitigation"),
    "architecture": ("architecture", "account", "notes"),
}


def parse_brief_file(text: str, name: str) -> dict[str, str]:
    """A brief from TOML keys, or Markdown with `## Planned`, `## When`, ... sections."""
    toml = _brief_toml(text)
    if name.endswith(".toml") or toml is not None:
        if toml is None:
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{name}: not valid TOML: {exc}") from None
            raise InputError(f"{name}: expected keys {', '.join(BRIEF_FIELDS)}")
        unknown = sorted(set(toml) - set(BRIEF_FIELDS))
        if unknown:
            raise InputError(f"{name}: unknown key {unknown[0]!r}; expected "
                             f"{', '.join(BRIEF_FIELDS)}")
        for key, value in toml.items():
            if isinstance(value, dict | list):
                raise InputError(f"{name}: {key} must be text, got a TOML "
                                 f"{'table' if isinstance(value, dict) else 'array'}")
        return {k: str(v).strip() for k, v in toml.items()}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("##"):
            heading = stripped.lstrip("#").strip().lower()
            current = next((field for field, words in BRIEF_HEADINGS.items()
                            if any(word in heading for word in words)), None)
            if current is None:
                raise InputError(
                    f"{name} line {number}: unknown section {stripped!r}; expected headings "
                    f"{', '.join('## ' + f.title() for f in BRIEF_FIELDS)}")
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
        elif stripped and not stripped.startswith("# "):
            raise InputError(f"{name} line {number}: text before the first section; start "
                             "with a heading such as '## Planned'")
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def _brief_toml(text: str) -> dict[str, object] | None:
    """The TOML table when `text` is a TOML brief (standard input can be either kind)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    return data if data and set(data) & set(BRIEF_FIELDS) else None


class Commands:
    """Builds and sends the engineers' commands against one Zendesk."""

    def __init__(self, zendesk: Zendesk, store: Store, templates: Templates, config: Config,
                 clock: Clock, chat: Chat | None = None,
                 pagerduty: PagerDuty | None = None, runbook: Runbook | None = None) -> None:
        self.chat = chat
        self.pagerduty = pagerduty
        self.runbook = runbook
        self.zendesk = zendesk
        self.store = store
        self.templates = templates
        self.config = config
        self.clock = clock

    def close(self) -> None:
        """Release connections (PagerDuty's and GitLab's clients keep a pool)."""
        if self.pagerduty is not None:
            self.pagerduty.close()
        if self.runbook is not None:
            self.runbook.close()

    def now(self) -> datetime:
        """Zendesk's time once it has answered (timers run on its `Date`), else the clock's."""
        return self.zendesk.server_time or self.clock.now()

    # --- reading and refusing ------------------------------------------------------------------
    def load(self, ticket_id: int) -> Snapshot:
        snapshot = self.zendesk.snapshot(ticket_id)
        if workflow.is_finished(snapshot):
            raise Refused(f"ticket #{ticket_id} is {snapshot.ticket.status}: nothing is posted "
                          "on a solved or closed ticket")
        return snapshot

    def author(self, email: str | None) -> Person | None:
        if not email:
            return None
        person = self.zendesk.person_by_email(email)
        if person is None:
            raise InputError(f"--as {email}: no Zendesk user has this email")
        if not person.is_agent:
            raise InputError(f"--as {email}: {person.name} is an end-user, not an agent")
        return person

    def _context(self, snapshot: Snapshot, author: Person | None) -> dict[str, Any]:
        now = self.now()
        assessment = workflow.assess(snapshot, now, self.config.policy)
        organization = self.zendesk.organization(snapshot.ticket.organization_id)
        return command_context(snapshot, assessment, self.config.workflow, self.config.policy,
                               organization, now, (author.email, author.name) if author else None)

    def _require_emergency(self, snapshot: Snapshot, force: bool,
                           what: str = "post this public reply anyway") -> None:
        if snapshot.ticket.priority != workflow.EMERGENCY_PRIORITY and not force:
            raise Refused(f"ticket #{snapshot.ticket.id} is priority {snapshot.ticket.priority}, "
                          f"not an emergency: pass --force to {what}")

    def _engineer(self, pd: PagerDuty, policy_id: str, email: str | None) -> PdUser:
        """Who a page by hand goes to: the engineer named, else whoever is on call now."""
        if email is None:
            current, _ = pd.now_and_next(policy_id, self.now())
            if current is None:
                raise Refused(f"nobody is on call on escalation policy {policy_id}: pass "
                              "--engineer EMAIL")
            return current.user
        found = pd.user_by_email(email)
        if found is None:
            raise InputError(f"--engineer {email}: no PagerDuty user has this email")
        return found

    # --- plans ---------------------------------------------------------------------------------
    def plan_step(self, ticket_id: int, step: Step, as_email: str | None = None,
                  force: bool = False) -> Plan:
        """The worker's own steps by hand, with the same exactly-once guard."""
        snapshot = self.load(ticket_id)
        refusal = _step_refusal(snapshot, step)
        if refusal:
            raise Refused(refusal)
        self._require_emergency(snapshot, force)
        author = self.author(as_email)
        rendered = self.templates.render(workflow.TEMPLATES[step],
                                         self._context(snapshot, author))
        write = Write(step=step, rendered=rendered, tags_to_add=(workflow.MARKER_TAGS[step],),
                      priority=workflow.STEPPED_DOWN_PRIORITY if step is Step.CLOSE else None,
                      guard=lambda fresh: _step_refusal(fresh, step))
        plan = Plan(snapshot, author, [write])
        if self.chat is not None:
            from automation.chat import manual_step_line

            plan.slack_lines.append((step, manual_step_line(
                step, author.name if author else self.config.workflow.signature)))
        return plan

    def plan_post_call(self, ticket_id: int, notes: str, internal: str | None,
                       as_email: str | None = None, available_until: str | None = None,
                       next_engineer: str | None = None, macro_title: str | None = None,
                       force: bool = False) -> Plan:
        if not notes.strip():
            raise InputError("--notes: the post-call notes are empty; write what was done and "
                          "what happens next")
        if internal is not None and not internal.strip():
            raise InputError("--internal: the internal notes are empty; leave the flag out or "
                          "write the internal detail")
        snapshot = self.load(ticket_id)
        self._require_emergency(snapshot, force)
        author = self.author(as_email)
        context = self._context(snapshot, author)
        if not (available_until or next_engineer):
            available_until, next_engineer = self._handoff(author)
        next_name = next_engineer
        if next_engineer and "@" in next_engineer:
            colleague = self.zendesk.person_by_email(next_engineer)
            if colleague is None:
                raise InputError(f"--next {next_engineer}: no Zendesk user has this email")
            next_name = colleague.name
        context.update(notes=notes.strip(), internal_notes=(internal or "").strip(),
                       available_until=available_until, next_engineer=next_name,
                       macro_body=self.zendesk.macro_body(ticket_id, macro_title)
                       if macro_title else None)
        # The public text never sees the internal notes, whatever a template override says.
        public_context = {k: v for k, v in context.items() if k != "internal_notes"}
        public_marker = input_marker("emergency_post_call", notes)
        writes = [Write(POST_CALL_STAMP, self.templates.render("post_call", public_context),
                        tags_to_add=(public_marker,), marker=public_marker)]
        if internal is not None:
            internal_marker = input_marker("emergency_post_call_note", internal)
            writes.append(Write("post-call-internal",
                                self.templates.render("post_call_internal", context),
                                tags_to_add=(internal_marker,), marker=internal_marker))
        plan = Plan(snapshot, author, writes)
        if self.chat is not None:
            plan.slack_lines.append(("post-call", self._post_call_echo(context["engineer"],
                                                                       next_engineer)))
        return plan

    def _handoff(self, author: Person | None) -> tuple[str | None, str | None]:
        """(available until, next engineer) from PagerDuty's on-call, when it is configured."""
        if self.pagerduty is None or self.config.pagerduty is None:
            return None, None
        current, following = self.pagerduty.now_and_next(
            self.config.pagerduty.escalation_policy_id, self.now())
        if current is None:
            return None, None
        if author is None or current.user.email.lower() != author.email.lower():
            return None, current.user.email  # whoever is on call takes a new emergency
        # The runbook's hand-off: "I'm on call until ..., then my colleague ...".
        until = f"{current.end:%H:%M} UTC" if current.end is not None else None
        return until, following.user.email if following is not None else None

    def _post_call_echo(self, engineer: str, next_engineer: str | None) -> str:
        """The Slack thread's line for post-call notes, tagging the next engineer if known."""
        from automation.chat import post_call_line
        from automation.slack import escape

        # A mention resolved when the line is posted (the journal keeps who it names).
        who = user_token(next_engineer) or (escape(next_engineer) if next_engineer else None)
        return post_call_line(engineer, who)

    def plan_not_emergency(self, ticket_id: int, reason: str, informed: str,
                           as_email: str | None = None) -> Plan:
        if not reason.strip():
            raise InputError("--reason: empty; say why the ticket may not be an emergency")
        snapshot = self.load(ticket_id)
        author = self.author(as_email)
        context = self._context(snapshot, author)
        context.update(reason=reason.strip(), informed=informed)
        rendered = self.templates.render("not_emergency", context)
        plan = Plan(snapshot, author,
                    [Write("not-emergency", rendered, tags_to_add=(NOT_EMERGENCY_TAG,))])
        if self.chat is not None:
            from automation.chat import account_people, not_emergency_line

            organization = self.zendesk.organization(snapshot.ticket.organization_id)
            manager, _ = account_people(self.chat.config, organization)
            plan.slack_lines.append(("not-emergency", not_emergency_line(
                context["engineer"], reason, manager)))
        return plan

    def plan_escalate(self, ticket_id: int, reason: str, as_email: str | None = None,
                      force: bool = False) -> Plan:
        """"If you're stuck, contact the manager on-call": their page, an internal note, a
        line in the thread. Once per emergency: its stamp on the ticket says it was done."""
        pd, cfg = self.pagerduty, self.config.pagerduty
        if pd is None or cfg is None or not cfg.managers_service_id:
            raise InputError("escalate pages the Support Managers: it needs [pagerduty] "
                             "managers_service_id in the config")
        if not reason.strip():
            raise InputError("--reason: empty; say what you are stuck on")
        snapshot = self.load(ticket_id)
        self._require_emergency(snapshot, force, "escalate anyway")
        done = snapshot.done().get(ESCALATED)
        if done is not None:
            raise Refused(f"ticket #{ticket_id} is escalated already (incident "
                          f"{done.detail.get('incident', '?')}): the Support Manager on call "
                          "has the page")
        author = self.author(as_email)
        context = self._context(snapshot, author)
        context.update(reason=reason.strip(), manager_service="the Support Managers service")
        note = Write(ESCALATED, self.templates.render("escalation", context),
                     tags_to_add=(ESCALATED_TAG,))
        ticket = snapshot.ticket
        escalation = Escalation(
            cfg.managers_service_id, f"zendesk-{ticket.id}-escalated",
            f"Engineer stuck on emergency: Zendesk ticket #{ticket.id}: {ticket.subject}",
            f"{context['engineer']} escalated {self.zendesk.agent_url(ticket.id)}: "
            f"{reason.strip()}", reason.strip(), str(context["engineer"]))
        return Plan(snapshot, author, [note], escalation=escalation)

    def escalate(self, plan: Plan) -> list[Sent]:
        """Page the Support Manager (the key makes a re-run find the same open incident),
        then the note stamped with it, then the thread's line."""
        from automation.chat import escalation_line

        assert plan.escalation is not None and self.pagerduty is not None
        page = plan.escalation
        incident = self.pagerduty.trigger(page.service_id, page.title, page.incident_key,
                                          page.details)
        self.store.record(Entry(at=self.now(), ticket_id=plan.snapshot.ticket.id,
                                step=ESCALATED, outcome=Outcome.DONE, actor=self.zendesk.email,
                                detail=f"Support Manager paged: incident {incident.id}"))
        plan.writes = [replace(w, stamp_detail={"incident": incident.id}) for w in plan.writes]
        if self.chat is not None:
            plan.slack_lines.append((ESCALATED, escalation_line(
                page.engineer, page.reason, f"incident {incident.id}")))
        paged = f"the Support Manager on call is paged: incident {incident.id} {incident.html_url}"
        return [Sent(NOTICE, None, False, f"#{plan.snapshot.ticket.id} {paged}"),
                *self.send(plan)]

    def plan_brief(self, ticket_id: int, fields: dict[str, str],
                   as_email: str | None = None) -> Plan:
        planned = (fields.get("planned") or "").strip()
        if not planned:
            raise InputError("brief: 'planned' is empty; say what is planned")
        when_text = (fields.get("when") or "").strip()
        try:
            when = datetime.fromisoformat(when_text)
        except ValueError:
            raise InputError(f"brief: 'when' must be a date and time like 2026-11-28T02:00+00:00, "
                          f"got {when_text!r}") from None
        if when.tzinfo is None:
            raise InputError(f"brief: 'when' needs a time zone (e.g. {when_text}+00:00 or Z), "
                          f"got {when_text!r}")
        snapshot = self.zendesk.snapshot(ticket_id)
        author = self.author(as_email)
        context = self._context(snapshot, author)
        values = {k: (fields.get(k) or "").strip() for k in BRIEF_FIELDS}
        context["brief"] = dict(values, when=when)
        rendered = self.templates.render("brief", context)
        organization = self.zendesk.organization(snapshot.ticket.organization_id)
        brief = Brief(ticket_id=ticket_id,
                      organization_id=snapshot.ticket.organization_id,
                      organization=organization.name if organization else "",
                      author=context["engineer"], planned=planned, when=when,
                      url=self.zendesk.agent_url(ticket_id), filed_at=self.now())
        return Plan(snapshot, author, [Write("brief", rendered, tags_to_add=(BRIEF_TAG,))],
                    brief=brief)

    def page(self, ticket_id: int, engineer_email: str | None, dry_run: bool,
             force: bool = False) -> Page:
        """Trigger the emergency's incident by hand, assigned to the engineer; once per ticket."""
        from automation.paging import incident_key, page_ticket, page_title

        pd, cfg = self.pagerduty, self.config.pagerduty
        if pd is None or cfg is None:
            raise InputError("paging needs [pagerduty] in the config")
        snapshot = self.load(ticket_id)
        self._require_emergency(snapshot, force, "page for it anyway")
        engineer = self._engineer(pd, cfg.escalation_policy_id, engineer_email)
        owner = pd.token_owner()
        if engineer.email.lower() == cfg.from_email.lower() or (
                owner is not None and owner.id == engineer.id):
            raise Refused(f"refusing to page {engineer.email} with their own PagerDuty "
                          "identity: PagerDuty would acknowledge it for them and nobody's "
                          "phone would ring; use a [pagerduty] from_email and token of "
                          "someone else (e.g. a bot user)")
        ticket = snapshot.ticket
        page = Page(ticket.id, engineer, cfg.service_id, page_title(ticket),
                    incident_key(ticket.id))
        existing = pd.incident_by_key(page.incident_key, [cfg.service_id])
        if existing is not None and existing.is_open:
            assigned = ", ".join(pd.user(u).name for u in existing.assignee_ids) or "nobody"
            if engineer.id in existing.assignee_ids:
                return replace(page, incident=existing, assigned=assigned, already_paged=True)
            raise Refused(f"ticket #{ticket.id} already has an open page ({existing.id}, "
                          f"assigned to {assigned}): reassign it to {engineer.name} in "
                          f"PagerDuty, {existing.html_url}")
        if dry_run:
            return page
        incident = page_ticket(pd, self.zendesk, snapshot, cfg.service_id,
                               f"Paged by hand for {self.zendesk.agent_url(ticket.id)}",
                               assignee_id=engineer.id)
        self.store.record(Entry(at=self.now(), ticket_id=ticket.id, step=PageStep.PAGED,
                                outcome=Outcome.DONE, actor=cfg.from_email,
                                detail=f"{engineer.name} paged by hand: incident {incident.id}"))
        assigned = ", ".join(pd.user(u).name for u in incident.assignee_ids) or "nobody"
        return replace(page, incident=incident, assigned=assigned)

    def runbook_issue(self, ticket_id: int, dry_run: bool) -> ByHand:
        """The emergency's Emergency Runbook issue in GitLab, opened once (by hand)."""
        if self.runbook is None:
            raise InputError("runbook-issue needs [gitlab] in the config")
        snapshot = self.load(ticket_id)
        snapshot = replace(snapshot, organization=self.zendesk.organization(
            snapshot.ticket.organization_id))
        now = self.now()
        result = self.runbook.by_hand(snapshot, workflow.assess(snapshot, now,
                                                                self.config.policy),
                                      None, now, dry_run)
        if result.made is not None:
            made = result.made
            self.store.record(Entry(at=now, ticket_id=ticket_id, step=made.step,
                                    outcome=Outcome.DONE, actor="GitLab",
                                    detail=f"{made.detail} by hand: {made.url}"))
            if self.chat is not None:
                from automation.chat import issue_line

                self.chat.echo(ticket_id, made.step, issue_line(made.detail, made.url), now)
                self.chat.serve(self.zendesk.fresh(snapshot), now, live=True)
        return result

    # --- sending -------------------------------------------------------------------------------
    def send(self, plan: Plan) -> list[Sent]:
        """Send each write once, in order; re-read after a conflict or a lost answer.

        A write whose exact text is already on the ticket (a re-run after a partial failure)
        is skipped; when every one is, nothing is sent and the command is refused.
        """
        sent: list[Sent] = []
        snapshot = plan.snapshot
        ticket_id = snapshot.ticket.id
        if all(already_done(snapshot, w) for w in plan.writes):
            raise Refused(f"ticket #{ticket_id} already has exactly this text; nothing was sent")
        for write in plan.writes:
            if already_done(snapshot, write):
                sent.append(Sent(write.step, None, write.rendered.public,
                                 "already on the ticket", skipped=True))
                continue
            try:
                sent.append(self._send_one(write, snapshot, plan.author))
            except AutomationError as exc:
                if not any(s.comment_id or s.note for s in sent):
                    raise
                done = ", ".join(s.step for s in sent)
                raise PartlySent(f"{done} posted on ticket #{ticket_id}, but {write.step} was "
                                 f"not: {exc}; run the same command again to send the rest "
                                 "(what is on the ticket is skipped)") from None
            snapshot = self.zendesk.snapshot(ticket_id)
        self._track(snapshot)
        if plan.brief is not None:
            self.store.add_brief(plan.brief)
        if self.chat is not None and plan.slack_lines:
            now = self.now()
            for kind, text in plan.slack_lines:
                self.chat.echo(ticket_id, kind, text, now)
            pending = self.chat.serve(snapshot, now, live=True)
            if pending:
                why = f" ({self.chat.rejected})" if self.chat.rejected else ""
                sent.append(Sent(SLACK_PENDING, None, False, f"{pending} Slack line(s) "
                                 f"pending: the worker retries them{why}"))
        return sent

    def _track(self, snapshot: Snapshot) -> None:
        """`status` shows the ticket as this command left it, not as the last pass saw it."""
        now = self.now()
        assessment = workflow.assess(snapshot, now, self.config.policy)
        self.store.track(tracked(snapshot, assessment, now))

    def _send_one(self, write: Write, snapshot: Snapshot, author: Person | None) -> Sent:
        ticket_id = snapshot.ticket.id
        now = self.now()
        actor = author.email if author else self.zendesk.email
        for attempt in range(MAX_SEND_ATTEMPTS):
            wait = snapshot.unsettled_for()
            if attempt or wait:
                # Safe updates cannot see a write made in the second of our read: let it pass.
                self.clock.sleep(wait.total_seconds())
                snapshot = self.zendesk.snapshot(ticket_id)
                if already_done(snapshot, write):
                    return self._record(now, ticket_id, write, actor, None,
                                        "confirmed on re-read: it was already on the ticket")
                if write.guard and (reason := write.guard(snapshot)):
                    raise Refused(reason)
            try:
                update = self.zendesk.update(snapshot.ticket, write.rendered, write.tags_to_add,
                                             write.priority, author.id if author else None,
                                             stamp=write_stamp(snapshot, write))
            except (Conflict, WriteUncertain) as exc:
                log.info("ticket %s: %s; re-reading before anything else", ticket_id, exc,
                         extra=fields(ticket_id, write.step))
                self.store.record(Entry(at=now, ticket_id=ticket_id, step=write.step,
                                        outcome=Outcome.CONFLICT if isinstance(exc, Conflict)
                                        else Outcome.UNCERTAIN, actor=actor,
                                        public=write.rendered.public, detail=str(exc)))
                continue
            return self._record(now, ticket_id, write, actor, update.comment_id, "")
        raise Refused(f"ticket #{ticket_id} kept changing while {write.step} was being sent; "
                      "nothing more was sent: run the command again")

    def _record(self, now: datetime, ticket_id: int, write: Write, actor: str,
                comment_id: int | None, note: str) -> Sent:
        self.store.record(Entry(at=now, ticket_id=ticket_id, step=write.step,
                                outcome=Outcome.POSTED,
                                actor=actor, public=write.rendered.public,
                                comment_id=comment_id,
                                detail=note or write.rendered.first_line))
        return Sent(write.step, comment_id, write.rendered.public, note)


def _step_refusal(snapshot: Snapshot, step: Step) -> str | None:
    ticket_id = snapshot.ticket.id
    if step is Step.ACKNOWLEDGE:
        contact = workflow.find_contact(snapshot)
        if contact is not None:
            who = snapshot.people.get(contact.author_id)
            name = who.name if who else f"user {contact.author_id}"
            return (f"ticket #{ticket_id} already has contact: {name} at "
                    f"{contact.created_at:%Y-%m-%d %H:%M} UTC; no acknowledgement sent")
        if Step.ACKNOWLEDGE in snapshot.done():
            return f"ticket #{ticket_id} is already acknowledged; no acknowledgement sent"
        return None
    if workflow.find_contact(snapshot) is None:
        return (f"ticket #{ticket_id} has no contact yet: acknowledge it first "
                f"(`emergency ack {ticket_id}`)")
    if workflow.step_done(snapshot, step):
        return f"ticket #{ticket_id} already had its {step}; nothing sent"
    return None
