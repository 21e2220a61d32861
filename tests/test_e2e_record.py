"""The ticket's audits are the record, on a Zendesk that behaves as the real one: updates that
share a second, tags people edit or that follow-up tickets inherit, merge notes, partners who
are agents. Each situation once broke the promise of one message, once, to the customer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.model import Brief
from automation.sandbox import Account, Sandbox
from automation.worker import Worker
from automation.workflow import ACKNOWLEDGED_TAG, CLOSED_TAG, FOLLOWED_UP_TAG
from tests.conftest import bot_comments, emergency_ticket, play_together, sandbox_worker

BRIDGE = "https://bridge.example.com/record"


def worker_for(sandbox: Sandbox, account: Account, clock: FakeClock, state: Path) -> Worker:
    return sandbox_worker(sandbox, account, clock, state,
                          workflow=WorkflowConfig(bridge_url=BRIDGE))


def play(worker: Worker, clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        worker.run_once()
        clock.advance(timedelta(minutes=1))


def kinds(sandbox: Sandbox, account: Account, ticket_id: int) -> list[str]:
    """The worker's public messages on the ticket, by what they say."""
    found = []
    for body in bot_comments(sandbox, account, ticket_id):
        found.append("acknowledgement" if "join our bridge" in body
                     else "follow-up" if "following up" in body
                     else "bridge closed" if "HIGH priority" in body else body[:30])
    return found


def file_brief(worker: Worker, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    ticket_id = emergency_ticket(sandbox, account, "Planning an upgrade", priority="normal",
                                 organization_id=account.organization_id)
    worker.store.add_brief(Brief(
        ticket_id=ticket_id, organization_id=account.organization_id, organization="Acme Corp",
        author="Giulia Verdi", planned="Upgrade to 17.2", when=clock.now(),
        url=f"{sandbox.url}/agent/tickets/{ticket_id}", filed_at=clock.now()))


@pytest.mark.parametrize("trial", range(12))
def test_two_workers_in_one_second_acknowledge_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        trial: int) -> None:
    # given two workers, and an emergency whose account has a brief: each worker writes twice
    # to the ticket (the brief's link, then the acknowledgement), in seconds the other reads
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]
    for worker in workers:
        file_brief(worker, sandbox, account, clock)
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(seconds=trial % 3))

    # when both run their passes at once, minute after minute
    play_together(workers, clock, 3)

    # then the customer got one acknowledgement, and the on-call one brief link
    assert kinds(sandbox, account, ticket_id) == ["acknowledgement"]
    notes = [c for c in sandbox.zendesk.comments(ticket_id)
             if not c["public"] and "pre-task brief" in c["body"]]
    assert len(notes) == 1


def test_a_person_removing_the_marker_tags_does_not_bring_a_second_follow_up(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account)
    play(worker, clock, 17)
    assert kinds(sandbox, account, ticket_id) == ["acknowledgement", "follow-up"]

    # a macro with "set tags" (or a hand edit) drops our markers
    sandbox.zendesk.set_tags(ticket_id, ["customer_tag"], account.agent_id)
    play(worker, clock, 20)

    assert kinds(sandbox, account, ticket_id) == ["acknowledgement", "follow-up",
                                                  "bridge closed"]


def test_a_follow_up_ticket_with_inherited_markers_is_a_new_emergency(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    first = emergency_ticket(sandbox, account)
    play(worker, clock, 35)
    sandbox.zendesk.solve(first)
    sandbox.zendesk.close(first)
    clock.advance(timedelta(days=3))

    # the customer answers the closed ticket: its follow-up copies every tag
    follow_up = sandbox.zendesk.create_follow_up(first, "It is down again!", priority="urgent")
    inherited = sandbox.zendesk.ticket(follow_up)["tags"]
    assert {ACKNOWLEDGED_TAG, FOLLOWED_UP_TAG, CLOSED_TAG} <= set(inherited)
    clock.advance(timedelta(minutes=1))
    play(worker, clock, 1)

    assert kinds(sandbox, account, follow_up) == ["acknowledgement"]
    assert worker.store.tracked()[follow_up].state == "awaiting-customer"
    assert CLOSED_TAG not in sandbox.zendesk.ticket(follow_up)["tags"]


def test_a_merge_note_is_not_contact(sandbox: Sandbox, account: Account, clock: FakeClock,
                                     tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    target = emergency_ticket(sandbox, account)
    duplicate = emergency_ticket(sandbox, account, "Production down (again)")
    # an agent merges the duplicate into the emergency, with a public note, before any pass
    sandbox.zendesk.merge(target, [duplicate], account.agent_id, target_public=True)
    clock.advance(timedelta(minutes=1))

    play(worker, clock, 17)

    assert kinds(sandbox, account, target) == ["acknowledgement", "follow-up"]


def test_a_requester_who_is_an_agent_is_the_customer(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    partner = sandbox.zendesk.add_user("Pat Partner", "pat@partner.example.com", "agent")
    ticket_id = sandbox.zendesk.create_ticket(partner, "Our production is down", "Help!",
                                              priority="urgent")
    sandbox.zendesk.add_comment(ticket_id, partner, "Still down, anyone?")  # not contact
    clock.advance(timedelta(minutes=1))
    play(worker, clock, 2)
    assert kinds(sandbox, account, ticket_id) == ["acknowledgement"]

    sandbox.zendesk.add_comment(ticket_id, partner, "Joining the bridge now")
    play(worker, clock, 40)

    assert kinds(sandbox, account, ticket_id) == ["acknowledgement"]  # timers stopped
    assert worker.store.tracked()[ticket_id].state == "engaged"


def test_raised_to_urgent_in_the_second_of_our_bridge_closed_is_acknowledged_next_pass(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")
    ticket_id = emergency_ticket(sandbox, account)
    while "bridge closed" not in kinds(sandbox, account, ticket_id):
        clock.advance(timedelta(minutes=1))
        worker.run_once()
    closed_at = sandbox.zendesk.ticket(ticket_id)["updated_at"]
    sandbox.zendesk.set_priority(ticket_id, "urgent", account.agent_id)  # in that second
    assert sandbox.zendesk.ticket(ticket_id)["updated_at"] == closed_at  # invisible in it

    play(worker, clock, 1)

    # a stepped-down ticket listed as an emergency is read again: the new emergency is
    # acknowledged
    assert kinds(sandbox, account, ticket_id)[-1] == "acknowledgement"
