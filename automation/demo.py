"""`emergency demo`: the real worker against the built-in sandbox, with a readable timeline.

The sandbox's clock is paced at `speed` times the wall clock, so a 30-minute lifecycle plays
in seconds while the worker reads real timestamps through the real HTTP API. It moves only when
the demo steps it, never while a pass or a person's act is under way, so how loaded the machine
is changes how long the story takes, never its order.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TextIO

from automation.clock import Clock, PacedClock
from automation.config import (
    PagerDutyConfig,
    Region,
    Rotation,
    SlackConfig,
    WorkflowConfig,
)
from automation.errors import InputError
from automation.model import State
from automation.sandbox import Account, Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.store import Brief, Store
from automation.templates import summary_line
from automation.wiring import build_worker
from automation.worker import Worker
from automation.workflow import CLOSED_TAG

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LENGTH = timedelta(minutes=37)
POLL = timedelta(minutes=1)
BRIDGE = "https://bridge.example.com/emergency"
FRANCESCA_BRIDGE = "https://bridge.example.com/francesca"


@dataclass
class Expectation:
    """What the demo checks at the end, so it can say the lifecycle really happened."""

    ticket: str
    public_messages: int  # public comments by agents: the worker's and the engineer's
    priority: str
    state: State
    acknowledged_by: str  # "francesca", "ravi" or "team" (the fallback)
    manager_paged: bool = False


# What a person does; None when it cannot happen yet (e.g. no page to acknowledge so far).
Act = Callable[[Sandbox, Account, dict[str, int]], str | None]


@dataclass
class Scenario:
    name: str
    description: str
    events: list[tuple[float, Act]]  # (minutes after start, what a person does)
    expectations: list[Expectation] = field(default_factory=list)


def _new_ticket(key: str, subject: str, body: str, organization: str = "acme") -> Act:
    def act(sandbox: Sandbox, account: Account, tickets: dict[str, int]) -> str:
        org_id = account.organization_id if organization == "acme" else tickets["org:globex"]
        requester = account.requester_id if organization == "acme" else tickets["user:globex"]
        tickets[key] = sandbox.zendesk.create_ticket(requester, subject, body,
                                                     priority="urgent", organization_id=org_id)
        return f"#{tickets[key]:<3} customer     files an urgent ticket: {subject}"
    return act


def _customer_replies(key: str, body: str) -> Act:
    def act(sandbox: Sandbox, account: Account, tickets: dict[str, int]) -> str:
        sandbox.zendesk.add_comment(tickets[key], account.requester_id if key != "busy"
                                    else tickets["user:globex"], body, public=True)
        return f"#{tickets[key]:<3} customer     replies on the ticket"
    return act


def _acknowledges(key: str, engineer: str) -> Act:
    """The engineer acknowledges the ticket's page in PagerDuty (phone, app or Slack)."""
    def act(sandbox: Sandbox, account: Account, tickets: dict[str, int]) -> str | None:
        ticket_id = tickets[key]
        incident = next((i for i in sandbox.pagerduty.incidents()
                         if i["incident_key"] == f"zendesk-{ticket_id}"), None)
        if incident is None:
            return None  # the page has not gone out yet: the engineer acknowledges it later
        user = account.pd_francesca_id if engineer == "francesca" else account.pd_ravi_id
        sandbox.pagerduty.acknowledge(incident["id"], user)
        name = "Francesca Rossi" if engineer == "francesca" else "Ravi Patel"
        return f"#{ticket_id:<3} pagerduty    {name} acknowledges the page"
    return act


SILENT = [(0, _new_ticket("silent", "Production down: every git push fails with 502",
                          "Since 08:50 no one can push. Our release is blocked.")),
          (2.5, _acknowledges("silent", "francesca"))]
BUSY = [(1, _new_ticket("busy", "Runners cannot pick up jobs",
                        "All CI pipelines are stuck in pending.", "globex")),
        (5.5, _acknowledges("busy", "ravi")),
        (9, _customer_replies("busy", "We are on the bridge, thanks."))]

REPLIES = [(0.5, _new_ticket("replies", "Geo secondary stopped replicating",
                             "Replication lag keeps growing since the failover test.")),
           (24, _customer_replies("replies", "Thanks, joining the bridge now."))]

