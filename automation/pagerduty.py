"""PagerDuty adapter on python-pagerduty: reads retried with care, writes sent at most once.

python-pagerduty 7.2.0 (``RestApiV2Client``, on httpx2) re-sends any request whose connection
failed, a POST included (a note posted twice), retries 429 without bound while ignoring
``Retry-After``, and sleeps on the wall clock. So, on our client:

- its network retries are off (``max_network_attempts = 0``): nothing is ever re-sent blindly;
- its 429 retries are bounded (``retry[429]``) and its own sleeps are zero: an httpx event hook
  holds every request on the injected clock until the last 429's ``Retry-After`` (or PagerDuty's
  ``ratelimit-reset``) has passed, and gives up once that would pass ``max_retry_seconds``;
- reads (GET) are retried here, with tenacity, on 5xx and connection errors, within the same
  budget measured on the injected clock;
- writes are sent once. After a 5xx or a lost answer each write decides by reading: ``trigger``
  looks its incident up by ``incident_key``, ``add_note`` re-reads the notes, ``resolve`` re-reads
  the incident. Only then is ``WriteUncertain`` raised, for the worker to try on its next pass.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import pagerduty
import tenacity

from automation.clock import Clock, Pause
from automation.errors import (
    ConfigError,
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    UpstreamError,
    WriteUncertain,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE = "PagerDuty"
DEFAULT_URL = "https://api.pagerduty.com"
OPEN_STATUSES = ("triggered", "acknowledged")
BACKOFF = tenacity.wait_random_exponential(multiplier=0.5, max=20)
MAX_RATE_LIMIT_RETRIES = 5  # python-pagerduty's retry[429]; the time budget usually ends first
MAX_READ_ATTEMPTS = 5
# What PagerDuty answers (400) to a POST /incidents whose incident_key has an open incident.
DEDUP_MARKER = "matching dedup key already exists"
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout)  # failed before a byte left
_MALFORMED = (KeyError, TypeError, ValueError)  # an answer without the fields we read


class DuplicateIncident(Rejected):
    """Raised when PagerDuty refuses a new incident because one is open with the same key."""


@dataclass(frozen=True)
class PdUser:
    """A PagerDuty user."""

    id: str
    name: str
    email: str


@dataclass(frozen=True)
class Incident:
    """A PagerDuty incident, as much of it as the workflow reads."""

    id: str
    incident_number: int
    incident_key: str | None
    title: str
    status: str  # triggered, acknowledged or resolved ("resolved" means "engaged" here)
    service_id: str
    assignee_ids: tuple[str, ...]
    acknowledger_ids: tuple[str, ...]
    html_url: str
    created_at: datetime
    urgency: str = "high"
    acknowledged_at: datetime | None = None  # when a person last acknowledged it

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class OnCall:
    """One on-call entry: who, on which level of which policy, from when until when."""

    user: PdUser
    start: datetime | None  # None: on call permanently (no schedule in between)
    end: datetime | None
    escalation_level: int
    schedule_id: str | None
    escalation_policy_id: str = ""

    def covers(self, at: datetime) -> bool:
        """Whether this shift is running at ``at``."""
        return (self.start is None or self.start <= at) and (self.end is None or at < self.end)


class _OutOfRetryBudget(Exception):
    """A 429's Retry-After would carry the call past its time budget."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def retry_after_seconds(response: httpx2.Response, now: datetime, attempt: int = 1) -> float:
    """How long a 429 asks us to wait: Retry-After, else ratelimit-reset, else back off."""
    for name in ("Retry-After", "ratelimit-reset"):
        value = response.headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max((moment - now).total_seconds(), 0.0)
    return min(2.0 ** attempt, 30.0)


