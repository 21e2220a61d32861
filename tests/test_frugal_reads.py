"""What a pass reads: the listing with the session and `json` (no object per ticket), and
users, organizations and the API user kept in the state file between processes, so `tick`
from cron does not read them again every minute."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.sandbox import Account, Sandbox
from automation.store import Store
from automation.worker import BRIEF_REFRESH, Worker
from automation.zendesk import CACHE_TTL, Zendesk
from tests.conftest import BRIDGE, TOKEN, emergency_ticket, make_worker, sandbox_worker


def reads(sandbox: Sandbox, path: str) -> int:
    return len([r for r in sandbox.requests if r.method == "GET" and path in r.path])


def test_a_view_of_250_emergencies_is_listed_in_three_requests(
        sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    for n in range(250):
        emergency_ticket(sandbox, account, f"Down {n}")
    zendesk = Zendesk(sandbox.url, sandbox.email, TOKEN, clock)
    sandbox.clear_requests()

    listed = zendesk.find_emergencies("", account.view_id)

    assert sorted(t.id for t in listed) == list(range(1, 251))
    view = f"/api/v2/views/{account.view_id}/tickets.json"
    assert [r.path for r in sandbox.requests] == [view] * 3


def test_a_second_process_reads_no_user_or_organization_again_until_they_are_old(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given a tick that acknowledged an emergency of Acme Corp
    state = tmp_path / "state.sqlite3"
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(seconds=30))
    make_worker(sandbox, clock, state).run_once()
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "Still down")
    clock.advance(timedelta(minutes=1))
    sandbox.clear_requests()

    # when the next tick (a new process) reads the customer's reply
    make_worker(sandbox, clock, state).run_once()

    # then it read neither users nor the organization: the state file had them
    assert reads(sandbox, "/users") == 0
    assert reads(sandbox, "/organizations") == 0
    # and once they are older than the cache's life, they are read again
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "Hello?")
    clock.advance(CACHE_TTL + timedelta(minutes=1))
    make_worker(sandbox, clock, state).run_once()
    assert reads(sandbox, "/users/show_many") == 1
    assert reads(sandbox, "/organizations/") == 1


def test_the_api_user_is_known_to_the_next_process(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account, priority="normal")
    first = Zendesk(sandbox.url, sandbox.email, TOKEN, clock, cache=store)
    first.update(first.snapshot(ticket_id).ticket, None, ["seen"])

    second = Zendesk(sandbox.url, sandbox.email, TOKEN, clock, cache=store)

    assert second.snapshot(ticket_id).me == account.admin_id


def test_one_emergency_read_by_a_process_a_pass_costs_what_it_costs_one_worker() -> None:
    """As `tick` from cron: each pass a new worker, only the state file kept, and its clock
    a year ahead of Zendesk's (cache ages count on Zendesk's clock, and outlast the 30
    minutes of an emergency): the customer and the organization are read once, not once a
    step; the API user not at all (one process learns its id from a write, the next knows it
    from the state file, named by its email as the first did)."""
    from benchmarks.lifecycle import lifecycle

    counts = lifecycle(passes=40, mode="fresh")

    assert counts["write"] == 3
    assert (counts["read users"], counts["read organization"]) == (1, 1)
    assert counts["read"] == lifecycle(passes=40)["read"] == 8


def brief_searches(sandbox: Sandbox) -> int:
    """Searches made by a worker that lists its view: each is a look for briefs."""
    return reads(sandbox, "/search.json")


def view_worker(sandbox: Sandbox, account: Account, clock: FakeClock, state: Path) -> Worker:
    return sandbox_worker(sandbox, None, clock, state, workflow=WorkflowConfig(bridge_url=BRIDGE),
                          zendesk={"view_id": account.view_id})


def test_a_second_process_searches_an_organizations_briefs_no_sooner_than_a_worker_would(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given a tick that acknowledged an emergency of Acme Corp, which has no brief on file
    state = tmp_path / "state.sqlite3"
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(seconds=30))
    view_worker(sandbox, account, clock, state).run_once()
    assert brief_searches(sandbox) == 1

    # when the customer writes twice, each read by a tick of its own a minute apart
    for text in ("Still down", "Any news?"):
        sandbox.zendesk.add_comment(ticket_id, account.requester_id, text)
        clock.advance(timedelta(minutes=1))
        view_worker(sandbox, account, clock, state).run_once()

    # then Zendesk was not searched for briefs again: the state file says when it last was
    assert brief_searches(sandbox) == 1
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "Hello?")
    clock.advance(BRIEF_REFRESH)
    view_worker(sandbox, account, clock, state).run_once()
    assert brief_searches(sandbox) == 2


def test_an_idle_pass_reads_the_state_files_rows_of_live_emergencies_only(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    # given a state file that has seen 30 emergencies end (solved) and one still live
    worker = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    ended = [emergency_ticket(sandbox, account, f"Down {n}") for n in range(30)]
    live = emergency_ticket(sandbox, account, "Still down")
    clock.advance(timedelta(seconds=30))
    worker.run_once()
    for ticket_id in ended:
        sandbox.zendesk.solve(ticket_id)
    clock.advance(timedelta(minutes=1))
    worker.run_once()
    rows: list[int] = []
    read_rows = worker.store._tracked
    worker.store._tracked = lambda *a: (lambda r: (rows.extend(r), r)[1])(read_rows(*a))

    # when an idle pass runs
    clock.advance(timedelta(minutes=1))
    report = worker.run_once()

    # then it built the live emergency's row alone
    assert report.listed == 1
    assert rows == [live]