SCENARIOS = {
    "all": Scenario(
        "all", "three emergencies in one night: a silent customer, a second and a third "
        "while the on-call is busy (the Support Manager is paged for each; Ravi takes one, "
        "nobody takes the other in 20 min so the team acknowledges it)",
        SILENT + BUSY + REPLIES,
        [Expectation("silent", 3, "high", State.CLOSED_TO_HIGH, "francesca"),
         Expectation("busy", 1, "urgent", State.ENGAGED, "ravi", manager_paged=True),
         Expectation("replies", 1, "urgent", State.ENGAGED, "team", manager_paged=True)],
    ),
    "silent": Scenario(
        "silent", "Francesca takes the page; the customer never answers: follow-up, bridge "
        "closed, HIGH",
        SILENT, [Expectation("silent", 3, "high", State.CLOSED_TO_HIGH, "francesca")],
    ),
    "replies": Scenario(
        "replies", "nobody takes the page for 20 min: the team acknowledges; the customer "
        "answers and every timer stops",
        REPLIES, [Expectation("replies", 1, "urgent", State.ENGAGED, "team")],
    ),
    "busy-oncall": Scenario(
        "busy-oncall", "a second emergency while the on-call is on the first: the Support "
        "Manager is paged, Ravi takes it",
        SILENT + BUSY,
        [Expectation("silent", 3, "high", State.CLOSED_TO_HIGH, "francesca"),
         Expectation("busy", 1, "urgent", State.ENGAGED, "ravi", manager_paged=True)],
    ),
}
SCENARIOS["two-at-once"] = SCENARIOS["busy-oncall"]


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def run_demo(out: TextIO, scenario: str = "all", speed: float = 120.0,
             clock: Clock | None = None, report: Path | None = None) -> int:
    """Play the scenario; print the timeline; return 0 when every expectation held.

    Simulated time moves only when the demo steps it (a pass, then the people's acts at
    their minutes, then the next pass) or the worker sleeps on it, so the story plays in
    the same order however loaded the machine is; the wall clock only paces it (PacedClock).
    Tests pass a FakeClock: then the whole story plays without waiting at all. With
    ``report``, the night's report (`emergency report --html`) is written there at the end.
    """
    out = FittedStream(out)  # type: ignore[assignment]
    chosen = SCENARIOS[scenario]
    clock = clock or PacedClock(start=START, speed=speed)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        tickets: dict[str, int] = {
            "org:globex": sandbox.zendesk.add_organization("Globex Inc"),
        }
        tickets["user:globex"] = sandbox.zendesk.add_user(
            "Sam Okafor", "sam.okafor@globex.example.com", "end-user", tickets["org:globex"])
        frt, frt_group_id = _seed_frt(sandbox, account)
        worker = _worker(sandbox, account, Path(tmp) / "demo-state.sqlite3", clock, frt)
        store = worker.store
        _file_brief(store, sandbox, account)
        timeline = Timeline(out, sandbox, store, clock, account, frt.channel)
        timeline.names[frt_group_id] = "frt-team"

        length = LENGTH.total_seconds() / speed
        print(f"emergency demo --scenario {scenario}: {chosen.description}.", file=out)
        print(f"Simulated time runs {speed:g}x ({length:.0f} s of wall time). Francesca Rossi "
              "is on call (and on the FRT shift), Ravi Patel is next. Giulia Verdi, Acme Corp's "
              "ASE (Assigned Support Engineer, who knows the account best), filed a pre-task "
              "brief for them.\n",
              file=out)
        events = sorted(chosen.events, key=lambda e: e[0])
        end = START + LENGTH
        at = START  # when the next pass runs
        try:
            while at < end:
                _act_until(at, events, clock, sandbox, account, tickets, timeline)
                _sleep_until(clock, at)
                worker.run_once()
                timeline.catch_up()
                at = _next_pass(at, clock.now())
        finally:
            worker.close()
        verdict = _verdict(out, chosen, sandbox, store, tickets, account)
        if report is not None:
            _write_report(out, worker, clock.now(), report)
        return verdict


