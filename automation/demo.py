"""`emergency demo`: the real worker against the built-in sandbox, with a readable timeline.

The sandbox's clock runs `speed` times faster than the wall clock, so a 30-minute lifecycle
plays in seconds while the worker reads real timestamps through the real HTTP API.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from automation.chat import Chat
from automation.clock import ScaledClock
from automation.config import DEFAULT_QUERY, SlackConfig, WorkflowConfig
from automation.model import State
from automation.sandbox import Account, Sandbox, seed_account
from automation.slack import Slack
from automation.store import Brief, Store
from automation.templates import Templates, summary_line
from automation.worker import Worker
from automation.workflow import CLOSED_TAG
from automation.zendesk import Zendesk

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LENGTH = timedelta(minutes=34)
POLL = timedelta(minutes=1)
BRIDGE = "https://bridge.example.com/emergency"


@dataclass
class Expectation:
    """What the demo checks at the end, so it can say the lifecycle really happened."""

    ticket: str
    worker_public_comments: int
    priority: str
    state: State


@dataclass
class Scenario:
    name: str
    description: str
    # (minutes after start, what happens) — run against the sandbox as a person would act.
    events: list[tuple[float, Callable[[Sandbox, Account, dict[str, int]], str]]]
    expectations: list[Expectation] = field(default_factory=list)


def _new_ticket(key: str, subject: str, body: str, organization: str = "acme"
                ) -> Callable[[Sandbox, Account, dict[str, int]], str]:
    def act(sandbox: Sandbox, account: Account, tickets: dict[str, int]) -> str:
        org_id = account.organization_id if organization == "acme" else tickets["org:globex"]
        requester = account.requester_id if organization == "acme" else tickets["user:globex"]
        tickets[key] = sandbox.zendesk.create_ticket(requester, subject, body,
                                                     priority="urgent", organization_id=org_id)
        return f"#{tickets[key]} new urgent ticket: {subject}"
    return act


def _customer_replies(key: str, body: str) -> Callable[[Sandbox, Account, dict[str, int]], str]:
    def act(sandbox: Sandbox, account: Account, tickets: dict[str, int]) -> str:
        sandbox.zendesk.add_comment(tickets[key], account.requester_id, body, public=True)
        return f"#{tickets[key]} the customer replies"
    return act


SCENARIOS = {
    "silent": Scenario(
        "silent", "the customer never answers: acknowledgement, follow-up, bridge closed, HIGH",
        [(0, _new_ticket("silent", "Production down: every git push fails with 502",
                         "Since 08:50 no one can push. Our release is blocked."))],
        [Expectation("silent", 3, "high", State.CLOSED_TO_HIGH)],
    ),
    "replies": Scenario(
        "replies", "the customer answers after the acknowledgement: every timer stops",
        [(0.5, _new_ticket("replies", "Geo secondary stopped replicating",
                           "Replication lag keeps growing since the failover test.")),
         (6, _customer_replies("replies", "Thanks, joining the bridge now."))],
        [Expectation("replies", 1, "urgent", State.ENGAGED)],
    ),
    "two-at-once": Scenario(
        "two-at-once", "two customers raise emergencies a minute apart: both handled",
        [(1, _new_ticket("first", "Runners cannot pick up jobs",
                         "All CI pipelines are stuck in pending.", "globex")),
         (2, _new_ticket("second", "Login page returns 500",
                         "Nobody can sign in since the certificate renewal.")),
         (9, _customer_replies("second", "We are on the bridge."))],
        [Expectation("first", 3, "high", State.CLOSED_TO_HIGH),
         Expectation("second", 1, "urgent", State.ENGAGED)],
    ),
}
ALL = "all"


def scenario_names() -> list[str]:
    return [ALL, *SCENARIOS]


def run_demo(out: TextIO, scenario: str = ALL, speed: float = 120.0) -> int:
    """Play the scenario(s); print the timeline; return 0 when every expectation held."""
    chosen = list(SCENARIOS.values()) if scenario == ALL else [SCENARIOS[scenario]]
    clock = ScaledClock(start=START, speed=speed)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        tickets: dict[str, int] = {
            "org:globex": sandbox.zendesk.add_organization("Globex Inc"),
        }
        tickets["user:globex"] = sandbox.zendesk.add_user(
            "Sam Okafor", "sam.okafor@globex.example.com", "end-user", tickets["org:globex"])
        store = Store(Path(tmp) / "demo-state.sqlite3")
        _file_brief(store, sandbox, account)
        zendesk = Zendesk(sandbox.url, sandbox.email, sandbox.token, clock, timeout=10,
                          max_retry_seconds=120)
        settings = WorkflowConfig(bridge_url=BRIDGE, signature="The Support Team",
                                  poll_interval_seconds=POLL.total_seconds())
        templates = Templates()
        slack = Slack(sandbox.slack.token, clock, base_url=sandbox.slack_url)
        chat = Chat(slack, zendesk, store, templates,
                    SlackConfig(default_channel=account.self_managed_channel,
                                url=sandbox.slack_url), clock)
        worker = Worker(zendesk, store, templates, settings, clock, DEFAULT_QUERY, chat=chat)
        timeline = Timeline(out, sandbox, store, clock, account)

        print(f"emergency demo: {', '.join(s.name for s in chosen)} — simulated time runs "
              f"{speed:g}x ({LENGTH.total_seconds() / 60 / speed * 60:.0f} s of wall time)",
              file=out)
        for s in chosen:
            print(f"  {s.name}: {s.description}", file=out)
        print("  an ASE filed a pre-task brief for Acme Corp: their emergencies link it",
              file=out)
        print(file=out)
        events = sorted((offset, act) for s in chosen for offset, act in s.events)
        end = START + LENGTH
        while clock.now() < end:
            now = clock.now()
            while events and START + timedelta(minutes=events[0][0]) <= now:
                _, act = events.pop(0)
                timeline.note(act(sandbox, account, tickets))
            worker.run_once()
            timeline.catch_up()
            timeline.slack_lines()
            clock.sleep(POLL.total_seconds())
        return _verdict(out, chosen, sandbox, store, tickets, account)


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
    """Prints every comment and priority change in the sandbox once, oldest first."""

    def __init__(self, out: TextIO, sandbox: Sandbox, store: Store, clock: ScaledClock,
                 account: Account) -> None:
        self.out, self.sandbox, self.store, self.clock = out, sandbox, store, clock
        self.account = account
        self.seen: set[int] = set()
        self.seen_slack: set[str] = set()
        self.threads: dict[str, int] = {}  # thread ts -> ticket id
        self.priorities: dict[int, str] = {}
        self.names = {account.slack_manager_id: "Marco Bianchi",
                      account.slack_ase_id: "Giulia Verdi",
                      account.slack_agent_id: "Francesca Rossi"}

    def slack_lines(self) -> None:
        """The Slack thread's messages, as a person reading the channel would see them."""
        channel = self.account.self_managed_channel
        for message in self.sandbox.slack.messages(channel):
            if message["ts"] in self.seen_slack:
                continue
            self.seen_slack.add(message["ts"])
            when = datetime.fromtimestamp(float(message["ts"]), tz=UTC)
            parent = message.get("thread_ts") or message["ts"]
            match = re.search(r"/agent/tickets/(\d+)\|", message["text"])
            if match and parent == message["ts"]:
                self.threads[parent] = int(match.group(1))
            where = "slack thread" if parent != message["ts"] else "slack channel"
            print(f"{when:%H:%M}  #{self.threads.get(parent, 0):<3} {where:<21} "
                  f"{self._readable(message['text'])}", file=self.out)

    def _readable(self, text: str, width: int = 90) -> str:
        text = re.sub(r"<@(U\w+)>", lambda m: "@" + self.names.get(m.group(1), m.group(1)), text)
        text = re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text)
        text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        return text if len(text) <= width else text[:width - 1] + "…"

    def note(self, text: str) -> None:
        print(f"{self.clock.now():%H:%M}  {text}", file=self.out)

    def catch_up(self) -> None:
        steps = {e.comment_id: e.step for e in self.store.journal()
                 if e.outcome == "posted" and e.comment_id}
        for ticket in sorted(self.sandbox.zendesk.tickets(), key=lambda t: t["id"]):
            if ticket["priority"] not in ("urgent", "high") and ticket["id"] not in \
                    self.priorities:
                continue
            for comment in self.sandbox.zendesk.comments(ticket["id"]):
                if comment["id"] in self.seen:
                    continue
                self.seen.add(comment["id"])
                author = self.sandbox.zendesk.user(comment["author_id"])
                step = steps.get(comment["id"], "comment")
                visibility = "public" if comment["public"] else "internal"
                first = summary_line(comment["body"], 70)
                print(f"{_clock(comment['created_at'])}  #{ticket['id']:<3} {step:<12} "
                      f"{visibility:<8} {author['name']}: {first}", file=self.out)
            previous = self.priorities.get(ticket["id"])
            if previous and previous != ticket["priority"]:
                print(f"{_clock(ticket['updated_at'])}  #{ticket['id']:<3} {'priority':<12} "
                      f"{'':<8} {previous} -> {ticket['priority']}", file=self.out)
            self.priorities[ticket["id"]] = ticket["priority"]


