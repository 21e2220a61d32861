"""A stateful fake of the Slack Web API subset the adapter uses, in memory behind one lock.

``SlackSandbox.handle`` is the whole HTTP surface as a function of one request; a server only
moves bytes (mount it under a prefix such as ``/slack/api/``: the method is the last path
segment). Like Slack, errors are HTTP 200 with ``{"ok": false, "error": code}``; only rate limits
(429), outages (5xx) and unknown methods (404) use other statuses. ``handle`` answers None when
the connection must close without an answer, the sandbox server's convention for a drop.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from automation.clock import Clock
from automation.sandbox.faults import Fault, Faults, ScopedFaults
from automation.sandbox.http import Reply, Routes, json_copy

log = logging.getLogger(__name__)

Json = dict[str, Any]

DEFAULT_TOKEN = "xoxb-sandbox-token"
TEAM_ID = "T0SANDBOX1"
TEAM_NAME = "Sandbox"
WORKSPACE_URL = "https://sandbox.slack.com/"
BOT_NAME = "emergency-automation"
POST_MESSAGE = "chat.postMessage"
MAX_TEXT = 40_000  # Slack truncates past 40,000 characters and refuses far longer text
MAX_LIMIT = 1000
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
_CHANNEL_NAME = re.compile(r"[a-z0-9_-]{1,80}")
_HANDLE = re.compile(r"[a-z0-9._-]{1,80}")
# Web API methods by name (the path's last segment); any HTTP method, as Slack takes GET too.
routes = Routes()  # filled by the @routes(...) decorators on the handlers below


class SlackError(Exception):
    """Raised inside a method to answer ``{"ok": false, "error": code}``."""

    def __init__(self, code: str, status: int = 200, headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.headers = dict(headers or {})
        self.extra = extra


@dataclass
class Channel:
    id: str
    name: str
    created: int
    messages: list[Json] = field(default_factory=list)  # parents and replies, by ts
    bot_member: bool = True  # whether the app was invited (a bot reads only from inside)

    def to_json(self, bot_user_id: str) -> Json:
        """The channel as conversations.info shows it to the bot."""
        return {
            "id": self.id, "name": self.name, "name_normalized": self.name,
            "is_channel": True, "is_group": False, "is_im": False, "is_mpim": False,
            "is_private": False, "is_archived": False, "is_general": False,
            "is_shared": False, "is_org_shared": False, "is_ext_shared": False,
            "is_pending_ext_shared": False, "is_member": self.bot_member,
            "created": self.created, "creator": bot_user_id, "unlinked": 0,
            "context_team_id": TEAM_ID, "previous_names": [],
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass
class User:
    id: str
    name: str
    email: str
    is_bot: bool = False

    def to_json(self) -> Json:
        return {
            "id": self.id, "team_id": TEAM_ID, "name": self.name, "deleted": False,
            "real_name": self.name, "tz": "Etc/UTC", "is_bot": self.is_bot,
            "is_admin": False, "is_app_user": False,
            "profile": {"real_name": self.name, "display_name": self.name, "email": self.email},
        }


@dataclass
class Usergroup:
    id: str
    handle: str
    name: str
    created: int
    created_by: str

    def to_json(self) -> Json:
        return {
            "id": self.id, "team_id": TEAM_ID, "is_usergroup": True, "is_subteam": True,
            "name": self.name, "description": "", "handle": self.handle, "is_external": False,
            "date_create": self.created, "date_update": self.created, "date_delete": 0,
            "auto_type": None, "created_by": self.created_by, "updated_by": self.created_by,
            "deleted_by": None, "prefs": {"channels": [], "groups": []}, "user_count": 0,
        }


class SlackFaults:
    """Faults armed by Slack method name, kept in the sandbox's shared ``Faults`` register."""

    def __init__(self, faults: ScopedFaults) -> None:
        self.scoped = faults

    def rate_limit(self, method_name: str, retry_after: int = 1,
                   times: int | None = 1) -> Fault:
        """Answer 429 with ``Retry-After``; the call is not applied."""
        return self.scoped.rate_limit("*", _exactly(method_name), retry_after, times)

    def outage(self, times: int | None = 1, status: int = 503) -> Fault:
        """Answer every method with a 5xx; nothing is applied."""
        return self.scoped.server_error("*", "", status, times)

    def apply_then_drop(self, method_name: str, times: int | None = 1) -> Fault:
        """Apply the call, then close the connection without an answer."""
        return self.scoped.apply_then_drop("*", _exactly(method_name), times)

    def drop(self, method_name: str, times: int | None = 1) -> Fault:
        """Close the connection without applying the call or answering."""
        return self.scoped.drop("*", _exactly(method_name), times)

    def pending(self) -> list[Any]:
        """Copies of what is still armed for Slack, in the order it will fire."""
        return self.scoped.pending()

    def clear(self) -> None:
        """Disarm Slack's faults."""
        self.scoped.clear()


