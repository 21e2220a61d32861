"""The worker's pass against a scripted Zendesk: timing, exactly-once, and failure handling."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.model import State
from automation.worker import Worker
from automation.workflow import ACKNOWLEDGED_TAG, CLOSED_TAG, FOLLOWED_UP_TAG
from tests.conftest import BRIDGE, make_worker
from tests.zendesk_double import AGENT, API_USER, CC, REQUESTER, ZendeskDouble


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def bot_comments(double: ZendeskDouble, ticket_id: int) -> list[str]:
    return [c["body"] for c in double.public_comments(ticket_id, author=API_USER)]


def test_new_emergency_is_acknowledged_at_once_with_the_bridge(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)

    report = worker.run_once()

    assert [(r.ticket_id, r.step) for r in report.posted] == [(1, "acknowledge")]
    [ack] = bot_comments(double, 1)
    assert BRIDGE in ack
    assert ACKNOWLEDGED_TAG in double.tickets[1].tags
    assert double.puts[0]["ticket"]["comment"]["public"] is True
    assert double.puts[0]["ticket"]["safe_update"] is True


def test_no_acknowledgement_when_an_agent_already_made_contact(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)
    double.comment(1, AGENT, "I'm on it, joining the bridge now.")

    report = worker.run_once()

    assert report.posted == []
    assert double.puts == []


def test_follow_up_waits_fifteen_minutes_after_contact(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()  # acknowledgement at t0

    clock.advance(minutes(14) + timedelta(seconds=59))
    assert worker.run_once().posted == []

    clock.advance(timedelta(seconds=1))
    report = worker.run_once()

    assert [r.step for r in report.posted] == ["follow-up"]
    follow_up = bot_comments(double, 1)[-1]
    assert BRIDGE in follow_up and "other arrangements" in follow_up
    assert "HIGH" in follow_up and "new emergency" in follow_up
    assert FOLLOWED_UP_TAG in double.tickets[1].tags
    assert double.tickets[1].priority == "urgent"


def test_silent_customer_gets_bridge_closed_and_priority_high_in_one_update(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()
    clock.advance(minutes(15))
    worker.run_once()
    clock.advance(minutes(14))
    assert worker.run_once().posted == []

    clock.advance(minutes(1))
    report = worker.run_once()

    assert [r.step for r in report.posted] == ["close"]
    last_put = double.puts[-1]["ticket"]
    assert last_put["priority"] == "high"
    assert CLOSED_TAG in last_put["tags"] and "comment" in last_put
    assert double.tickets[1].priority == "high"
    assert len(bot_comments(double, 1)) == 3


def test_customer_reply_stops_every_timer(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()
    clock.advance(minutes(5))
    double.comment(1, CC, "Joining the call now")  # a CC, role end-user

    for _ in range(6):
        clock.advance(minutes(10))
        worker.run_once()

    assert len(bot_comments(double, 1)) == 1
    assert double.tickets[1].priority == "urgent"
    assert worker.store.tracked()[1].state == State.ENGAGED


def test_reply_after_follow_up_prevents_the_close(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()
    clock.advance(minutes(15))
    worker.run_once()
    clock.advance(minutes(3))
    double.comment(1, REQUESTER, "Sorry, was in the datacenter. Joining.")

    clock.advance(minutes(30))
    worker.run_once()

    assert len(bot_comments(double, 1)) == 2
    assert double.tickets[1].priority == "urgent"


def test_solved_and_non_urgent_tickets_are_never_touched(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1, status="solved")
    double.create(2, priority="high")
    double.create(3, priority="normal")

    clock.advance(minutes(60))
    worker.run_once()

    assert double.puts == []
    assert [m for m, _ in double.requests if m == "PUT"] == []


def test_a_second_pass_writes_nothing_and_reads_only_the_listing(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    for ticket_id in (1, 2, 3):
        double.create(ticket_id)
    worker.run_once()
    double.requests.clear()
    puts_before = len(double.puts)

    clock.advance(minutes(1))
    report = worker.run_once()

    assert report.posted == [] and report.read == 0
    assert len(double.puts) == puts_before
    assert double.requests == [("GET", "/api/v2/search.json")]


def test_deleted_state_file_causes_no_duplicate(
        double: ZendeskDouble, clock: FakeClock, tmp_path: Path) -> None:
    double.create(1)
    make_worker(clock, tmp_path / "first.sqlite3").run_once()
    clock.advance(minutes(15))
    make_worker(clock, tmp_path / "first.sqlite3").run_once()

    clock.advance(minutes(1))
    fresh = make_worker(clock, tmp_path / "brand-new.sqlite3")
    report = fresh.run_once()

    assert report.posted == []
    assert len(bot_comments(double, 1)) == 2
    assert fresh.store.tracked()[1].state == State.FOLLOWED_UP


def test_human_comment_between_read_and_write_means_no_acknowledgement(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)

    def agent_answers_first(ticket_id: int, body: dict) -> None:
        double.comment(ticket_id, AGENT, "Hi, I'm here. Calling you now.")
        return None  # then the PUT goes on with its now-stale stamp

    double.before_put.append(agent_answers_first)

    report = worker.run_once()

    assert report.posted == [] and report.failed == []
    assert bot_comments(double, 1) == []
    assert len(double.puts) == 1  # the refused one; no second attempt after re-reading
    outcomes = [e.outcome for e in worker.store.journal(1) if e.step == "acknowledge"]
    assert outcomes == ["conflict"]


def test_503_after_zendesk_applied_the_update_causes_no_duplicate(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)
    double.after_put.append(lambda ticket_id, body: (503, {"error": "ServiceUnavailable"}))

    report = worker.run_once()

    assert len(bot_comments(double, 1)) == 1
    assert len(double.puts) == 1
    assert [r.step for r in report.posted] == ["acknowledge"]
    assert report.failed == []


def test_503_before_applying_is_sent_again_after_a_re_read(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)
    double.before_put.append(lambda ticket_id, body: (503, {"error": "ServiceUnavailable"}))

    report = worker.run_once()

    assert len(bot_comments(double, 1)) == 1
    assert len(double.puts) == 2
    assert [r.step for r in report.posted] == ["acknowledge"]


def test_a_ticket_that_keeps_conflicting_fails_the_step_without_posting(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)
    for _ in range(10):
        double.before_put.append(lambda ticket_id, body: (409, {"error": "UpdateConflict"}))

    report = worker.run_once()

    assert bot_comments(double, 1) == []
    assert [r.ticket_id for r in report.failed] == [1]
    assert not report.ok


def test_rejected_update_fails_that_ticket_and_others_go_ahead(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)
    double.create(2)
    double.before_put.append(
        lambda ticket_id, body: (422, {"error": "RecordInvalid"}) if ticket_id == 1 else None)

    report = worker.run_once()

    assert [r.ticket_id for r in report.failed] == [1]
    assert [r.ticket_id for r in report.posted] == [2]
    assert "HTTP 422" in report.failed[0].detail


def test_two_workers_with_separate_state_post_each_step_once(
        double: ZendeskDouble, clock: FakeClock, tmp_path: Path) -> None:
    first = make_worker(clock, tmp_path / "a.sqlite3")
    second = make_worker(clock, tmp_path / "b.sqlite3")
    double.create(1)

    for _ in range(8):
        first.run_once()
        second.run_once()
        clock.advance(minutes(5))

    assert len(bot_comments(double, 1)) == 3
    assert double.tickets[1].priority == "high"


def test_journal_records_each_step_with_its_comment_id(
        double: ZendeskDouble, worker: Worker) -> None:
    double.create(1)

    worker.run_once()

    [posted] = [e for e in worker.store.journal(1) if e.outcome == "posted"]
    assert posted.step == "acknowledge" and posted.public is True
    assert posted.comment_id == double.public_comments(1, author=API_USER)[0]["id"]


def test_a_ticket_raised_to_urgent_later_is_acknowledged_despite_an_older_agent_reply(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1, priority="normal")
    clock.advance(minutes(60 * 24))
    double.comment(1, AGENT, "We are looking into your question.")
    clock.advance(minutes(60 * 24))
    double.raise_priority(1, "urgent")  # the customer's production is now down

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
    clock.advance(minutes(14))
    assert worker.run_once().posted == []  # timers run from today's contact, not the old reply


def test_an_agent_reply_after_the_raise_is_contact(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1, priority="normal")
    clock.advance(minutes(60))
    double.raise_priority(1, "urgent")
    clock.advance(minutes(1))
    double.comment(1, AGENT, "I'm on it, calling you.")

    report = worker.run_once()

    assert report.posted == []
    assert worker.store.tracked()[1].state == State.AWAITING_CUSTOMER


def test_urgent_again_after_an_agent_lowered_it_is_a_new_emergency(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()  # acknowledged
    clock.advance(minutes(5))
    double.raise_priority(1, "high")  # an agent steps it down by hand
    worker.run_once()
    clock.advance(minutes(60 * 24))
    double.raise_priority(1, "urgent")  # the next day, production is down again

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
    assert len(bot_comments(double, 1)) == 2
    assert [e.step for e in worker.store.journal(1) if e.outcome == "done"] == ["reset"]
    clock.advance(minutes(14))
    assert worker.run_once().posted == []  # the follow-up counts from today's contact
    clock.advance(minutes(1))
    assert [r.step for r in worker.run_once().posted] == ["follow-up"]


def test_urgent_again_after_a_persons_reply_is_not_stuck(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1)
    worker.run_once()
    double.comment(1, AGENT, "Joining the call")
    double.raise_priority(1, "normal")
    clock.advance(minutes(60 * 24))
    double.raise_priority(1, "urgent")

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]


def test_an_old_public_reply_by_the_api_user_is_not_contact_for_a_later_emergency(
        double: ZendeskDouble, worker: Worker, clock: FakeClock) -> None:
    double.create(1, priority="normal")
    double.comment(1, API_USER, "Thanks, we received your request.")  # another script's reply
    clock.advance(minutes(60 * 24))
    double.raise_priority(1, "urgent")

    report = worker.run_once()

    assert [r.step for r in report.posted] == ["acknowledge"]