def _clock(stamp: str) -> str:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%H:%M")


def _verdict(out: TextIO, chosen: list[Scenario], sandbox: Sandbox, store: Store,
             tickets: dict[str, int], account: Account) -> int:
    print("\nWhere each emergency ended:", file=out)
    tracked = store.tracked()
    failures = 0
    for scenario in chosen:
        for expected in scenario.expectations:
            ticket_id = tickets[expected.ticket]
            ticket = sandbox.zendesk.ticket(ticket_id)
            posted = [c for c in sandbox.zendesk.public_comments(ticket_id)
                      if c["author_id"] == account.admin_id]
            state = tracked[ticket_id].state if ticket_id in tracked else "?"
            ok = (len(posted) == expected.worker_public_comments
                  and ticket["priority"] == expected.priority and state == expected.state
                  and (CLOSED_TAG in ticket["tags"]) == (expected.priority == "high"))
            threads = [m for m in sandbox.slack.messages(account.self_managed_channel)
                       if f"/agent/tickets/{ticket_id}|" in m["text"]]
            ok = ok and len(threads) == 1
            failures += not ok
            print(f"  #{ticket_id:<3} {scenario.name:<12} {state:<18} priority "
                  f"{ticket['priority']:<7} {len(posted)} public message(s) from the worker, "
                  f"{len(threads)} Slack thread  {'ok' if ok else 'UNEXPECTED'}", file=out)
    if failures:
        print(f"\n{failures} emergency(ies) did not end as the runbook says", file=out)
        return 1
    print("\nEvery message was posted exactly once, on time.", file=out)
    return 0