class PagerDuty:
    """The slice of PagerDuty REST API v2 the worker needs, in the project's types and errors."""

    def __init__(
        self,
        token: str,
        from_email: str,
        clock: Clock,
        base_url: str = DEFAULT_URL,
        verify: str | bool = True,
        max_retry_seconds: float = 60,
        *,
        timeout: float = 10.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.clock = clock
        self.from_email = from_email
        self.max_retry_seconds = max_retry_seconds
        self.pause = Pause(clock, SERVICE)
        self._local = threading.local()
        self._users: dict[str, PdUser] = {}
        self._users_lock = threading.Lock()
        try:
            tls = _tls_verification(verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"PagerDuty CA file {verify!r}: {exc}") from None
        try:
            self.client = pagerduty.RestApiV2Client(
                token, default_from=from_email, base_url=base_url.rstrip("/"), verify=tls,
                transport=transport, event_hooks={"request": [self._before_request],
                                                  "response": [self._after_response]},
            )
        except pagerduty.UrlError as exc:
            raise ConfigError(f"[pagerduty] url: {exc}") from None
        self.client.timeout = timeout  # type: ignore[assignment]  # declared int, takes seconds
        self.client.max_network_attempts = 0
        self.client.retry[429] = MAX_RATE_LIMIT_RETRIES
        self.client.sleep_timer = 0  # its sleeps are time.sleep; ours are in _before_request

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PagerDuty:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reads -----------------------------------------------------------------------------

    def open_incidents(self, service_ids: Sequence[str]) -> list[Incident]:
        """Triggered and acknowledged incidents on these services (all when empty): one listing.

        ``date_range=all``: PagerDuty otherwise lists only incidents of the past month.
        """
        params = {"service_ids": list(service_ids), "statuses": list(OPEN_STATUSES),
                  "date_range": "all"}
        return self._read("GET", "/incidents", lambda: [
            incident_from(i) for i in self.client.iter_all("/incidents", params=params)])

    def incident_by_key(self, incident_key: str,
                        service_ids: Sequence[str]) -> Incident | None:
        """The open incident with this key, else the latest resolved one, else None."""
        found = self._incidents_by_key(incident_key, service_ids, open_only=False)
        open_ = [i for i in found if i.is_open]
        if open_:
            return open_[0]
        return max(found, key=lambda i: (i.created_at, i.incident_number), default=None)

    def incidents_since(self, service_ids: Sequence[str], since: datetime) -> list[Incident]:
        """Every incident on these services created since ``since`` (resolved ones too).

        The window ends 30 days past ``since`` or past this machine's now, whichever is later:
        ``since`` is on the services' clock, which this machine's may trail (by hours against
        the sandbox), and PagerDuty refuses a window that ends before it starts or spans more
        than 6 months.
        """
        until = max(since, self.clock.now()) + timedelta(days=30)
        params = {"service_ids": list(service_ids),
                  "since": iso(max(since, until - timedelta(days=180))), "until": iso(until)}
        return self._read("GET", "/incidents", lambda: [
            incident_from(i) for i in self.client.iter_all("/incidents", params=params)])

    def incident(self, incident_id: str) -> Incident:
        path = f"/incidents/{incident_id}"
        return self._read("GET", path, lambda: incident_from(self.client.rget(path)))

    def notes(self, incident_id: str) -> list[str]:
        """The contents of the incident's notes, oldest first."""
        path = f"/incidents/{incident_id}/notes"
        return self._read("GET", path, lambda: [
            str(n.get("content", "")) for n in self.client.rget(path)])

    def user(self, user_id: str) -> PdUser:
        """A user by id; names and emails change rarely, so they are kept for the process."""
        with self._users_lock:
            cached = self._users.get(user_id)
        if cached is not None:
            return cached
        path = f"/users/{user_id}"
        return self._remember(self._read("GET", path,
                                         lambda: user_from(self.client.rget(path))))

    def token_owner(self) -> PdUser | None:
        """The user a personal token belongs to; None for an account-level API token.

        PagerDuty answers 400 to `/users/me` for an account-level token (the only 4xx its
        reference lists there); any other refusal is raised, never taken for "no owner".
        """
        try:
            return self._read("GET", "/users/me",
                              lambda: user_from(self.client.rget("/users/me")))
        except Rejected as exc:
            if exc.status == 400:
                return None
            raise

    def service_name(self, service_id: str) -> str:
        """The name of a service; NotFound when the account has no such service."""
        path = f"/services/{quote(service_id, safe='')}"
        return self._read("GET", path, lambda: str(self.client.rget(path)["name"]))

    def escalation_policy_name(self, policy_id: str) -> str:
        """The name of an escalation policy; NotFound when the account has no such policy."""
        path = f"/escalation_policies/{quote(policy_id, safe='')}"
        return self._read("GET", path, lambda: str(self.client.rget(path)["name"]))

    def user_by_email(self, email: str) -> PdUser | None:
        found = self._read("GET", "/users",
                           lambda: self.client.find("users", email, attribute="email"))
        return self._remember(user_from(found)) if found else None

    def oncalls(self, escalation_policy_ids: Sequence[str] | None,
                schedule_ids: Sequence[str] | None, at: datetime,
                until: datetime | None = None, earliest: bool | None = None) -> list[OnCall]:
        """On-call entries overlapping [at, until] (the moment ``at`` without ``until``).

        With ``until``, ``earliest=true`` is sent by default: each user's first entry per policy
        level, which is what "who is on call now and next" needs.
        """
        params: dict[str, Any] = {"since": iso(at), "until": iso(until or at),
                                  "include": ["users"]}
        if escalation_policy_ids:
            params["escalation_policy_ids"] = list(escalation_policy_ids)
        if schedule_ids:
            params["schedule_ids"] = list(schedule_ids)
        if (until is not None) if earliest is None else earliest:
            params["earliest"] = "true"
        entries = self._read("GET", "/oncalls", lambda: [
            oncall_from(o) for o in self.client.iter_all("/oncalls", params=params)])
        for entry in entries:
            if entry.user.email:
                self._remember(entry.user)
        return sorted(entries, key=_shift_order)

    def now_and_next(self, escalation_policy_id: str, at: datetime,
                     horizon: timedelta = timedelta(days=7),
                     level: int = 1) -> tuple[OnCall | None, OnCall | None]:
        """Who is on call for the policy's level at ``at``, and who takes over after them."""
        return split_shifts(self.oncalls([escalation_policy_id], None, at, at + horizon),
                            at, level)

    # --- writes ----------------------------------------------------------------------------

    def trigger(self, service_id: str, title: str, incident_key: str, details: str,
                assignee_id: str | None = None, escalation_policy_id: str | None = None,
                urgency: str = "high") -> Incident:
        """Open an incident keyed ``incident_key``, or return the one already open with it."""
        if assignee_id and escalation_policy_id:
            raise ValueError("PagerDuty takes assignments or an escalation policy, not both")
        incident: dict[str, Any] = {
            "type": "incident",
            "title": title,
            "service": {"id": service_id, "type": "service_reference"},
            "urgency": urgency,
            "incident_key": incident_key,
            "body": {"type": "incident_body", "details": details},
        }
        if assignee_id:
            incident["assignments"] = [{"assignee": {"id": assignee_id,
                                                     "type": "user_reference"}}]
        if escalation_policy_id:
            incident["escalation_policy"] = {"id": escalation_policy_id,
                                             "type": "escalation_policy_reference"}
        try:
            return self._write("POST", "/incidents", lambda: incident_from(
                self.client.rpost("/incidents", json={"incident": incident})))
        except (DuplicateIncident, WriteUncertain) as exc:
            # A first attempt may have landed (lost answer), or another worker was first.
            found = self._incidents_by_key(incident_key, [service_id], open_only=True)
            if not found:
                raise exc from None
            log.info("PagerDuty: incident %s is already open for %s; using it",
                     found[0].id, incident_key)
            return found[0]

    def add_note(self, incident_id: str, text: str) -> None:
        """Add a note unless one with exactly this text is already on the incident."""
        path = f"/incidents/{incident_id}/notes"
        if text in self.notes(incident_id):
            return
        try:
            self._write("POST", path, lambda: self.client.rpost(
                path, json={"note": {"content": text}}))
        except WriteUncertain:
            if text in self.notes(incident_id):
                log.info("PagerDuty: the note on %s landed although its answer was lost",
                         incident_id)
                return
            raise

    def resolve(self, incident_id: str) -> None:
        """Mark the incident resolved (in the runbook: the customer has been contacted)."""
        path = f"/incidents/{incident_id}"
        body = {"incident": {"type": "incident_reference", "status": "resolved"}}
        try:
            self._write("PUT", path, lambda: self.client.rput(path, json=body))
        except (WriteUncertain, Rejected):
            # Lost answer, or a refusal to resolve twice: the incident's status decides.
            if self.incident(incident_id).status == "resolved":
                return
            raise

    # --- plumbing --------------------------------------------------------------------------

    def _incidents_by_key(self, incident_key: str, service_ids: Sequence[str],
                          open_only: bool) -> list[Incident]:
        params: dict[str, Any] = {"incident_key": incident_key, "date_range": "all",
                                  "service_ids": list(service_ids)}
        if open_only:
            params["statuses"] = list(OPEN_STATUSES)
        found = self._read("GET", "/incidents", lambda: [
            incident_from(i) for i in self.client.iter_all("/incidents", params=params)])
        # Incidents grouped from alerts can match a key loosely; keep exact matches only.
        return [i for i in found if i.incident_key == incident_key]

    def _remember(self, user: PdUser) -> PdUser:
        with self._users_lock:
            self._users[user.id] = user
        return user

    @contextmanager
    def _budget(self, deadline: datetime) -> Iterator[None]:
        """Give the requests of one call a deadline for their rate-limit waits."""
        self._local.deadline, self._local.rate_limited = deadline, 0
        try:
            yield
        finally:
            self._local.deadline = None

    def _before_request(self, request: httpx2.Request) -> None:
        until, deadline = self.pause.until, getattr(self._local, "deadline", None)
        if until is not None and deadline is not None and until > deadline:
            # Sleeping would outlast this call's budget (maybe for an hour): fail fast instead.
            raise _OutOfRetryBudget((until - self.clock.now()).total_seconds())
        self.pause.wait()

    def _after_response(self, response: httpx2.Response) -> None:
        if response.status_code != 429:
            return
        self._local.rate_limited = getattr(self._local, "rate_limited", 0) + 1
        seconds = retry_after_seconds(response, self.clock.now(), self._local.rate_limited)
        until = self.pause.extend(seconds)
        deadline: datetime | None = getattr(self._local, "deadline", None)
        if deadline is not None and until > deadline:
            raise _OutOfRetryBudget(seconds)
        log.warning("PagerDuty %s %s: HTTP 429; retrying after %.0f s", response.request.method,
                 response.request.url.path, seconds)

    def _read(self, method: str, path: str, call: Callable[[], T]) -> T:
        """A read, retried on 5xx and connection errors within the time budget."""
        deadline = self.clock.now() + timedelta(seconds=self.max_retry_seconds)

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            next_start = self.clock.now() + timedelta(seconds=state.upcoming_sleep)
            return next_start >= deadline or state.attempt_number >= MAX_READ_ATTEMPTS

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_transient),
            # Never a backoff that sleeps past the budget: its last try starts within it.
            wait=lambda state: min(BACKOFF(state),
                                   max((deadline - self.clock.now()).total_seconds(), 0.0)),
            stop=out_of_time,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "PagerDuty %s %s: %s; retrying", method, path, _outcome_text(state)),
        )
        try:
            with self._budget(deadline):
                return retrying(call)
        except (pagerduty.Error, pagerduty.UrlError, _OutOfRetryBudget) as exc:
            raise self._error(exc, method, path, write=False) from None
        except _MALFORMED as exc:
            raise Unreachable(SERVICE, method, path, None, f"unexpected answer: {exc!r}"[:160],
                              "is [pagerduty] url PagerDuty's REST API?") from None

    def _write(self, method: str, path: str, call: Callable[[], T]) -> T:
        """A write, sent once: a 429 is waited out (nothing applied), nothing else is re-sent."""
        deadline = self.clock.now() + timedelta(seconds=self.max_retry_seconds)
        try:
            with self._budget(deadline):
                return call()
        except (pagerduty.Error, pagerduty.UrlError, _OutOfRetryBudget) as exc:
            raise self._error(exc, method, path, write=True) from None
        except _MALFORMED as exc:
            raise WriteUncertain(SERVICE, method, path, None, f"unreadable answer: {exc!r}"[:160],
                                 "it may have been applied; read before deciding") from None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.sleep(seconds)

    def _error(self, exc: BaseException, method: str, path: str, write: bool) -> UpstreamError:
        """Our error for a library one; the message names the token's variable, never any of
        its characters."""
        if isinstance(exc, _OutOfRetryBudget):
            return Unreachable(SERVICE, method, path, 429,
                               f"rate limited, asked to wait {exc.seconds:.0f} s",
                               f"that passes the {self.max_retry_seconds:.0f} s retry budget")
        if isinstance(exc, pagerduty.UrlError):
            return Rejected(SERVICE, method, path, None, self._redact(str(exc)))
        response: httpx2.Response | None = getattr(exc, "response", None)
        if response is None:
            cause = exc.__cause__
            text = _connection_text(cause)
            if write and not isinstance(cause, _NOT_SENT):
                return WriteUncertain(SERVICE, method, path, None, text,
                                      "it may have been applied; read before deciding")
            return Unreachable(SERVICE, method, path, None, text,
                               "check [pagerduty] url and the network")
        status = response.status_code
        excerpt = self._excerpt(response)
        if status in (401, 403):
            what = ("may be invalid or deactivated, or [pagerduty] url names the wrong "
                    "service region" if status == 401 else "lacks permission for this")
            return CredentialsRejected(
                SERVICE, method, path, status, excerpt,
                f"the API token {what}; check PAGERDUTY_API_TOKEN")
        if status == 404:
            return NotFound(SERVICE, method, path, status, excerpt)
        if status == 429:
            return Unreachable(SERVICE, method, path, status, excerpt,
                               f"still rate limited after {MAX_RATE_LIMIT_RETRIES} retries")
        if status >= 500 or status < 400:
            # 5xx, or a 2xx whose body we could not read: a write may have landed.
            if write:
                return WriteUncertain(SERVICE, method, path, status, excerpt,
                                      "it may have been applied; read before deciding")
            return Unreachable(SERVICE, method, path, status, excerpt, "gave up after retrying")
        if status == 400 and DEDUP_MARKER in _text(response).lower():
            return DuplicateIncident(SERVICE, method, path, status, excerpt)
        return Rejected(SERVICE, method, path, status, excerpt)

    def _excerpt(self, response: httpx2.Response, limit: int = 160) -> str:
        text = self._redact(" ".join(_text(response).split()))
        return text[:limit] + ("…" if len(text) > limit else "")

    def _redact(self, text: str) -> str:
        token = self.client.auth_method.secret
        return text.replace(token, "[PAGERDUTY_API_TOKEN]") if token else text