def _exactly(method_name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|/){re.escape(method_name)}/?$")


def format_ts(micros: int) -> str:
    """Slack's message timestamp: seconds, a dot, six digits."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def parse_ts(text: str) -> int | None:
    """A timestamp string (``1767603600.000100`` or ``1767603600``) in microseconds."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not value.is_finite() or value < 0:
        return None
    return int(value * 1_000_000)


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or str(value).lower() in ("1", "true")


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    micros = parse_ts(ts) if kind == "next_ts" else None
    if micros is None:
        raise SlackError("invalid_cursor")
    return micros


class SlackSandbox:
    """In-memory Slack workspace: channels, messages and threads, users and user groups."""

    name = "slack"

    def __init__(self, clock: Clock, token: str = DEFAULT_TOKEN,
                 strict_rate_limit: bool = False, faults: Faults | None = None) -> None:
        self.clock = clock
        self.token = token
        # Slack allows bursts over 1 message/s/channel; strict mode answers 429 every time.
        self.strict_rate_limit = strict_rate_limit
        self.faults = SlackFaults((faults or Faults()).scoped("slack"))
        self.workspace_url = WORKSPACE_URL
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._last_ts = 0
        self._channels: dict[str, Channel] = {}
        self._users: dict[str, User] = {}
        self._usergroups: dict[str, Usergroup] = {}
        self._last_post_at: dict[str, datetime] = {}
        self._calls: Counter[str] = Counter()
        bot = User(self._new_id("U"), BOT_NAME, "emergency-automation@bots.example.com", True)
        self._users[bot.id] = bot
        self.bot_user_id = bot.id
        self.bot_id = self._new_id("B")

    # ----- Python API (tests and the demo) ------------------------------------------------

    def add_channel(self, name: str, bot_member: bool = True) -> str:
        """Create a public channel (``#`` optional) and return its id; ``bot_member=False``:
        the app was never invited, so it can neither read nor post there."""
        name = name.lstrip("#")
        if not _CHANNEL_NAME.fullmatch(name):
            raise ValueError(f"invalid channel name {name!r}: lowercase, digits, - and _")
        with self._lock:
            if self._channel_by_name(name) is not None:
                raise ValueError(f"channel #{name} already exists")
            channel = Channel(self._new_id("C"), name, int(self.clock.now().timestamp()),
                              bot_member=bot_member)
            self._channels[channel.id] = channel
            return channel.id

    def add_user(self, name: str, email: str) -> str:
        """Create a person and return their user id."""
        with self._lock:
            if self._user_by_email(email) is not None:
                raise ValueError(f"a user with email {email!r} already exists")
            user = User(self._new_id("U"), name, email.strip().lower())
            self._users[user.id] = user
            return user.id

    def add_usergroup(self, handle: str, name: str) -> str:
        """Create a user group (mentioned as ``@handle``) and return its id."""
        handle = handle.lstrip("@")
        if not _HANDLE.fullmatch(handle):
            raise ValueError(f"invalid user group handle {handle!r}")
        with self._lock:
            if any(g.handle == handle for g in self._usergroups.values()):
                raise ValueError(f"user group @{handle} already exists")
            group = Usergroup(self._new_id("S"), handle, name,
                              int(self.clock.now().timestamp()), self.bot_user_id)
            self._usergroups[group.id] = group
            return group.id

    def post_as(self, user_id: str, channel: str, text: str,
                thread_ts: str | None = None) -> str:
        """Post as a person would (e.g. an engineer replying in a thread); return the ts."""
        with self._lock:
            if user_id not in self._users:
                raise KeyError(f"no user {user_id}")
            found = self._resolve_channel(channel)
            if found is None:
                raise KeyError(f"no channel {channel}")
            return str(self._store(found, text, user_id, thread_ts)["ts"])

    def messages(self, channel: str) -> list[Json]:
        """Every message in the channel (id or name), parents and replies, oldest first."""
        with self._lock:
            found = self._channel_or_key_error(channel)
            return [self._render(found, m) for m in found.messages]

    def thread(self, channel: str, ts: str) -> list[Json]:
        """The parent ``ts`` and its replies, oldest first."""
        with self._lock:
            found = self._channel_or_key_error(channel)
            return [self._render(found, m) for m in found.messages
                    if m["ts"] == ts or m.get("thread_ts") == ts]

    def call_count(self, api_method: str) -> int:
        """How many requests for this method arrived (faulted ones included)."""
        with self._lock:
            return self._calls[api_method]

    # ----- HTTP surface --------------------------------------------------------------------

    def record(self, method: str, path: str, query: Mapping[str, Any],
               headers: Mapping[str, str], body: bytes | None) -> None:
        """Count the call by Web API method (faulted ones included)."""
        with self._lock:
            self._calls[_api_method(path)] += 1

    def handle(self, method: str, path: str, query: Mapping[str, list[str]],
               headers: Mapping[str, str], body: bytes | None) -> Reply:
        """Answer one Web API request (the method is the path's last segment); never raises."""
        with self._lock:
            try:
                return self._handle(method, _api_method(path), query, headers, body)
            except SlackError as exc:
                return self._error_reply(exc)
            except Exception:
                log.exception("slack sandbox: unhandled error for %s %s", method, path)
                return Reply(500, dict(_JSON_HEADERS), {"ok": False, "error": "internal_error"})

    def _handle(self, method: str, api_method: str, query: Mapping[str, list[str]],
                headers: Mapping[str, str], body: bytes | None) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        params = _params(query, lowered.get("content-type", ""), body)
        self._authenticate(lowered.get("authorization", ""), params)
        found = routes.find(method, api_method)
        if found is None:
            raise SlackError("unknown_method", 404, req_method=api_method)
        route: Callable[[Json], Json] = getattr(self, found[0])
        return Reply(200, dict(_JSON_HEADERS), {"ok": True, **route(params)})

    def _authenticate(self, authorization: str, params: Json) -> None:
        scheme, _, credential = authorization.partition(" ")
        token = credential.strip() if scheme.lower() == "bearer" else str(params.get("token", ""))
        if not token:
            raise SlackError("not_authed")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise SlackError("invalid_auth")

    def _error_reply(self, exc: SlackError) -> Reply:
        return Reply(exc.status, {**_JSON_HEADERS, **exc.headers},
                     {"ok": False, "error": exc.code, **exc.extra})

    def fault_reply(self, fault: Fault) -> Reply:
        """Slack's answer to an injected 429 (``ratelimited``) or 5xx."""
        if fault.kind == "rate_limit":
            return self._error_reply(SlackError(
                "ratelimited", 429, {"Retry-After": str(fault.retry_after or 1)}))
        return Reply(fault.status or 503, dict(_JSON_HEADERS),
                     {"ok": False, "error": "service_unavailable"})

    # ----- methods -------------------------------------------------------------------------

    @routes("*", r"auth\.test")
    def _auth_test(self, params: Json) -> Json:
        return {"url": self.workspace_url, "team": TEAM_NAME, "user": BOT_NAME,
                "team_id": TEAM_ID, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    @routes("*", re.escape(POST_MESSAGE))
    def _post_message(self, params: Json) -> Json:
        # chat.postMessage takes a channel id or name; every read method takes ids only.
        channel = self._resolve_channel(str(params.get("channel") or ""))
        if channel is None:
            raise SlackError("channel_not_found")
        self._require_member(channel)
        text = str(params.get("text") or "")
        if not text.strip():
            raise SlackError("no_text")
        if len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        if thread_ts is not None:
            parent = self._message(channel, thread_ts)
            if parent is None:
                raise SlackError("thread_not_found")
            thread_ts = str(parent.get("thread_ts") or parent["ts"])  # a reply's parent
        now = self.clock.now()
        last = self._last_post_at.get(channel.id)
        if self.strict_rate_limit and last is not None and now - last < timedelta(seconds=1):
            raise SlackError("ratelimited", 429, {"Retry-After": "1"})
        self._last_post_at[channel.id] = now
        message = self._store(channel, text, self.bot_user_id, thread_ts)
        return {"channel": channel.id, "ts": message["ts"],
                "message": self._render(channel, message)}

    @routes("*", r"conversations\.info")
    def _conversations_info(self, params: Json) -> Json:
        return {"channel": self._channel_by_id(params).to_json(self.bot_user_id)}

    @routes("*", r"conversations\.history")
    def _history(self, params: Json) -> Json:
        channel = self._channel_by_id(params)
        self._require_member(channel)
        parents = [m for m in reversed(channel.messages) if m.get("thread_ts") is None]
        window = _window(parents, params)
        page, more = _page(window, params, default_limit=100, newest_first=True)
        return {"messages": [self._render(channel, m) for m in page], "has_more": bool(more),
                "pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0,
                **_metadata(more)}

    @routes("*", r"conversations\.replies")
    def _replies(self, params: Json) -> Json:
        channel = self._channel_by_id(params)
        self._require_member(channel)
        ts = str(params.get("ts") or "")
        parent = self._message(channel, ts) if ts else None
        if parent is None:
            raise SlackError("thread_not_found")
        replies = [m for m in channel.messages if m.get("thread_ts") == ts]
        window = [parent, *_window(replies, params)]
        page, more = _page(window, params, default_limit=1000, newest_first=False)
        return {"messages": [self._render(channel, m) for m in page], "has_more": bool(more),
                **_metadata(more)}

    @routes("*", r"chat\.getPermalink")
    def _permalink(self, params: Json) -> Json:
        channel = self._channel_by_id(params)
        message = self._message(channel, str(params.get("message_ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        url = f"{self.workspace_url}archives/{channel.id}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts"):
            url += f"?thread_ts={message['thread_ts']}&cid={channel.id}"
        return {"channel": channel.id, "permalink": url}

    @routes("*", r"users\.lookupByEmail")
    def _lookup_by_email(self, params: Json) -> Json:
        email = str(params.get("email") or "")
        if not email:
            raise SlackError("invalid_arguments")
        user = self._user_by_email(email)
        if user is None:
            raise SlackError("users_not_found")
        return {"user": user.to_json()}

    @routes("*", r"usergroups\.list")
    def _usergroups_list(self, params: Json) -> Json:
        groups = [g.to_json() for g in self._usergroups.values()]
        if _flag(params, "include_users"):
            for group in groups:
                group["users"] = []
        return {"usergroups": groups}

    # ----- state -----------------------------------------------------------------------------

    def _store(self, channel: Channel, text: str, user_id: str, thread_ts: str | None) -> Json:
        message: Json = {"type": "message", "user": user_id, "text": text,
                         "ts": self._next_ts(), "team": TEAM_ID}
        if user_id == self.bot_user_id:
            message["bot_id"] = self.bot_id
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            parent = self._message(channel, thread_ts)
            message["parent_user_id"] = parent["user"] if parent else None
        channel.messages.append(message)
        return message

    def _render(self, channel: Channel, message: Json) -> Json:
        """The message as the API shows it: a parent with replies carries thread fields."""
        shown = json_copy(message)
        if message.get("thread_ts") is None:
            replies = [m for m in channel.messages if m.get("thread_ts") == message["ts"]]
            if replies:
                users = list(dict.fromkeys(m["user"] for m in replies))
                shown.update(thread_ts=message["ts"], reply_count=len(replies),
                             reply_users=users[:5], reply_users_count=len(users),
                             latest_reply=replies[-1]["ts"])
        return shown

    def _next_ts(self) -> str:
        # Whole seconds of the sandbox clock plus a counter: unique and strictly increasing.
        whole = int(self.clock.now().timestamp()) * 1_000_000
        self._last_ts = max(whole, self._last_ts) + 100
        return format_ts(self._last_ts)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):09d}"

    def _message(self, channel: Channel, ts: str) -> Json | None:
        return next((m for m in channel.messages if m["ts"] == ts), None)

    def _resolve_channel(self, ref: str) -> Channel | None:
        return self._channels.get(ref) or self._channel_by_name(ref.lstrip("#"))

    def _channel_by_name(self, name: str) -> Channel | None:
        return next((c for c in self._channels.values() if c.name == name), None)

    def _channel_by_id(self, params: Json) -> Channel:
        channel = self._channels.get(str(params.get("channel") or ""))
        if channel is None:
            raise SlackError("channel_not_found")
        return channel

    @staticmethod
    def _require_member(channel: Channel) -> None:
        # What Slack answers a bot outside the channel (without chat:write.public, for posts).
        if not channel.bot_member:
            raise SlackError("not_in_channel")

    def _channel_or_key_error(self, ref: str) -> Channel:
        channel = self._resolve_channel(ref)
        if channel is None:
            raise KeyError(f"no channel {ref}")
        return channel

    def _user_by_email(self, email: str) -> User | None:
        wanted = email.strip().lower()
        return next((u for u in self._users.values() if u.email == wanted), None)


def _api_method(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _params(query: Mapping[str, list[str]], content_type: str, body: bytes | None) -> Json:
    """Arguments from the query string and a form-encoded or JSON body, as slack_sdk sends."""
    params: Json = {k: v[-1] for k, v in query.items() if v}
    if not body:
        return params
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SlackError("invalid_json") from None
        if not isinstance(parsed, dict):
            raise SlackError("invalid_json")
        params.update(parsed)
    elif kind in ("application/x-www-form-urlencoded", ""):
        try:
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
        except (ValueError, UnicodeDecodeError):
            raise SlackError("invalid_form_data") from None
        params.update({k: v[-1] for k, v in form.items()})
    else:
        raise SlackError("invalid_post_type")
    return params


def _window(messages: list[Json], params: Json) -> list[Json]:
    """Messages between ``oldest`` and ``latest`` (exclusive unless ``inclusive``)."""
    oldest = _bound(params, "oldest", "invalid_ts_oldest")
    latest = _bound(params, "latest", "invalid_ts_latest")
    inclusive = _flag(params, "inclusive")

    def inside(message: Json) -> bool:
        micros = parse_ts(message["ts"]) or 0
        if oldest is not None and (micros < oldest or (micros == oldest and not inclusive)):
            return False
        return latest is None or micros < latest or (micros == latest and inclusive)

    return [m for m in messages if inside(m)]


def _bound(params: Json, name: str, error: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    micros = parse_ts(str(value))
    if micros is None:
        raise SlackError(error)
    return micros


def _page(messages: list[Json], params: Json, default_limit: int,
          newest_first: bool) -> tuple[list[Json], Json | None]:
    """One page from the cursor on, and the first message of the next page (if any)."""
    try:
        limit = min(max(int(params.get("limit") or default_limit), 1), MAX_LIMIT)
    except (TypeError, ValueError):
        raise SlackError("invalid_limit") from None
    cursor = str(params.get("cursor") or "")
    if cursor:
        start = _decode_cursor(cursor)
        if newest_first:
            messages = [m for m in messages if (parse_ts(m["ts"]) or 0) <= start]
        else:
            messages = [m for m in messages if (parse_ts(m["ts"]) or 0) >= start]
    page = messages[:limit]
    more = messages[limit] if len(messages) > limit else None
    return page, more


def _metadata(more: Json | None) -> Json:
    return {"response_metadata": {"next_cursor": _encode_cursor(more["ts"]) if more else ""}}
