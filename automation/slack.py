"""Slack adapter on slack_sdk's WebClient: reads retried with care, each message posted once.

- Slack answers most errors as HTTP 200 with ``ok: false``; slack_sdk raises SlackApiError,
  turned here into the project's errors, naming Slack's error code and never the token.
- slack_sdk's default retry handler re-sends a request whose connection dropped, which for
  chat.postMessage is a second copy of the message. Posting is never retried after a dropped
  connection or a 5xx; reads are, with backoff on the injected clock, within a bounded wait.
- A 429 means Slack applied nothing, so every method is retried after ``Retry-After``, waited
  on the injected clock; meanwhile no other request to Slack leaves either.
- chat.postMessage is paced to one message per second per channel, Slack's documented limit.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.client import HTTPException, RemoteDisconnected
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from automation.clock import Clock, Pause
from automation.errors import (
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    UpstreamError,
    WriteUncertain,
)

log = logging.getLogger(__name__)

SERVICE = "Slack"
HTTP_METHOD = "POST"  # slack_sdk sends every Web API call as a POST
POST_MESSAGE = "chat.postMessage"
# Methods that change something in Slack: never re-sent unless Slack said it applied nothing.
WRITES = frozenset({POST_MESSAGE})
CREDENTIAL_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
MISSING_SCOPE = "missing_scope"
NOT_FOUND_ERRORS = frozenset(
    {"channel_not_found", "users_not_found", "user_not_found", "thread_not_found",
     "message_not_found"}
)
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
MAX_RETRY_COUNT = 8
PAGE_LIMIT = 200
MAX_PAGES = 50  # 10,000 messages: far more than a channel's emergencies in any lookback
MISS_TTL = timedelta(minutes=15)  # a person or group added in Slack is found within this
TOKEN_HINT = "check the SLACK_BOT_TOKEN environment variable"
_ID = re.compile(r"[A-Z0-9]+")


# --- Slack's message formatting -------------------------------------------------------------


def escape(text: str) -> str:
    """Escape customer-controlled text so Slack shows it verbatim: no pings, no links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A link with a visible label; the label is escaped, the URL cannot end the link early."""
    return f"<{escape(url).replace('|', '%7C')}|{escape(label)}>"


def mention_user(user_id: str) -> str:
    """Mention a person by Slack user id, e.g. ``<@U123>``."""
    return f"<@{_checked_id(user_id)}>"


def mention_group(group_id: str) -> str:
    """Mention a user group by id, e.g. ``<!subteam^S123>``."""
    return f"<!subteam^{_checked_id(group_id)}>"


def _checked_id(value: str) -> str:
    # An id is spliced into markup; anything else could inject a different mention.
    if not _ID.fullmatch(value):
        raise ValueError(f"not a Slack id: {value!r}")
    return value


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """Where a message lives: its channel id and timestamp (the thread id for replies)."""

    channel: str
    ts: str


@dataclass(frozen=True)
class Message:
    """A message as read back from Slack (text as Slack stores it, escaped)."""

    ts: str
    text: str
    user: str | None


@dataclass(frozen=True)
class Identity:
    """Who the token belongs to, from auth.test."""

    user_id: str
    user: str
    team_id: str
    team: str
    bot_id: str | None
    url: str


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as conversations.info shows it to the token."""

    id: str
    name: str
    is_member: bool  # whether the bot is in it (it reads a channel's history only from inside)
    is_archived: bool
    is_private: bool


# --- retries on the injected clock ------------------------------------------------------------


def api_method_of(url: str) -> str:
    """``https://slack.com/api/chat.postMessage?x=1`` → ``chat.postMessage``."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def retry_after_seconds(headers: dict[str, Any], default: float = 1.0) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list) and value else value
            try:
                return max(float(str(text)), 0.0)
            except ValueError:
                return default
    return default


def _values(state: RetryState) -> dict[str, Any]:
    if state.custom_values is None:
        state.custom_values = {}
    return state.custom_values


def _waited(state: RetryState) -> float:
    return float(_values(state).get("waited_seconds", 0.0))


def _record_wait(state: RetryState, seconds: float) -> None:
    _values(state)["waited_seconds"] = _waited(state) + seconds


class ClockedRateLimitHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, waiting ``Retry-After`` on the injected clock within a budget."""

    def __init__(self, pause: Pause, max_retry_seconds: float,
                 max_retry_count: int = MAX_RETRY_COUNT) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.pause = pause
        self.max_retry_seconds = max_retry_seconds

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if response is None or not super()._can_retry(
                state=state, request=request, response=response, error=error):
            return False
        seconds = retry_after_seconds(dict(response.headers))
        self.pause.extend(seconds)  # even when giving up: the next request must wait too
        return _waited(state) + seconds <= self.max_retry_seconds

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        # The parent sleeps Retry-After plus jitter on the real clock; wait on ours instead.
        state.next_attempt_requested = True
        _record_wait(state, self.pause.wait())
        state.increment_current_attempt()


