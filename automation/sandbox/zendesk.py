"""A stateful fake of the Zendesk Support API subset the worker talks to."""

# The state lives in memory behind one lock, so concurrent requests are serialized like rows in
# a real database. FakeZendesk.handle is the whole HTTP surface as a pure function of a request;
# server.py only moves bytes. Shapes, statuses and error bodies follow Zendesk's OpenAPI
# description (/work/shared/specs/zendesk-support-oas.yaml).

from __future__ import annotations

import base64
import binascii
import hmac
import html
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import quote, urlencode

from automation.clock import Clock
from automation.sandbox.budget import PersonSaving, UpdateLimit
from automation.sandbox.faults import Fault
from automation.sandbox.http import Reply, Routes, json_copy

log = logging.getLogger(__name__)

Json = dict[str, Any]


class _Record(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Record)

PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
TICKET_TYPES = ("problem", "incident", "question", "task")
ROLES = ("end-user", "agent", "admin")
DEFAULT_BRAND_ID = 360_000_001
DEFAULT_FORM_ID = 360_000_101
RATE_LIMIT = 700
SEARCH_RESULT_LIMIT = 1000
MAX_PAGE_SIZE = 100

# Zendesk's own wording, so a client's error handling sees what production sends.
_SEARCH_LIMIT_ERROR = {
    "error": "invalid",
    "description": "Invalid search: Requested response size was greater than "
    "Search Response Limits",
}
_CONFLICT_ERROR = {
    "error": "UpdateConflict",
    "description": "Safe Update prevented the update due to outdated ticket data. "
    "Please fetch the latest ticket data and try again.",
}
# What an injected 4xx answers (the request is not applied), as Zendesk words it.
_CLIENT_ERRORS = {
    409: _CONFLICT_ERROR,
    422: {"error": "RecordInvalid", "description": "Record validation errors"},
}
_SERVER_ERRORS = {
    500: ("InternalServerError", "Something went wrong. Please try again later."),
    502: ("BadGateway", "The server received an invalid response from an upstream server."),
    503: ("ServiceUnavailable", "Zendesk is temporarily unavailable. Please try again later."),
    504: ("GatewayTimeout", "The server timed out waiting for an upstream server."),
}


class ApiError(Exception):
    """Raised inside a route to answer with an error status and a Zendesk error body."""

    def __init__(self, status: int, body: Json, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class SearchQueryError(ValueError):
    """A search query uses syntax the sandbox does not support."""


def iso(moment: datetime) -> str:
    """Format a time the way Zendesk does: ISO 8601, UTC, whole seconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(moment: datetime) -> str:
    """Format a time for the HTTP Date header (RFC 7231 IMF-fixdate)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def whole_seconds(moment: datetime) -> datetime:
    """Drop sub-second precision, which Zendesk never stores."""
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an ISO 8601 timestamp; naive values are taken as UTC; None if unparseable."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def error_body(status: int) -> Json:
    """The JSON body Zendesk's edge sends with a 5xx status."""
    error, description = _SERVER_ERRORS.get(status, ("ServerError", "Unexpected server error."))
    return {"error": error, "description": description}


def html_from_text(text: str) -> str:
    """Render a plain comment body as Zendesk's html_body does."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    rendered = "".join(
        f'<p dir="auto">{html.escape(p.strip()).replace(chr(10), "<br>")}</p>' for p in paragraphs
    )
    return f'<div class="zd-comment" dir="auto">{rendered}</div>'


def text_from_html(markup: str) -> str:
    """Reduce an html_body to the plain text Zendesk stores in body."""
    text = re.sub(r"(?i)<br\s*/?>", "\n", markup)
    text = re.sub(r"(?i)</p\s*>", "\n\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def normalize_tags(raw: Iterable[str] | str) -> list[str]:
    """Split, lowercase and dedupe tags as Zendesk does (tags cannot contain spaces)."""
    values = [raw] if isinstance(raw, str) else list(raw)
    tags: list[str] = []
    for value in values:
        for tag in str(value).split():
            tag = tag.lower()
            if tag not in tags:
                tags.append(tag)
    return tags


def _encode_cursor(item_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{item_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id":
            raise ValueError(raw)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            {"error": "InvalidPaginationParameter", "description": "page[after] is invalid"},
        ) from exc


@dataclass(frozen=True)
class Via:
    """How a ticket, an audit or a comment came about: Zendesk's ``via`` object."""

    channel: str
    source_from: Mapping[str, Any] = field(default_factory=dict)
    source_to: Mapping[str, Any] = field(default_factory=dict)
    rel: str | None = None

    def to_json(self) -> Json:
        return {
            "channel": self.channel,
            "source": {"from": dict(self.source_from), "to": dict(self.source_to),
                       "rel": self.rel},
        }


API = Via("api")  # the REST API
WEB = Via("web")  # a person in the agent UI (the sandbox's helper methods)


def _system_metadata(via: Via) -> Json:
    """What Zendesk records of the client in ``metadata.system``."""
    return {"ip_address": "127.0.0.1"} if via.channel in ("api", "web") else {}


@dataclass
class User:
    """A Zendesk user: end-user, agent or admin."""

    id: int
    name: str
    email: str
    role: str
    organization_id: int | None
    created_at: datetime
    tags: list[str] = field(default_factory=list)
    time_zone: str = "UTC"

    @property
    def is_agent(self) -> bool:
        return self.role in ("agent", "admin")

    def to_json(self, base_url: str) -> Json:
        stamp = iso(self.created_at)
        return {
            "id": self.id,
            "url": f"{base_url}/api/v2/users/{self.id}.json",
            "name": self.name,
            "email": self.email,
            "created_at": stamp,
            "updated_at": stamp,
            "time_zone": self.time_zone,
            "iana_time_zone": "Etc/UTC",
            "phone": None,
            "shared_phone_number": None,
            "photo": None,
            "locale_id": 1,
            "locale": "en-US",
            "organization_id": self.organization_id,
            "role": self.role,
            "verified": True,
            "external_id": None,
            "tags": list(self.tags),
            "alias": "",
            "active": True,
            "shared": False,
            "shared_agent": False,
            "last_login_at": None,
            "two_factor_auth_enabled": False,
            "signature": None,
            "details": "",
            "notes": "",
            "role_type": None,
            "custom_role_id": None,
            "moderator": self.is_agent,
            "ticket_restriction": None if self.is_agent else "requested",
            "only_private_comments": False,
            "restricted_agent": False,
            "suspended": False,
            "default_group_id": None,
            "report_csv": self.role == "admin",
            "user_fields": {},
        }


@dataclass
class Organization:
    """A customer organization with its custom fields."""

    id: int
    name: str
    created_at: datetime
    fields: dict[str, Any]
    tags: list[str]
    domain_names: list[str] = field(default_factory=list)

    def to_json(self, base_url: str) -> Json:
        stamp = iso(self.created_at)
        return {
            "id": self.id,
            "url": f"{base_url}/api/v2/organizations/{self.id}.json",
            "name": self.name,
            "shared_tickets": False,
            "shared_comments": False,
            "external_id": None,
            "created_at": stamp,
            "updated_at": stamp,
            "domain_names": list(self.domain_names),
            "details": "",
            "notes": "",
            "group_id": None,
            "tags": list(self.tags),
            "organization_fields": json_copy(self.fields),
        }


@dataclass
class Comment:
    """One ticket comment (public reply or internal note)."""

    id: int
    ticket_id: int
    audit_id: int
    author_id: int
    body: str
    html_body: str
    public: bool
    created_at: datetime
    via: Via
    metadata: Json  # its audit's: Zendesk shows the audit's metadata on the comment

    def to_json(self) -> Json:
        return {
            **self.to_event(),
            "created_at": iso(self.created_at),
            "via": self.via.to_json(),
            "metadata": json_copy(self.metadata),
        }

    def to_event(self) -> Json:
        return {
            "id": self.id,
            "type": "Comment",
            "author_id": self.author_id,
            "body": self.body,
            "html_body": self.html_body,
            "plain_body": self.body,
            "public": self.public,
            "audit_id": self.audit_id,
            "attachments": [],
        }


@dataclass
class Audit:
    """The record of one ticket change set, with its events."""

    id: int
    ticket_id: int
    author_id: int
    created_at: datetime
    via: Via
    events: list[Json]
    metadata: Json  # {"system": ..., "custom": the update's ticket.metadata}

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "ticket_id": self.ticket_id,
            "created_at": iso(self.created_at),
            "author_id": self.author_id,
            "metadata": json_copy(self.metadata),
            "via": self.via.to_json(),
            "events": json_copy(self.events),
        }


