"""The sandbox's Slack: requests through the sandbox's dispatch, as its server hands them over."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

from automation.clock import FakeClock
from automation.sandbox import Reply, Sandbox
from automation.sandbox.server import SLACK_PREFIX as PREFIX
from automation.sandbox.slack import DEFAULT_TOKEN, format_ts, parse_ts

TOKEN = DEFAULT_TOKEN  # the sandbox's Slack bot token


@pytest.fixture
def channel(sandbox: Sandbox) -> str:
    return sandbox.slack.add_channel("support_self-managed")


def call(sandbox: Sandbox, api_method: str, token: str | None = TOKEN,
         as_json: bool = False, **params: Any) -> Reply | None:
    """One request shaped as slack_sdk sends it: a form body, or JSON for chat.postMessage."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if as_json:
        headers["Content-Type"] = "application/json;charset=utf-8"
        body = json.dumps(params).encode()
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(params).encode()
    return sandbox.dispatch(sandbox.slack, "POST", PREFIX + api_method, headers, body or None)


def ok(sandbox: Sandbox, api_method: str, **params: Any) -> dict[str, Any]:
    reply = call(sandbox, api_method, **params)
    assert reply is not None
    assert (reply.status, reply.body["ok"]) == (200, True), reply.body
    body: dict[str, Any] = reply.body
    return body


def error(sandbox: Sandbox, api_method: str, **params: Any) -> tuple[int, str]:
    reply = call(sandbox, api_method, **params)
    assert reply is not None
    assert reply.body["ok"] is False
    return reply.status, reply.body["error"]


def post(sandbox: Sandbox, channel: str, text: str, **params: Any) -> dict[str, Any]:
    return ok(sandbox, "chat.postMessage", as_json=True, channel=channel, text=text, **params)


# --- authentication -----------------------------------------------------------------------------


def test_wrong_token_is_http_200_invalid_auth(sandbox: Sandbox) -> None:
    assert error(sandbox, "auth.test", token="xoxb-wrong") == (200, "invalid_auth")


def test_missing_token_is_not_authed(sandbox: Sandbox) -> None:
    assert error(sandbox, "auth.test", token=None) == (200, "not_authed")


def test_token_in_the_form_body_is_accepted(sandbox: Sandbox) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    reply = sandbox.slack.handle("POST", PREFIX + "auth.test", {}, headers,
                           urlencode({"token": TOKEN}).encode())

    assert reply is not None and reply.body["ok"] is True


def test_auth_test_names_the_bot_and_team(sandbox: Sandbox) -> None:
    body = ok(sandbox, "auth.test")

    assert body["user_id"] == sandbox.slack.bot_user_id
    assert body["bot_id"] == sandbox.slack.bot_id
    assert body["url"] == "https://sandbox.slack.com/"
    assert body["team_id"].startswith("T")


def test_unknown_method_is_404_unknown_method(sandbox: Sandbox) -> None:
    assert error(sandbox, "chat.frobnicate") == (404, "unknown_method")


def test_method_is_the_last_path_segment_under_any_prefix(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}

    for path in ("/api/auth.test", "auth.test", "/slack/api/auth.test/"):
        reply = sandbox.slack.handle("POST", path, {}, headers, None)
        assert reply is not None and reply.body["ok"] is True, path


# --- chat.postMessage -------------------------------------------------------------------------


def test_post_answers_channel_ts_and_message(sandbox: Sandbox, channel: str) -> None:
    body = post(sandbox, channel, "hello")

    assert body["channel"] == channel
    assert body["ts"] == "1767603600.000100"
    assert body["message"]["text"] == "hello"
    assert body["message"]["user"] == sandbox.slack.bot_user_id
    assert body["message"]["bot_id"] == sandbox.slack.bot_id
    assert "thread_ts" not in body["message"]


def test_post_by_channel_name_with_or_without_hash(sandbox: Sandbox, channel: str) -> None:
    assert post(sandbox, "#support_self-managed", "a")["channel"] == channel
    assert post(sandbox, "support_self-managed", "b")["channel"] == channel


