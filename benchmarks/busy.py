"""300 new emergencies on an account allowed 100 ticket updates a minute, while a person saves
a ticket every 6 s from the same budget, and a follow-up falls due a minute into the pass."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.sandbox import Account, Sandbox, sandbox_config, sandbox_environ, seed_account
from automation.wiring import build_worker
from automation.worker import Worker
from benchmarks.idle import ACCOUNT_LIMIT, START

ACK = "join our bridge"
FOLLOW_UP = "following up"


@dataclass(frozen=True)
class Busy:
    """What the account went through: the worker's acknowledgements (how many tickets got
    how many), Zendesk's 429s to it, the person's saves and refusals (after the start), and
    when the last acknowledgement and the due follow-up went out."""

    acknowledgements: Counter[int]
    too_many: int
    saved: int
    refused_after: tuple[timedelta, ...]
    last_ack_after: timedelta
    follow_up_late: timedelta
    wrote_on_theirs: int  # the worker's comments on the person's (non-urgent) tickets


def busy_account(updates_per_minute: float = 80, emergencies: int = 300) -> Busy:
    """The worker passing every minute for six minutes over it all."""
    clock = FakeClock(START)
    with Sandbox(clock=clock) as sandbox, tempfile.TemporaryDirectory() as tmp:
        account = seed_account(sandbox)
        cfg = sandbox_config(sandbox, None, Path(tmp) / "state.sqlite3", slack=False,
                             pagerduty=False, workflow=WorkflowConfig(bridge_url="https://b/x"))
        cfg = replace(cfg, zendesk=replace(cfg.zendesk, updates_per_minute=updates_per_minute))
        worker = build_worker(cfg, clock, sandbox_environ(sandbox))
        try:
            return _play(sandbox, account, clock, worker, emergencies)
        finally:
            worker.close()


def _play(sandbox: Sandbox, account: Account, clock: FakeClock, worker: Worker,
          emergencies: int) -> Busy:
    zendesk = sandbox.zendesk
    earlier = _ticket(sandbox, account, "Down since this morning")
    clock.advance(timedelta(seconds=30))
    worker.run_once()
    [acknowledged] = _posted(sandbox, account, earlier, ACK)
    clock.advance(timedelta(minutes=13, seconds=30))  # its follow-up due a minute from start
    zendesk.limit_updates(per_minute=ACCOUNT_LIMIT)
    theirs = [_ticket(sandbox, account, f"Question {n}", priority="normal") for n in range(5)]
    tickets = [_ticket(sandbox, account, f"Down {n}") for n in range(emergencies)]
    clock.advance(timedelta(seconds=30))
    start = clock.now()
    sandbox.clear_requests()
    person = zendesk.person_saving(account.agent_id, theirs, every_seconds=6)
    while clock.now() < start + timedelta(minutes=6):
        worker.run_once()
        clock.advance(timedelta(minutes=1))
    zendesk.catch_up()
    posted = {t: _posted(sandbox, account, t, ACK) for t in tickets}
    [followed_up] = _posted(sandbox, account, earlier, FOLLOW_UP)
    return Busy(
        acknowledgements=Counter(len(at) for at in posted.values()),
        too_many=len([r for r in sandbox.requests if r.status == 429]),
        saved=person.saved, refused_after=tuple(at - start for at in person.refused_at),
        last_ack_after=max(at for ats in posted.values() for at in ats) - start,
        follow_up_late=followed_up - (acknowledged + timedelta(minutes=15)),
        wrote_on_theirs=sum(len(_posted(sandbox, account, t, "")) for t in theirs))


def _ticket(sandbox: Sandbox, account: Account, subject: str, **fields: str) -> int:
    return sandbox.zendesk.create_ticket(account.requester_id, subject, "Everything is down!",
                                         **fields)


def _posted(sandbox: Sandbox, account: Account, ticket_id: int, text: str) -> list[datetime]:
    """When the worker's public comments containing ``text`` were posted on the ticket."""
    return [datetime.fromisoformat(c["created_at"].replace("Z", "+00:00"))
            for c in sandbox.zendesk.public_comments(ticket_id)
            if c["author_id"] == account.admin_id and text in c["body"]]