@dataclass
class Ticket:
    """A support ticket; comments and audits are kept beside it in the state."""

    id: int
    subject: str
    description: str
    priority: str | None
    status: str
    requester_id: int
    submitter_id: int
    organization_id: int | None
    brand_id: int
    ticket_form_id: int
    created_at: datetime
    updated_at: datetime
    via: Via
    assignee_id: int | None = None
    group_id: int | None = None
    type: str | None = None
    external_id: str | None = None
    tags: list[str] = field(default_factory=list)
    collaborator_ids: list[int] = field(default_factory=list)
    email_cc_ids: list[int] = field(default_factory=list)
    custom_fields: list[Json] = field(default_factory=list)
    is_public: bool = True
    followup_ids: list[int] = field(default_factory=list)

    def to_json(self, base_url: str) -> Json:
        return {
            "id": self.id,
            "url": f"{base_url}/api/v2/tickets/{self.id}.json",
            "external_id": self.external_id,
            "via": self.via.to_json(),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "type": self.type,
            "subject": self.subject,
            "raw_subject": self.subject,
            "description": self.description,
            "priority": self.priority,
            "status": self.status,
            "recipient": None,
            "requester_id": self.requester_id,
            "submitter_id": self.submitter_id,
            "assignee_id": self.assignee_id,
            "organization_id": self.organization_id,
            "group_id": self.group_id,
            "collaborator_ids": list(self.collaborator_ids),
            "follower_ids": [],
            "email_cc_ids": list(self.email_cc_ids),
            "forum_topic_id": None,
            "problem_id": None,
            "has_incidents": False,
            "is_public": self.is_public,
            "due_at": None,
            "tags": list(self.tags),
            "custom_fields": json_copy(self.custom_fields),
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "fields": json_copy(self.custom_fields),
            "followup_ids": list(self.followup_ids),
            "ticket_form_id": self.ticket_form_id,
            "brand_id": self.brand_id,
            "allow_channelback": False,
            "allow_attachments": True,
            "from_messaging_channel": False,
        }


@dataclass(frozen=True)
class Term:
    """One parsed search term such as ``priority>normal`` or ``-tags:vip``."""

    field: str
    op: str
    value: str
    negated: bool = False


_FIELD_ALIASES = {"tag": "tags", "brand_id": "brand", "ticket_form_id": "form"}
_ORDERED_FIELDS = {"priority": PRIORITIES, "status": STATUSES}
_EQUALITY_FIELDS = {"type", "tags", "organization", "brand", "form", "assignee", "requester"}
_TIME_FIELDS = {"created", "updated"}
_TOKEN = re.compile(r'(?:[^\s"]+|"[^"]*")+')
_TERM = re.compile(r"^(?P<neg>-)?(?P<field>[A-Za-z_]+)(?P<op>:|<=|>=|<|>)(?P<value>.+)$")


def parse_search(query: str) -> list[Term]:
    """Parse a Zendesk ticket search query; unsupported terms raise SearchQueryError."""
    terms: list[Term] = []
    for token in _TOKEN.findall(query):
        match = _TERM.match(token)
        if match is None:
            raise SearchQueryError(
                f"unsupported search term {token!r}: the sandbox supports only field:value terms"
            )
        name = match["field"].lower()
        name = _FIELD_ALIASES.get(name, name)
        op, value, negated = match["op"], match["value"].strip('"'), bool(match["neg"])
        if not value:
            raise SearchQueryError(f"search term {token!r} has no value")
        if name in _ORDERED_FIELDS:
            value = value.lower()
            allowed = _ORDERED_FIELDS[name]
            if value not in allowed and not (name == "priority" and value == "none" and op == ":"):
                raise SearchQueryError(f"unknown {name} {value!r} in {token!r}")
        elif name in _EQUALITY_FIELDS:
            if op != ":":
                raise SearchQueryError(f"{name} supports only ':' in {token!r}")
            value = value.lower()
            if name == "type" and (value != "ticket" or negated):
                raise SearchQueryError(f"the sandbox searches tickets only, got {token!r}")
            if name in ("brand", "form", "assignee") and not (value.isdigit() or value == "none"):
                raise SearchQueryError(f"{name} takes a numeric id or none, got {token!r}")
        elif name in _TIME_FIELDS:
            if _search_time(value) is None:
                raise SearchQueryError(f"{name} takes YYYY-MM-DD or an ISO 8601 time: {token!r}")
        else:
            raise SearchQueryError(f"unsupported search field {name!r} in {token!r}")
        terms.append(Term(name, op, value, negated))
    return terms


def _search_time(value: str) -> datetime | None:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    return parse_timestamp(value) if "T" in value.upper() else None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == ":":
        return bool(left == right)
    if op == "<":
        return bool(left < right)
    if op == ">":
        return bool(left > right)
    if op == "<=":
        return bool(left <= right)
    return bool(left >= right)


class _Request(NamedTuple):
    method: str
    path: str  # as sent, used to build pagination links
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes | None
    user: User


@dataclass
class _View:
    id: int
    title: str
    matches: Callable[[Ticket], bool]
    created_at: datetime

    def to_json(self, base_url: str) -> Json:
        stamp = iso(self.created_at)
        return {
            "id": self.id, "url": f"{base_url}/api/v2/views/{self.id}.json",
            "title": self.title, "active": True, "default": False, "position": 0,
            "description": None, "restriction": None, "created_at": stamp,
            "updated_at": stamp, "raw_title": self.title,
            # The sandbox matches with a search query or a predicate, not Zendesk's conditions.
            "conditions": {"all": [], "any": []},
            "execution": {"group_by": None, "sort_by": "created_at", "sort_order": "asc",
                          "columns": [], "fields": []},
        }


routes = Routes()  # filled by the @routes(...) decorators on the handlers below