def test_post_accepts_a_form_body_too(sandbox: Sandbox, channel: str) -> None:
    body = ok(sandbox, "chat.postMessage", channel=channel, text="form & <b>")

    assert sandbox.slack.messages(channel)[0]["text"] == "form & <b>"
    assert body["ts"]


def test_post_to_an_unknown_channel_is_channel_not_found(sandbox: Sandbox) -> None:
    assert error(sandbox, "chat.postMessage", as_json=True, channel="C404",
                 text="x") == (200, "channel_not_found")


def test_post_without_text_is_no_text(sandbox: Sandbox, channel: str) -> None:
    assert error(sandbox, "chat.postMessage", as_json=True, channel=channel,
                 text=" ") == (200, "no_text")


def test_post_with_too_long_text_is_msg_too_long(sandbox: Sandbox, channel: str) -> None:
    assert error(sandbox, "chat.postMessage", as_json=True, channel=channel,
                 text="x" * 40_001) == (200, "msg_too_long")


def test_timestamps_are_unique_and_increase(
        sandbox: Sandbox, clock: FakeClock, channel: str) -> None:
    first = post(sandbox, channel, "a")["ts"]
    second = post(sandbox, channel, "b")["ts"]
    clock.advance(timedelta(seconds=2, milliseconds=500))
    third = post(sandbox, channel, "c")["ts"]

    assert (first, second, third) == (
        "1767603600.000100", "1767603600.000200", "1767603602.000100")


def test_replies_are_grouped_by_thread_ts(sandbox: Sandbox, channel: str) -> None:
    parent = post(sandbox, channel, "parent")["ts"]
    post(sandbox, channel, "other parent")
    reply = post(sandbox, channel, "reply", thread_ts=parent)
    nested = post(sandbox, channel, "reply to a reply", thread_ts=reply["ts"])

    assert reply["message"]["thread_ts"] == parent
    assert nested["message"]["thread_ts"] == parent  # Slack threads one level deep
    assert [m["text"] for m in sandbox.slack.thread(channel, parent)] == [
        "parent", "reply", "reply to a reply"]
    assert len(sandbox.slack.messages(channel)) == 4


def test_reply_to_an_unknown_thread_is_thread_not_found(
        sandbox: Sandbox, channel: str) -> None:
    assert error(sandbox, "chat.postMessage", as_json=True, channel=channel, text="x",
                 thread_ts="1.000100") == (200, "thread_not_found")


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_is_off_by_default(sandbox: Sandbox, channel: str) -> None:
    post(sandbox, channel, "a")
    post(sandbox, channel, "b")

    assert len(sandbox.slack.messages(channel)) == 2


def test_strict_rate_limit_allows_one_post_per_second_per_channel(
        sandbox: Sandbox, clock: FakeClock, channel: str) -> None:
    sandbox.slack.strict_rate_limit = True
    other = sandbox.slack.add_channel("support_gitlab-com")
    post(sandbox, channel, "a")

    reply = call(sandbox, "chat.postMessage", as_json=True, channel=channel, text="too soon")
    assert reply is not None
    assert (reply.status, reply.headers["Retry-After"], reply.body["error"]) == (
        429, "1", "ratelimited")
    post(sandbox, other, "another channel is fine")
    clock.advance(timedelta(seconds=1))
    post(sandbox, channel, "b")

    assert [m["text"] for m in sandbox.slack.messages(channel)] == ["a", "b"]


# --- conversations.history and conversations.replies ----------------------------------------


def test_history_lists_parents_newest_first_with_thread_fields(
        sandbox: Sandbox, channel: str) -> None:
    first = post(sandbox, channel, "first")["ts"]
    reply = post(sandbox, channel, "reply", thread_ts=first)["ts"]
    second = post(sandbox, channel, "second")["ts"]

    body = ok(sandbox, "conversations.history", channel=channel)

    assert [m["ts"] for m in body["messages"]] == [second, first]
    assert body["messages"][1]["reply_count"] == 1
    assert body["messages"][1]["latest_reply"] == reply
    assert body["messages"][1]["thread_ts"] == first
    assert body["has_more"] is False


