"""A stateful fake of the PagerDuty REST API v2 subset the worker talks to, served over TLS.

``PagerDutySandbox.handle`` is the whole HTTP surface as a pure function of one request, behind
one lock; the sandbox's one server (``http.SandboxServer``, in TLS here, because python-pagerduty
accepts only https:// base URLs) adds the shared faults. Shapes, status codes
and error bodies follow PagerDuty's OpenAPI description
(``/work/shared/specs/pagerduty-rest-openapiv3.json``); where it is silent, PagerDuty's observed
wording is used (e.g. the dedup error a client matches on).
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from automation.clock import Clock
from automation.sandbox.faults import Fault, Faults
from automation.sandbox.http import Reply, Routes

log = logging.getLogger(__name__)

Json = dict[str, Any]
Query = Mapping[str, Sequence[str]]

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
ITERATION_LIMIT = 10_000  # offset + limit may not exceed this in classic pagination
DEFAULT_INCIDENT_WINDOW = timedelta(days=30)
MAX_INCIDENT_WINDOW = timedelta(days=180)
ONCALL_HORIZON = timedelta(days=90)
STATUSES = ("triggered", "acknowledged", "resolved")
URGENCIES = ("high", "low")
OPEN_STATUSES = ("triggered", "acknowledged")
_COLLECTIONS = {"user": "users", "service": "services", "schedule": "schedules",
                "escalation_policy": "escalation_policies"}

# PagerDuty's wording, so a client's error handling sees what production sends.
DEDUP_ERROR = "Open incident with matching dedup key already exists on this service"
_FROM_REQUIRED = (
    "You must specify a user's email address in the \"From\" header to perform this action"
)
_SERVER_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Call(NamedTuple):
    """One request the sandbox received, as recorded for tests."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class ApiError(Exception):
    """Raised inside a route to answer with an error status and a PagerDuty error body."""

    def __init__(self, status: int, message: str, code: int, errors: Sequence[str] = ()) -> None:
        super().__init__(f"{status} {message}: {list(errors)}")
        self.status = status
        self.body: Json = {"error": {"message": message, "code": code}}
        if errors:
            self.body["error"]["errors"] = list(errors)


def invalid(*errors: str) -> ApiError:
    """A 400 with PagerDuty's generic 'Invalid Input Provided' (code 2001)."""
    return ApiError(400, "Invalid Input Provided", 2001, errors)


def not_found() -> ApiError:
    return ApiError(404, "Not Found", 2100)


def iso(moment: datetime) -> str:
    """Format a time as PagerDuty does in UTC: ISO 8601, whole seconds, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    """Parse an ISO 8601 timestamp (naive means UTC); None when unparseable."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass
class User:
    id: str
    name: str
    email: str
    role: str = "user"
    time_zone: str = "Etc/UTC"


@dataclass
class Service:
    id: str
    name: str
    escalation_policy_id: str
    created_at: datetime


@dataclass
class EscalationPolicy:
    id: str
    name: str


@dataclass
class Schedule:
    id: str
    name: str
    time_zone: str = "Etc/UTC"


@dataclass
class Shift:
    """One on-call entry: a user on an escalation policy's level, maybe through a schedule."""

    user_id: str
    escalation_policy_id: str
    schedule_id: str | None
    start: datetime | None  # None: permanently on call
    end: datetime | None
    level: int = 1

    def overlaps(self, since: datetime, until: datetime) -> bool:
        """PagerDuty's rule: a shift is listed when it overlaps [since, until]."""
        if since == until:
            return (self.start is None or self.start <= since) and (
                self.end is None or self.end > since)
        return (self.start is None or self.start < until) and (
            self.end is None or self.end > since)


@dataclass
class Note:
    id: str
    user_id: str
    content: str
    created_at: datetime