class FakeZendesk:
    """In-memory Zendesk account: users, organizations, tickets, comments, audits and views."""

    name = "zendesk"

    def __init__(
        self,
        clock: Clock,
        api_email: str = "automation@example.com",
        api_token: str = "sandbox-token",
        base_url: str = "https://sandbox.zendesk.com",
    ) -> None:
        self.clock = clock
        self.api_email = api_email.lower()
        self.api_token = api_token
        self.base_url = base_url
        self.rate_limit = RATE_LIMIT
        # As in Zendesk, `updated_at` has whole seconds: two updates in one second share it,
        # so a safe update made on a read of that second is not refused. False: each update
        # moves it a second on (a kinder Zendesk, for tests about something else).
        self.same_second_updates = True
        self._lock = threading.RLock()
        self._users: dict[int, User] = {}
        self._organizations: dict[int, Organization] = {}
        self._tickets: dict[int, Ticket] = {}
        self._comments: dict[int, list[Comment]] = {}
        self._audits: dict[int, list[Audit]] = {}
        self._views: dict[int, _View] = {}
        self._macros: dict[int, Json] = {}
        # Disjoint id ranges, so a user id passed where a ticket id belongs finds nothing.
        self._user_ids = itertools.count(1_000_001)
        self._organization_ids = itertools.count(5_000_001)
        self._ticket_ids = itertools.count(1)
        self._event_ids = itertools.count(90_000_001)
        self._job_ids = itertools.count(1)
        self._window_minute = -1
        self._window_requests = 0
        self.update_limit: UpdateLimit | None = None  # off: every update is let through
        self._people_saving: list[PersonSaving] = []
        self.api_user_id = self.add_user("Emergency Automation", api_email, role="admin")

    # ----- Python API (tests and the demo) ------------------------------------------------

    def limit_updates(self, per_minute: int = 100, per_ticket: int = 30) -> UpdateLimit:
        """Enforce Zendesk's ticket-update limits from now on: ``per_minute`` for the whole
        account and ``per_ticket`` per user and ticket in 10 minutes, counting the API's
        updates and agents' saves (add_comment, set_tags... by an agent) alike. Past them an
        API update is answered 429 with Retry-After, and a save raises ApiError(429)."""
        with self._lock:
            self.update_limit = UpdateLimit(per_minute, per_ticket)
            return self.update_limit

    def person_saving(self, author_id: int, ticket_ids: Iterable[int],
                      every_seconds: float = 6) -> PersonSaving:
        """An agent who saves the tickets in turn (an internal note each) every
        ``every_seconds`` of the sandbox's clock, from now on; played as the clock passes
        (before each request, and by ``catch_up``), refusals counted on what is returned."""
        with self._lock:
            self._agent(author_id)
            every = timedelta(seconds=every_seconds)
            person = PersonSaving(author_id, tuple(ticket_ids), every, self._now() + every)
            self._people_saving.append(person)
            return person

    def catch_up(self) -> None:
        """Play the saves people made by now (each at its own moment of the clock)."""
        with self._lock:
            now = self.clock.now()
            for person in self._people_saving:
                for at, ticket_id in person.due(now):
                    try:
                        self._spend_update(ticket_id, person.author_id, at)
                    except ApiError:
                        person.refuse(at)
                        continue
                    self._apply(self._tickets[ticket_id], person.author_id, WEB, {},
                                _note("Saved.", public=False))

    def add_user(
        self,
        name: str,
        email: str,
        role: str = "end-user",
        organization_id: int | None = None,
    ) -> int:
        """Create a user and return its id."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        with self._lock:
            if self._user_by_email(email) is not None:
                raise ValueError(f"a user with email {email!r} already exists")
            if organization_id is not None and organization_id not in self._organizations:
                raise KeyError(f"no organization {organization_id}")
            user = User(
                id=next(self._user_ids),
                name=name,
                email=email.lower(),
                role=role,
                organization_id=organization_id,
                created_at=self._now(),
            )
            self._users[user.id] = user
            return user.id

    def add_organization(
        self,
        name: str,
        fields: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        domain_names: Iterable[str] = (),
    ) -> int:
        """Create an organization with custom ``organization_fields`` and return its id."""
        with self._lock:
            organization = Organization(
                id=next(self._organization_ids),
                name=name,
                created_at=self._now(),
                fields=dict(fields or {}),
                tags=normalize_tags(tags or ()),
                domain_names=list(domain_names),
            )
            self._organizations[organization.id] = organization
            return organization.id

    def create_ticket(
        self,
        requester_id: int,
        subject: str,
        body: str,
        priority: str | None = "urgent",
        tags: Iterable[str] = (),
        organization_id: int | None = None,
        brand_id: int | None = None,
        ticket_form_id: int | None = None,
        *,
        cc_ids: Iterable[int] = (),
        assignee_id: int | None = None,
        channel: str = "web",
    ) -> int:
        """Create a ticket as the requester would (first comment by the requester).

        The requester may be an agent (a partner who is an agent elsewhere); ``cc_ids`` are the
        ticket's email CCs (and so collaborators)."""
        _check_priority(priority)
        with self._lock:
            requester = self._users.get(requester_id)
            if requester is None:
                raise KeyError(f"no user {requester_id}")
            if organization_id is not None and organization_id not in self._organizations:
                raise KeyError(f"no organization {organization_id}")
            cc_ids = list(cc_ids)
            unknown = [i for i in cc_ids if i not in self._users]
            if unknown:
                raise KeyError(f"no user {unknown[0]} to CC")
            ticket = self._create(
                requester=requester,
                author_id=requester_id,
                subject=subject,
                comment=(body, None, True),
                fields={
                    "priority": priority,
                    "tags": normalize_tags(tags),
                    "organization_id": organization_id,
                    "brand_id": brand_id,
                    "ticket_form_id": ticket_form_id,
                    "collaborator_ids": cc_ids,
                    "email_cc_ids": cc_ids,
                    "assignee_id": assignee_id,
                },
                via=Via(channel),
            )[0]
            return ticket.id

    def add_comment(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        public: bool = True,
        *,
        channel: str = "web",
    ) -> int:
        """Add a comment as a person would (bumps updated_at like a PUT); return its id."""
        if not body.strip():
            raise ValueError("comment body must not be blank")
        with self._lock:
            ticket = self._ticket_or_key_error(ticket_id)
            if author_id not in self._users:
                raise KeyError(f"no user {author_id}")
            if self._users[author_id].is_agent:
                self._spend_update(ticket_id, author_id)
            self._apply(ticket, author_id, Via(channel), {},
                        (body, html_from_text(body), public))
            return self._comments[ticket_id][-1].id

    def set_tags(self, ticket_id: int, tags: Iterable[str], author_id: int | None = None) -> None:
        """Set the tags as an agent's hand edit or a macro's "set tags" does."""
        self._change(ticket_id, {"tags": normalize_tags(tags)}, author_id)

    def set_priority(
        self, ticket_id: int, priority: str | None, author_id: int | None = None
    ) -> None:
        """Change the priority as an agent would in the UI."""
        _check_priority(priority)
        self._change(ticket_id, {"priority": priority}, author_id)

    def set_status(self, ticket_id: int, status: str, author_id: int | None = None) -> None:
        """Change the status as an agent would in the UI."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self._change(ticket_id, {"status": status}, author_id)

    def solve(self, ticket_id: int, author_id: int | None = None) -> None:
        """Mark the ticket solved."""
        self.set_status(ticket_id, "solved", author_id)

    def close(self, ticket_id: int) -> None:
        """Close the ticket (as Zendesk's automation does days after solving)."""
        self.set_status(ticket_id, "closed")

    def add_cc(self, ticket_id: int, user_id: int, author_id: int | None = None) -> None:
        """An agent (the API user unless named) adds an email CC in the UI: one audit with
        ``Change`` events for ``email_cc_ids`` and ``collaborator_ids``."""
        with self._lock:
            ticket = self._ticket_or_key_error(ticket_id)
            if user_id not in self._users:
                raise KeyError(f"no user {user_id}")
            self._agent(author_id or self.api_user_id)
            changes = {name: list(dict.fromkeys([*getattr(ticket, name), user_id]))
                       for name in ("email_cc_ids", "collaborator_ids")}
            self._change(ticket_id, changes, author_id)

    def merge(
        self,
        target_id: int,
        source_ids: Iterable[int],
        agent_id: int,
        target_comment: str | None = None,
        source_comment: str | None = None,
        target_public: bool = False,
        source_public: bool = False,
    ) -> None:
        """An agent merges the source tickets into the target, as Zendesk does (see _merge)."""
        with self._lock:
            self._agent(agent_id)
            target = self._ticket_or_key_error(target_id)
            sources = [self._ticket_or_key_error(i) for i in dict.fromkeys(source_ids)]
            problem = _merge_problem(target, sources)
            if problem:
                raise ValueError(problem)
            notes = _MergeNotes(target_comment, source_comment, target_public, source_public)
            self._merge(target, sources, agent_id, notes)

    def create_follow_up(
        self,
        closed_ticket_id: int,
        body: str,
        subject: str | None = None,
        priority: str | None = None,
    ) -> int:
        """The requester replies to a closed ticket: Zendesk makes a follow-up ticket that
        copies requester, organization, tags, brand and form; its audits are its own."""
        _check_priority(priority)
        with self._lock:
            closed = self._ticket_or_key_error(closed_ticket_id)
            if closed.status != "closed":
                raise ValueError(f"ticket {closed.id} is {closed.status}, not closed")
            via = Via("closed_ticket", {"ticket_id": closed.id, "subject": closed.subject},
                      {}, "follow_up")
            fields = {"priority": priority,
                      **_copied(closed, "organization_id", "tags", "brand_id", "ticket_form_id")}
            requester = self._users[closed.requester_id]
            ticket = self._create(requester, requester.id, subject or closed.subject,
                                  (body, None, True), fields, via)[0]
            closed.followup_ids.append(ticket.id)
            return ticket.id

    def clone(self, ticket_id: int, agent_id: int) -> int:
        """An agent clones a ticket in the UI: a new ticket (via web) with the original's
        subject, description, requester, organization, priority, tags, brand, form and CCs.
        The agent submits it, so the copied description is the agent's comment."""
        with self._lock:
            original = self._ticket_or_key_error(ticket_id)
            self._agent(agent_id)
            first = self._comments[ticket_id][0]
            fields = _copied(original, "priority", "organization_id", "tags", "brand_id",
                             "ticket_form_id", "email_cc_ids", "collaborator_ids")
            ticket = self._create(self._users[original.requester_id], agent_id, original.subject,
                                  (original.description, first.html_body, first.public),
                                  fields, WEB)[0]
            return ticket.id

    def add_macro(self, title: str, body: str, public: bool = True, active: bool = True) -> int:
        """A macro whose only action is a comment (what the post-call macro does)."""
        with self._lock:
            macro_id = 7_000_000 + len(self._macros) + 1
            self._macros[macro_id] = {
                "id": macro_id, "title": title, "active": active, "description": None,
                "actions": [{"field": "comment_value", "value": body},
                            {"field": "comment_mode_is_public", "value": str(public).lower()}],
                "url": f"{self.base_url}/api/v2/macros/{macro_id}.json",
            }
            return macro_id

    def add_view(
        self,
        view_id: int,
        query: str | Callable[[Json], bool],
        title: str | None = None,
    ) -> None:
        """Define a view by a search query string or a predicate over ticket JSON."""
        if isinstance(query, str):
            terms = parse_search(query)

            def matches(ticket: Ticket) -> bool:
                return self._matches(ticket, terms)

        else:
            predicate = query

            def matches(ticket: Ticket) -> bool:
                return bool(predicate(ticket.to_json(self.base_url)))

        with self._lock:
            label = title or (query if isinstance(query, str) else f"View {view_id}")
            self._views[view_id] = _View(view_id, label, matches, self._now())

    def ticket(self, ticket_id: int) -> Json:
        """The ticket as the API shows it."""
        with self._lock:
            return self._ticket_or_key_error(ticket_id).to_json(self.base_url)

    def tickets(self) -> list[Json]:
        """All tickets, oldest first."""
        with self._lock:
            return [t.to_json(self.base_url) for t in self._tickets.values()]

    def comments(self, ticket_id: int) -> list[Json]:
        """All comments of a ticket, oldest first."""
        with self._lock:
            self._ticket_or_key_error(ticket_id)
            return [c.to_json() for c in self._comments[ticket_id]]

    def public_comments(self, ticket_id: int) -> list[Json]:
        """The public comments of a ticket, oldest first."""
        return [c for c in self.comments(ticket_id) if c["public"]]

    def audits(self, ticket_id: int) -> list[Json]:
        """All audits of a ticket, oldest first."""
        with self._lock:
            self._ticket_or_key_error(ticket_id)
            return [a.to_json() for a in self._audits[ticket_id]]

    def user(self, user_id: int) -> Json:
        """The user as the API shows it."""
        with self._lock:
            return self._users[user_id].to_json(self.base_url)

    def organization(self, organization_id: int) -> Json:
        """The organization as the API shows it."""
        with self._lock:
            return self._organizations[organization_id].to_json(self.base_url)

    def organization_id_by_name(self, name: str) -> int | None:
        """The id of the organization with this name (case aside), if any."""
        with self._lock:
            return next((o.id for o in self._organizations.values()
                         if o.name.casefold() == name.casefold()), None)

    def user_id_by_email(self, email: str) -> int | None:
        """The id of the user with this email, if any."""
        with self._lock:
            user = self._user_by_email(email)
            return user.id if user else None

    # ----- HTTP surface --------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> Reply:
        """Answer one API request; never raises, unexpected errors become a 500 reply."""
        with self._lock:
            try:
                self.catch_up()
                return self._handle(method.upper(), path, query, headers, body)
            except ApiError as exc:
                return self.reply(exc.status, exc.body, exc.headers)
            except Exception:
                log.exception("sandbox: unhandled error for %s %s", method, path)
                return self.reply(500, error_body(500))

    def record(self, method: str, path: str, query: Mapping[str, Any],
               headers: Mapping[str, str], body: bytes | None) -> None:
        """Zendesk keeps no log of its own: the sandbox's request log serves."""

    def fault_reply(self, fault: Fault) -> Reply:
        """Zendesk's edge answer to an injected 429 or 5xx."""
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.kind == "rate_limit":
            body = {
                "error": "TooManyRequests",
                "description": "You have exceeded the rate limit. "
                f"Retry after {fault.retry_after} seconds.",
            }
            return self.reply(429, body, headers)
        body = _CLIENT_ERRORS.get(fault.status) or error_body(fault.status)
        return self.reply(fault.status, body, headers)

    def reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Wrap a body with the headers every Zendesk response carries."""
        with self._lock:
            now = self.clock.now()
            minute = int(now.timestamp() // 60)
            if minute != self._window_minute:
                self._window_minute, self._window_requests = minute, 0
            self._window_requests += 1
            remaining = max(self.rate_limit - self._window_requests, 0)
        standard = {
            "Date": http_date(now),
            "Content-Type": "application/json; charset=utf-8",
            "X-Rate-Limit": str(self.rate_limit),
            "X-Rate-Limit-Remaining": str(remaining),
        }
        return Reply(status, {**standard, **(headers or {})}, body)

    def _handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        user = self._authenticate(lowered.get("authorization", ""))
        if user is None:
            return self.reply(
                401,
                {"error": "Couldn't authenticate you"},
                {"WWW-Authenticate": 'Basic realm="Web Password"'},
            )
        route = re.sub(r"\.json$", "", path.rstrip("/")) or "/"
        flat = {
            k: (v[-1] if v else "") if isinstance(v, list | tuple) else str(v)
            for k, v in query.items()
        }
        request = _Request(method, path, flat, lowered, body, user)
        found = routes.find(method, route)
        if found is None:
            return self.reply(404, {"error": "InvalidEndpoint", "description": "Not found"})
        handler: Callable[..., tuple[int, Json] | Reply] = getattr(self, found[0])
        result = handler(request, *(int(g) for g in found[1]))
        return result if isinstance(result, Reply) else self.reply(*result)

    def _authenticate(self, authorization: str) -> User | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        login, _, secret = decoded.partition(":")
        if not login.endswith("/token") or not hmac.compare_digest(secret, self.api_token):
            return None
        user = self._user_by_email(login.removesuffix("/token"))
        # API tokens authenticate agents and admins only, as in Zendesk.
        return user if user is not None and user.is_agent else None

    # ----- routes --------------------------------------------------------------------------

    @routes("GET", r"/api/v2/search")
    def _get_search(self, req: _Request) -> tuple[int, Json]:
        raw = req.query.get("query", "")
        if req.query.get("filter[type]", "ticket") != "ticket":
            raw += f" type:{req.query['filter[type]']}"  # reported as unsupported below
        try:
            if not raw.strip():
                raise SearchQueryError("query is required")
            terms = parse_search(raw)
        except SearchQueryError as exc:
            raise ApiError(
                400, {"error": "invalid", "description": f"Invalid search: {exc}"}
            ) from exc
        page, per_page = self._offset_params(req)
        if page * per_page > SEARCH_RESULT_LIMIT:
            raise ApiError(422, dict(_SEARCH_LIMIT_ERROR))
        found = [t for t in self._tickets.values() if self._matches(t, terms)]
        found = self._sorted(found, req.query.get("sort_by"), req.query.get("sort_order"))
        start = (page - 1) * per_page
        results = [
            {**t.to_json(self.base_url), "result_type": "ticket"}
            for t in found[start : start + per_page]
        ]
        # Like Zendesk, next_page may point past the 1000-result cap; following it answers 422.
        return 200, {
            "results": results,
            "facets": None,
            "next_page": self._page_url(req, page=page + 1)
            if start + per_page < len(found)
            else None,
            "previous_page": self._page_url(req, page=page - 1) if page > 1 else None,
            "count": len(found),
        }

    @routes("GET", r"/api/v2/views/(\d+)")
    def _get_view(self, req: _Request, view_id: int) -> tuple[int, Json]:
        view = self._views.get(view_id)
        if view is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        return 200, {"view": view.to_json(self.base_url)}

    @routes("GET", r"/api/v2/views/(\d+)/tickets")
    def _get_view_tickets(self, req: _Request, view_id: int) -> tuple[int, Json]:
        view = self._views.get(view_id)
        if view is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        tickets = [t for t in self._tickets.values() if view.matches(t)]
        payload = self._paginate(req, tickets, "tickets", lambda t: t.to_json(self.base_url))
        if "users" in req.query.get("include", "").split(","):
            ids = {i for t in tickets for i in (t.requester_id, t.submitter_id, t.assignee_id) if i}
            payload["users"] = self._users_json(ids)
        return 200, payload

    @routes("GET", r"/api/v2/tickets/show_many")
    def _get_tickets_many(self, req: _Request) -> tuple[int, Json]:
        ids = self._ids_param(req)
        return 200, {
            "tickets": [self._tickets[i].to_json(self.base_url) for i in ids if i in self._tickets],
            "next_page": None,
            "previous_page": None,
            "count": len([i for i in ids if i in self._tickets]),
        }

    @routes("GET", r"/api/v2/tickets/(\d+)")
    def _get_ticket(self, req: _Request, ticket_id: int) -> tuple[int, Json]:
        return 200, {"ticket": self._ticket_or_404(ticket_id).to_json(self.base_url)}

    @routes("GET", r"/api/v2/macros/search")
    def _get_macros_search(self, req: _Request) -> tuple[int, Json]:
        words = req.query.get("query", "").lower().split()
        if not words:
            raise ApiError(400, {"error": "InvalidParameter", "description": "query is required"})
        found = [m for m in self._macros.values()
                 if all(w in m["title"].lower() for w in words)]
        return 200, {"macros": found, "count": len(found), "next_page": None,
                     "previous_page": None}

    @routes("GET", r"/api/v2/tickets/(\d+)/macros/(\d+)/apply")
    def _get_macro_apply(self, req: _Request, ticket_id: int, macro_id: int) -> tuple[int, Json]:
        ticket = self._ticket_or_404(ticket_id)
        macro = self._macros.get(macro_id)
        if macro is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        actions = {a["field"]: a["value"] for a in macro["actions"]}
        # Zendesk's preview: what the ticket would look like; nothing is saved.
        return 200, {"result": {"ticket": {
            "id": ticket.id, "url": ticket.to_json(self.base_url)["url"],
            "comment": {"body": actions.get("comment_value", ""),
                        "public": actions.get("comment_mode_is_public", "true") == "true",
                        "scoped_body": [["channel:all", actions.get("comment_value", "")]]},
            "group_id": None, "assignee_id": None, "fields": [],
        }}}

    @routes("GET", r"/api/v2/tickets/(\d+)/comments")
    def _get_comments(self, req: _Request, ticket_id: int) -> tuple[int, Json]:
        self._ticket_or_404(ticket_id)
        comments = list(self._comments[ticket_id])
        if req.query.get("sort") == "-created_at" or req.query.get("sort_order") == "desc":
            comments.reverse()
        payload = self._paginate(req, comments, "comments", Comment.to_json)
        if "users" in req.query.get("include", "").split(","):
            payload["users"] = self._users_json({c.author_id for c in comments})
        return 200, payload

    @routes("GET", r"/api/v2/tickets/(\d+)/audits")
    def _get_audits(self, req: _Request, ticket_id: int) -> tuple[int, Json]:
        self._ticket_or_404(ticket_id)
        return 200, self._paginate(req, list(self._audits[ticket_id]), "audits", Audit.to_json)

    @routes("GET", r"/api/v2/users/me")
    def _get_me(self, req: _Request) -> tuple[int, Json]:
        return 200, {"user": req.user.to_json(self.base_url)}

    @routes("GET", r"/api/v2/users/show_many")
    def _get_users_many(self, req: _Request) -> tuple[int, Json]:
        ids = self._ids_param(req)
        return 200, {
            "users": [self._users[i].to_json(self.base_url) for i in ids if i in self._users],
            "next_page": None,
            "previous_page": None,
            "count": len([i for i in ids if i in self._users]),
        }

    @routes("GET", r"/api/v2/users/search")
    def _get_users_search(self, req: _Request) -> tuple[int, Json]:
        external_id = req.query.get("external_id")
        text = req.query.get("query", "").strip()
        if external_id is not None:
            found: list[User] = []  # the sandbox stores no external ids
        elif text:
            needle = re.sub(r"^(email|name):", "", text, flags=re.I).strip('"').lower()
            if "@" in needle:
                found = [u for u in self._users.values() if u.email == needle]
            else:
                found = [
                    u for u in self._users.values() if needle in u.name.lower() or needle in u.email
                ]
        else:
            raise ApiError(
                400,
                {"error": "InvalidParameter", "description": "query or external_id is required"},
            )
        return 200, self._paginate(req, found, "users", lambda u: u.to_json(self.base_url))

    @routes("GET", r"/api/v2/users/(\d+)")
    def _get_user(self, req: _Request, user_id: int) -> tuple[int, Json]:
        user = self._users.get(user_id)
        if user is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        return 200, {"user": user.to_json(self.base_url)}

    @routes("GET", r"/api/v2/organizations/(\d+)")
    def _get_organization(self, req: _Request, organization_id: int) -> tuple[int, Json]:
        organization = self._organizations.get(organization_id)
        if organization is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        return 200, {"organization": organization.to_json(self.base_url)}

    @routes("POST", r"/api/v2/tickets")
    def _post_ticket(self, req: _Request) -> Reply:
        data = self._ticket_payload(req)
        errors: dict[str, list[Json]] = {}
        requester_id = data.get("requester_id", req.user.id)
        requester = self._users.get(requester_id) if _is_int(requester_id) else None
        if requester is None:
            _add_error(errors, "requester", f"Requester: {requester_id} is invalid")
        # The first comment is the requester's unless the caller names another author.
        author_default = requester.id if requester else req.user.id
        comment = self._comment_input(data.get("comment"), author_default, errors, "description")
        if "comment" not in data:
            _add_error(errors, "description", "Description: cannot be blank", "BlankValue")
        fields = self._field_changes(data, errors)
        custom = _metadata_input(data, errors)
        if errors or requester is None or comment is None:
            raise _invalid(errors)
        body, html_body, public, author_id = comment
        subject = data.get("subject") or body.strip().splitlines()[0][:80]
        ticket, audit = self._create(requester, author_id, str(subject),
                                     (body, html_body, public), fields, API, custom)
        location = f"{self.base_url}/api/v2/tickets/{ticket.id}.json"
        return self.reply(
            201,
            {"ticket": ticket.to_json(self.base_url), "audit": audit.to_json()},
            {"Location": location},
        )

    @routes("PUT", r"/api/v2/tickets/(\d+)")
    def _put_ticket(self, req: _Request, ticket_id: int) -> tuple[int, Json]:
        ticket = self._ticket_or_404(ticket_id)
        self._spend_update(ticket_id, req.user.id)
        data = self._ticket_payload(req)
        if ticket.status == "closed":
            raise _invalid_field("status", "Status: closed prevents ticket update")
        self._check_safe_update(ticket, data)
        errors: dict[str, list[Json]] = {}
        comment = self._comment_input(data.get("comment"), req.user.id, errors, "comment")
        changes = self._field_changes(data, errors, ticket)
        custom = _metadata_input(data, errors)
        if errors:
            raise _invalid(errors)
        author_id = comment[3] if comment else req.user.id
        audit = self._apply(ticket, author_id, API, changes, comment[:3] if comment else None,
                            custom)
        payload: Json = {"ticket": ticket.to_json(self.base_url)}
        if audit is not None:
            payload["audit"] = audit.to_json()
        return 200, payload

    @routes("POST", r"/api/v2/tickets/(\d+)/merge")
    def _post_merge(self, req: _Request, ticket_id: int) -> tuple[int, Json]:
        target = self._ticket_or_404(ticket_id)
        payload = self._json_body(req)
        if not isinstance(payload, dict):
            raise ApiError(400, {"error": "InvalidParameter",
                                 "description": "The request body must be an object"})
        ids, notes = _merge_input(payload)
        sources = [self._ticket_or_404(i) for i in ids]
        problem = _merge_problem(target, sources)
        if problem:
            raise _invalid_field("ids", problem)
        self._merge(target, sources, req.user.id, notes)
        # Zendesk queues a job; the sandbox's is done before it answers.
        job_id = f"{next(self._job_ids):032x}"
        return 200, {"job_status": {
            "id": job_id,
            "url": f"{self.base_url}/api/v2/job_statuses/{job_id}.json",
            "status": "completed",
            "total": len(ids),
            "progress": len(ids),
            "message": f"Completed at {self._now():%Y-%m-%d %H:%M:%S} +0000",
            "results": [{"action": "merge", "id": i, "status": "Merged", "success": True}
                        for i in ids],
        }}

    # ----- request parsing and validation --------------------------------------------------

    def _ticket_payload(self, req: _Request) -> Json:
        payload = self._json_body(req)
        data = payload.get("ticket") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise ApiError(
                400,
                {
                    "error": "InvalidParameter",
                    "description": "The request body must contain a ticket object",
                },
            )
        return data

    @staticmethod
    def _json_body(req: _Request) -> Any:
        content_type = req.headers.get("content-type", "")
        if not req.body:
            raise ApiError(
                400, {"error": "InvalidParameter", "description": "The request body is empty"}
            )
        if not content_type.lower().startswith("application/json"):
            raise ApiError(
                415,
                {
                    "error": "UnsupportedMediaType",
                    "description": "Content-Type must be application/json",
                },
            )
        try:
            payload = json.loads(req.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                400, {"error": "InvalidJSON", "description": "Server could not parse JSON"}
            ) from exc
        return payload

    def _check_safe_update(self, ticket: Ticket, data: Json) -> None:
        # Zendesk: "A value of false has the same effect as true"; only omitting it is unsafe.
        if "safe_update" not in data:
            return
        stamp = data.get("updated_stamp")
        if stamp is None:
            if data["safe_update"] is True:
                required = "Updated stamp: is required when safe_update is true"
                raise _invalid_field("updated_stamp", required, "BlankValue")
            return
        parsed = parse_timestamp(stamp) if isinstance(stamp, str) else None
        if parsed is None:
            raise _invalid_field("updated_stamp", f"Updated stamp: {stamp} is not a valid time")
        if whole_seconds(parsed) != ticket.updated_at:
            raise ApiError(409, dict(_CONFLICT_ERROR))

    def _comment_input(
        self,
        raw: Any,
        default_author: int,
        errors: dict[str, list[Json]],
        key: str,
    ) -> tuple[str, str, bool, int] | None:
        label = key.capitalize()
        if raw is None:
            return None
        if not isinstance(raw, dict):
            _add_error(errors, key, f"{label}: must be an object with a body")
            return None
        html_body = raw.get("html_body")
        body = raw.get("body")
        if isinstance(html_body, str) and html_body.strip():
            text, markup = text_from_html(html_body), html_body
        elif isinstance(body, str):
            text, markup = body, html_from_text(body)
        else:
            text, markup = "", ""
        if not text.strip():
            _add_error(errors, key, f"{label}: cannot be blank", "BlankValue")
        public = raw.get("public", True)
        if not isinstance(public, bool):
            _add_error(errors, key, f"{label}: public must be true or false, got {public!r}")
        author_id = raw.get("author_id", default_author)
        if not _is_int(author_id) or author_id not in self._users:
            _add_error(errors, key, f"{label}: author {author_id!r} is invalid")
        if errors.get(key):
            return None
        return text, markup, bool(public), int(author_id)

    def _field_changes(
        self,
        data: Json,
        errors: dict[str, list[Json]],
        ticket: Ticket | None = None,
    ) -> Json:
        changes: Json = {}
        self._enum_changes(data, errors, changes)
        if "subject" in data:
            if isinstance(data["subject"], str) and data["subject"].strip():
                changes["subject"] = data["subject"]
            else:
                _add_error(errors, "subject", "Subject: cannot be blank", "BlankValue")
        self._people_changes(data, errors, ticket, changes)
        self._reference_changes(data, errors, changes)
        if "external_id" in data:
            external_id = data["external_id"]
            changes["external_id"] = None if external_id is None else str(external_id)
        if "custom_fields" in data:
            merged = self._custom_fields(data["custom_fields"], ticket, errors)
            if merged is not None:
                changes["custom_fields"] = merged
        tags = self._tag_changes(data, errors, ticket)
        if tags is not None:
            changes["tags"] = tags
        return changes

    @staticmethod
    def _enum_changes(data: Json, errors: dict[str, list[Json]], changes: Json) -> None:
        enums = (("priority", PRIORITIES), ("status", STATUSES), ("type", TICKET_TYPES))
        for name, allowed in enums:
            if name in data:
                value = data[name]
                if value is None and name != "status":
                    changes[name] = None
                elif isinstance(value, str) and value in allowed:
                    changes[name] = value
                else:
                    _add_error(errors, name, f"{name.capitalize()}: {value} is not valid")

    def _people_changes(self, data: Json, errors: dict[str, list[Json]], ticket: Ticket | None,
                        changes: Json) -> None:
        for name, must_be_agent in (("assignee_id", True), ("requester_id", False)):
            # On create the requester is resolved by the caller, defaulting to the API user.
            if name not in data or (name == "requester_id" and ticket is None):
                continue
            value = data[name]
            user = self._users.get(value) if _is_int(value) else None
            if value is None and name == "assignee_id":
                changes[name] = None
            elif user is None or (must_be_agent and not user.is_agent):
                label = name.removesuffix("_id").capitalize()
                _add_error(errors, name.removesuffix("_id"), f"{label}: {value} is invalid")
            else:
                changes[name] = user.id
        for name in ("collaborator_ids", "email_cc_ids"):
            if name in data:
                value = data[name]
                if isinstance(value, list) and all(_is_int(v) and v in self._users for v in value):
                    changes[name] = list(dict.fromkeys(value))
                else:
                    _add_error(errors, name, f"{name}: {value} is invalid")

    def _reference_changes(self, data: Json, errors: dict[str, list[Json]],
                           changes: Json) -> None:
        if "organization_id" in data:
            value = data["organization_id"]
            if value is None or (_is_int(value) and value in self._organizations):
                changes["organization_id"] = value
            else:
                _add_error(errors, "organization", f"Organization: {value} is invalid")
        for name in ("brand_id", "ticket_form_id", "group_id"):
            if name in data:
                if _is_int(data[name]) or (name == "group_id" and data[name] is None):
                    changes[name] = data[name]
                else:
                    _add_error(errors, name.removesuffix("_id"), f"{name}: {data[name]} is invalid")

    def _tag_changes(
        self,
        data: Json,
        errors: dict[str, list[Json]],
        ticket: Ticket | None,
    ) -> list[str] | None:
        keys = [k for k in ("tags", "additional_tags", "remove_tags") if k in data]
        if not keys:
            return None
        for key in keys:
            value = data[key]
            if not (
                isinstance(value, str)
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            ):
                _add_error(errors, "tags", f"Tags: {key} must be a list of strings")
                return None
        current = list(ticket.tags) if ticket else []
        tags = normalize_tags(data["tags"]) if "tags" in data else current
        tags += [t for t in normalize_tags(data.get("additional_tags", [])) if t not in tags]
        removed = set(normalize_tags(data.get("remove_tags", [])))
        return [t for t in tags if t not in removed]

    def _custom_fields(
        self,
        raw: Any,
        ticket: Ticket | None,
        errors: dict[str, list[Json]],
    ) -> list[Json] | None:
        if not isinstance(raw, list) or not all(
            isinstance(f, dict) and _is_int(f.get("id")) for f in raw
        ):
            _add_error(errors, "custom_fields", "Custom fields: must be a list of {id, value}")
            return None
        merged = {f["id"]: dict(f) for f in (ticket.custom_fields if ticket else [])}
        for item in raw:
            merged[item["id"]] = {"id": item["id"], "value": item.get("value")}
        return list(merged.values())

    def _ids_param(self, req: _Request) -> list[int]:
        raw = req.query.get("ids", "")
        try:
            ids = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError as exc:
            raise ApiError(
                400, {"error": "InvalidParameter", "description": f"ids must be numeric: {raw}"}
            ) from exc
        if len(ids) > MAX_PAGE_SIZE:
            raise ApiError(
                400,
                {
                    "error": "TooManyValues",
                    "description": f"You can only request {MAX_PAGE_SIZE} records",
                },
            )
        return ids

    # ----- pagination ----------------------------------------------------------------------

    def _offset_params(self, req: _Request) -> tuple[int, int]:
        try:
            page = int(req.query.get("page", "1"))
            per_page = int(req.query.get("per_page", str(MAX_PAGE_SIZE)))
        except ValueError as exc:
            raise ApiError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": "page and per_page must be integers",
                },
            ) from exc
        if page < 1 or not 1 <= per_page <= MAX_PAGE_SIZE:
            raise ApiError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": f"page must be >= 1 and per_page 1..{MAX_PAGE_SIZE}",
                },
            )
        return page, per_page

    def _paginate(
        self,
        req: _Request,
        items: Sequence[R],
        key: str,
        render: Callable[[R], Json],
    ) -> Json:
        """Cursor pagination when page[...] is sent, offset pagination otherwise, like Zendesk."""
        cursor_keys = ("page[size]", "page[after]", "page[before]")
        if not any(k in req.query for k in cursor_keys):
            page, per_page = self._offset_params(req)
            start = (page - 1) * per_page
            return {
                key: [render(item) for item in items[start : start + per_page]],
                "next_page": self._page_url(req, page=page + 1)
                if start + per_page < len(items)
                else None,
                "previous_page": self._page_url(req, page=page - 1) if page > 1 else None,
                "count": len(items),
            }
        return self._cursor_page(req, items, key, render)

    def _cursor_page(
        self,
        req: _Request,
        items: Sequence[R],
        key: str,
        render: Callable[[R], Json],
    ) -> Json:
        size = self._page_size(req)
        ids = [item.id for item in items]
        if "page[after]" in req.query:
            start = self._cursor_position(ids, req.query["page[after]"]) + 1
            window, has_more = items[start : start + size], start + size < len(items)
        elif "page[before]" in req.query:
            end = self._cursor_position(ids, req.query["page[before]"])
            start = max(end - size, 0)
            window, has_more = items[start:end], start > 0
        else:
            start = 0
            window, has_more = items[:size], size < len(items)
        after = _encode_cursor(window[-1].id) if window else None
        before = _encode_cursor(window[0].id) if window else None
        return {
            key: [render(item) for item in window],
            "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": before},
            "links": {
                "next": self._cursor_url(req, "page[after]", after, size)
                if has_more and after
                else None,
                "prev": self._cursor_url(req, "page[before]", before, size)
                if start > 0 and before
                else None,
            },
        }

    @staticmethod
    def _page_size(req: _Request) -> int:
        try:
            size = int(req.query.get("page[size]", str(MAX_PAGE_SIZE)))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ApiError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": f"page[size] must be 1..{MAX_PAGE_SIZE}",
                },
            )
        return size

    @staticmethod
    def _cursor_position(ids: list[int], cursor: str) -> int:
        item_id = _decode_cursor(cursor)
        if item_id not in ids:
            raise ApiError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": "The cursor does not match any record",
                },
            )
        return ids.index(item_id)

    def _page_url(self, req: _Request, **overrides: Any) -> str:
        params = {**req.query, **{k: str(v) for k, v in overrides.items()}}
        return f"{self.base_url}{req.path}?{urlencode(params, quote_via=quote)}"

    def _cursor_url(self, req: _Request, name: str, cursor: str, size: int) -> str:
        params = {k: v for k, v in req.query.items() if k not in ("page[after]", "page[before]")}
        params.update({"page[size]": str(size), name: cursor})
        return f"{self.base_url}{req.path}?{urlencode(params, quote_via=quote)}"

    # ----- search --------------------------------------------------------------------------

    def _matches(self, ticket: Ticket, terms: Sequence[Term]) -> bool:
        """AND across fields, OR among positive ``field:value`` terms of one field, as Zendesk."""
        alternatives: dict[str, list[Term]] = {}
        for term in terms:
            if term.op == ":" and not term.negated:
                alternatives.setdefault(term.field, []).append(term)
            elif self._term_matches(ticket, term) == term.negated:
                return False
        return all(
            any(self._term_matches(ticket, t) for t in group) for group in alternatives.values()
        )

    def _term_matches(self, ticket: Ticket, term: Term) -> bool:
        name, op, value = term.field, term.op, term.value
        if name == "type":
            return True
        if name in _ORDERED_FIELDS:
            actual = ticket.priority if name == "priority" else ticket.status
            if value == "none":
                return actual is None
            if actual is None:
                return False
            order = _ORDERED_FIELDS[name]
            return _compare(order.index(actual), op, order.index(value))
        if name == "tags":
            return value in ticket.tags
        if name == "organization":
            if value == "none":
                return ticket.organization_id is None
            if value.isdigit():
                return ticket.organization_id == int(value)
            organization = self._organizations.get(ticket.organization_id or 0)
            return organization is not None and organization.name.lower() == value
        if name in ("brand", "form", "assignee"):
            actual_id = {
                "brand": ticket.brand_id,
                "form": ticket.ticket_form_id,
                "assignee": ticket.assignee_id,
            }[name]
            return actual_id is None if value == "none" else actual_id == int(value)
        if name == "requester":
            if value.isdigit():
                return ticket.requester_id == int(value)
            requester = self._users.get(ticket.requester_id)
            return requester is not None and requester.email == value
        moment = ticket.created_at if name == "created" else ticket.updated_at
        bound = _search_time(value)
        assert bound is not None  # validated by parse_search
        if op == ":" and len(value) == 10:
            return moment.date() == bound.date()
        return _compare(moment, op, bound)

    @staticmethod
    def _sorted(tickets: list[Ticket], sort_by: str | None, sort_order: str | None) -> list[Ticket]:
        if not sort_by:
            return tickets
        keys: dict[str, Callable[[Ticket], Any]] = {
            "created_at": lambda t: t.created_at,
            "updated_at": lambda t: t.updated_at,
            "priority": lambda t: PRIORITIES.index(t.priority) if t.priority else -1,
            "status": lambda t: STATUSES.index(t.status),
            "ticket_type": lambda t: t.type or "",
        }
        if sort_by not in keys:
            raise ApiError(
                400,
                {"error": "invalid", "description": f"Invalid search: cannot sort by {sort_by}"},
            )
        return sorted(tickets, key=keys[sort_by], reverse=(sort_order or "desc") == "desc")

    # ----- state changes -------------------------------------------------------------------

    def _create(
        self,
        requester: User,
        author_id: int,
        subject: str,
        comment: tuple[str, str | None, bool],
        fields: Json,
        via: Via,
        custom: Json | None = None,
    ) -> tuple[Ticket, Audit]:
        """A new ticket whose first comment (body, html_body, public) is its description."""
        body, html_body, public = comment
        stamp = self._now()
        ticket = self._new_ticket(requester, author_id, subject, body, public, fields, via,
                                  stamp)
        self._tickets[ticket.id] = ticket
        self._comments[ticket.id] = []
        audit = self._new_audit(ticket.id, author_id, stamp, via, custom)
        record = self._comment_record(ticket.id, audit, body, html_body or html_from_text(body),
                                      public)
        audit.events += [record.to_event(), *self._create_events(ticket)]
        self._audits[ticket.id] = [audit]
        return ticket, audit

    def _new_ticket(self, requester: User, author_id: int, subject: str, body: str,
                    public: bool, fields: Json, via: Via, stamp: datetime) -> Ticket:
        organization_id = fields.get("organization_id") or requester.organization_id
        return Ticket(
            id=next(self._ticket_ids),
            subject=subject,
            description=body,
            priority=fields.get("priority"),
            status=fields.get("status") or "new",
            requester_id=requester.id,
            submitter_id=author_id,
            organization_id=organization_id,
            brand_id=fields.get("brand_id") or DEFAULT_BRAND_ID,
            ticket_form_id=fields.get("ticket_form_id") or DEFAULT_FORM_ID,
            created_at=stamp,
            updated_at=stamp,
            via=via,
            assignee_id=fields.get("assignee_id"),
            group_id=fields.get("group_id"),
            type=fields.get("type"),
            external_id=fields.get("external_id"),
            tags=list(fields.get("tags") or []),
            collaborator_ids=list(fields.get("collaborator_ids") or []),
            email_cc_ids=list(fields.get("email_cc_ids") or []),
            custom_fields=list(fields.get("custom_fields") or []),
            is_public=public,
        )

    def _new_audit(self, ticket_id: int, author_id: int, stamp: datetime, via: Via,
                   custom: Json | None) -> Audit:
        """An audit with no events yet; ``custom`` is the update's ``ticket.metadata``."""
        metadata = {"system": _system_metadata(via), "custom": json_copy(custom or {})}
        return Audit(next(self._event_ids), ticket_id, author_id, stamp, via, [], metadata)

    def _comment_record(self, ticket_id: int, audit: Audit, body: str, html_body: str,
                        public: bool) -> Comment:
        """Store a comment made by the audit's author in the audit's change set."""
        record = Comment(
            id=next(self._event_ids),
            ticket_id=ticket_id,
            audit_id=audit.id,
            author_id=audit.author_id,
            body=body,
            html_body=html_body,
            public=public,
            created_at=audit.created_at,
            via=audit.via,
            metadata=audit.metadata,
        )
        self._comments[ticket_id].append(record)
        return record

    def _create_events(self, ticket: Ticket) -> list[Json]:
        """The creating audit's ``Create`` events, one per field that has a value."""
        events = []
        for name in ("subject", "status", "priority", "requester_id", "organization_id", "tags"):
            value = getattr(ticket, name)
            if value not in (None, []):
                events.append(
                    {
                        "id": next(self._event_ids),
                        "type": "Create",
                        "field_name": name,
                        "value": json_copy(value),
                    }
                )
        return events

    def _apply(
        self,
        ticket: Ticket,
        author_id: int,
        via: Via,
        changes: Json,
        comment: tuple[str, str, bool] | None,
        custom: Json | None = None,
    ) -> Audit | None:
        """Apply field changes and an optional comment as one audit; None if nothing changed
        (Zendesk makes no audit for a no-op update, whatever metadata it carried)."""
        changes = self._with_implicit_status(ticket, author_id, changes, comment is not None)
        diffs = {k: v for k, v in changes.items() if getattr(ticket, k) != v}
        if comment is None and not diffs:
            return None
        audit = self._new_audit(ticket.id, author_id, self._next_stamp(ticket), via, custom)
        if comment is not None:
            body, html_body, public = comment
            record = self._comment_record(ticket.id, audit, body, html_body, public)
            ticket.is_public = ticket.is_public or public
            audit.events.append(record.to_event())
        audit.events += self._change_fields(ticket, diffs)
        ticket.updated_at = audit.created_at
        self._audits[ticket.id].append(audit)
        return audit

    def _with_implicit_status(self, ticket: Ticket, author_id: int, changes: Json,
                              commented: bool) -> Json:
        changes = dict(changes)
        author = self._users[author_id]
        customer = not author.is_agent or author_id == ticket.requester_id
        if commented and "status" not in changes:
            # Zendesk's implicit transitions: an agent reply opens a new ticket, a requester
            # reply (an agent's too, when the agent is the requester) reopens a pending,
            # on-hold or solved one.
            if author.is_agent and ticket.status == "new":
                changes["status"] = "open"
            elif customer and ticket.status in ("pending", "hold", "solved"):
                changes["status"] = "open"
        return changes

    def _change_fields(self, ticket: Ticket, diffs: Json) -> list[Json]:
        """Set the changed fields; their ``Change`` events."""
        events = []
        for name, value in diffs.items():
            previous = getattr(ticket, name)
            setattr(ticket, name, json_copy(value))
            events.append(
                {
                    "id": next(self._event_ids),
                    "type": "Change",
                    "field_name": name,
                    "value": json_copy(value),
                    "previous_value": previous,
                }
            )
        return events

    def _merge(self, target: Ticket, sources: list[Ticket], agent_id: int,
               notes: _MergeNotes) -> None:
        """Zendesk's merge: each source gets a note by the agent and is closed; the target gets
        one note per source. Both are via web, rel merge, private unless asked (always private
        when a ticket is private). Nothing else moves: the sources' tags stay on the sources."""
        for source in sources:
            reference = {"ticket_id": source.id, "subject": source.subject}
            public = target.is_public and source.is_public
            closing = notes.source or (
                f'This request was closed and merged into request #{target.id} '
                f'"{target.subject}".')
            self._apply(source, agent_id, Via("web", reference, {"ticket_id": target.id}, "merge"),
                        {"status": "closed"}, _note(closing, notes.source_public and public))
            merged = (f'Request #{source.id} "{source.subject}" was closed and merged into this '
                      "request.")
            if notes.target:
                merged += f"\n\n{notes.target}"
            # The target's status stays as it is: a merge note is no agent reply.
            self._apply(target, agent_id, Via("web", reference, {}, "merge"),
                        {"status": target.status}, _note(merged, notes.target_public and public))

    def _change(self, ticket_id: int, changes: Json, author_id: int | None) -> None:
        with self._lock:
            ticket = self._ticket_or_key_error(ticket_id)
            author_id = author_id or self.api_user_id
            if self._users[author_id].is_agent:
                self._spend_update(ticket_id, author_id)
            self._apply(ticket, author_id, WEB, changes, None)

    def _spend_update(self, ticket_id: int, author_id: int, at: datetime | None = None) -> None:
        """One update from the account's budget, if it is limited; ApiError(429) past it."""
        if self.update_limit is None:
            return
        retry_after = self.update_limit.spend(at or self.clock.now(), ticket_id, author_id)
        if retry_after is not None:
            raise ApiError(429, {
                "error": "TooManyRequests",
                "description": "You have exceeded the rate limit for ticket updates. "
                f"Retry after {retry_after} seconds."}, {"Retry-After": str(retry_after)})

    def _next_stamp(self, ticket: Ticket) -> datetime:
        now = self._now()
        if self.same_second_updates or now > ticket.updated_at:
            return max(now, ticket.updated_at)
        return ticket.updated_at + timedelta(seconds=1)

    # ----- lookups -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return whole_seconds(self.clock.now())

    def _user_by_email(self, email: str) -> User | None:
        wanted = email.lower()
        return next((u for u in self._users.values() if u.email == wanted), None)

    def _users_json(self, ids: Iterable[int]) -> list[Json]:
        return [self._users[i].to_json(self.base_url) for i in sorted(ids) if i in self._users]

    def _ticket_or_404(self, ticket_id: int) -> Ticket:
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            raise ApiError(404, {"error": "RecordNotFound", "description": "Not found"})
        return ticket

    def _ticket_or_key_error(self, ticket_id: int) -> Ticket:
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            raise KeyError(f"no ticket {ticket_id}")
        return ticket

    def _agent(self, user_id: int) -> None:
        """Refuse an end-user where an agent acts (KeyError when there is no such user)."""
        if not self._users[user_id].is_agent:
            raise ValueError(f"user {user_id} is an end-user, not an agent")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _add_error(
    errors: dict[str, list[Json]], key: str, description: str, error: str = "InvalidValue"
) -> None:
    errors.setdefault(key, []).append({"description": description, "error": error})


def _invalid(details: dict[str, list[Json]]) -> ApiError:
    return ApiError(
        422,
        {"error": "RecordInvalid", "description": "Record validation errors", "details": details},
    )


def _invalid_field(key: str, description: str, error: str = "InvalidValue") -> ApiError:
    return _invalid({key: [{"description": description, "error": error}]})


def _check_priority(priority: str | None) -> None:
    if priority is not None and priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}, got {priority!r}")


