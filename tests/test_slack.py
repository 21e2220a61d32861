"""The Slack adapter against the sandbox's Slack over real HTTP on 127.0.0.1, on a FakeClock."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from automation.clock import FakeClock
from automation.errors import (
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    WriteUncertain,
)
from automation.sandbox import Sandbox
from automation.sandbox.slack import DEFAULT_TOKEN, SlackSandbox
from automation.slack import Message, Posted, Slack, escape, link, mention_group, mention_user

TOKEN = DEFAULT_TOKEN  # the sandbox's Slack bot token
TICKET_LINK = "https://acme.zendesk.com/agent/tickets/4242"


@pytest.fixture
def base_url(sandbox: Sandbox) -> str:
    return sandbox.slack_url


@pytest.fixture
def slack(clock: FakeClock, base_url: str) -> Slack:
    return Slack(TOKEN, clock, base_url=base_url)


@pytest.fixture
def channel(fake_slack: SlackSandbox) -> str:
    return fake_slack.add_channel("support_self-managed")


# --- formatting -------------------------------------------------------------------------------


def test_escape_neutralises_mentions_and_links() -> None:
    assert escape("<!channel> & <http://evil|click>") == (
        "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;")


def test_link_escapes_its_label_and_keeps_the_url_whole() -> None:
    assert link("https://x.example/a?b=1&c=2", "<!here> ticket") == (
        "<https://x.example/a?b=1&amp;c=2|&lt;!here&gt; ticket>")
    assert link("https://x.example/a|b", "t") == "<https://x.example/a%7Cb|t>"


def test_mentions_use_slack_markup_and_refuse_anything_but_an_id() -> None:
    assert mention_user("U123") == "<@U123>"
    assert mention_group("S123") == "<!subteam^S123>"
    with pytest.raises(ValueError):
        mention_user("U1> <!channel")


# --- posting ------------------------------------------------------------------------------------


def test_posts_a_parent_and_a_reply_in_its_thread(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    parent = slack.post(channel, f"Thread for emergency ticket {TICKET_LINK}")
    reply = slack.post(channel, "cc <@U1>", thread_ts=parent.ts)

    assert parent.channel == channel and reply.channel == channel
    thread = fake_slack.thread(channel, parent.ts)
    assert [m["ts"] for m in thread] == [parent.ts, reply.ts]
    assert thread[1]["thread_ts"] == parent.ts
    assert thread[0]["reply_count"] == 1


def test_posts_by_channel_name_answer_the_channel_id(
        slack: Slack, channel: str) -> None:
    assert slack.post("#support_self-managed", "hello").channel == channel


def test_escaped_customer_text_arrives_escaped(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    subject = "<!channel> down & <http://evil|click>"

    slack.post(channel, f"Emergency: {escape(subject)}")

    assert fake_slack.messages(channel)[0]["text"] == (
        "Emergency: &lt;!channel&gt; down &amp; &lt;http://evil|click&gt;")


def test_refuses_blank_text_without_calling_slack(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    with pytest.raises(ValueError):
        slack.post(channel, "  ")
    assert fake_slack.call_count("chat.postMessage") == 0


# --- errors ---------------------------------------------------------------------------------


def test_unknown_channel_is_not_found_with_slacks_code(slack: Slack) -> None:
    with pytest.raises(NotFound, match="channel_not_found") as raised:
        slack.post("C999999999", "hello")
    assert "chat.postMessage" in str(raised.value)


def test_other_ok_false_errors_are_rejected_with_their_code(
        slack: Slack, channel: str) -> None:
    with pytest.raises(Rejected, match="msg_too_long"):
        slack.post(channel, "x" * 40_001)


def test_reply_to_an_unknown_thread_is_not_found(slack: Slack, channel: str) -> None:
    with pytest.raises(NotFound, match="thread_not_found"):
        slack.post(channel, "hello", thread_ts="1.000100")


def test_invalid_token_is_credentials_rejected_without_the_token(
        clock: FakeClock, base_url: str) -> None:
    slack = Slack("xoxb-wrong-9876-token", clock, base_url=base_url)

    with pytest.raises(CredentialsRejected, match="invalid_auth") as raised:
        slack.auth_test()

    assert "9876" not in str(raised.value) and "xoxb" not in str(raised.value)
    assert "SLACK_BOT_TOKEN" in str(raised.value)


def test_unreachable_slack_is_unreachable_even_for_a_post(clock: FakeClock) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    slack = Slack(TOKEN, clock, base_url=f"http://127.0.0.1:{port}/api/", max_retry_seconds=5)

    # Refused before anything was sent: certainly not posted, so not "uncertain".
    with pytest.raises(Unreachable, match="connection failed"):
        slack.post("C1", "hello")
    with pytest.raises(Unreachable):
        slack.permalink("C1", "1.000100")
    assert sum(clock.slept) <= 5


# --- retries --------------------------------------------------------------------------------


def test_429_waits_retry_after_on_the_clock_then_posts_once(
        slack: Slack, fake_slack: SlackSandbox, clock: FakeClock, channel: str) -> None:
    fake_slack.faults.rate_limit("chat.postMessage", retry_after=7)
    start = clock.now()

    posted = slack.post(channel, "hello")

    assert clock.now() - start == timedelta(seconds=7)
    assert [m["ts"] for m in fake_slack.messages(channel)] == [posted.ts]
    assert fake_slack.call_count("chat.postMessage") == 2


def test_429_holds_back_the_next_request_until_retry_after(
        clock: FakeClock, base_url: str, fake_slack: SlackSandbox, channel: str) -> None:
    slack = Slack(TOKEN, clock, base_url=base_url, max_retry_seconds=5)
    ts = slack.post(channel, "hello").ts
    fake_slack.faults.rate_limit("conversations.history", retry_after=30)
    start = clock.now()

    with pytest.raises(Unreachable, match="429"):  # 30 s is past this budget: no wait
        slack.find_message(channel, "hello", mine_only=False)
    assert clock.now() == start

    # Another method is held back too: past this call's budget it is refused unsent...
    with pytest.raises(Unreachable, match="rate limited for 30 s more"):
        slack.permalink(channel, ts)
    assert fake_slack.call_count("chat.getPermalink") == 0
    assert clock.now() == start

    slack.max_retry_seconds = 60  # ...within a budget that allows it, it waits the pause out
    slack.permalink(channel, ts)

    assert clock.now() - start == timedelta(seconds=30)
    assert fake_slack.call_count("chat.getPermalink") == 1


def test_429_past_the_budget_gives_up_as_unreachable(
        clock: FakeClock, base_url: str, fake_slack: SlackSandbox, channel: str) -> None:
    slack = Slack(TOKEN, clock, base_url=base_url, max_retry_seconds=60)
    fake_slack.faults.rate_limit("conversations.history", retry_after=25, times=None)
    start = clock.now()

    with pytest.raises(Unreachable, match="HTTP 429: ratelimited"):
        slack.find_message(channel, "x", mine_only=False)

    assert clock.now() - start == timedelta(seconds=50)
    assert fake_slack.call_count("conversations.history") == 3


def test_dropped_post_is_uncertain_and_never_resent(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    fake_slack.faults.apply_then_drop("chat.postMessage")

    with pytest.raises(WriteUncertain, match="chat.postMessage"):
        slack.post(channel, f"Thread for emergency ticket {TICKET_LINK}")

    assert len(fake_slack.messages(channel)) == 1
    assert fake_slack.call_count("chat.postMessage") == 1
    # The worker's recovery: look before posting again.
    assert slack.find_message(channel, TICKET_LINK) is not None


def test_post_answered_with_a_5xx_is_uncertain_and_not_retried(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    fake_slack.faults.outage()

    with pytest.raises(WriteUncertain, match="HTTP 503"):
        slack.post(channel, "hello")

    assert fake_slack.call_count("chat.postMessage") == 1


def test_reads_retry_a_dropped_connection_and_an_outage_on_the_clock(
        slack: Slack, fake_slack: SlackSandbox, clock: FakeClock, channel: str) -> None:
    ts = slack.post(channel, "hello").ts
    fake_slack.faults.apply_then_drop("chat.getPermalink")
    fake_slack.faults.outage()

    assert slack.permalink(channel, ts).endswith(ts.replace(".", ""))

    assert fake_slack.call_count("chat.getPermalink") == 3
    assert len(clock.slept) == 2


def test_reads_give_up_after_the_retry_budget(
        clock: FakeClock, base_url: str, fake_slack: SlackSandbox, channel: str) -> None:
    slack = Slack(TOKEN, clock, base_url=base_url, max_retry_seconds=10)
    fake_slack.faults.outage(times=None)

    with pytest.raises(Unreachable, match="HTTP 503"):
        slack.thread_replies(channel, "1.000100")

    assert sum(clock.slept) <= 10
    assert fake_slack.call_count("conversations.replies") >= 2


# --- pacing -----------------------------------------------------------------------------------


def test_paces_posts_to_one_per_second_per_channel(
        clock: FakeClock, base_url: str, fake_slack: SlackSandbox, channel: str) -> None:
    fake_slack.strict_rate_limit = True  # a post too soon would be answered 429
    other = fake_slack.add_channel("support_gitlab-com")
    slack = Slack(TOKEN, clock, base_url=base_url)
    start = clock.now()

    slack.post(channel, "one")
    slack.post(other, "elsewhere")
    slack.post(channel, "two")
    slack.post(channel, "three")

    assert clock.slept == [1.0, 1.0]
    assert clock.now() - start == timedelta(seconds=2)
    assert fake_slack.call_count("chat.postMessage") == 4


def test_does_not_wait_when_the_channel_was_quiet(
        slack: Slack, clock: FakeClock, channel: str) -> None:
    slack.post(channel, "one")
    clock.advance(timedelta(seconds=3))

    slack.post(channel, "two")

    assert clock.slept == []


# --- reads ----------------------------------------------------------------------------------


def test_find_message_finds_the_earlier_parent(
        slack: Slack, fake_slack: SlackSandbox, clock: FakeClock, channel: str) -> None:
    since = clock.now()
    first = slack.post(channel, f"Thread for emergency ticket {TICKET_LINK}")
    clock.advance(timedelta(minutes=5))
    slack.post(channel, "Thread for emergency ticket https://acme.zendesk.com/agent/tickets/7")
    slack.post(channel, f"Thread for emergency ticket {TICKET_LINK}")  # a racing worker's copy
    slack.post(channel, "reply mentioning " + TICKET_LINK, thread_ts=first.ts)

    assert slack.find_message(channel, TICKET_LINK, oldest=since) == first
    assert slack.find_message(channel, TICKET_LINK,
                              oldest=since + timedelta(minutes=1)) != first
    assert slack.find_message(channel, "tickets/9999") is None


def test_find_message_ignores_other_peoples_messages(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    person = fake_slack.add_user("Francesca Rossi", "francesca@example.com")
    fake_slack.post_as(person, channel, f"anyone on {TICKET_LINK}?")

    assert slack.find_message(channel, TICKET_LINK) is None
    assert slack.find_message(channel, TICKET_LINK, mine_only=False) is not None


def test_find_message_reads_every_page(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    first = slack.post(channel, f"Thread for emergency ticket {TICKET_LINK}")
    for number in range(250):
        fake_slack.post_as(fake_slack.bot_user_id, channel, f"noise {number}")

    assert slack.find_message(channel, TICKET_LINK) == first
    assert fake_slack.call_count("conversations.history") == 2


def test_thread_replies_lists_the_replies_without_the_parent(
        slack: Slack, fake_slack: SlackSandbox, channel: str) -> None:
    parent = slack.post(channel, "Thread for emergency ticket")
    person = fake_slack.add_user("Francesca Rossi", "francesca@example.com")
    fake_slack.post_as(person, channel, "on it", thread_ts=parent.ts)
    echo = slack.post(channel, "Acknowledged on the ticket", thread_ts=parent.ts)

    replies = slack.thread_replies(channel, parent.ts)

    assert [r.text for r in replies] == ["on it", "Acknowledged on the ticket"]
    assert replies[1] == Message(echo.ts, "Acknowledged on the ticket", fake_slack.bot_user_id)
    assert replies[0].user == person


def test_permalink_points_at_the_message(slack: Slack, channel: str) -> None:
    posted = slack.post(channel, "hello")

    assert slack.permalink(channel, posted.ts) == (
        f"https://sandbox.slack.com/archives/{channel}/p{posted.ts.replace('.', '')}")


def test_lookup_by_email_is_cached(
        slack: Slack, fake_slack: SlackSandbox, clock: FakeClock) -> None:
    user_id = fake_slack.add_user("Marco Bianchi", "marco.bianchi@example.com")

    assert slack.user_id_by_email("Marco.Bianchi@example.com") == user_id
    assert slack.user_id_by_email("marco.bianchi@example.com") == user_id
    assert fake_slack.call_count("users.lookupByEmail") == 1


def test_lookup_by_email_miss_is_none_and_asked_again_later(
        slack: Slack, fake_slack: SlackSandbox, clock: FakeClock) -> None:
    assert slack.user_id_by_email("giulia@example.com") is None
    user_id = fake_slack.add_user("Giulia Verdi", "giulia@example.com")
    assert slack.user_id_by_email("giulia@example.com") is None

    clock.advance(timedelta(minutes=16))

    assert slack.user_id_by_email("giulia@example.com") == user_id
    assert fake_slack.call_count("users.lookupByEmail") == 2


def test_usergroup_id_by_handle(slack: Slack, fake_slack: SlackSandbox) -> None:
    group_id = fake_slack.add_usergroup("support-team-americas", "Support Team Americas")
    fake_slack.add_usergroup("support-team-emea", "Support Team EMEA")

    assert slack.usergroup_id("support-team-americas") == group_id
    assert slack.usergroup_id("@support-team-americas") == group_id
    assert slack.usergroup_id("nobody") is None
    assert fake_slack.call_count("usergroups.list") == 1


def test_auth_test_says_whose_token_it_is(slack: Slack, fake_slack: SlackSandbox) -> None:
    identity = slack.auth_test()

    assert identity.user_id == fake_slack.bot_user_id
    assert identity.bot_id == fake_slack.bot_id
    assert identity.url == "https://sandbox.slack.com/"


def test_posted_is_a_value(slack: Slack, channel: str) -> None:
    posted = slack.post(channel, "hello")

    assert posted == Posted(channel, posted.ts)
    with pytest.raises(AttributeError):
        posted.ts = "1"  # type: ignore[misc]


def test_a_token_without_a_scope_is_refused_naming_the_scope() -> None:
    from slack_sdk.web import SlackResponse

    from automation.errors import CredentialsRejected
    from automation.slack import api_error

    answer = SlackResponse(client=None, http_verb="POST", api_url="users.lookupByEmail",
                           req_args={}, data={"ok": False, "error": "missing_scope",
                                              "needed": "users:read.email"},
                           headers={}, status_code=200)

    error = api_error("users.lookupByEmail", answer)

    assert isinstance(error, CredentialsRejected)
    assert "missing_scope (needed: users:read.email)" in str(error)
    assert "add that scope to the Slack app" in str(error)