def test_history_takes_channel_ids_only(sandbox: Sandbox, channel: str) -> None:
    assert error(sandbox, "conversations.history",
                 channel="support_self-managed") == (200, "channel_not_found")


def test_history_oldest_is_exclusive_unless_inclusive(
        sandbox: Sandbox, channel: str) -> None:
    first = post(sandbox, channel, "first")["ts"]
    second = post(sandbox, channel, "second")["ts"]

    exclusive = ok(sandbox, "conversations.history", channel=channel, oldest=first)
    inclusive = ok(sandbox, "conversations.history", channel=channel, oldest=first,
                   inclusive="1")

    assert [m["ts"] for m in exclusive["messages"]] == [second]
    assert [m["ts"] for m in inclusive["messages"]] == [second, first]
    assert error(sandbox, "conversations.history", channel=channel,
                 oldest="soon") == (200, "invalid_ts_oldest")


def test_history_pages_with_a_cursor(sandbox: Sandbox, channel: str) -> None:
    stamps = [post(sandbox, channel, f"m{n}")["ts"] for n in range(5)]

    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        body = ok(sandbox, "conversations.history", channel=channel, limit=2, cursor=cursor)
        seen += [m["ts"] for m in body["messages"]]
        cursor = body["response_metadata"]["next_cursor"]
        assert body["has_more"] is bool(cursor)
        if not cursor:
            break

    assert seen == list(reversed(stamps))
    assert error(sandbox, "conversations.history", channel=channel,
                 cursor="bogus") == (200, "invalid_cursor")


def test_replies_lists_the_parent_then_its_replies(sandbox: Sandbox, channel: str) -> None:
    parent = post(sandbox, channel, "parent")["ts"]
    person = sandbox.slack.add_user("Francesca Rossi", "francesca@example.com")
    sandbox.slack.post_as(person, channel, "human reply", thread_ts=parent)
    post(sandbox, channel, "bot reply", thread_ts=parent)
    post(sandbox, channel, "unrelated")

    body = ok(sandbox, "conversations.replies", channel=channel, ts=parent)

    assert [m["text"] for m in body["messages"]] == ["parent", "human reply", "bot reply"]
    assert body["messages"][1]["user"] == person
    assert body["messages"][1]["parent_user_id"] == sandbox.slack.bot_user_id
    assert body["messages"][0]["reply_users_count"] == 2


def test_replies_pages_with_a_cursor(sandbox: Sandbox, channel: str) -> None:
    parent = post(sandbox, channel, "parent")["ts"]
    for n in range(3):
        post(sandbox, channel, f"r{n}", thread_ts=parent)

    first = ok(sandbox, "conversations.replies", channel=channel, ts=parent, limit=2)
    cursor = first["response_metadata"]["next_cursor"]
    second = ok(sandbox, "conversations.replies", channel=channel, ts=parent, cursor=cursor)

    assert [m["text"] for m in first["messages"]] == ["parent", "r0"]
    assert [m["text"] for m in second["messages"]] == ["r1", "r2"]


def test_replies_of_an_unknown_ts_is_thread_not_found(
        sandbox: Sandbox, channel: str) -> None:
    assert error(sandbox, "conversations.replies", channel=channel,
                 ts="1.000100") == (200, "thread_not_found")


# --- chat.getPermalink, users.lookupByEmail, usergroups.list -----------------------------------