@dataclass
class Incident:
    id: str
    number: int
    incident_key: str | None
    title: str
    service_id: str
    escalation_policy_id: str
    urgency: str
    details: Any
    created_at: datetime
    status: str = "triggered"
    updated_at: datetime | None = None
    last_status_change_at: datetime | None = None
    last_status_change_by: str | None = None
    resolved_at: datetime | None = None
    assigned_via: str = "escalation_policy"
    assignments: list[tuple[str, datetime]] = field(default_factory=list)
    acknowledgements: list[tuple[str, datetime]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class SupportTeam:
    """Ids of a seeded support account: services, policies, schedules and people."""

    customer_support_service_id: str
    customer_support_policy_id: str
    customer_support_schedule_id: str
    support_managers_service_id: str
    support_managers_policy_id: str
    support_managers_schedule_id: str
    engineer_ids: tuple[str, ...]
    manager_ids: tuple[str, ...]
    bot_email: str


class _Request(NamedTuple):
    method: str
    path: str
    query: Query
    headers: dict[str, str]  # lower-cased names
    body: bytes | None


_ID = r"([A-Z0-9]+)"
routes = Routes()  # filled by the @routes(...) decorators on the handlers below


class PagerDutySandbox:
    """In-memory PagerDuty account: users, services, policies, schedules, on-calls, incidents."""

    name = "pagerduty"

    def __init__(
        self,
        clock: Clock,
        token: str = "sandbox-pagerduty-token",
        faults: Faults | None = None,
        base_url: str = "https://api.pagerduty.com",
        web_url: str = "https://sandbox.pagerduty.com",
    ) -> None:
        self.clock = clock
        self.token = token
        self.faults = (faults if faults is not None else Faults()).scoped("pagerduty")
        self.base_url = base_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self._lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._services: dict[str, Service] = {}
        self._policies: dict[str, EscalationPolicy] = {}
        self._schedules: dict[str, Schedule] = {}
        self._shifts: list[Shift] = []
        self._incidents: dict[str, Incident] = {}
        self._calls: list[Call] = []
        # One letter per kind, so an id of the wrong kind finds nothing.
        self._counters = {kind: itertools.count(1) for kind in "USEHIN"}
        self._numbers = itertools.count(1)

    # ----- Python API (tests and the demo) ------------------------------------------------

    def add_user(self, name: str, email: str, role: str = "user",
                 time_zone: str = "Etc/UTC") -> str:
        """Create a user and return its id."""
        with self._lock:
            if self._user_by_email(email) is not None:
                raise ValueError(f"a user with email {email!r} already exists")
            user = User(self._new_id("U"), name, email, role, time_zone)
            self._users[user.id] = user
            return user.id

    def add_escalation_policy(self, name: str) -> str:
        """Create an escalation policy; its targets are the on-call entries added for it."""
        with self._lock:
            policy = EscalationPolicy(self._new_id("E"), name)
            self._policies[policy.id] = policy
            return policy.id

    def add_schedule(self, name: str, time_zone: str = "Etc/UTC") -> str:
        """Create a schedule; its layers are the on-call entries added for it."""
        with self._lock:
            schedule = Schedule(self._new_id("H"), name, time_zone)
            self._schedules[schedule.id] = schedule
            return schedule.id

    def add_service(self, name: str, escalation_policy_id: str) -> str:
        """Create a service paging through an escalation policy and return its id."""
        with self._lock:
            self._require(self._policies, escalation_policy_id, "escalation policy")
            service = Service(self._new_id("S"), name, escalation_policy_id, self._now())
            self._services[service.id] = service
            return service.id

    def add_oncall(self, user_id: str, escalation_policy_id: str, schedule_id: str | None,
                   start: datetime | None, end: datetime | None, level: int = 1) -> None:
        """Put a user on call for a policy level between start and end (None: open-ended)."""
        with self._lock:
            self._require(self._users, user_id, "user")
            self._require(self._policies, escalation_policy_id, "escalation policy")
            if schedule_id is not None:
                self._require(self._schedules, schedule_id, "schedule")
            if start is not None and end is not None and end <= start:
                raise ValueError(f"a shift must end after it starts: {start} .. {end}")
            self._shifts.append(Shift(user_id, escalation_policy_id, schedule_id,
                                      _utc_or_none(start), _utc_or_none(end), level))

    def seed_support_team(self, engineers: Sequence[tuple[str, str]],
                          managers: Sequence[tuple[str, str]],
                          bot: tuple[str, str] = ("Emergency Automation", "bot@example.com"),
                          shift: timedelta = timedelta(hours=8),
                          days: int = 7) -> SupportTeam:
        """Seed the runbook's account: Customer Support and Support Managers, rotating shifts.

        Engineers and managers are (name, email) pairs taking turns from the current hour on;
        the bot user is the one the worker names in its ``From`` header.
        """
        with self._lock:
            start = _utc(self.clock.now()).replace(minute=0, second=0, microsecond=0)
            engineer_ids = tuple(self.add_user(n, e) for n, e in engineers)
            manager_ids = tuple(self.add_user(n, e, role="admin") for n, e in managers)
            self.add_user(*bot, role="admin")
            made: dict[str, tuple[str, str, str]] = {}
            for label, people in (("Customer Support", engineer_ids),
                                  ("Support Managers", manager_ids)):
                policy = self.add_escalation_policy(f"{label} Escalation Policy")
                schedule = self.add_schedule(f"{label} On-Call")
                service = self.add_service(label, policy)
                for n in range(int(timedelta(days=days) / shift) if people else 0):
                    begins = start + n * shift
                    self.add_oncall(people[n % len(people)], policy, schedule, begins,
                                    begins + shift)
                made[label] = (service, policy, schedule)
            support, managers_ = made["Customer Support"], made["Support Managers"]
            return SupportTeam(
                customer_support_service_id=support[0], customer_support_policy_id=support[1],
                customer_support_schedule_id=support[2],
                support_managers_service_id=managers_[0],
                support_managers_policy_id=managers_[1],
                support_managers_schedule_id=managers_[2],
                engineer_ids=engineer_ids, manager_ids=manager_ids, bot_email=bot[1])

    def trigger(self, service_id: str, title: str, incident_key: str | None,
                assignee_id: str | None = None, details: str = "",
                urgency: str = "high") -> str:
        """Open an incident as an integration would (Events API: an open key dedups)."""
        with self._lock:
            service = self._require(self._services, service_id, "service")
            existing = self._open_by_key(service_id, incident_key)
            if existing is not None:
                return existing.id
            assignees = [assignee_id] if assignee_id else None
            if assignee_id:
                self._require(self._users, assignee_id, "user")
            return self._open(service, title, incident_key, details, urgency, assignees,
                              None, None).id

    def acknowledge(self, incident_id: str, user_id: str) -> None:
        """A person acknowledges the incident (from the app, a phone call or Slack)."""
        with self._lock:
            self._require(self._users, user_id, "user")
            self._set_status(self._require(self._incidents, incident_id, "incident"),
                             "acknowledged", user_id)

    def resolve(self, incident_id: str, user_id: str | None = None) -> None:
        """A person (or the system, without a user) resolves the incident."""
        with self._lock:
            self._set_status(self._require(self._incidents, incident_id, "incident"),
                             "resolved", user_id)

    def incident(self, incident_id: str) -> Json:
        """The incident as the API shows it."""
        with self._lock:
            return self._incident_json(self._require(self._incidents, incident_id, "incident"))

    def incidents(self) -> list[Json]:
        """Every incident, oldest first."""
        with self._lock:
            return [self._incident_json(i) for i in self._incidents.values()]

    def notes(self, incident_id: str) -> list[Json]:
        """The incident's notes, oldest first."""
        with self._lock:
            incident = self._require(self._incidents, incident_id, "incident")
            return [self._note_json(n) for n in incident.notes]

    def user_id_by_email(self, email: str) -> str | None:
        with self._lock:
            user = self._user_by_email(email)
            return user.id if user else None

    def calls(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Requests received so far; ``path`` is a regular expression matched in full."""
        with self._lock:
            return [c for c in self._calls
                    if (method is None or c.method == method.upper())
                    and (path is None or re.fullmatch(path, c.path))]

    # ----- HTTP surface --------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> Reply:
        """Answer one API request without faults; never raises (a bug becomes a 500)."""
        with self._lock:
            try:
                return self._route(method.upper(), urlsplit(path).path, query, headers, body)
            except ApiError as exc:
                return self.reply(exc.status, exc.body)
            except Exception:
                log.exception("sandbox: unhandled error for %s %s", method, path)
                return self.reply(500, {"error": {"message": "Internal Server Error",
                                                  "code": 2000}})

    def fault_reply(self, fault: Fault) -> Reply:
        """The answer PagerDuty's edge gives for an injected 429 or 5xx."""
        if fault.status == 429:
            seconds = str(fault.retry_after if fault.retry_after is not None else 1)
            return self.reply(429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}},
                              {"Retry-After": seconds, "ratelimit-reset": seconds,
                               "ratelimit-remaining": "0"})
        status = fault.status or 503
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        message = _SERVER_ERRORS.get(status, "Internal Server Error")
        return self.reply(status, {"error": {"message": message, "code": 2000}}, headers)

    def reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Wrap a body with the headers every PagerDuty answer carries."""
        now = self.clock.now()
        standard = {
            "Date": format_datetime(now.astimezone(UTC).replace(microsecond=0), usegmt=True),
            "Content-Type": "application/json; charset=utf-8",
            "X-Request-Id": f"sandbox-{int(now.timestamp() * 1000)}",
        }
        return Reply(status, {**standard, **(headers or {})}, body)

    def record(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> None:
        """Keep the request for ``calls`` (faulted ones included)."""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        with self._lock:
            self._calls.append(Call(method.upper(), path, {k: list(v) for k, v in query.items()},
                                    dict(headers), parsed))

    def _route(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        if not self._authenticated(lowered.get("authorization", "")):
            return self.reply(401, {"error": {"message": "Unauthorized", "code": 2006}})
        request = _Request(method, path.rstrip("/") or "/", query, lowered, body)
        found = routes.find(method, request.path)
        if found is None:
            raise not_found()
        handler: Callable[..., tuple[int, Json]] = getattr(self, found[0])
        return self.reply(*handler(request, *found[1]))

    def _authenticated(self, authorization: str) -> bool:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "token" or not credential.startswith("token="):
            return False
        return hmac.compare_digest(credential.removeprefix("token=").encode(),
                                   self.token.encode())

    # ----- routes --------------------------------------------------------------------------

    @routes("GET", r"/incidents")
    def _list_incidents(self, req: _Request) -> tuple[int, Json]:
        _check_params(req, {"limit", "offset", "total", "date_range", "incident_key",
                            "service_ids[]", "user_ids[]", "statuses[]", "urgencies[]",
                            "since", "until", "sort_by", "include[]", "time_zone"})
        statuses = _values(req, "statuses[]")
        urgencies = _values(req, "urgencies[]")
        if bad := [s for s in statuses if s not in STATUSES]:
            raise invalid(f"Invalid status: {bad[0]}")
        if bad := [u for u in urgencies if u not in URGENCIES]:
            raise invalid(f"Invalid urgency: {bad[0]}")
        service_ids = set(_values(req, "service_ids[]"))
        user_ids = set(_values(req, "user_ids[]"))
        key = _value(req, "incident_key")
        window = self._incident_window(req)
        found = [
            i for i in self._incidents.values()
            if (not statuses or i.status in statuses)
            and (not urgencies or i.urgency in urgencies)
            and (not service_ids or i.service_id in service_ids)
            and (not user_ids or any(u in user_ids for u, _ in i.assignments))
            and (key is None or i.incident_key == key)
            and (window is None or window[0] <= i.created_at <= window[1])
        ]
        found = _sorted_incidents(found, _value(req, "sort_by"))
        return 200, self._page(req, "incidents", [self._incident_json(i) for i in found])

    @routes("POST", r"/incidents")
    def _create_incident(self, req: _Request) -> tuple[int, Json]:
        self._requester(req)
        data = _json_object(req.body).get("incident")
        if not isinstance(data, dict):
            raise invalid("incident is required")
        if data.get("type") != "incident":
            raise invalid("incident.type must be 'incident'")
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            raise invalid("Title cannot be empty")
        service = self._referenced(data.get("service"), "service_reference", self._services,
                                   "Service")
        urgency = data.get("urgency", "high")
        if urgency not in URGENCIES:
            raise invalid(f"Invalid urgency: {urgency}")
        details = _details(data.get("body"))
        assignments = data.get("assignments")
        policy_ref = data.get("escalation_policy")
        if assignments and policy_ref:
            raise invalid("Cannot specify both assignments and an escalation policy")
        assignees = None
        if assignments is not None:
            if not isinstance(assignments, list):
                raise invalid("assignments must be an array")
            assignees = [self._referenced(a.get("assignee") if isinstance(a, dict) else None,
                                          "user_reference", self._users, "User").id
                         for a in assignments]
        policy = None
        if policy_ref is not None:
            policy = self._referenced(policy_ref, "escalation_policy_reference", self._policies,
                                      "Escalation Policy")
        key = data.get("incident_key")
        if key is not None and not isinstance(key, str):
            raise invalid("incident_key must be a string")
        if self._open_by_key(service.id, key) is not None:
            raise invalid(DEDUP_ERROR)
        incident = self._open(service, title, key, details, urgency, assignees,
                              policy.id if policy else None, None)
        return 201, {"incident": self._incident_json(incident)}

    @routes("GET", rf"/incidents/{_ID}")
    def _get_incident(self, req: _Request, incident_id: str) -> tuple[int, Json]:
        return 200, {"incident": self._incident_json(self._incident_or_404(incident_id))}

    @routes("PUT", rf"/incidents/{_ID}")
    def _update_incident(self, req: _Request, incident_id: str) -> tuple[int, Json]:
        requester = self._requester(req)
        incident = self._incident_or_404(incident_id)
        data = _json_object(req.body).get("incident")
        if not isinstance(data, dict):
            raise invalid("incident is required")
        if data.get("type") not in ("incident", "incident_reference"):
            raise invalid("incident.type must be 'incident' or 'incident_reference'")
        unsupported = set(data) - {"type", "id", "status", "title", "urgency", "resolution"}
        if unsupported:
            raise invalid(f"The sandbox does not support updating {sorted(unsupported)}")
        if "urgency" in data and data["urgency"] not in URGENCIES:
            raise invalid(f"Invalid urgency: {data['urgency']}")
        if "status" in data and data["status"] not in STATUSES:
            raise invalid(f"Invalid status: {data['status']}")
        now = self._now()
        if isinstance(data.get("title"), str) and data["title"].strip():
            incident.title = data["title"]
        if "urgency" in data:
            incident.urgency = data["urgency"]
        incident.updated_at = now
        if "status" in data:
            self._set_status(incident, data["status"], requester.id)
        return 200, {"incident": self._incident_json(incident)}

    @routes("GET", rf"/incidents/{_ID}/notes")
    def _list_notes(self, req: _Request, incident_id: str) -> tuple[int, Json]:
        incident = self._incident_or_404(incident_id)
        return 200, {"notes": [self._note_json(n) for n in incident.notes]}

    @routes("POST", rf"/incidents/{_ID}/notes")
    def _create_note(self, req: _Request, incident_id: str) -> tuple[int, Json]:
        requester = self._requester(req)
        incident = self._incident_or_404(incident_id)
        data = _json_object(req.body).get("note")
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, str) or not content.strip():
            raise invalid("Note content cannot be empty")
        note = Note(self._new_id("N"), requester.id, content, self._now())
        incident.notes.append(note)
        incident.updated_at = note.created_at
        return 200, {"note": self._note_json(note)}

    @routes("GET", r"/users")
    def _list_users(self, req: _Request) -> tuple[int, Json]:
        _check_params(req, {"limit", "offset", "total", "query", "include[]"})
        needle = (_value(req, "query") or "").lower()
        found = [u for u in self._users.values()
                 if needle in u.name.lower() or needle in u.email.lower()]
        return 200, self._page(req, "users", [self._user_json(u) for u in found])

    @routes("GET", r"/users/me")
    def _get_me(self, req: _Request) -> tuple[int, Json]:
        # The sandbox's token is account-level: PagerDuty correlates no user with it.
        raise invalid("Because this request was made using an account-level access token, "
                      "we were unable to correlate a user with this request.")

    @routes("GET", rf"/users/{_ID}")
    def _get_user(self, req: _Request, user_id: str) -> tuple[int, Json]:
        user = self._users.get(user_id)
        if user is None:
            raise not_found()
        return 200, {"user": self._user_json(user)}

    @routes("GET", rf"/services/{_ID}")
    def _get_service(self, req: _Request, service_id: str) -> tuple[int, Json]:
        _check_params(req, set())
        service = self._services.get(service_id)
        if service is None:
            raise not_found()
        return 200, {"service": self._service_json(service)}

    @routes("GET", rf"/escalation_policies/{_ID}")
    def _get_escalation_policy(self, req: _Request, policy_id: str) -> tuple[int, Json]:
        _check_params(req, set())
        policy = self._policies.get(policy_id)
        if policy is None:
            raise not_found()
        return 200, {"escalation_policy": self._policy_json(policy)}

    @routes("GET", r"/oncalls")
    def _list_oncalls(self, req: _Request) -> tuple[int, Json]:
        _check_params(req, {"limit", "offset", "total", "time_zone", "include[]", "user_ids[]",
                            "escalation_policy_ids[]", "schedule_ids[]", "since", "until",
                            "earliest"})
        now = self._now()
        since = _time_param(req, "since") or now
        until = _time_param(req, "until") or since
        if until < since:
            raise ApiError(400, "Invalid 'since' or 'until' parameter values", 2004,
                           ["'until' cannot be before 'since'"])
        if until > now + ONCALL_HORIZON:
            raise ApiError(400, "Invalid 'since' or 'until' parameter values", 2004,
                           ["On-call shifts are limited to 90 days in the future"])
        earliest = _value(req, "earliest")
        if earliest not in (None, "true", "false"):
            raise invalid("earliest must be true or false")
        policies = set(_values(req, "escalation_policy_ids[]"))
        schedules = set(_values(req, "schedule_ids[]"))
        users = set(_values(req, "user_ids[]"))
        shifts = sorted(
            (s for s in self._shifts
             if (not policies or s.escalation_policy_id in policies)
             and (not schedules or s.schedule_id in schedules)
             and (not users or s.user_id in users)
             and s.overlaps(since, until)),
            key=lambda s: (s.escalation_policy_id, s.level,
                           s.start or datetime.min.replace(tzinfo=UTC), s.user_id),
        )
        if earliest == "true":
            seen: set[tuple[str, int, str]] = set()
            kept = []
            for shift in shifts:
                combination = (shift.escalation_policy_id, shift.level, shift.user_id)
                if combination not in seen:
                    seen.add(combination)
                    kept.append(shift)
            shifts = kept
        full_users = "users" in _values(req, "include[]")
        return 200, self._page(req, "oncalls",
                               [self._oncall_json(s, full_users) for s in shifts])

    # ----- behaviour shared by routes and the Python API ------------------------------------

    def _open(self, service: Service, title: str, key: str | None, details: Any,
              urgency: str, assignees: list[str] | None, policy_id: str | None,
              by: str | None) -> Incident:
        now = self._now()
        policy_id = policy_id or service.escalation_policy_id
        incident = Incident(
            id=self._new_id("I"), number=next(self._numbers), incident_key=key, title=title,
            service_id=service.id, escalation_policy_id=policy_id, urgency=urgency,
            details=details, created_at=now, updated_at=now, last_status_change_at=now,
            last_status_change_by=by,
        )
        if assignees:
            incident.assigned_via = "direct_assignment"
            incident.assignments = [(u, now) for u in dict.fromkeys(assignees)]
        else:
            incident.assignments = [(u, now) for u in self._first_level(policy_id, now)]
        self._incidents[incident.id] = incident
        return incident

    def _set_status(self, incident: Incident, status: str, user_id: str | None) -> None:
        now = self._now()
        if status == incident.status == "resolved":
            return  # resolving twice changes nothing, as a second click in the app
        if status == "acknowledged":
            if incident.status == "resolved":
                incident.acknowledgements = []
                if user_id is not None:
                    incident.assignments = [(user_id, now)]  # reopening assigns the requester
            if user_id is not None and user_id not in (u for u, _ in incident.acknowledgements):
                incident.acknowledgements.append((user_id, now))
        elif status == "triggered":
            incident.acknowledgements = []
            if incident.status == "resolved":
                incident.assignments = [
                    (u, now) for u in self._first_level(incident.escalation_policy_id, now)]
        else:
            incident.assignments = []
            incident.resolved_at = now
        if status != "resolved":
            incident.resolved_at = None
        if status != incident.status:
            incident.last_status_change_at = now
            incident.last_status_change_by = user_id
        incident.status = status
        incident.updated_at = now

    def _first_level(self, policy_id: str, at: datetime) -> list[str]:
        return list(dict.fromkeys(s.user_id for s in self._shifts
                                  if s.escalation_policy_id == policy_id and s.level == 1
                                  and s.overlaps(at, at)))

    def _open_by_key(self, service_id: str, key: str | None) -> Incident | None:
        if key is None:
            return None
        return next((i for i in self._incidents.values()
                     if i.service_id == service_id and i.incident_key == key and i.is_open),
                    None)

    def _requester(self, req: _Request) -> User:
        """Writes name a user of the account in ``From``, as account-level tokens must."""
        email = req.headers.get("from", "").strip()
        if not email:
            raise ApiError(400, _FROM_REQUIRED, 2016)
        user = self._user_by_email(email)
        if user is None:
            raise invalid("Requester User Not Found")
        return user

    def _referenced(self, ref: Any, ref_type: str, table: Mapping[str, Any], label: str) -> Any:
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise invalid(f"{label} reference must be an object with an id")
        if ref.get("type") not in (ref_type, ref_type.removesuffix("_reference")):
            raise invalid(f"{label} reference type must be '{ref_type}'")
        found = table.get(ref["id"])
        if found is None:
            raise invalid(f"{label} not found")
        return found

    def _incident_window(self, req: _Request) -> tuple[datetime, datetime] | None:
        if _value(req, "date_range") == "all":
            return None
        if _value(req, "date_range") not in (None, "all"):
            raise invalid("date_range must be 'all'")
        until = _time_param(req, "until") or self._now()
        since = _time_param(req, "since") or until - DEFAULT_INCIDENT_WINDOW
        if until < since or until - since > MAX_INCIDENT_WINDOW:
            raise ApiError(400, "Invalid Query Date Range", 2005,
                           ["The range must be at most 6 months, with 'since' before 'until'"])
        return since, until

    def _page(self, req: _Request, wrapper: str, items: list[Json]) -> Json:
        """Classic offset pagination: limit (at most 100), offset, more, total on request."""
        try:
            limit = int(_value(req, "limit") or DEFAULT_LIMIT)
            offset = int(_value(req, "offset") or 0)
        except ValueError:
            raise invalid("limit and offset must be integers") from None
        if limit < 1 or offset < 0:
            raise invalid("limit must be positive and offset not negative")
        limit = min(limit, MAX_LIMIT)
        if offset + limit > ITERATION_LIMIT:
            raise ApiError(400, "Arguments Caused Error", 2002, [
                f"Offset+limit exceeds maximum allowed value of {ITERATION_LIMIT}."])
        total = len(items) if _value(req, "total") == "true" else None
        return {wrapper: items[offset:offset + limit], "limit": limit, "offset": offset,
                "more": offset + limit < len(items), "total": total}

    # ----- rendering -----------------------------------------------------------------------

    def _ref(self, kind: str, item_id: str, summary: str, web_path: str) -> Json:
        return {"id": item_id, "type": f"{kind}_reference", "summary": summary,
                "self": f"{self.base_url}/{_COLLECTIONS[kind]}/{item_id}",
                "html_url": f"{self.web_url}/{web_path}/{item_id}"}

    def _user_ref(self, user_id: str) -> Json:
        return self._ref("user", user_id, self._users[user_id].name, "users")

    def _incident_json(self, incident: Incident) -> Json:
        service = self._services[incident.service_id]
        policy = self._policies[incident.escalation_policy_id]
        by = incident.last_status_change_by
        return {
            "id": incident.id,
            "type": "incident",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": f"{self.base_url}/incidents/{incident.id}",
            "html_url": f"{self.web_url}/incidents/{incident.id}",
            "incident_number": incident.number,
            "title": incident.title,
            "created_at": iso(incident.created_at),
            "updated_at": iso(incident.updated_at or incident.created_at),
            "status": incident.status,
            "incident_key": incident.incident_key,
            "service": self._ref("service", service.id, service.name, "service-directory"),
            "assignments": [{"at": iso(at), "assignee": self._user_ref(u)}
                            for u, at in incident.assignments],
            "assigned_via": incident.assigned_via,
            "last_status_change_at": iso(incident.last_status_change_at or incident.created_at),
            "last_status_change_by": self._user_ref(by) if by else None,
            "resolved_at": iso(incident.resolved_at) if incident.resolved_at else None,
            "acknowledgements": [{"at": iso(at), "acknowledger": self._user_ref(u)}
                                 for u, at in incident.acknowledgements],
            "alert_counts": {"all": 0, "triggered": 0, "resolved": 0},
            "is_mergeable": True,
            "escalation_policy": self._ref("escalation_policy", policy.id, policy.name,
                                           "escalation_policies"),
            "teams": [],
            "pending_actions": [],
            "priority": None,
            "urgency": incident.urgency,
            "incidents_responders": [],
            "responder_requests": [],
            "body": {"type": "incident_body", "details": incident.details},
        }

    def _note_json(self, note: Note) -> Json:
        return {"id": note.id, "user": self._user_ref(note.user_id),
                "channel": {"summary": "The PagerDuty website or APIs"},
                "content": note.content, "created_at": iso(note.created_at)}

    def _user_json(self, user: User) -> Json:
        return {"id": user.id, "type": "user", "summary": user.name,
                "self": f"{self.base_url}/users/{user.id}",
                "html_url": f"{self.web_url}/users/{user.id}",
                "name": user.name, "email": user.email, "time_zone": user.time_zone,
                "role": user.role, "color": "green", "invitation_sent": False,
                "teams": [], "contact_methods": [], "notification_rules": []}

    def _service_json(self, service: Service) -> Json:
        policy = self._policies[service.escalation_policy_id]
        incidents = [i for i in self._incidents.values() if i.service_id == service.id]
        statuses = {i.status for i in incidents}
        status = ("critical" if "triggered" in statuses
                  else "warning" if "acknowledged" in statuses else "active")
        latest = max((i.created_at for i in incidents), default=None)
        return {
            "id": service.id, "type": "service", "summary": service.name,
            "self": f"{self.base_url}/services/{service.id}",
            "html_url": f"{self.web_url}/service-directory/{service.id}",
            "name": service.name, "description": None, "status": status,
            "created_at": iso(service.created_at),
            "last_incident_timestamp": iso(latest) if latest else None,
            "auto_resolve_timeout": 14400, "acknowledgement_timeout": 1800,
            "alert_creation": "create_alerts_and_incidents",
            "escalation_policy": self._ref("escalation_policy", policy.id, policy.name,
                                           "escalation_policies"),
            "incident_urgency_rule": {"type": "constant", "urgency": "high"},
            "teams": [], "integrations": [], "addons": [], "scheduled_actions": [],
            "support_hours": None, "response_play": None,
        }

    def _policy_json(self, policy: EscalationPolicy) -> Json:
        """The policy with one rule per level: the schedules (or people) on call there."""
        levels: dict[int, dict[str, Json]] = {}
        for shift in sorted(self._shifts, key=lambda s: s.level):
            if shift.escalation_policy_id != policy.id:
                continue
            schedule = self._schedules.get(shift.schedule_id or "")
            target = (self._ref("schedule", schedule.id, schedule.name, "schedules")
                      if schedule else self._user_ref(shift.user_id))
            levels.setdefault(shift.level, {})[target["id"]] = target
        services = [self._ref("service", s.id, s.name, "service-directory")
                    for s in self._services.values() if s.escalation_policy_id == policy.id]
        return {
            "id": policy.id, "type": "escalation_policy", "summary": policy.name,
            "self": f"{self.base_url}/escalation_policies/{policy.id}",
            "html_url": f"{self.web_url}/escalation_policies/{policy.id}",
            "name": policy.name, "description": "", "num_loops": 0,
            "on_call_handoff_notifications": "if_has_services",
            "escalation_rules": [
                {"id": f"PR{policy.id[2:]}{level}", "escalation_delay_in_minutes": 30,
                 "targets": list(targets.values())}
                for level, targets in sorted(levels.items())],
            "services": services, "teams": [],
        }

    def _oncall_json(self, shift: Shift, full_user: bool = False) -> Json:
        policy = self._policies[shift.escalation_policy_id]
        schedule = self._schedules.get(shift.schedule_id or "")
        return {
            "escalation_policy": self._ref("escalation_policy", policy.id, policy.name,
                                           "escalation_policies"),
            "escalation_level": shift.level,
            "schedule": (self._ref("schedule", schedule.id, schedule.name, "schedules")
                         if schedule else None),
            "user": (self._user_json(self._users[shift.user_id]) if full_user
                     else self._user_ref(shift.user_id)),
            "start": iso(shift.start) if shift.start else None,
            "end": iso(shift.end) if shift.end else None,
        }

    # ----- helpers -------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"P{kind}{next(self._counters[kind]):05d}"

    def _now(self) -> datetime:
        return _utc(self.clock.now()).replace(microsecond=0)

    def _user_by_email(self, email: str) -> User | None:
        wanted = email.strip().lower()
        return next((u for u in self._users.values() if u.email.lower() == wanted), None)

    def _incident_or_404(self, incident_id: str) -> Incident:
        incident = self._incidents.get(incident_id)
        if incident is None:
            raise not_found()
        return incident

    @staticmethod
    def _require(table: Mapping[str, Any], item_id: str, label: str) -> Any:
        if item_id not in table:
            raise KeyError(f"no {label} {item_id!r}")
        return table[item_id]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"times must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _values(req: _Request, name: str) -> list[str]:
    """An array filter's values, sent as ``name[]=a&name[]=b`` (the bare name is accepted too)."""
    raw = [*req.query.get(name, ()), *req.query.get(name.removesuffix("[]"), ())]
    return [v for v in raw if v != ""]