class _ReadBackoff(RetryHandler):
    """Exponential backoff for reads, slept on the injected clock within a budget."""

    clock: Clock
    max_retry_seconds: float

    def _within_budget(self, state: RetryState, request: HttpRequest) -> bool:
        if api_method_of(request.url) in WRITES:
            return False  # it may have been applied: the caller looks before posting again
        delay = self.interval_calculator.calculate_sleep_duration(state.current_attempt)
        _values(state)["next_delay"] = delay
        return _waited(state) + delay <= self.max_retry_seconds

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None,
                                 error: Exception | None = None) -> None:
        state.next_attempt_requested = True
        delay = float(_values(state).pop("next_delay", 0.0))
        log.warning("Slack %s: %s; retrying in %.1f s", api_method_of(request.url),
                 f"HTTP {response.status_code}" if response else type(error).__name__, delay)
        self.clock.sleep(delay)
        _record_wait(state, delay)
        state.increment_current_attempt()


class ReadConnectionErrorHandler(_ReadBackoff, ConnectionErrorRetryHandler):
    """Retries a read whose connection failed; never a write, which may have been applied."""

    def __init__(self, clock: Clock, max_retry_seconds: float,
                 max_retry_count: int = MAX_RETRY_COUNT) -> None:
        super().__init__(max_retry_count=max_retry_count, error_types=[
            URLError, ConnectionError, RemoteDisconnected, TimeoutError])
        self.clock = clock
        self.max_retry_seconds = max_retry_seconds

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return ConnectionErrorRetryHandler._can_retry(
            self, state=state, request=request, response=response, error=error,
        ) and self._within_budget(state, request)