def _tls_verification(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx2 deprecates verify=<path> (a warning): hand it a context with that CA instead."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _is_transient(exc: BaseException) -> bool:
    """A 5xx or a failed connection: worth another try for a read."""
    if not isinstance(exc, pagerduty.Error):
        return False
    response = exc.response
    if response is None:
        return isinstance(exc.__cause__, httpx2.TransportError)
    return response.status_code >= 500


def _outcome_text(state: tenacity.RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return _connection_text(getattr(exc, "__cause__", None))


def _connection_text(cause: BaseException | None) -> str:
    if isinstance(cause, httpx2.TimeoutException):
        return "timed out"
    if isinstance(cause, httpx2.ConnectError):
        return "connection failed"
    if isinstance(cause, httpx2.TransportError):
        return "connection lost before an answer"
    return "no answer"


def _text(response: httpx2.Response) -> str:
    try:
        return response.text
    except httpx2.ResponseNotRead:
        return ""


def iso(moment: datetime) -> str:
    """A timezone-aware time as PagerDuty takes it: ISO 8601 in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"times sent to PagerDuty must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ref_id(ref: Any) -> str:
    return str(ref.get("id", "")) if isinstance(ref, dict) else ""


def incident_from(data: Any) -> Incident:
    created = parse_time(data.get("created_at"))
    if created is None:
        raise ValueError(f"incident {data.get('id')} has no created_at")
    return Incident(
        id=str(data["id"]),
        incident_number=int(data.get("incident_number") or 0),
        incident_key=data.get("incident_key"),
        title=data.get("title") or data.get("summary") or "",
        status=str(data.get("status", "")),
        service_id=_ref_id(data.get("service")),
        assignee_ids=tuple(_ref_id(a.get("assignee")) for a in data.get("assignments") or ()),
        # An acknowledger can be a service (an integration); only people count here.
        acknowledger_ids=tuple(
            _ref_id(a.get("acknowledger")) for a in data.get("acknowledgements") or ()
            if isinstance(a.get("acknowledger"), dict)
            and a["acknowledger"].get("type") in ("user", "user_reference")),
        html_url=data.get("html_url") or "",
        created_at=created,
        urgency=data.get("urgency") or "high",
        acknowledged_at=max((t for a in data.get("acknowledgements") or ()
                             if isinstance(a.get("acknowledger"), dict)
                             and a["acknowledger"].get("type") in ("user", "user_reference")
                             and (t := parse_time(a.get("at"))) is not None), default=None),
    )


def user_from(data: Any) -> PdUser:
    return PdUser(id=str(data["id"]), name=data.get("name") or data.get("summary") or "",
                  email=data.get("email") or "")


def oncall_from(data: Any) -> OnCall:
    return OnCall(
        user=user_from(data["user"]),
        start=parse_time(data.get("start")),
        end=parse_time(data.get("end")),
        escalation_level=int(data.get("escalation_level") or 1),
        schedule_id=_ref_id(data.get("schedule")) or None,
        escalation_policy_id=_ref_id(data.get("escalation_policy")),
    )


def _shift_order(entry: OnCall) -> tuple[str, int, datetime, str]:
    start = entry.start or datetime.min.replace(tzinfo=UTC)
    return entry.escalation_policy_id, entry.escalation_level, start, entry.user.id


def split_shifts(entries: Iterable[OnCall], at: datetime,
                 level: int = 1) -> tuple[OnCall | None, OnCall | None]:
    """The entry on call at ``at`` and the first one after it by someone else (one policy)."""
    shifts = sorted((e for e in entries if e.escalation_level == level), key=_shift_order)
    current = next((e for e in shifts if e.covers(at)), None)
    if current is not None and current.end is None:
        return current, None
    handover = current.end if current is not None and current.end is not None else at
    following = next((e for e in shifts
                      if e.start is not None and e.start >= handover
                      and (current is None or e.user.id != current.user.id)), None)
    return current, following