def _value(req: _Request, name: str) -> str | None:
    values = req.query.get(name)
    return values[-1] if values else None


def _check_params(req: _Request, known: set[str]) -> None:
    """Refuse what the sandbox does not implement rather than silently ignore a filter."""
    unknown = sorted(k for k in req.query if k not in known and f"{k}[]" not in known)
    if unknown:
        raise invalid(f"The sandbox does not support the parameter(s) {unknown}")


def _time_param(req: _Request, name: str) -> datetime | None:
    raw = _value(req, name)
    if raw is None or raw == "":
        return None
    moment = parse_time(raw)
    if moment is None:
        raise ApiError(400, "Invalid 'since' or 'until' parameter values", 2004,
                       [f"{name} is not an ISO 8601 time: {raw}"])
    return moment


def _json_object(body: bytes | None) -> Json:
    try:
        data = json.loads(body or b"")
    except ValueError:
        raise invalid("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object")
    return data


def _details(body: Any) -> Any:
    if body is None:
        return ""
    if not isinstance(body, dict) or body.get("type") != "incident_body":
        raise invalid("body.type must be 'incident_body'")
    # The OpenAPI description types details as an object; the API takes a string too.
    return body.get("details", "")


def _sorted_incidents(found: list[Incident], sort_by: str | None) -> list[Incident]:
    if sort_by is None:
        return sorted(found, key=lambda i: i.number)
    field_name, _, direction = sort_by.partition(":")
    keys: dict[str, Callable[[Incident], Any]] = {
        "incident_number": lambda i: i.number,
        "created_at": lambda i: (i.created_at, i.number),
        "urgency": lambda i: (URGENCIES.index(i.urgency), i.number),
    }
    if field_name not in keys or direction not in ("", "asc", "desc"):
        raise invalid(f"Invalid sort_by: {sort_by}")
    return sorted(found, key=keys[field_name], reverse=direction == "desc")
