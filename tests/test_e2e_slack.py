"""Slack end to end: the worker with Slack on, against the sandbox's Zendesk and Slack."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import requests

from automation.chat import claim_from_tags, thread_from_tags
from automation.clock import FakeClock
from automation.config import ChannelRule, SlackConfig, WorkflowConfig
from automation.sandbox import Account, Sandbox
from automation.sandbox.slack import DEFAULT_TOKEN
from automation.store import Store
from automation.worker import Worker
from tests.conftest import play_together, sandbox_worker


def slack_config(account: Account, sandbox: Sandbox) -> SlackConfig:
    return SlackConfig(default_channel=account.self_managed_channel, url=sandbox.slack_url,
                       channels=(ChannelRule(channel=account.saas_channel, tags=("saas",)),))


def worker_for(sandbox: Sandbox, account: Account, clock: FakeClock, state: Path) -> Worker:
    return sandbox_worker(sandbox, account, clock, state,
                          workflow=WorkflowConfig(bridge_url="https://b.example/x"),
                          slack=slack_config(account, sandbox))


@pytest.fixture
def worker(sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> Worker:
    return worker_for(sandbox, account, clock, tmp_path / "state.sqlite3")


def urgent(sandbox: Sandbox, account: Account, subject: str = "Production down",
           tags: tuple[str, ...] = ()) -> int:
    return sandbox.zendesk.create_ticket(account.requester_id, subject, "Help", tags=tags,
                                         priority="urgent",
                                         organization_id=account.organization_id)


def play(workers: list[Worker], clock: FakeClock, minutes: int) -> None:
    for _ in range(minutes):
        for worker in workers:
            worker.run_once()
        clock.advance(timedelta(minutes=1))


def parents(sandbox: Sandbox, channel: str) -> list[dict]:
    return [m for m in sandbox.slack.messages(channel)
            if m.get("thread_ts") in (None, m["ts"])]


def thread_texts(sandbox: Sandbox, channel: str, ticket_id: int) -> list[str]:
    [parent] = [m for m in parents(sandbox, channel) if f"/agent/tickets/{ticket_id}|" in
                m["text"]]
    return [m["text"] for m in sandbox.slack.thread(channel, parent["ts"])
            if m["ts"] != parent["ts"]]


@pytest.mark.sockets  # the worker's Slack client (urllib) over 127.0.0.1
def test_one_thread_with_cc_ase_and_every_step_echoed_once(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)

    play([worker], clock, 40)

    channel = account.self_managed_channel
    [parent] = parents(sandbox, channel)
    assert parent["text"].startswith(f"Thread for emergency ticket <{sandbox.url}/agent/tickets/"
                                     f"{ticket_id}|#{ticket_id}>: Production down — Acme Corp")
    replies = thread_texts(sandbox, channel, ticket_id)
    assert replies[0] == f"cc <@{account.slack_manager_id}> (account manager)"
    assert replies[1].startswith(f"<@{account.slack_ase_id}> your account Acme Corp")
    steps = replies[2:]
    assert len(steps) == 3 and len(set(steps)) == 3
    assert "Acknowledgement" in steps[0] and "follow-up" in steps[1] and "HIGH" in steps[2]
    note = [c for c in sandbox.zendesk.comments(ticket_id) if not c["public"]]
    assert len(note) == 1 and "Giulia Verdi" not in note[0]["body"]
    assert "giulia.verdi@example.com" in note[0]["body"] and "/archives/" in note[0]["body"]
    thread = thread_from_tags(tuple(sandbox.zendesk.ticket(ticket_id)["tags"]))
    assert thread is not None and thread.ts == parent["ts"] and thread.channel == channel


def test_channel_rule_picks_the_saas_channel(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    urgent(sandbox, account, "GitLab.com pipelines stuck", tags=("saas",))

    play([worker], clock, 2)

    assert len(parents(sandbox, account.saas_channel)) == 1
    assert parents(sandbox, account.self_managed_channel) == []


def test_customer_text_is_escaped_so_channel_pings_nobody(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    urgent(sandbox, account, "<!channel> & <http://evil.example|click me>")

    play([worker], clock, 2)

    [parent] = parents(sandbox, account.self_managed_channel)
    assert "<!channel>" not in parent["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click me&gt;" in parent["text"]


def test_restart_with_a_lost_state_file_keeps_the_same_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    play([worker_for(sandbox, account, clock, tmp_path / "one.sqlite3")], clock, 3)

    fresh = worker_for(sandbox, account, clock, tmp_path / "two.sqlite3")
    play([fresh], clock, 40)

    [_parent] = parents(sandbox, account.self_managed_channel)
    steps = thread_texts(sandbox, account.self_managed_channel, ticket_id)[2:]
    assert len(steps) == 3


def test_two_workers_at_once_one_thread_each_line_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]
    tickets = [urgent(sandbox, account, f"Emergency {n}") for n in range(3)]

    play_together(workers, clock, 40)

    channel = account.self_managed_channel
    assert len(parents(sandbox, channel)) == 3
    for ticket_id in tickets:
        replies = thread_texts(sandbox, channel, ticket_id)
        assert len(replies) == len(set(replies)) == 5, replies
        public = [c for c in sandbox.zendesk.public_comments(ticket_id)
                  if c["author_id"] == account.admin_id]
        assert len(public) == 3


def test_slack_outage_delays_only_slack(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    sandbox.slack.faults.outage(times=None)

    play([worker], clock, 16)

    public = [c for c in sandbox.zendesk.public_comments(ticket_id)
              if c["author_id"] == account.admin_id]
    assert len(public) == 2  # acknowledgement and follow-up went out on time
    assert sandbox.slack.messages(account.self_managed_channel) == []
    assert worker.store.outbox(ticket_id)  # the journal shows the lines as pending

    sandbox.slack.faults.clear()
    play([worker], clock, 2)

    assert worker.store.outbox(ticket_id) == []
    steps = thread_texts(sandbox, account.self_managed_channel, ticket_id)[2:]
    assert len(steps) == 2


def test_customer_reply_is_echoed_once(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 3)
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "joining", public=True)

    play([worker], clock, 20)

    steps = thread_texts(sandbox, account.self_managed_channel, ticket_id)[2:]
    assert len(steps) == 2 and "The customer replied" in steps[1]


def test_a_thread_line_whose_answer_was_lost_is_not_posted_twice(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 1)
    sandbox.slack.faults.apply_then_drop("chat.postMessage")

    play([worker], clock, 20)

    steps = thread_texts(sandbox, account.self_managed_channel, ticket_id)[2:]
    assert len(steps) == len(set(steps)) == 2


def test_two_workers_seeing_the_same_reply_echo_it_once(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]
    ticket_id = urgent(sandbox, account)
    play(workers, clock, 3)
    sandbox.zendesk.add_comment(ticket_id, account.cc_id, "on the bridge", public=True)

    play(workers, clock, 5)

    replies = thread_texts(sandbox, account.self_managed_channel, ticket_id)
    assert sum("The customer replied" in r for r in replies) == 1


def run_cli(sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
            *argv: str, stdin: str = "", slack_token: str = DEFAULT_TOKEN
            ) -> tuple[int, str, str]:
    import io

    from automation import cli

    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
        '[workflow]\nbridge_url = "https://b.example/x"\n'
        f'[slack]\nurl = "{sandbox.slack_url}"\n'
        f'default_channel = "{account.self_managed_channel}"\n')
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["--config", str(config), *argv], out=out, err=err, clock=clock,
                   stdin=io.StringIO(stdin),
                   environ={"ZENDESK_API_TOKEN": sandbox.token, "SLACK_BOT_TOKEN": slack_token})
    return code, out.getvalue(), err.getvalue()


def test_post_call_tags_the_next_on_call_engineer_in_the_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    run_cli(sandbox, account, clock, tmp_path, "tick")
    notes = tmp_path / "notes.md"
    notes.write_text("Rolled back; all good.")

    code, out, err = run_cli(sandbox, account, clock, tmp_path, "post-call", str(ticket_id),
                             "--notes", str(notes), "--next", account.agent_email, "--yes")

    assert code == 0, err
    public = sandbox.zendesk.public_comments(ticket_id)[-1]
    assert "Francesca Rossi will be responding" in public["body"]
    replies = thread_texts(sandbox, account.self_managed_channel, ticket_id)
    assert replies[-1].endswith(f"Hand-off: <@{account.slack_agent_id}> is the next on-call "
                                "engineer.")


def test_not_emergency_tells_the_account_manager_in_the_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, _, err = run_cli(sandbox, account, clock, tmp_path, "not-emergency", str(ticket_id),
                           "--reason", "Only staging <is> down", "--yes")

    assert code == 0, err
    replies = thread_texts(sandbox, account.self_managed_channel, ticket_id)
    line = replies[-1]
    assert "Only staging &lt;is&gt; down" in line
    assert line.endswith(f"cc <@{account.slack_manager_id}> (account manager)")
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"


def test_lines_queued_while_slack_was_down_go_out_after_the_ticket_left_the_listing(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    play([worker], clock, 25)  # thread open, acknowledgement and follow-up echoed
    sandbox.slack.faults.outage(times=None)
    play([worker], clock, 10)  # the close happens while Slack is down: priority high
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "high"
    assert worker.store.outbox(ticket_id)

    sandbox.slack.faults.clear()
    play([worker], clock, 1)

    assert worker.store.outbox(ticket_id) == []
    steps = thread_texts(sandbox, account.self_managed_channel, ticket_id)[2:]
    assert len(steps) == 3 and "HIGH" in steps[-1]


def test_slack_refusing_does_not_stop_an_engineers_command(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, out, err = run_cli(sandbox, account, clock, tmp_path, "not-emergency", str(ticket_id),
                             "--reason", "Staging only", "--yes", slack_token="xoxb-wrong")

    assert code == 0, err
    assert "Slack line(s) pending" in out
    [note] = [c for c in sandbox.zendesk.comments(ticket_id) if not c["public"]]
    assert "Staging only" in note["body"]


def test_a_step_sent_by_hand_is_echoed_in_the_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, _, err = run_cli(sandbox, account, clock, tmp_path, "ack", str(ticket_id), "--yes",
                           "--as", account.agent_email)

    assert code == 0, err
    replies = thread_texts(sandbox, account.self_managed_channel, ticket_id)
    assert replies[-1] == ("Acknowledgement posted by hand by Francesca Rossi (public): the "
                           "bridge is offered")


def test_a_wrong_slack_token_fails_tick_with_exit_three_after_the_zendesk_steps(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)

    code, out, err = run_cli(sandbox, account, clock, tmp_path, "tick",
                             slack_token="xoxb-wrong-SECRET-1234")

    assert code == 3
    assert err.count("\n") == 1 and err.startswith("error: Slack") and "invalid_auth" in err
    assert "SECRET" not in out + err
    assert len(sandbox.zendesk.public_comments(ticket_id)) == 2  # the acknowledgement went out


def test_a_thread_whose_recording_failed_is_written_on_the_ticket_later(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    ticket_id = urgent(sandbox, account)
    sandbox.slack.faults.drop("chat.getPermalink", times=None)
    play([worker], clock, 1)  # the parent is posted, its permalink never answers
    assert thread_from_tags(tuple(sandbox.zendesk.ticket(ticket_id)["tags"])) is None
    sandbox.slack.faults.clear()

    play([worker], clock, 2)

    assert thread_from_tags(tuple(sandbox.zendesk.ticket(ticket_id)["tags"])) is not None
    notes = [c for c in sandbox.zendesk.comments(ticket_id) if not c["public"]]
    assert len(notes) == 1 and "/archives/" in notes[0]["body"]
    assert len(parents(sandbox, account.self_managed_channel)) == 1


def test_a_stale_claim_is_taken_over_by_one_worker_only(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    stale = int((clock.now() - timedelta(minutes=10)).timestamp())
    # A worker claimed the thread ten minutes ago and died before posting it.
    requests.put(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json", auth=sandbox.auth,
                 timeout=5, json={"ticket": {"additional_tags": [
                     f"emergency_slack_claim_{stale}"]}})
    workers = [worker_for(sandbox, account, clock, tmp_path / f"w{n}.sqlite3") for n in (1, 2)]

    play_together(workers, clock, 3)

    assert len(parents(sandbox, account.self_managed_channel)) == 1


def test_timeline_shows_a_pending_slack_line_and_why(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    run_cli(sandbox, account, clock, tmp_path, "tick")
    sandbox.slack.faults.outage(times=None)
    clock.advance(timedelta(minutes=16))
    run_cli(sandbox, account, clock, tmp_path, "tick")  # the follow-up echo cannot go out

    code, out, _ = run_cli(sandbox, account, clock, tmp_path, "timeline", str(ticket_id))

    assert code == 0
    [pending] = [line for line in out.splitlines() if "PENDING" in line]
    assert "follow-up" in pending and "tries; last: Slack POST" in pending


def test_a_worker_whose_own_claim_went_stale_claims_again_before_opening_the_thread(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    first = worker_for(sandbox, account, clock, tmp_path / "first.sqlite3")
    second = worker_for(sandbox, account, clock, tmp_path / "second.sqlite3")
    ticket_id = urgent(sandbox, account)
    # the first worker claims the thread, then Slack fails before it could open it
    sandbox.faults.server_error("*", "conversations.history", 503, times=None, service="slack")
    first.run_once()
    assert claim_from_tags(tuple(sandbox.zendesk.ticket(ticket_id)["tags"])) is not None
    sandbox.faults.clear()
    clock.advance(timedelta(minutes=6))  # its claim is stale: anyone may take it over now

    # while the first worker opens the thread, the second one runs a pass
    opening = first.chat._open  # type: ignore[union-attr]

    def second_runs_meanwhile(*args: object) -> None:
        second.run_once()
        opening(*args)  # type: ignore[arg-type]

    first.chat._open = second_runs_meanwhile  # type: ignore[union-attr,method-assign]
    first.run_once()
    second.run_once()

    assert len(parents(sandbox, account.self_managed_channel)) == 1


def test_timeline_names_the_people_a_commands_line_mentions_not_their_slack_ids(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    ticket_id = urgent(sandbox, account)
    run_cli(sandbox, account, clock, tmp_path, "tick")
    notes = tmp_path / "notes.md"
    notes.write_text("Rolled back; all good.")
    run_cli(sandbox, account, clock, tmp_path, "not-emergency", str(ticket_id),
            "--reason", "Only staging is down", "--yes")
    run_cli(sandbox, account, clock, tmp_path, "post-call", str(ticket_id), "--notes",
            str(notes), "--next", account.agent_email, "--yes")

    code, out, err = run_cli(sandbox, account, clock, tmp_path, "timeline", str(ticket_id))

    assert code == 0, err
    assert "Hand-off: @francesca@example.com is" in out
    assert "<@" not in out
    # The journal keeps whom each line names; Slack ids come only when it is posted.
    queued = {q.kind: q.text for q in
              Store(tmp_path / "emergency-state.sqlite3").outbox(ticket_id, pending_only=False)}
    assert queued["not-emergency"].endswith("cc <user:marco.bianchi@example.com> (account "
                                            "manager)")
    assert "<user:francesca@example.com>" in queued["post-call"]
