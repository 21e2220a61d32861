"""Random schedules of two workers, people, time and faults against the sandbox's Zendesk, with
the promises to the customer checked after every step (hypothesis, stateful).

What the customer sees is read from the sandbox's own audits, independently of the worker's
parsing: every public comment of the API user is classified by its text.

CI runs a few hundred examples; thousands:
    EMERGENCY_PROPERTY_EXAMPLES=3000 python -m pytest tests/test_property_record.py
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.errors import Unreachable
from automation.sandbox import Account, Sandbox, seed_account
from automation.store import MEMORY
from automation.worker import Worker
from tests.conftest import sandbox_worker

EXAMPLES = int(os.environ.get("EMERGENCY_PROPERTY_EXAMPLES", "200"))
PUT_TICKET = r"/api/v2/tickets/\d+\.json"
KINDS = {"join our bridge": "ack", "following up": "follow-up", "HIGH priority": "close"}


def kind_of(body: str) -> str | None:
    return next((kind for text, kind in KINDS.items() if text in body), None)


class Emergencies(RuleBasedStateMachine):
    """Two workers (each its own state, in memory), customers, agents, time jumps and faults."""

    tickets = Bundle("tickets")

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.sandbox = Sandbox(clock=self.clock).start()
        self.account: Account = seed_account(self.sandbox)
        self.workers = [self._worker(), self._worker()]
        self.partner = self.sandbox.zendesk.add_user("Pat Partner", "pat@partner.example",
                                                     "agent")

    def _worker(self) -> Worker:
        # Each worker's state is its own, and a restart starts it empty: in memory, the same
        # as a new file for each, at a sixth of the cost (the file itself: tests/test_store.py).
        return sandbox_worker(self.sandbox, self.account, self.clock, Path(MEMORY),
                              workflow=WorkflowConfig(bridge_url="https://bridge.example/p"))

    def teardown(self) -> None:
        if not hasattr(self, "sandbox"):
            return
        try:
            self._every_live_emergency_gets_its_acknowledgement()
        finally:
            self.sandbox.stop()

    # --- people ----------------------------------------------------------------------------

    @rule(target=tickets, requester=st.sampled_from(["customer", "partner"]))
    def new_emergency(self, requester: str) -> int:
        who = self.account.requester_id if requester == "customer" else self.partner
        return self.sandbox.zendesk.create_ticket(
            who, "Production down", "Nothing works.", priority="urgent",
            organization_id=self.account.organization_id, cc_ids=[self.account.cc_id])

    @rule(ticket=tickets, who=st.sampled_from(["requester", "cc", "agent"]),
          public=st.booleans())
    def comment(self, ticket: int, who: str, public: bool) -> None:
        if self._status(ticket) == "closed":
            return
        author = {"requester": self._requester(ticket), "cc": self.account.cc_id,
                  "agent": self.account.agent_id}[who]
        self.sandbox.zendesk.add_comment(ticket, author, f"A word from the {who}",
                                         public=public or who != "agent")

    @rule(ticket=tickets)
    def macro_sets_tags(self, ticket: int) -> None:
        if self._status(ticket) != "closed":
            self.sandbox.zendesk.set_tags(ticket, ["set_by_macro"], self.account.agent_id)

    @rule(ticket=tickets, priority=st.sampled_from(["high", "normal", "urgent"]))
    def set_priority(self, ticket: int, priority: str) -> None:
        if self._status(ticket) != "closed":
            self.sandbox.zendesk.set_priority(ticket, priority, self.account.agent_id)

    @rule(ticket=tickets, status=st.sampled_from(["solved", "open"]))
    def set_status(self, ticket: int, status: str) -> None:
        if self._status(ticket) != "closed":
            self.sandbox.zendesk.set_status(ticket, status, self.account.agent_id)

    @rule(target=tickets, ticket=tickets)
    def merge_a_duplicate_in(self, ticket: int) -> int:
        duplicate = self.new_emergency("customer")
        if self._status(ticket) != "closed":
            self.sandbox.zendesk.merge(ticket, [duplicate], self.account.agent_id,
                                       target_public=True)
        return duplicate

    @rule(target=tickets, ticket=tickets)
    def follow_up_of_a_closed_ticket(self, ticket: int) -> int:
        if self._status(ticket) != "closed":
            self.sandbox.zendesk.set_status(ticket, "solved", self.account.agent_id)
            self.sandbox.zendesk.close(ticket)
        return self.sandbox.zendesk.create_follow_up(ticket, "Down again!", priority="urgent")

    # --- time, workers, faults ---------------------------------------------------------------

    @rule(seconds=st.sampled_from([1, 2, 30, 60, 60, 300, 900]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule(n=st.sampled_from([0, 1]))
    def a_worker_passes(self, n: int) -> None:
        run_pass(self.workers[n])

    @rule()
    def both_workers_pass_at_once(self) -> None:
        threads = [threading.Thread(target=run_pass, args=(w,)) for w in self.workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @rule(n=st.sampled_from([0, 1]))
    def a_worker_restarts_without_its_state(self, n: int) -> None:
        self.workers[n].close()
        self.workers[n] = self._worker()

    @rule(fault=st.sampled_from(["503 after applying", "dropped after applying", "409",
                                 "429 storm", "customer writes during our write"]),
          ticket=tickets)
    def a_fault(self, fault: str, ticket: int) -> None:
        faults = self.sandbox.faults
        if fault == "503 after applying":
            faults.apply_then_fail("PUT", PUT_TICKET, service="zendesk")
        elif fault == "dropped after applying":
            faults.apply_then_drop("PUT", PUT_TICKET, service="zendesk")
        elif fault == "409":
            faults.server_error("PUT", PUT_TICKET, 409, service="zendesk")
        elif fault == "429 storm":
            faults.rate_limit("*", "/api/v2/", retry_after=5, times=4, service="zendesk")
        elif self._status(ticket) != "closed":
            faults.interleave_comment(ticket, self._requester(ticket), "Are you there?")

    # --- the promises --------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "sandbox"))
    @invariant()
    def each_message_once_and_none_after_the_customer_answered(self) -> None:
        for ticket in self.sandbox.zendesk.tickets():
            check_ticket(self.sandbox, self.account, ticket["id"])

    def _every_live_emergency_gets_its_acknowledgement(self) -> None:
        """With the faults gone, every live emergency has contact after the next pass; or,
        when it changed in the very second of one of our writes (Zendesk's updated_at cannot
        show that), after its next due step (15 minutes at most)."""
        self.sandbox.faults.clear()
        for minutes in (1, 16):
            self.clock.advance(timedelta(minutes=minutes))
            self.workers[0].run_once()
        for ticket in self.sandbox.zendesk.tickets():
            if ticket["priority"] == "urgent" and ticket["status"] not in ("solved", "closed"):
                episodes = story(self.sandbox, self.account, ticket["id"])
                assert episodes and episodes[-1]["contact"], f"#{ticket['id']} not acknowledged"
            check_ticket(self.sandbox, self.account, ticket["id"])

    def _status(self, ticket: int) -> str:
        return str(self.sandbox.zendesk.ticket(ticket)["status"])

    def _requester(self, ticket: int) -> int:
        return int(self.sandbox.zendesk.ticket(ticket)["requester_id"])


def run_pass(worker: Worker) -> None:
    """A pass, as `emergency run` makes it: Zendesk unreachable (a 429 storm past the retry
    budget) skips the pass; the next one tries again."""
    try:
        worker.run_once()
    except Unreachable:
        pass


def story(sandbox: Sandbox, account: Account, ticket_id: int) -> list[dict[str, Any]]:
    """The ticket's emergencies as its audits tell them, in order: what we said in each, and
    what happened around it. Read from the sandbox's JSON, not through the worker's parser."""
    ticket = sandbox.zendesk.ticket(ticket_id)
    customers = {ticket["requester_id"], account.cc_id}
    episodes: list[dict[str, Any]] = []
    status = None
    for audit in sandbox.zendesk.audits(ticket_id):
        ours = audit["via"]["channel"] == "api"  # the workers; people act in the UI
        if ours and status in ("solved", "closed"):
            raise AssertionError(f"#{ticket_id}: we wrote on a {status} ticket: {audit}")
        for event in audit["events"]:
            if event.get("field_name") == "priority" and event.get("value") == "urgent":
                episodes.append({"said": [], "contact": False, "replied": False})
            if event.get("field_name") == "status":
                status = event.get("value")
        if not episodes:
            continue
        check_audit(audit, episodes[-1], ours, customers, ticket_id)
    return episodes


def check_audit(audit: dict[str, Any], episode: dict[str, Any], ours: bool,
                customers: set[int], ticket_id: int) -> None:
    system = (audit["via"].get("source") or {}).get("rel") == "merge"
    for event in audit["events"]:
        if event["type"] != "Comment" or not event["public"] or system:
            continue
        author = event["author_id"]
        kind = kind_of(event["body"]) if ours else None
        if kind is not None:
            assert kind not in episode["said"], f"#{ticket_id}: a second {kind}"
            assert not (kind == "ack" and episode["contact"]), \
                f"#{ticket_id}: an acknowledgement after contact"
            assert not (kind != "ack" and episode["replied"]), \
                f"#{ticket_id}: {kind} after the customer answered"
            episode["said"].append(kind)
            episode["contact"] = True
        elif author in customers:
            episode["replied"] = episode["replied"] or episode["contact"]
        else:
            episode["contact"] = True
    lowered = any(e.get("field_name") == "priority" and e.get("value") == "high"
                  for e in audit["events"])
    if ours and lowered:
        assert any(e["type"] == "Comment" and kind_of(e["body"]) == "close"
                   for e in audit["events"]), f"#{ticket_id}: HIGH without the bridge closed"


def check_ticket(sandbox: Sandbox, account: Account, ticket_id: int) -> None:
    story(sandbox, account, ticket_id)


Emergencies.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_emergencies = Emergencies.TestCase