class ReadServerErrorHandler(_ReadBackoff, ServerErrorRetryHandler):
    """Retries a read answered with a 5xx; never a write, which may have been applied."""

    def __init__(self, clock: Clock, max_retry_seconds: float,
                 max_retry_count: int = MAX_RETRY_COUNT) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.clock = clock
        self.max_retry_seconds = max_retry_seconds

    def _can_retry(self, *, state: RetryState, request: HttpRequest,
                   response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return (response is not None and response.status_code in SERVER_ERROR_STATUSES
                and self._within_budget(state, request))


# --- the adapter ------------------------------------------------------------------------------


class Slack:
    """The slice of Slack the worker needs, in the project's own types and errors."""

    def __init__(self, token: str, clock: Clock, base_url: str = "https://slack.com/api/",
                 min_interval_seconds: float = 1.0, max_retry_seconds: float = 60,
                 timeout_seconds: int = 10) -> None:
        self.clock = clock
        self.min_interval_seconds = min_interval_seconds
        self.pause = Pause(clock, SERVICE)
        # These replace slack_sdk's default handler, which re-sends a dropped chat.postMessage.
        self._handlers: list[ClockedRateLimitHandler | _ReadBackoff] = [
            ClockedRateLimitHandler(self.pause, max_retry_seconds),
            ReadConnectionErrorHandler(clock, max_retry_seconds),
            ReadServerErrorHandler(clock, max_retry_seconds),
        ]
        self._max_retry_seconds = max_retry_seconds
        handlers: list[RetryHandler] = list(self._handlers)
        self.client = WebClient(token=token, base_url=base_url, timeout=timeout_seconds,
                                retry_handlers=handlers)
        if urlsplit(base_url).hostname in ("127.0.0.1", "localhost", "::1"):
            # slack_sdk sends everything through $HTTPS_PROXY, ignoring $NO_PROXY.
            self.client.proxy = None
        self._pace_lock = threading.Lock()
        self._next_post_at: dict[str, datetime] = {}
        self._users: dict[str, tuple[str | None, datetime]] = {}
        self._groups: dict[str, str] = {}
        self._groups_read_at: datetime | None = None
        self._identity: Identity | None = None

    @property
    def max_retry_seconds(self) -> float:
        """How long one call may spend waiting out 429s, 5xx and dropped connections."""
        return self._max_retry_seconds

    @max_retry_seconds.setter
    def max_retry_seconds(self, seconds: float) -> None:
        self._max_retry_seconds = seconds
        for handler in self._handlers:
            handler.max_retry_seconds = seconds

    # --- writes --------------------------------------------------------------------------------

    def post(self, channel: str, text: str, thread_ts: str | None = None) -> Posted:
        """Post one message (a reply when ``thread_ts`` is given); never re-sent by itself.

        Paced to ``min_interval_seconds`` per channel as named here (use its id throughout).
        Raises WriteUncertain when the answer was lost: look for the message with
        ``find_message``/``thread_replies`` before posting it again.
        """
        if not text.strip():
            raise ValueError("a Slack message needs text")
        self._pace(channel)
        data = self._call(POST_MESSAGE, lambda: self.client.chat_postMessage(
            channel=channel, text=text, thread_ts=thread_ts))
        try:
            return Posted(channel=str(data["channel"]), ts=str(data["ts"]))
        except KeyError:
            raise WriteUncertain(SERVICE, HTTP_METHOD, POST_MESSAGE, 200,
                                 "answer without channel or ts") from None

    def _pace(self, channel: str) -> None:
        # Reserve the channel's next slot under the lock, sleep outside it: other channels
        # (and other threads) are not held up by this one's wait.
        key = channel.lstrip("#")
        with self._pace_lock:
            now = self.clock.now()
            slot = max(now, self._next_post_at.get(key, now))
            self._next_post_at[key] = slot + timedelta(seconds=self.min_interval_seconds)
        wait = (slot - now).total_seconds()
        if wait > 0:
            self.clock.sleep(wait)

    # --- reads ---------------------------------------------------------------------------------

    def find_message(self, channel: str, text_contains: str, oldest: datetime | None = None,
                     mine_only: bool = True) -> Posted | None:
        """The oldest top-level message in ``channel`` (an id) whose text contains the string.

        Text is compared as Slack stores it (escaped). With ``mine_only`` only this token's own
        messages count, so a person quoting the same link is not taken for our thread.
        """
        me = self._me().user_id if mine_only else None
        found: Posted | None = None
        # History comes newest first, so the last match seen is the oldest.
        for page in self._pages("conversations.history", lambda cursor: (
                self.client.conversations_history(
                    channel=channel, oldest=_ts(oldest) if oldest else None,
                    limit=PAGE_LIMIT, cursor=cursor))):
            for message in page.get("messages") or ():
                if text_contains in str(message.get("text") or "") and (
                        me is None or message.get("user") == me):
                    found = Posted(channel=channel, ts=str(message["ts"]))
        return found

    def thread_replies(self, channel: str, ts: str) -> list[Message]:
        """The replies in the thread under ``ts``, oldest first (the parent left out)."""
        replies: list[Message] = []
        for page in self._pages("conversations.replies", lambda cursor: (
                self.client.conversations_replies(
                    channel=channel, ts=ts, limit=PAGE_LIMIT, cursor=cursor))):
            for message in page.get("messages") or ():
                if str(message.get("ts")) != ts:
                    replies.append(_message_from(message))
        return replies

    def permalink(self, channel: str, ts: str) -> str:
        """A link to the message that opens it in Slack."""
        data = self._call("chat.getPermalink", lambda: self.client.chat_getPermalink(
            channel=channel, message_ts=ts))
        return str(data["permalink"])

    def user_id_by_email(self, email: str) -> str | None:
        """The Slack user id of a person, or None; hits are kept, misses for 15 minutes."""
        key = email.strip().lower()
        now = self.clock.now()
        cached = self._users.get(key)
        if cached is not None and (cached[0] is not None or now < cached[1]):
            return cached[0]
        try:
            data = self._call("users.lookupByEmail",
                              lambda: self.client.users_lookupByEmail(email=key))
            user_id: str | None = str(data["user"]["id"])
        except NotFound:
            user_id = None
        self._users[key] = (user_id, now + MISS_TTL)
        return user_id

    def usergroup_id(self, handle: str) -> str | None:
        """The id of a user group by handle (``support-team-americas``), or None."""
        handle = handle.lstrip("@")
        now = self.clock.now()
        stale = self._groups_read_at is None or now - self._groups_read_at >= MISS_TTL
        if handle not in self._groups and stale:
            data = self._call("usergroups.list", lambda: self.client.usergroups_list())
            self._groups = {str(g["handle"]): str(g["id"]) for g in data.get("usergroups") or ()
                            if g.get("handle") and g.get("id")}
            self._groups_read_at = now
        return self._groups.get(handle)

    def auth_test(self) -> Identity:
        """Check the token with Slack and say whose it is."""
        data = self._call("auth.test", lambda: self.client.auth_test())
        self._identity = Identity(
            user_id=str(data.get("user_id") or ""), user=str(data.get("user") or ""),
            team_id=str(data.get("team_id") or ""), team=str(data.get("team") or ""),
            bot_id=data.get("bot_id"), url=str(data.get("url") or ""),
        )
        return self._identity

    def channel_info(self, channel_id: str) -> ChannelInfo:
        """A channel by id (conversations.info); NotFound when the token cannot see it (a
        private channel the app was not invited to looks the same as no channel at all)."""
        data = self._call("conversations.info",
                          lambda: self.client.conversations_info(channel=channel_id))
        channel = data.get("channel") or {}
        return ChannelInfo(id=str(channel.get("id") or channel_id),
                           name=str(channel.get("name") or ""),
                           is_member=bool(channel.get("is_member")),
                           is_archived=bool(channel.get("is_archived")),
                           is_private=bool(channel.get("is_private")))

    def _me(self) -> Identity:
        return self._identity or self.auth_test()

    # --- plumbing ------------------------------------------------------------------------------

    def _pages(self, api_method: str,
               fetch: Callable[[str | None], SlackResponse]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self._call(api_method, functools.partial(fetch, cursor))
            yield page
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return
        log.warning("Slack %s: stopped after %d pages", api_method, MAX_PAGES)

    def _call(self, api_method: str, send: Callable[[], SlackResponse]) -> dict[str, Any]:
        held = self.pause.remaining()
        if held > self.max_retry_seconds:
            # Waiting out the pause would outlast the call's budget (maybe for minutes).
            raise Unreachable(SERVICE, HTTP_METHOD, api_method, 429,
                              f"rate limited for {held:.0f} s more", "the lines wait until then")
        self.pause.wait()
        try:
            response = send()
        except SlackApiError as exc:
            raise api_error(api_method, exc.response) from None
        except SlackRequestError as exc:
            raise Unreachable(SERVICE, HTTP_METHOD, api_method, None, str(exc)[:160],
                              "check [slack] url") from None
        except (OSError, HTTPException) as exc:
            raise connection_error(api_method, exc) from None
        if not isinstance(response.data, dict):
            raise Rejected(SERVICE, HTTP_METHOD, api_method, response.status_code,
                           "answer is not JSON")
        return response.data


def api_error(api_method: str, response: SlackResponse) -> UpstreamError:
    """Our error for Slack's answer: the HTTP status and Slack's error code, never the token."""
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = " ".join(str(data.get("error") or "").split())[:160]
    excerpt = code + (f" (needed: {data['needed']})" if data.get("needed") else "")
    args = (SERVICE, HTTP_METHOD, api_method, status, excerpt)
    if status == 429:
        return Unreachable(*args, "rate limited past the retry budget")
    if status in SERVER_ERROR_STATUSES or status >= 500:
        if api_method in WRITES:
            return WriteUncertain(*args, "it may have been applied; look before posting again")
        return Unreachable(*args, "gave up after retrying")
    if code in CREDENTIAL_ERRORS or status == 401:
        return CredentialsRejected(*args, TOKEN_HINT)
    if code == MISSING_SCOPE:
        # The token works but may not do this: as refused as a wrong one, until the app is
        # given the scope and reinstalled (README, "Operating it", lists them).
        return CredentialsRejected(*args, "add that scope to the Slack app and reinstall it")
    if code in NOT_FOUND_ERRORS or (status == 404 and code != "unknown_method"):
        return NotFound(*args)
    return Rejected(*args)


def connection_error(api_method: str, exc: BaseException) -> UpstreamError:
    """Unreachable, or WriteUncertain when a write was sent in full and its answer lost."""
    if isinstance(exc, URLError):
        # urllib raises URLError only while connecting or sending: Slack never got it whole.
        return Unreachable(SERVICE, HTTP_METHOD, api_method, None,
                           f"connection failed: {exc.reason}", "check [slack] url and the network")
    text = ("timed out" if isinstance(exc, TimeoutError)
            else "connection closed without an answer")
    if api_method in WRITES:
        return WriteUncertain(SERVICE, HTTP_METHOD, api_method, None, text,
                              "it may have been posted; look before posting again")
    return Unreachable(SERVICE, HTTP_METHOD, api_method, None, text, "gave up after retrying")


def _ts(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _message_from(data: dict[str, Any]) -> Message:
    user = data.get("user")
    return Message(ts=str(data.get("ts")), text=str(data.get("text") or ""),
                   user=str(user) if user is not None else None)
