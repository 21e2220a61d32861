"""End to end: the real worker (zenpy, requests) against the sandbox over HTTP on 127.0.0.1.

Every fault the sandbox can inject, and two workers at once, with the exact number of
customer-visible comments asserted each time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from automation.workflow import CLOSED_TAG
from tests.conftest import fill_the_disk, play_together, sandbox_worker

BRIDGE = "https://bridge.example.com/e2e"
PUT_TICKET = r"/api/v2/tickets/\d+\.json"


def worker_for(sandbox: Sandbox, clock: FakeClock, state: Path) -> Worker:
    return sandbox_worker(sandbox, None, clock, state, workflow=WorkflowConfig(bridge_url=BRIDGE),
                          zendesk={"max_retry_seconds": 120})


@pytest.fixture
def worker(sandbox: Sandbox, clock: FakeClock, tmp_path: Path) -> Worker:
    return worker_for(sandbox, clock, tmp_path / "state.sqlite3")


def new_emergency(sandbox: Sandbox, account: Account, subject: str = "Production down") -> int:
    return sandbox.zendesk.create_ticket(account.requester_id, subject, "Nothing works.",
                                         priority="urgent",
                                         organization_id=account.organization_id)


def worker_messages(sandbox: Sandbox, account: Account, ticket_id: int) -> list[str]:
    return [c["body"] for c in sandbox.zendesk.public_comments(ticket_id)
            if c["author_id"] == account.admin_id]


def play(worker: Worker, clock: FakeClock, minutes: int) -> None:
    """One pass a minute for `minutes` simulated minutes."""
    for _ in range(minutes):
        worker.run_once()
        clock.advance(timedelta(minutes=1))


def assert_full_lifecycle(sandbox: Sandbox, account: Account, ticket_id: int) -> None:
    messages = worker_messages(sandbox, account, ticket_id)
    assert len(messages) == 3
    assert "bridge" in messages[0].lower()
    assert "other arrangements" in messages[1]
    assert "HIGH" in messages[2]
    ticket = sandbox.zendesk.ticket(ticket_id)
    assert ticket["priority"] == "high" and CLOSED_TAG in ticket["tags"]


def test_full_lifecycle_over_http(sandbox: Sandbox, account: Account, worker: Worker,
                                  clock: FakeClock) -> None:
    ticket_id = new_emergency(sandbox, account)

    play(worker, clock, 40)

    assert_full_lifecycle(sandbox, account, ticket_id)
    times = [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00"))
             for c in sandbox.zendesk.public_comments(ticket_id)
             if c["author_id"] == account.admin_id]
    # Each step lands at the first one-minute pass after its due time, never before it.
    for earlier, later in zip(times, times[1:], strict=False):
        assert timedelta(minutes=15) <= later - earlier < timedelta(minutes=16)


def test_handle_ticket_acts_on_that_ticket_alone_as_a_pass_would(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    named = new_emergency(sandbox, account, "Production down")
    other = new_emergency(sandbox, account, "Also down")

    report = worker.handle_ticket(named)

    assert [(r.ticket_id, r.step) for r in report.posted] == [(named, "acknowledge")]
    assert len(worker_messages(sandbox, account, named)) == 1
    assert worker_messages(sandbox, account, other) == []
    assert worker.handle_ticket(named).posted == []  # handled again: nothing twice
    assert worker.store.tracked()[named].state == "awaiting-customer"


@pytest.mark.parametrize("state", ["full disk", "corrupt file"])
def test_customers_steps_go_out_whatever_the_state_file_does(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        state: str) -> None:
    path = tmp_path / "state.sqlite3"
    if state == "corrupt file":
        path.write_bytes(b"\x00garbage" * 500)
    worker = worker_for(sandbox, clock, path)
    if state == "full disk":
        fill_the_disk(worker.store)
    first = new_emergency(sandbox, account, "Production down")
    second = new_emergency(sandbox, account, "Also down")

    report = worker.run_once()
    play(worker, clock, 40)

    assert_full_lifecycle(sandbox, account, first)
    assert_full_lifecycle(sandbox, account, second)
    assert report.ok is (state == "corrupt file")  # a full disk is said on every pass
    assert (report.state_problem is None) is (state == "corrupt file")
    steps = [e.step for e in worker.store.journal(first) if e.outcome == "posted"]
    assert steps == ["acknowledge", "follow-up", "close"]


def test_customer_reply_over_http_stops_the_timers(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = new_emergency(sandbox, account)
    play(worker, clock, 3)
    sandbox.zendesk.add_comment(ticket_id, account.cc_id, "On the bridge now", public=True)

    play(worker, clock, 40)

    assert len(worker_messages(sandbox, account, ticket_id)) == 1
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"


def test_idle_passes_cost_one_listing_request(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    for n in range(5):
        new_emergency(sandbox, account, f"Emergency {n}")
    play(worker, clock, 2)
    sandbox.clear_requests()

    play(worker, clock, 5)

    assert [(r.method, r.path) for r in sandbox.requests] == [("GET", "/api/v2/search.json")] * 5


@pytest.mark.parametrize("arm", [
    pytest.param(lambda s: s.faults.rate_limit("GET", "/api/v2/search", retry_after=30,
                                               times=2), id="429-on-listing"),
    pytest.param(lambda s: s.faults.rate_limit("PUT", PUT_TICKET_RE, retry_after=10),
                 id="429-on-write"),
    pytest.param(lambda s: s.faults.server_error("GET", "/comments", status=502, times=3),
                 id="502-on-read"),
    pytest.param(lambda s: s.faults.server_error("PUT", PUT_TICKET_RE, status=503),
                 id="503-before-write"),
    pytest.param(lambda s: s.faults.apply_then_fail("PUT", PUT_TICKET_RE, status=503),
                 id="503-after-write-applied"),
    pytest.param(lambda s: s.faults.apply_then_drop("PUT", PUT_TICKET_RE),
                 id="dropped-after-write-applied"),
    pytest.param(lambda s: s.faults.drop("PUT", PUT_TICKET_RE), id="dropped-before-write"),
    pytest.param(lambda s: s.faults.drop("GET", "/api/v2/tickets/", times=2),
                 id="dropped-read"),
    pytest.param(lambda s: s.faults.latency("*", "/api/v2/", seconds=0.05, times=3),
                 id="latency"),
])
@pytest.mark.sockets  # a dropped line and a late answer as urllib3 sees them
def test_each_fault_on_every_step_causes_no_duplicate_and_no_missed_step(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock, arm) -> None:
    ticket_id = new_emergency(sandbox, account)
    for _ in range(3):  # the fault hits the acknowledgement, the follow-up and the close
        arm(sandbox)
        play(worker, clock, 15)
    play(worker, clock, 5)

    assert_full_lifecycle(sandbox, account, ticket_id)


def test_write_answered_503_after_it_applied_is_confirmed_and_journaled(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    ticket_id = new_emergency(sandbox, account)
    sandbox.faults.apply_then_fail("PUT", PUT_TICKET_RE, status=503)

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"] and report.failed == []
    outcomes = [(e.step, e.outcome) for e in worker.store.journal(ticket_id)
                if e.step == "acknowledge"]
    assert outcomes == [("acknowledge", "uncertain"), ("acknowledge", "posted")]
    assert len(worker_messages(sandbox, account, ticket_id)) == 1


def test_agent_comment_between_read_and_write_means_no_acknowledgement(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = new_emergency(sandbox, account)
    sandbox.faults.interleave_comment(ticket_id, account.agent_id,
                                      "Hi, Francesca here, calling you now.")

    play(worker, clock, 10)

    assert worker_messages(sandbox, account, ticket_id) == []
    agent_public = [c for c in sandbox.zendesk.public_comments(ticket_id)
                    if c["author_id"] == account.agent_id]
    assert len(agent_public) == 1
    play(worker, clock, 10)  # contact was the agent's: the follow-up counts from it
    assert len(worker_messages(sandbox, account, ticket_id)) == 1


def test_customer_reply_between_read_and_write_prevents_the_close(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = new_emergency(sandbox, account)
    play(worker, clock, 30)  # acknowledgement and follow-up
    sandbox.faults.interleave_comment(ticket_id, account.requester_id, "Here! Joining now.")

    play(worker, clock, 5)

    assert len(worker_messages(sandbox, account, ticket_id)) == 2
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"


def test_two_workers_at_once_post_every_message_exactly_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    workers = [worker_for(sandbox, clock, tmp_path / f"worker-{n}.sqlite3") for n in (1, 2)]
    tickets = [new_emergency(sandbox, account, f"Emergency {n}") for n in range(4)]
    sandbox.faults.latency("PUT", PUT_TICKET_RE, seconds=0.02, times=6)  # widen the race

    play_together(workers, clock, 40)

    for ticket_id in tickets:
        assert_full_lifecycle(sandbox, account, ticket_id)
    conflicts = [e for w in workers for e in w.store.journal() if e.outcome == "conflict"]
    assert conflicts, "the two workers never raced: the test proves nothing"


def test_sandbox_rejects_what_zendesk_rejects(sandbox: Sandbox, account: Account) -> None:
    ticket_id = new_emergency(sandbox, account)
    url = f"{sandbox.url}/api/v2/tickets/{ticket_id}.json"
    ticket = sandbox.zendesk.ticket(ticket_id)

    shouting = requests.put(url, auth=sandbox.auth, timeout=5, json={"ticket": {
        "priority": "HIGH", "safe_update": True, "updated_stamp": ticket["updated_at"]}})
    stale = requests.put(url, auth=sandbox.auth, timeout=5, json={"ticket": {
        "priority": "high", "safe_update": True, "updated_stamp": "2020-01-01T00:00:00Z"}})

    assert shouting.status_code == 422
    assert stale.status_code == 409
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"


PUT_TICKET_RE = __import__("re").compile(PUT_TICKET)


def test_ticket_raised_to_urgent_later_gets_the_whole_lifecycle_over_http(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Question", "How do I?",
                                              priority="normal",
                                              organization_id=account.organization_id)
    clock.advance(timedelta(hours=3))
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "Here is how.", public=True)
    clock.advance(timedelta(days=1))
    sandbox.zendesk.set_priority(ticket_id, "urgent", account.agent_id)

    play(worker, clock, 40)

    assert_full_lifecycle(sandbox, account, ticket_id)


def test_urgent_again_after_the_bridge_closed_starts_a_new_lifecycle(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = new_emergency(sandbox, account)
    play(worker, clock, 40)
    assert_full_lifecycle(sandbox, account, ticket_id)
    clock.advance(timedelta(days=1))
    sandbox.zendesk.set_priority(ticket_id, "urgent", account.agent_id)

    play(worker, clock, 40)

    assert len(worker_messages(sandbox, account, ticket_id)) == 6
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "high"


def test_past_the_search_cap_every_emergency_is_listed_and_acknowledged(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    # Zendesk's search answers 422 past its 1,000th result: 1,001 emergencies, an hour apart
    # in tens, are read in windows of creation time.
    tickets = []
    for n in range(1001):
        if n % 10 == 0:
            clock.advance(timedelta(seconds=1))
        tickets.append(sandbox.zendesk.create_ticket(
            account.requester_id, f"Down {n}", "Nothing works.", priority="urgent"))
    sandbox.clear_requests()

    listed = worker.zendesk.find_emergencies(worker.query)

    assert sorted(t.id for t in listed) == sorted(tickets)
    searches = [r for r in sandbox.requests if r.path.endswith("/search.json")]
    assert len(searches) <= 12  # 1,001 results: about one request per 100
    report = worker.run_once()
    assert report.listed == 1001 and report.ok
    assert all(sandbox.zendesk.public_comments(t) for t in (tickets[0], tickets[-1]))
    assert len([r for r in report.posted if r.step == "acknowledge"]) == 1001


def test_one_emergency_costs_three_writes_and_eight_reads_from_ack_to_bridge_closed() -> None:
    from benchmarks.lifecycle import lifecycle

    counts = lifecycle(passes=40)

    assert counts["write"] == 3
    assert counts["read"] <= 8, counts