def test_permalink_of_a_parent_and_of_a_reply(sandbox: Sandbox, channel: str) -> None:
    parent = post(sandbox, channel, "parent")["ts"]
    reply = post(sandbox, channel, "reply", thread_ts=parent)["ts"]

    parent_link = ok(sandbox, "chat.getPermalink", channel=channel, message_ts=parent)
    reply_link = ok(sandbox, "chat.getPermalink", channel=channel, message_ts=reply)

    assert parent_link["permalink"] == (
        f"https://sandbox.slack.com/archives/{channel}/p{parent.replace('.', '')}")
    assert reply_link["permalink"].endswith(f"?thread_ts={parent}&cid={channel}")
    assert error(sandbox, "chat.getPermalink", channel=channel,
                 message_ts="1.000100") == (200, "message_not_found")


def test_lookup_by_email_ignores_case(sandbox: Sandbox) -> None:
    user_id = sandbox.slack.add_user("Marco Bianchi", "Marco.Bianchi@example.com")

    body = ok(sandbox, "users.lookupByEmail", email="marco.bianchi@EXAMPLE.com")

    assert body["user"]["id"] == user_id
    assert body["user"]["profile"]["email"] == "marco.bianchi@example.com"
    assert error(sandbox, "users.lookupByEmail",
                 email="nobody@example.com") == (200, "users_not_found")


def test_usergroups_list_shows_handles(sandbox: Sandbox) -> None:
    group_id = sandbox.slack.add_usergroup("support-team-americas", "Support Team Americas")

    groups = ok(sandbox, "usergroups.list")["usergroups"]

    assert [(g["id"], g["handle"], g["name"]) for g in groups] == [
        (group_id, "support-team-americas", "Support Team Americas")]


def test_conversations_info_says_whether_the_bot_is_a_member(
        sandbox: Sandbox, channel: str) -> None:
    outside = sandbox.slack.add_channel("support-outsiders", bot_member=False)

    inside_info = ok(sandbox, "conversations.info", channel=channel)["channel"]
    outside_info = ok(sandbox, "conversations.info", channel=outside)["channel"]

    assert (inside_info["id"], inside_info["name"], inside_info["is_member"]) == (
        channel, "support_self-managed", True)
    assert (outside_info["name"], outside_info["is_member"]) == ("support-outsiders", False)
    assert error(sandbox, "conversations.info", channel="C0NOSUCH01") == (
        200, "channel_not_found")
    assert error(sandbox, "conversations.info", channel="support_self-managed") == (
        200, "channel_not_found")  # ids only, as every read method


def test_a_bot_outside_a_channel_can_neither_post_nor_read_there(sandbox: Sandbox) -> None:
    outside = sandbox.slack.add_channel("support-outsiders", bot_member=False)

    assert error(sandbox, "chat.postMessage", as_json=True, channel=outside,
                 text="hi") == (200, "not_in_channel")
    assert error(sandbox, "conversations.history", channel=outside) == (200, "not_in_channel")
    assert sandbox.slack.messages(outside) == []


# --- faults -----------------------------------------------------------------------------------


def test_rate_limit_fault_answers_429_then_lets_calls_through(
        sandbox: Sandbox, channel: str) -> None:
    sandbox.slack.faults.rate_limit("chat.postMessage", retry_after=3, times=2)

    for _ in range(2):
        reply = call(sandbox, "chat.postMessage", as_json=True, channel=channel, text="x")
        assert reply is not None
        assert (reply.status, reply.headers["Retry-After"]) == (429, "3")
    ok(sandbox, "auth.test")  # other methods are not limited
    post(sandbox, channel, "x")

    assert len(sandbox.slack.messages(channel)) == 1
    assert sandbox.slack.faults.pending() == []


def test_outage_answers_503_to_every_method_and_applies_nothing(
        sandbox: Sandbox, channel: str) -> None:
    sandbox.slack.faults.outage(times=2)

    first = call(sandbox, "chat.postMessage", as_json=True, channel=channel, text="x")
    second = call(sandbox, "auth.test")

    assert first is not None and second is not None
    assert (first.status, second.status) == (503, 503)
    assert sandbox.slack.messages(channel) == []
    ok(sandbox, "auth.test")