def _write_report(out: TextIO, worker: Worker, until: datetime, path: Path) -> None:
    """The night's report, read from the sandbox's Zendesk as `emergency report` reads it."""
    from automation.report import gather, minutes
    from automation.report_html import render_html

    report = gather(worker.zendesk, START, until)
    try:
        path.write_text(render_html(report, title="The night's emergencies"), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--report {path}: cannot write: {exc.strerror}") from None
    overall = report.overall
    print(f"\nThe night's report: {overall.emergencies} emergencies, time to contact p50 "
          f"{minutes(overall.p50)}, p90 {minutes(overall.p90)}; written to\n{CONTINUED}{path}",
          file=out)


def _act_until(at: datetime, events: list[tuple[float, Act]], clock: Clock, sandbox: Sandbox,
               account: Account, tickets: dict[str, int], timeline: Timeline) -> None:
    """What people do before the pass at ``at``, each at its minute (removed from events)."""
    while events and START + timedelta(minutes=events[0][0]) <= at:
        _sleep_until(clock, START + timedelta(minutes=events[0][0]))
        happened = events[0][1](sandbox, account, tickets)
        if happened is None:
            return  # not possible yet; tried again after the next pass
        events.pop(0)
        timeline.note(happened)


def _sleep_until(clock: Clock, when: datetime) -> None:
    seconds = (when - clock.now()).total_seconds()
    if seconds > 0:
        clock.sleep(seconds)


def _next_pass(previous: datetime, now: datetime) -> datetime:
    """A pass every POLL; one that ran past the next one's time (settling, a Retry-After)
    moves it to the first whole POLL after."""
    at = previous + POLL
    while at < now:
        at += POLL
    return at


def _seed_frt(sandbox: Sandbox, account: Account) -> tuple[Rotation, str]:
    """The FRT rotation, Francesca on its shift all night: she hands it over (runbook step 5)."""
    schedule_id = sandbox.pagerduty.add_schedule("FRT")
    sandbox.pagerduty.add_oncall(account.pd_francesca_id,
                                 sandbox.pagerduty.add_escalation_policy("FRT"), schedule_id,
                                 START - timedelta(hours=1), START + timedelta(hours=8))
    channel = sandbox.slack.add_channel("support_frt")
    group_id = sandbox.slack.add_usergroup("frt-team", "FRT engineers")
    return Rotation("FRT", schedule_id, channel, "frt-team"), group_id


def _worker(sandbox: Sandbox, account: Account, state_path: Path,
            clock: Clock, frt: Rotation) -> Worker:
    """The real worker, wired as `emergency run` wires it, to the sandbox's three services."""
    cfg = sandbox_config(
        sandbox, account, state_path,
        workflow=WorkflowConfig(bridge_url=BRIDGE, signature="The Support Team",
                                poll_interval_seconds=POLL.total_seconds(),
                                bridges={"francesca@example.com": FRANCESCA_BRIDGE}),
        slack=SlackConfig(default_channel=account.self_managed_channel,
                          regions=(Region("americas", "support-team-americas", time(0, 0),
                                          time(23, 59)),)),
        pagerduty=PagerDutyConfig(
            from_email=sandbox.email, service_id=account.pd_service_id,
            escalation_policy_id=account.pd_policy_id,
            managers_service_id=account.pd_managers_service_id, trigger_after_minutes=1,
            rotations=(frt,)),
        gitlab=True)
    cfg = replace(cfg, zendesk=replace(cfg.zendesk, timeout_seconds=10, max_retry_seconds=120))
    return build_worker(cfg, clock, sandbox_environ(sandbox))


def _file_brief(store: Store, sandbox: Sandbox, account: Account) -> None:
    """An ASE's brief for Acme Corp's planned upgrade, filed the day before."""
    ticket_id = sandbox.zendesk.create_ticket(
        account.requester_id, "Planning: upgrade to 17.2 on Monday", "Heads-up on our upgrade.",
        priority="normal", organization_id=account.organization_id)
    store.add_brief(Brief(
        ticket_id=ticket_id, organization_id=account.organization_id, organization="Acme Corp",
        author="Giulia Verdi", planned="Upgrade to 17.2 with a Geo failover test",
        when=START - timedelta(hours=2), url=f"{sandbox.url}/agent/tickets/{ticket_id}",
        filed_at=START - timedelta(days=1)))


class Timeline:
    """Prints what each pass changed: comments, priorities, pages, GitLab issues and Slack,
    once each."""

    def __init__(self, out: TextIO, sandbox: Sandbox, store: Store,
                 clock: Clock, account: Account, frt_channel: str) -> None:
        self.out, self.sandbox, self.store, self.clock = out, sandbox, store, clock
        self.account = account
        self.frt_channel = frt_channel
        self.seen: set[int] = set()
        self.seen_slack: set[str] = set()
        self.journal_read = 0
        self.threads: dict[str, int] = {}  # thread ts -> ticket id
        self.priorities: dict[int, str] = {}
        self.names = {account.slack_manager_id: "Marco Bianchi",
                      account.slack_ase_id: "Giulia Verdi",
                      account.slack_agent_id: "Francesca Rossi",
                      account.americas_group_id: "support-team-americas"}

    def note(self, text: str) -> None:
        print(f"{self.clock.now():%H:%M}  {text}", file=self.out)

    def catch_up(self) -> None:
        self._zendesk_lines()
        self._journal_lines()
        self._slack_lines()

    def _zendesk_lines(self) -> None:
        steps = {e.comment_id: e.step for e in self.store.journal()
                 if e.outcome == "posted" and e.comment_id}
        for ticket in sorted(self.sandbox.zendesk.tickets(), key=lambda t: t["id"]):
            if ticket["priority"] not in ("urgent", "high") and ticket["id"] not in \
                    self.priorities:
                continue
            for comment in self.sandbox.zendesk.comments(ticket["id"])[1:]:
                if comment["id"] in self.seen:
                    continue
                self.seen.add(comment["id"])
                author = self.sandbox.zendesk.user(comment["author_id"])
                step = steps.get(comment["id"], "comment")
                visibility = "public" if comment["public"] else "internal"
                print(f"{_clock(comment['created_at'])}  #{ticket['id']:<3} zendesk      "
                      f"{step:<12} {visibility:<8} {author['name']}: "
                      f"{summary_line(comment['body'], 60)}", file=self.out)
            previous = self.priorities.get(ticket["id"])
            if previous and previous != ticket["priority"]:
                print(f"{_clock(ticket['updated_at'])}  #{ticket['id']:<3} zendesk      "
                      f"priority {previous} -> {ticket['priority']}", file=self.out)
            self.priorities[ticket["id"]] = ticket["priority"]

    def _journal_lines(self) -> None:
        """What the worker did in PagerDuty and GitLab (its journal says)."""
        journal = self.store.journal()
        for entry in journal[self.journal_read:]:
            if entry.actor in ("PagerDuty", "GitLab"):
                print(f"{entry.at:%H:%M}  #{entry.ticket_id:<3} {entry.actor.lower():<12} "
                      f"{entry.step}: {entry.detail}", file=self.out)
        self.journal_read = len(journal)

    def _slack_lines(self) -> None:
        """The Slack thread's messages, as a person reading the channel would see them."""
        messages = [(m, "slack channel") for m in
                    self.sandbox.slack.messages(self.account.self_managed_channel)]
        messages += [(m, "slack #frt") for m in self.sandbox.slack.messages(self.frt_channel)]
        for message, channel in sorted(messages, key=lambda m: float(m[0]["ts"])):
            if message["ts"] in self.seen_slack:
                continue
            self.seen_slack.add(message["ts"])
            when = datetime.fromtimestamp(float(message["ts"]), tz=UTC)
            parent = message.get("thread_ts") or message["ts"]
            match = re.search(r"/agent/tickets/(\d+)\|", message["text"])
            if match and parent == message["ts"]:
                self.threads[parent] = int(match.group(1))
            where = "slack thread" if parent != message["ts"] else channel
            print(f"{when:%H:%M}  #{self.threads.get(parent, 0):<3} {where:<12} "
                  f"{self._readable(message['text'])}", file=self.out)

    def _readable(self, text: str, width: int = 90) -> str:
        text = re.sub(r"<[@!](?:subteam\^)?([US]\w+)>",
                      lambda m: "@" + self.names.get(m.group(1), m.group(1)), text)
        text = re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text)
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        return text if len(text) <= width else text[:width - 1] + "…"


