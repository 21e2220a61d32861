"""Zendesk's ticket-update budget: 100 a minute for the whole account, people included, and 30
per ticket in 10 minutes. The worker keeps to its share so a burst of emergencies neither
gets it answered 429 nor locks the agents out of saving their tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from automation.clock import FakeClock, TokenBucket
from automation.config import WorkflowConfig
from automation.errors import BudgetSpent, WriteUncertain
from automation.sandbox import Account, Sandbox
from automation.sandbox.zendesk import ApiError
from automation.zendesk import Zendesk
from tests.conftest import (
    BRIDGE,
    TOKEN,
    bot_comments,
    emergency_ticket,
    make_worker,
    sandbox_worker,
)

ACK = "join our bridge"


def urgent_tickets(sandbox: Sandbox, account: Account, count: int) -> list[int]:
    return [emergency_ticket(sandbox, account, f"Down {n}") for n in range(count)]


def acknowledgements(sandbox: Sandbox, account: Account, ticket_id: int) -> list[datetime]:
    """When the worker's acknowledgements were posted on the ticket."""
    return [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00"))
            for c in sandbox.zendesk.public_comments(ticket_id)
            if c["author_id"] == account.admin_id and ACK in c["body"]]


def test_the_sandbox_answers_429_once_the_account_has_spent_its_updates(
        sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    # given an account allowed 3 updates a minute, one of them spent by a person's save
    sandbox.zendesk.limit_updates(per_minute=3)
    ticket_id = emergency_ticket(sandbox, account, priority="normal")
    sandbox.zendesk.set_tags(ticket_id, ["vip"], author_id=account.agent_id)

    # when the API updates the ticket three times in a second
    def put() -> requests.Response:
        return requests.put(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json",
                            auth=sandbox.auth, timeout=5,
                            json={"ticket": {"comment": {"body": "x", "public": False}}})
    answers = [put(), put(), put()]

    # then the third is refused with Retry-After, as is a person's save, until a minute passed
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "60"
    with pytest.raises(ApiError) as refused:
        sandbox.zendesk.add_comment(ticket_id, account.agent_id, "saved", public=False)
    assert refused.value.status == 429
    clock.advance(timedelta(seconds=60))
    assert put().status_code == 200


def test_a_person_saving_every_six_seconds_is_refused_once_the_budget_is_spent(
        sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    # given an account allowed 10 updates a minute, and an agent saving a ticket every 6 s
    sandbox.zendesk.limit_updates(per_minute=10)
    ticket_id = emergency_ticket(sandbox, account, priority="normal")
    person = sandbox.zendesk.person_saving(account.agent_id, [ticket_id], every_seconds=6)

    # when an app spends 5 updates in the first second
    clock.advance(timedelta(seconds=1))
    for _ in range(5):
        sandbox.zendesk.set_tags(ticket_id, ["x"] if _ % 2 else ["y"])
    clock.advance(timedelta(seconds=60))
    sandbox.zendesk.catch_up()

    # then the person's saves past the budget, the last five of that minute, are refused
    assert (person.saved, person.refused) == (5, 5)
    assert person.refused_at[0] == datetime(2026, 1, 5, 9, 0, 36, tzinfo=UTC)


def test_the_bucket_paces_writes_and_a_429_empties_it(clock: FakeClock) -> None:
    bucket = TokenBucket(clock, per_minute=60)
    assert bucket.take() == 0  # one saved up
    assert bucket.take() == pytest.approx(1.0)
    bucket.empty_until(clock.now() + timedelta(seconds=10))
    assert bucket.take() == pytest.approx(11.0)


def test_a_ticket_past_thirty_updates_in_ten_minutes_waits(
        sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    zendesk = Zendesk(sandbox.url, sandbox.email, TOKEN, clock, updates_per_minute=100)
    ticket_id = emergency_ticket(sandbox, account, priority="normal")
    for n in range(30):
        zendesk.update(zendesk.snapshot(ticket_id).ticket, None, [f"t{n}"])
    puts = len([r for r in sandbox.requests if r.method == "PUT"])

    with pytest.raises(BudgetSpent):
        zendesk.update(zendesk.snapshot(ticket_id).ticket, None, ["one-more"])

    assert len([r for r in sandbox.requests if r.method == "PUT"]) == puts  # nothing sent
    clock.advance(timedelta(minutes=10))
    zendesk.update(zendesk.snapshot(ticket_id).ticket, None, ["one-more"])


def test_three_hundred_emergencies_keep_within_the_account_budget(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given an emergency acknowledged 14 minutes ago (its follow-up due in a minute), an
    # account allowed 100 updates a minute, a person saving a ticket every 6 s, and 300 new
    # emergencies
    worker = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    earlier = emergency_ticket(sandbox, account, "Down since this morning")
    clock.advance(timedelta(seconds=30))
    worker.run_once()
    [acknowledged] = acknowledgements(sandbox, account, earlier)
    follow_up_due = acknowledged + timedelta(minutes=15)
    clock.advance(timedelta(minutes=13, seconds=30))
    sandbox.zendesk.limit_updates(per_minute=100)
    theirs = [emergency_ticket(sandbox, account, f"Question {n}", priority="normal")
              for n in range(5)]
    tickets = urgent_tickets(sandbox, account, 300)
    clock.advance(timedelta(seconds=30))
    start = clock.now()
    person = sandbox.zendesk.person_saving(account.agent_id, theirs, every_seconds=6)

    # when the worker passes every minute for six minutes
    while clock.now() < start + timedelta(minutes=6):
        worker.run_once()
        clock.advance(timedelta(minutes=1))
    sandbox.zendesk.catch_up()

    # then each was acknowledged once, within 4 minutes; Zendesk said 429 to the worker at
    # most 3 times and refused the person at most twice, never after those 4 minutes
    posted = {t: acknowledgements(sandbox, account, t) for t in tickets}
    assert {t for t, acks in posted.items() if len(acks) != 1} == set()
    assert max(acks[0] for acks in posted.values()) <= start + timedelta(minutes=4)
    assert len([r for r in sandbox.requests if r.status == 429]) <= 3
    assert person.refused <= 2
    assert all(at <= start + timedelta(minutes=4) for at in person.refused_at)
    assert person.saved >= 55
    assert bot_comments(sandbox, account, theirs[0]) == []
    # and the follow-up that fell due a minute into that pass went out on time
    [follow_up] = [c for c in sandbox.zendesk.public_comments(earlier)
                   if c["author_id"] == account.admin_id and "following up" in c["body"]]
    sent = datetime.fromisoformat(follow_up["created_at"].replace("Z", "+00:00"))
    assert follow_up_due <= sent <= follow_up_due + timedelta(seconds=3)


def test_an_overdue_follow_up_goes_before_a_younger_acknowledgement(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given a ticket listed first (the older) that became urgent a minute ago, and one listed
    # second whose follow-up is five minutes overdue
    worker = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    raised = emergency_ticket(sandbox, account, "Slow dashboards", priority="normal")
    overdue = emergency_ticket(sandbox, account, "Production down")
    clock.advance(timedelta(seconds=30))
    worker.run_once()
    clock.advance(timedelta(minutes=19))
    sandbox.zendesk.set_priority(raised, "urgent", author_id=account.agent_id)
    clock.advance(timedelta(minutes=1))

    # when the worker passes
    worker.run_once()

    # then the overdue follow-up was written first
    writes = [r.path for r in sandbox.requests if r.method == "PUT"]
    assert writes[-2:] == [f"/api/v2/tickets/{overdue}.json", f"/api/v2/tickets/{raised}.json"]
    assert acknowledgements(sandbox, account, raised)


@pytest.mark.parametrize("n", [10, 100])
def test_an_idle_pass_costs_one_listing_page_per_hundred_where_a_naive_poller_reads_all(
        n: int) -> None:
    from benchmarks.idle import idle_passes, met

    with met(n) as bench:
        ours, naive = idle_passes(bench, passes=2)
        first = bench.first

    assert (ours.requests, ours.writes) == (1, 0)
    assert (naive.requests, naive.writes) == (1 + n, 0)
    # the first pass: one acknowledgement each, paced to 80 a minute, never answered 429
    assert (first.writes, first.too_many) == (n, 0)
    assert first.peak_per_minute == min(n, 80)


def test_an_idle_tick_process_reads_the_listing_alone() -> None:
    """As from cron: the state file has the users, the organization and the API user."""
    from benchmarks.idle import met
    from benchmarks.ticks import idle_ticks

    with met(10) as bench:
        cost = idle_ticks(bench, runs=2, naive_runs=1)

    assert cost.requests == 1


def test_a_429_on_a_write_spends_the_budget_until_retry_after_has_passed(
        sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    zendesk = Zendesk(sandbox.url, sandbox.email, TOKEN, clock, updates_per_minute=60)
    ticket_id = emergency_ticket(sandbox, account, priority="normal")
    zendesk.update(zendesk.snapshot(ticket_id).ticket, None, ["first"])  # the one saved up
    clock.advance(timedelta(seconds=5))  # a write a second: five more saved up since
    sandbox.faults.rate_limit("PUT", f"/api/v2/tickets/{ticket_id}", retry_after=10)
    refused_at = clock.now()
    with pytest.raises(WriteUncertain):
        zendesk.update(zendesk.snapshot(ticket_id).ticket, None, ["second"])

    zendesk.update(zendesk.snapshot(ticket_id).ticket, None, ["third"])

    # Retry-After, then one write's interval: what was saved up before the 429 is gone
    assert clock.now() - refused_at == timedelta(seconds=11)


def test_the_worker_paces_its_writes_to_the_configured_updates_per_minute(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    tickets = [emergency_ticket(sandbox, account, subject=f"Down {n}") for n in range(4)]
    clock.advance(timedelta(seconds=3))
    worker = sandbox_worker(sandbox, None, clock, tmp_path / "state.sqlite3",
                            workflow=WorkflowConfig(bridge_url=BRIDGE),
                            zendesk={"updates_per_minute": 6})

    worker.run_once()

    acknowledged = [datetime.fromisoformat(sandbox.zendesk.public_comments(t)[-1]["created_at"])
                    for t in tickets]
    gaps = [b - a for a, b in zip(acknowledged, acknowledged[1:], strict=False)]
    assert gaps == [timedelta(seconds=10)] * 3  # one write every 60 / 6 s