def test_apply_then_drop_stores_the_post_and_answers_nothing(
        sandbox: Sandbox, channel: str) -> None:
    sandbox.slack.faults.apply_then_drop("chat.postMessage")

    reply = call(sandbox, "chat.postMessage", as_json=True, channel=channel, text="x")

    assert reply is None
    assert [m["text"] for m in sandbox.slack.messages(channel)] == ["x"]
    assert sandbox.slack.call_count("chat.postMessage") == 1


def test_drop_answers_nothing_and_stores_nothing(sandbox: Sandbox, channel: str) -> None:
    sandbox.slack.faults.drop("chat.postMessage")

    assert call(sandbox, "chat.postMessage", as_json=True, channel=channel, text="x") is None
    assert sandbox.slack.messages(channel) == []


def test_faults_match_the_method_name_exactly(sandbox: Sandbox, channel: str) -> None:
    sandbox.slack.faults.rate_limit("chat.post")

    post(sandbox, channel, "x")

    assert len(sandbox.slack.faults.pending()) == 1
    sandbox.slack.faults.clear()
    assert sandbox.slack.faults.pending() == []


def test_sandbox_faults_make_slack_answer_503_to_everything(
        sandbox: Sandbox, channel: str) -> None:
    sandbox.faults.server_error("*", "", service="slack", times=None)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    answers = [httpx2.post(f"{sandbox.slack_url}{method}", headers=auth,
                           data={"channel": channel, "text": "x"})
               for method in ("auth.test", "chat.postMessage", "conversations.history")]
    zendesk = httpx2.get(f"{sandbox.url}/api/v2/users/me.json", auth=sandbox.auth)

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[1].json() == {"ok": False, "error": "service_unavailable"}
    assert sandbox.slack.messages(channel) == []
    assert zendesk.status_code == 200  # Zendesk, on the same port, is not touched
    sandbox.faults.clear()
    ok(sandbox, "auth.test")


def test_sandbox_faults_make_slack_answer_429_with_a_long_retry_after(
        sandbox: Sandbox, channel: str) -> None:
    sandbox.faults.rate_limit("*", "", retry_after=600, service="slack", times=None)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    answers = [httpx2.post(f"{sandbox.slack_url}{method}", headers=auth,
                           data={"channel": channel, "text": "x"})
               for method in ("chat.postMessage", "users.lookupByEmail")]

    assert [(a.status_code, a.headers["Retry-After"]) for a in answers] == [
        (429, "600"), (429, "600")]
    assert answers[0].json() == {"ok": False, "error": "ratelimited"}
    assert sandbox.slack.messages(channel) == []
    assert sandbox.slack.call_count("chat.postMessage") == 1  # counted, not applied


# --- Python API -------------------------------------------------------------------------------


def test_channels_users_and_groups_refuse_duplicates(sandbox: Sandbox) -> None:
    sandbox.slack.add_channel("#ops")
    sandbox.slack.add_user("A", "a@example.com")
    sandbox.slack.add_usergroup("@oncall", "On call")

    with pytest.raises(ValueError):
        sandbox.slack.add_channel("ops")
    with pytest.raises(ValueError):
        sandbox.slack.add_user("A again", "A@example.com")
    with pytest.raises(ValueError):
        sandbox.slack.add_usergroup("oncall", "On call again")
    with pytest.raises(ValueError):
        sandbox.slack.add_channel("Not A Name")


def test_messages_by_name_include_replies(sandbox: Sandbox, channel: str) -> None:
    parent = post(sandbox, channel, "parent")["ts"]
    post(sandbox, channel, "reply", thread_ts=parent)

    assert [m["text"] for m in sandbox.slack.messages("#support_self-managed")] == [
        "parent", "reply"]
    with pytest.raises(KeyError):
        sandbox.slack.messages("nope")


def test_ts_round_trips() -> None:
    assert format_ts(parse_ts("1767603600.000100") or 0) == "1767603600.000100"
    assert parse_ts("1767603600") == 1_767_603_600_000_000
    assert parse_ts("later") is None