def _clock(stamp: str) -> str:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M")


WIDTH = 100  # the demo's output fits a terminal of this many columns


def fit(line: str) -> str:
    """A line wider than WIDTH goes on, indented, on the next lines."""
    if len(line) <= WIDTH:
        return line
    return textwrap.fill(line, WIDTH, subsequent_indent=CONTINUED, replace_whitespace=False)


CONTINUED = " " * 7  # under the timeline's time column


class FittedStream:
    """Writes lines no wider than WIDTH: a longer one goes on, indented, on the next lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write("\n".join(fit(line) for line in text.split("\n")))

    def flush(self) -> None:
        self.stream.flush()


def _verdict(out: TextIO, scenario: Scenario, sandbox: Sandbox, store: Store,
             tickets: dict[str, int], account: Account) -> int:
    print("\nWhere each emergency ended:", file=out)
    failures = 0
    for expected in sorted(scenario.expectations, key=lambda e: tickets.get(e.ticket, 0)):
        if expected.ticket not in tickets:
            failures += 1
            print(f"  the {expected.ticket} customer's ticket was never filed: the night ended "
                  "first  UNEXPECTED", file=out)
            continue
        ticket_id = tickets[expected.ticket]
        ended = _ending(sandbox, store, ticket_id, account)
        wrong = [(what, want, got) for what, want, got in _compare(expected, ended)
                 if want != got]
        failures += bool(wrong)
        print(f"  #{ticket_id:<3} {ended.state:<15} {ended.priority:<7} acknowledged by "
              f"{ended.acknowledged_by:<9} public: {ended.public_messages}  "
              f"threads: {ended.threads}  manager pages: {ended.manager_pages}  "
              f"{'UNEXPECTED' if wrong else 'ok'}", file=out)
        for what, want, got in wrong:
            print(f"{CONTINUED}{what}: expected {want}, got {got}", file=out)
    if failures:
        print(f"\n{failures} emergenc{'y' if failures == 1 else 'ies'} did not end as the "
              "runbook says", file=out)
        return 1
    print("\nEvery message was posted exactly once, on time.", file=out)
    return 0


@dataclass(frozen=True)
class Ending:
    """Where one emergency ended, read from the sandbox and the worker's journal."""

    state: str
    priority: str
    acknowledged_by: str  # who posted the first public agent comment, as in Expectation
    public_messages: int
    closed_tag: bool
    threads: int
    manager_pages: int
    issues: int  # GitLab's Emergency Runbook issues for it
    issues_closed: int