def _copied(ticket: Ticket, *names: str) -> Json:
    """Some of a ticket's fields, as fields of a new ticket."""
    return {name: json_copy(getattr(ticket, name)) for name in names}


def _note(text: str, public: bool) -> tuple[str, str, bool]:
    return text, html_from_text(text), public


def _metadata_input(data: Json, errors: dict[str, list[Json]]) -> Json | None:
    """``ticket.metadata``: write-only, an object; it becomes the audit's ``metadata.custom``."""
    if "metadata" not in data:
        return None
    value = data["metadata"]
    if not isinstance(value, dict):
        _add_error(errors, "metadata", f"Metadata: must be an object, got {json.dumps(value)}")
        return None
    return json_copy(value)


class _MergeNotes(NamedTuple):
    target: str | None = None
    source: str | None = None
    target_public: bool = False
    source_public: bool = False


def _merge_input(data: Json) -> tuple[list[int], _MergeNotes]:
    """The merge endpoint's body: ids, the two comments and their privacy (private unless
    asked); 422 when a value has the wrong type."""
    errors: dict[str, list[Json]] = {}
    ids = data.get("ids")
    if not (isinstance(ids, list) and ids and all(_is_int(i) for i in ids)):
        _add_error(errors, "ids", f"Ids: {json.dumps(ids)} is not a list of ticket ids")
    for key in ("target_comment", "source_comment"):
        if data.get(key) is not None and not isinstance(data[key], str):
            _add_error(errors, key, f"{key}: must be a string")
    for key in ("target_comment_is_public", "source_comment_is_public"):
        if not isinstance(data.get(key, False), bool):
            _add_error(errors, key, f"{key}: must be true or false")
    if errors or not isinstance(ids, list):
        raise _invalid(errors)
    notes = _MergeNotes(data.get("target_comment") or None, data.get("source_comment") or None,
                        data.get("target_comment_is_public", False),
                        data.get("source_comment_is_public", False))
    return list(dict.fromkeys(ids)), notes


def _merge_problem(target: Ticket, sources: Sequence[Ticket]) -> str | None:
    """Why Zendesk would refuse this merge, or None."""
    if not sources:
        return "Ids: at least one ticket to merge is required"
    if target.status == "closed":
        return f"Ticket {target.id} is closed and cannot be merged into"
    for source in sources:
        if source.id == target.id:
            return f"Ticket {target.id} cannot be merged into itself"
        if source.status == "closed":
            return f"Ticket {source.id} is closed and cannot be merged"
    return None
