"""The worker's pass against the sandbox's Zendesk: timing, exactly-once, failure handling."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.model import State
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from automation.workflow import ACKNOWLEDGED_TAG, CLOSED_TAG, FOLLOWED_UP_TAG
from tests.conftest import BRIDGE, bot_comments, emergency_ticket, make_worker, ticket_puts


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def filed_a_minute_ago(sandbox: Sandbox, account: Account, clock: FakeClock) -> int:
    """An emergency the worker first sees a minute after it was filed.

    Zendesk stamps a write made in the second of the last update one second later; a minute
    apart, the acknowledgement lands at the pass's own time and the timers run from there.
    """
    ticket_id = emergency_ticket(sandbox, account)
    clock.advance(minutes(1))
    return ticket_id


def test_new_emergency_is_acknowledged_at_once_with_the_bridge(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)

    report = worker.run_once()

    assert [(r.ticket_id, r.step) for r in report.posted] == [(1, "acknowledge")]
    [ack] = bot_comments(sandbox, account, 1)
    assert BRIDGE in ack
    assert ACKNOWLEDGED_TAG in sandbox.zendesk.ticket(1)["tags"]
    assert ticket_puts(sandbox)[0]["ticket"]["comment"]["public"] is True
    assert ticket_puts(sandbox)[0]["ticket"]["safe_update"] is True


def test_no_acknowledgement_when_an_agent_already_made_contact(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)
    sandbox.zendesk.add_comment(1, account.agent_id, "I'm on it, joining the bridge now.")

    report = worker.run_once()

    assert report.posted == []
    assert ticket_puts(sandbox) == []


def test_follow_up_waits_fifteen_minutes_after_contact(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    filed_a_minute_ago(sandbox, account, clock)
    worker.run_once()  # acknowledgement at t0

    clock.advance(minutes(14) + timedelta(seconds=59))
    assert worker.run_once().posted == []

    clock.advance(timedelta(seconds=1))
    report = worker.run_once()

    assert [r.step for r in report.posted] == ["follow-up"]
    follow_up = bot_comments(sandbox, account, 1)[-1]
    assert BRIDGE in follow_up and "other arrangements" in follow_up
    assert "HIGH" in follow_up and "new emergency" in follow_up
    assert FOLLOWED_UP_TAG in sandbox.zendesk.ticket(1)["tags"]
    assert sandbox.zendesk.ticket(1)["priority"] == "urgent"


def test_silent_customer_gets_bridge_closed_and_priority_high_in_one_update(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    filed_a_minute_ago(sandbox, account, clock)
    worker.run_once()
    clock.advance(minutes(15))
    worker.run_once()
    clock.advance(minutes(14))
    assert worker.run_once().posted == []

    clock.advance(minutes(1))
    report = worker.run_once()

    assert [r.step for r in report.posted] == ["close"]
    last_put = ticket_puts(sandbox)[-1]["ticket"]
    assert last_put["priority"] == "high"
    assert CLOSED_TAG in last_put["tags"] and "comment" in last_put
    assert sandbox.zendesk.ticket(1)["priority"] == "high"
    assert len(bot_comments(sandbox, account, 1)) == 3


def test_customer_reply_stops_every_timer(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    worker.run_once()
    clock.advance(minutes(5))
    sandbox.zendesk.add_comment(1, account.cc_id, "Joining the call now")  # a CC, role end-user

    for _ in range(6):
        clock.advance(minutes(10))
        worker.run_once()

    assert len(bot_comments(sandbox, account, 1)) == 1
    assert sandbox.zendesk.ticket(1)["priority"] == "urgent"
    assert worker.store.tracked()[1].state == State.ENGAGED


def test_reply_after_follow_up_prevents_the_close(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    filed_a_minute_ago(sandbox, account, clock)
    worker.run_once()
    clock.advance(minutes(15))
    worker.run_once()
    clock.advance(minutes(3))
    sandbox.zendesk.add_comment(1, account.requester_id, "Sorry, was in the datacenter. Joining.")

    clock.advance(minutes(30))
    worker.run_once()

    assert len(bot_comments(sandbox, account, 1)) == 2
    assert sandbox.zendesk.ticket(1)["priority"] == "urgent"


def test_solved_and_non_urgent_tickets_are_never_touched(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, status="solved")
    emergency_ticket(sandbox, account, priority="high")
    emergency_ticket(sandbox, account, priority="normal")

    clock.advance(minutes(60))
    worker.run_once()

    assert ticket_puts(sandbox) == []
    assert [r for r in sandbox.requests if r.method == "PUT"] == []


def test_a_second_pass_writes_nothing_and_reads_only_the_listing(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    for _ in (1, 2, 3):
        emergency_ticket(sandbox, account)
    worker.run_once()
    sandbox.clear_requests()
    puts_before = len(ticket_puts(sandbox))

    clock.advance(minutes(1))
    report = worker.run_once()

    assert report.posted == [] and report.read == 0
    assert len(ticket_puts(sandbox)) == puts_before
    assert [(r.method, r.path) for r in sandbox.requests] == [("GET", "/api/v2/search.json")]


def test_deleted_state_file_causes_no_duplicate(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    filed_a_minute_ago(sandbox, account, clock)
    make_worker(sandbox, clock, tmp_path / "first.sqlite3").run_once()
    clock.advance(minutes(15))
    make_worker(sandbox, clock, tmp_path / "first.sqlite3").run_once()

    clock.advance(minutes(1))
    fresh = make_worker(sandbox, clock, tmp_path / "brand-new.sqlite3")
    report = fresh.run_once()

    assert report.posted == []
    assert len(bot_comments(sandbox, account, 1)) == 2
    assert fresh.store.tracked()[1].state == State.FOLLOWED_UP


def test_human_comment_between_read_and_write_means_no_acknowledgement(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)

    # The agent answers just before the PUT is processed: its stamp is now stale.
    sandbox.faults.interleave_comment(1, account.agent_id, "Hi, I'm here. Calling you now.")

    report = worker.run_once()

    assert report.posted == [] and report.failed == []
    assert bot_comments(sandbox, account, 1) == []
    assert len(ticket_puts(sandbox)) == 1  # the refused one; no second attempt after re-reading
    outcomes = [e.outcome for e in worker.store.journal(1) if e.step == "acknowledge"]
    assert outcomes == ["conflict"]


def test_503_after_zendesk_applied_the_update_causes_no_duplicate(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.apply_then_fail("PUT", "/api/v2/tickets/", status=503)

    report = worker.run_once()

    assert len(bot_comments(sandbox, account, 1)) == 1
    assert len(ticket_puts(sandbox)) == 1
    assert [r.step for r in report.posted] == ["acknowledge"]
    assert report.failed == []


def test_503_before_applying_is_sent_again_after_a_re_read(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=503)

    report = worker.run_once()

    assert len(bot_comments(sandbox, account, 1)) == 1
    assert len(ticket_puts(sandbox)) == 2
    assert [r.step for r in report.posted] == ["acknowledge"]


def test_a_ticket_that_keeps_conflicting_fails_the_step_without_posting(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=409, times=10)

    report = worker.run_once()

    assert bot_comments(sandbox, account, 1) == []
    assert [r.ticket_id for r in report.failed] == [1]
    assert not report.ok


def test_rejected_update_fails_that_ticket_and_others_go_ahead(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", re.compile(r"/api/v2/tickets/1\.json$"), status=422)

    report = worker.run_once()

    assert [r.ticket_id for r in report.failed] == [1]
    assert [r.ticket_id for r in report.posted] == [2]
    assert "HTTP 422" in report.failed[0].detail


def test_two_workers_with_separate_state_post_each_step_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    first = make_worker(sandbox, clock, tmp_path / "a.sqlite3")
    second = make_worker(sandbox, clock, tmp_path / "b.sqlite3")
    emergency_ticket(sandbox, account)

    for _ in range(8):
        first.run_once()
        second.run_once()
        clock.advance(minutes(5))

    assert len(bot_comments(sandbox, account, 1)) == 3
    assert sandbox.zendesk.ticket(1)["priority"] == "high"


def test_journal_records_each_step_with_its_comment_id(
        sandbox: Sandbox, account: Account, worker: Worker) -> None:
    emergency_ticket(sandbox, account)

    worker.run_once()

    [posted] = [e for e in worker.store.journal(1) if e.outcome == "posted"]
    assert posted.step == "acknowledge" and posted.public is True
    assert posted.comment_id == [c["id"] for c in sandbox.zendesk.public_comments(1)
                                 if c["author_id"] == account.admin_id][0]


def test_a_ticket_raised_to_urgent_later_is_acknowledged_despite_an_older_agent_reply(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, priority="normal")
    clock.advance(minutes(60 * 24))
    sandbox.zendesk.add_comment(1, account.agent_id, "We are looking into your question.")
    clock.advance(minutes(60 * 24))
    sandbox.zendesk.set_priority(1, "urgent")  # the customer's production is now down

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
    clock.advance(minutes(14))
    assert worker.run_once().posted == []  # timers run from today's contact, not the old reply


def test_an_agent_reply_after_the_raise_is_contact(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, priority="normal")
    clock.advance(minutes(60))
    sandbox.zendesk.set_priority(1, "urgent")
    clock.advance(minutes(1))
    sandbox.zendesk.add_comment(1, account.agent_id, "I'm on it, calling you.")

    report = worker.run_once()

    assert report.posted == []
    assert worker.store.tracked()[1].state == State.AWAITING_CUSTOMER


def test_urgent_again_after_an_agent_lowered_it_is_a_new_emergency(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    worker.run_once()  # acknowledged
    clock.advance(minutes(5))
    sandbox.zendesk.set_priority(1, "high")  # an agent steps it down by hand
    worker.run_once()
    clock.advance(minutes(60 * 24))
    sandbox.zendesk.set_priority(1, "urgent")  # the next day, production is down again
    clock.advance(minutes(1))  # the worker's pass comes a minute later

    sandbox.clear_requests()
    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
    assert len(bot_comments(sandbox, account, 1)) == 2
    # one write: the acknowledgement, which also clears yesterday's marker tag (a hint; the
    # audits' stamps of yesterday's emergency do not count for today's)
    assert len([r for r in sandbox.requests if r.method == "PUT"]) == 1
    assert sandbox.zendesk.ticket(1)["tags"].count("emergency_acknowledged") == 1
    clock.advance(minutes(14))
    assert worker.run_once().posted == []  # the follow-up counts from today's contact
    clock.advance(minutes(1))
    assert [r.step for r in worker.run_once().posted] == ["follow-up"]


def test_urgent_again_after_a_persons_reply_is_not_stuck(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    worker.run_once()
    sandbox.zendesk.add_comment(1, account.agent_id, "Joining the call")
    sandbox.zendesk.set_priority(1, "normal")
    clock.advance(minutes(60 * 24))
    sandbox.zendesk.set_priority(1, "urgent")

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]


def test_an_old_public_reply_by_the_api_user_is_not_contact_for_a_later_emergency(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    emergency_ticket(sandbox, account, priority="normal")
    # another script's reply, as the API user
    sandbox.zendesk.add_comment(1, account.admin_id, "Thanks, we received your request.")
    clock.advance(minutes(60 * 24))
    sandbox.zendesk.set_priority(1, "urgent")

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