def _ending(sandbox: Sandbox, store: Store, ticket_id: int, account: Account) -> Ending:
    authors = {account.admin_id: "team", account.agent_id: "francesca",
               account.second_agent_id: "ravi"}
    ticket = sandbox.zendesk.ticket(ticket_id)
    public = [c for c in sandbox.zendesk.public_comments(ticket_id) if c["author_id"] in authors]
    tracked = store.tracked_ticket(ticket_id)
    threads = [m for m in sandbox.slack.messages(account.self_managed_channel)
               if f"/agent/tickets/{ticket_id}|" in m["text"]
               and m.get("thread_ts") in (None, m["ts"])]
    manager_pages = [i for i in sandbox.pagerduty.incidents()
                     if i["incident_key"] == f"zendesk-{ticket_id}-manager"]
    issues = [i for i in sandbox.gitlab.issues(account.gitlab_project)
              if i["title"].startswith(f"Emergency: Zendesk #{ticket_id} ")]
    return Ending(state=tracked.state if tracked else "untracked", priority=ticket["priority"],
                  acknowledged_by=authors[public[0]["author_id"]] if public else "nobody",
                  public_messages=len(public), closed_tag=CLOSED_TAG in ticket["tags"],
                  threads=len(threads), manager_pages=len(manager_pages), issues=len(issues),
                  issues_closed=sum(i["state"] == "closed" for i in issues))


def _compare(expected: Expectation, ended: Ending) -> list[tuple[str, object, object]]:
    """(what, expected, what happened) for everything the runbook promises."""
    return [("state", expected.state, ended.state),
            ("priority", expected.priority, ended.priority),
            ("acknowledged by", expected.acknowledged_by, ended.acknowledged_by),
            ("public messages by agents", expected.public_messages, ended.public_messages),
            (f"tag {CLOSED_TAG}", expected.priority == "high", ended.closed_tag),
            ("Slack threads", 1, ended.threads),
            ("GitLab issues", 1, ended.issues),
            ("GitLab issues closed", int(expected.priority == "high"), ended.issues_closed),
            ("Support Manager pages", int(expected.manager_paged), ended.manager_pages)]
