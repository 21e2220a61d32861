"""Zendesk adapter: reads retried with care, writes sent exactly once, one HTTP path.

- One `requests.Session` for every request, read or write, with one error mapping: Zendesk's
  JSON is read with `json` and turned into the project's types directly (zenpy, which this
  adapter once read through, built an object per ticket of every listing, 91% of an idle
  pass's CPU, and its default session retries a PUT by itself).
- Reads (GET) are retried with tenacity: 429 waits `Retry-After`, 5xx and connection errors
  back off with jitter, all within a bounded total wait. A 429 pauses every request.
- A write is one `PUT /api/v2/tickets/{id}` with `safe_update` and the `updated_stamp` just read;
  it is never retried here. Its outcome is reported so the worker can re-read and decide again.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import tenacity

from automation.clock import Clock, Pause, TokenBucket
from automation.errors import (
    BudgetSpent,
    ConfigError,
    Conflict,
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    WriteUncertain,
)
from automation.model import (
    Brief,
    Comment,
    Episode,
    Organization,
    Person,
    PriorityChange,
    Snapshot,
    Stamp,
    Ticket,
)
from automation.templates import Rendered

log = logging.getLogger(__name__)

SERVICE = "Zendesk"
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
SHOW_MANY_LIMIT = 100  # /users/show_many takes at most 100 ids
BRIEF_TAG = "emergency_pre_task_brief"
MAX_BRIEF_TICKETS = 20  # the organization's most recent brief tickets are enough
MAX_AUDIT_PAGES = 100
MAX_TAG_ATTEMPTS = 3  # safe updates of tags, each after a re-read
MAX_READ_ATTEMPTS = 8
# A Date this far below the tightest bound so far: a clock was set back (start over).
OFFSET_JUMP = timedelta(seconds=2)
SEARCH_RESULT_LIMIT = 1000  # Zendesk's search answers 422 beyond the 1,000th result
SEARCH_PAGE_SIZE = 100
MAX_SEARCH_WINDOWS = 50  # 50,000 emergencies: beyond that, a view
# Zendesk's ticket-update limits: 100 a minute per account (shared with every agent and app:
# the worker takes `updates_per_minute` of it), and 30 per ticket in 10 minutes.
# https://developer.zendesk.com/api-reference/introduction/rate-limits/
UPDATES_PER_MINUTE = 80
UPDATES_PER_TICKET = 30
TICKET_UPDATE_WINDOW = timedelta(minutes=10)
# Users and organizations kept in the state file are read again after this, on Zendesk's
# clock: longer than one emergency (acknowledgement to bridge closed, 30 minutes), so `tick`
# from cron reads them once an emergency, as `run` does (which keeps them for the process).
CACHE_TTL = timedelta(hours=1)
ME = 0  # the cache's key of the API user


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)  # Python 3.11 reads Zendesk's "Z" itself


def excerpt(response: requests.Response, limit: int = 160) -> str:
    text = " ".join(response.text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


class _RetryableResponse(Exception):
    """A GET answered with 429 or 5xx: worth another try."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def retry_after_seconds(response: requests.Response, default: float = 1.0) -> float:
    """Retry-After in seconds, or as an HTTP date measured against the same answer's Date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        try:
            sent = parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError):
            return default
        return max((moment - sent).total_seconds(), 0.0)


class ZendeskSession(requests.Session):
    """A session that retries only reads, honours 429 for everyone, and keeps server time."""

    def __init__(self, clock: Clock, timeout: float, max_retry_seconds: float,
                 updates_per_minute: float = UPDATES_PER_MINUTE) -> None:
        super().__init__()
        self.clock = clock
        self.timeout = timeout
        self.max_retry_seconds = max_retry_seconds
        self.pause = Pause(clock, SERVICE)
        self.updates = TokenBucket(clock, updates_per_minute)
        self.server_time: datetime | None = None
        # Zendesk's clock minus ours: the tightest of the answers' bounds (see _learn_offset).
        self.offset: timedelta | None = None
        # No urllib3 retries at all: every retry here is a decision made in this module.
        adapter = requests.adapters.HTTPAdapter(max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        """The proxies and CA bundle the environment gives a host, read once a host: requests
        walks every environment variable at every request (0.1 ms each with 35 of them)."""
        if proxies or stream is not None or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        key = (urlsplit(url).scheme, urlsplit(url).netloc)
        if key not in self._environment:
            self._environment[key] = super().merge_environment_settings(url, {}, None, None,
                                                                        None)
        settings = self._environment[key]
        return {**settings, "proxies": dict(settings["proxies"])}

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        method = method.decode() if isinstance(method, bytes) else method
        url = url.decode() if isinstance(url, bytes) else url
        path = urlsplit(url).path
        if method.upper() != "GET":
            self.pause.wait()
            response = super().request(method, url, *args, **kwargs)
            self._observe(response, method, path)
            return response

        def attempt() -> requests.Response:
            self.pause.wait()
            response = super(ZendeskSession, self).request(method, url, *args, **kwargs)
            self._observe(response, method, path)
            if response.status_code in RETRYABLE_STATUSES:
                raise _RetryableResponse(response)
            return response

        try:
            return self._retrying(path)(attempt)
        except _RetryableResponse as exc:
            raise Unreachable(SERVICE, method, path, exc.response.status_code,
                              excerpt(exc.response), "gave up after retrying") from None
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise Unreachable(SERVICE, method, path, None, _connection_text(exc),
                              "check [zendesk] url and the network") from None

    def _retrying(self, path: str) -> tenacity.Retrying:
        """Retries of one read within `max_retry_seconds` of our clock."""
        deadline = self.clock.now() + timedelta(seconds=self.max_retry_seconds)

        def out_of_time(state: tenacity.RetryCallState) -> bool:
            # Measured on our clock (tenacity's own stop_after_delay reads the monotonic one),
            # and counting a Retry-After that would carry us past the deadline.
            next_start = max(self.clock.now(), self.pause.until or self.clock.now())
            return next_start >= deadline or state.attempt_number >= MAX_READ_ATTEMPTS

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(
                (_RetryableResponse, requests.ConnectionError, requests.Timeout,
                 requests.exceptions.ChunkedEncodingError)),
            # Never a backoff that sleeps past the budget: its last try starts within it.
            wait=lambda state: min(self._wait(state),
                                   max((deadline - self.clock.now()).total_seconds(), 0.0)),
            stop=out_of_time,
            sleep=self._sleep,
            reraise=True,
            # Visible by default: a tick waiting on Zendesk says so at once, never in silence.
            before_sleep=lambda state: log.warning(
                "Zendesk GET %s: %s; retrying", path, _outcome_text(state)),
        )

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.sleep(seconds)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponse) and exc.response.status_code == 429:
            return 0.0  # the pause already holds every request until Retry-After has passed
        return tenacity.wait_random_exponential(multiplier=0.5, max=20)(state)

    def _learn_offset(self, offset: timedelta) -> None:
        """A `Date` has whole seconds and is stamped before we read it: each answer says
        Zendesk's clock is *at least* that far from ours. The largest such bound is the
        closest (still never ahead of Zendesk); one that falls well below it means a clock
        was set back, and starts over."""
        if self.offset is None or offset > self.offset \
                or offset < self.offset - OFFSET_JUMP:
            self.offset = offset

    def _observe(self, response: requests.Response, method: str, path: str) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                self.server_time = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                pass
            else:
                self._learn_offset(self.server_time - self.clock.now())
        if response.status_code == 429:
            # The whole account's budget is spent: no request, and no saved-up write, before
            # Retry-After has passed.
            self.updates.empty_until(self.pause.extend(retry_after_seconds(response)))
        if response.status_code in (401, 403):
            raise CredentialsRejected(
                SERVICE, method, path, response.status_code, excerpt(response),
                "check [zendesk] email and the ZENDESK_API_TOKEN environment variable",
            )


def _outcome_text(state: tenacity.RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _RetryableResponse):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ if exc else "unknown"


def _connection_text(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"the answer was cut short ({type(exc).__name__})"


class Cache(Protocol):
    """Where users, organizations and the API user are kept between processes (the state
    file): `tick` from cron would otherwise read them again every minute."""

    def recall(self, kind: str, ids: Iterable[int], since: datetime) -> list[dict[str, Any]]:
        """The values of these ids kept at or after `since`."""

    def keep(self, kind: str, key: int, value: dict[str, Any], at: datetime) -> None:
        """Keep one value, read at `at`."""


@dataclass(frozen=True)
class AuditFacts:
    """What a ticket's audits say that the ticket itself does not."""

    comments: tuple[Comment, ...]
    stamps: tuple[Stamp, ...]
    episode: Episode | None
    priorities: tuple[PriorityChange, ...] = ()


@dataclass(frozen=True)
class Update:
    """What Zendesk answered to a successful write: the ticket, and the audit it made."""

    ticket: Ticket
    comment_id: int | None
    audit: AuditFacts
    read_at: datetime | None = None  # the answer's Date

    def applied_to(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot as it is after this write (no need to read the ticket again)."""
        return replace(snapshot, ticket=self.ticket,
                       comments=snapshot.comments + self.audit.comments,
                       stamps=snapshot.stamps + self.audit.stamps,
                       episode=self.audit.episode or snapshot.episode, read_at=self.read_at,
                       priorities=snapshot.priorities + self.audit.priorities)


class Zendesk:
    """The slice of Zendesk the worker needs, in the project's own types and errors."""

    def __init__(self, base_url: str, email: str, token: str, clock: Clock,
                 timeout: float = 10.0, max_retry_seconds: float = 60.0,
                 updates_per_minute: float = UPDATES_PER_MINUTE,
                 cache: Cache | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email
        self.session = ZendeskSession(clock, timeout, max_retry_seconds, updates_per_minute)
        self.session.auth = (f"{email}/token", token)
        self.session.headers["Accept"] = "application/json"
        self.cache = cache
        self._ticket_writes: dict[int, deque[datetime]] = {}  # our PUTs, per ticket
        self._people: dict[int, Person] = {}
        self._organizations: dict[int, Organization] = {}
        self._me: int | None = None  # recalled from the state file at the first read
        self._me_recalled = False

    @property
    def server_time(self) -> datetime | None:
        """The `Date` of Zendesk's latest answer: the worker's `now` runs on Zendesk's time."""
        return self.session.server_time

    def time_now(self) -> datetime | None:
        """Zendesk's time now, as its answers' `Date`s and our clock tell it (for waking at a
        step's due time between reads: within a second below Zendesk's, never above); None
        before its first answer."""
        offset = self.session.offset
        return None if offset is None else self.session.clock.now() + offset

    # --- reads -------------------------------------------------------------------------------

    def find_emergencies(self, query: str, view_id: int | None = None) -> list[Ticket]:
        """One listing per pass: the search query, or the view's tickets (all pages)."""
        if view_id is not None:
            path = f"/api/v2/views/{view_id}/tickets.json"
            return [_parsed(ticket_from, t, path) for t in self._pages(path, "tickets")]
        return self.search_all(query)

    def search_all(self, query: str) -> list[Ticket]:
        """Every ticket the query finds, past search's cap of 1,000 results.

        Zendesk answers 422 beyond the 1,000th result of one query, so the results are read
        oldest first and, at the cap, the same query is asked again from the last creation
        time seen (the overlap is read twice, never missed).
        """
        found: dict[int, Ticket] = {}
        since: str | None = None
        for _ in range(MAX_SEARCH_WINDOWS):
            window = f"{query} created>={since}" if since else query
            batch = self._search_window(window)
            found.update((t.id, t) for t in batch)
            if len(batch) < SEARCH_RESULT_LIMIT:
                return list(found.values())
            last = _stamp(batch[-1].created_at)
            if last == since:
                break  # a whole window created in one second: no way forward
            since = last
        raise Rejected(SERVICE, "GET", "/api/v2/search.json", 422,
                       f"more emergencies than search can list ({len(found)} read)",
                       "list them with a Zendesk view instead: [zendesk] view_id")

    def _search_window(self, query: str) -> list[Ticket]:
        """One query's results, oldest first, up to search's cap (pages of 100)."""
        tickets: list[Ticket] = []
        for page in range(1, SEARCH_RESULT_LIMIT // SEARCH_PAGE_SIZE + 1):
            data = self._get_json("/api/v2/search.json", {
                "query": query, "sort_by": "created_at", "sort_order": "asc",
                "per_page": str(SEARCH_PAGE_SIZE), "page": str(page)})
            results = [r for r in data.get("results") or ()
                       if isinstance(r, dict) and r.get("id") is not None
                       and r.get("result_type", "ticket") == "ticket"]
            tickets += [_parsed(ticket_from, r, "/api/v2/search.json") for r in results]
            if not data.get("next_page") or len(results) < SEARCH_PAGE_SIZE:
                break
        return tickets

    def comments(self, ticket_id: int) -> tuple[Comment, ...]:
        path = f"/api/v2/tickets/{ticket_id}/comments.json"
        return tuple(_parsed(comment_from, c, path) for c in self._pages(path, "comments"))

    def people(self, ids: Iterable[int]) -> dict[int, Person]:
        """Users by id; roles and names change rarely, so they are kept (for the process,
        and in the state file for a while: see `cache`)."""
        wanted = {i for i in ids if i is not None}
        self._recall("user", wanted - set(self._people), person_from, self._people)
        missing = sorted(wanted - set(self._people))
        path = "/api/v2/users/show_many.json"
        for start in range(0, len(missing), SHOW_MANY_LIMIT):
            chunk = missing[start:start + SHOW_MANY_LIMIT]
            data = self._get_json(path, {"ids": ",".join(str(i) for i in chunk)})
            for user in data.get("users") or ():
                self._people[int(user["id"])] = _parsed(person_from, user, path)
                self._keep("user", user)
        return {i: self._people[i] for i in wanted if i in self._people}

    def organization(self, organization_id: int | None) -> Organization | None:
        if organization_id is None:
            return None
        known = self._organizations
        self._recall("organization", {organization_id} - set(known), organization_from, known)
        if organization_id not in known:
            path = f"/api/v2/organizations/{organization_id}.json"
            data = self._get_json(path, {}).get("organization")
            known[organization_id] = _parsed(organization_from, data, path)
            self._keep("organization", data)
        return known[organization_id]

    def _recall(self, kind: str, ids: set[int], build: Any, into: dict[int, Any]) -> None:
        """Fill ``into`` with what the state file's cache still holds of these ids."""
        if self.cache is None or not ids:
            return
        for value in self.cache.recall(kind, ids, self._cache_now() - CACHE_TTL):
            try:
                into[int(value["id"])] = build(value)
            except (TypeError, KeyError, ValueError):
                continue  # a cache entry of an older shape: read it again

    def _keep(self, kind: str, value: Any) -> None:
        if self.cache is not None and isinstance(value, dict) and value.get("id") is not None:
            self.cache.keep(kind, int(value["id"]), value, self._cache_now())

    def _cache_now(self) -> datetime:
        """Zendesk's time, as the timers: a cache entry's age is the same for every process
        whatever its own clock says (this machine's before Zendesk's first answer)."""
        return self.time_now() or self.session.clock.now()

    def snapshot(self, ticket_id: int) -> Snapshot:
        """The ticket, then its audits (its comments, its priority history, our stamps), and
        everyone on it. The ticket comes first: its `updated_stamp` guards our next write, so
        nothing the audits show may be older than it."""
        path = f"/api/v2/tickets/{ticket_id}.json"
        data, read_at = self._get(path, {})
        ticket, ccs = self._ticket_and_ccs(data.get("ticket"), path)
        if self._me is None and not self._me_recalled:
            self._recall_me()  # once a process: a tick that only reads asks the file once
        facts = audit_facts(self.audits(ticket_id))
        people = self.people([ticket.requester_id, *ccs,
                              *(c.author_id for c in facts.comments)])
        return Snapshot(ticket=ticket, comments=facts.comments, people=people, me=self._me,
                        episode=facts.episode, stamps=facts.stamps, ccs=frozenset(ccs),
                        read_at=read_at, priorities=facts.priorities)

    def _ticket_and_ccs(self, data: Any, path: str) -> tuple[Ticket, list[int]]:
        return _parsed(_ticket_with_ccs, data, path)

    def settled(self, snapshot: Snapshot, tries: int = 1) -> Snapshot | None:
        """The snapshot, or the ticket read again once its last change is safely past (a
        safe update cannot see a write made in the second of our read); None when it was
        still changing after ``tries`` waits."""
        for _ in range(tries):
            wait = snapshot.unsettled_for()
            if not wait:
                return snapshot
            self.session.clock.sleep(wait.total_seconds())
            snapshot = self.fresh(snapshot)
        return snapshot if not snapshot.unsettled_for() else None

    def close(self) -> None:
        """Its HTTP connections closed (a client made for one request: the served pages)."""
        self.session.close()

    def fresh(self, snapshot: Snapshot) -> Snapshot:
        """The ticket read again, keeping what the pass added (organization, briefs)."""
        return replace(self.snapshot(snapshot.ticket.id), organization=snapshot.organization,
                       briefs=snapshot.briefs)

    def audits(self, ticket_id: int) -> list[dict[str, Any]]:
        """Every audit of the ticket, oldest first (cursor pages of 100)."""
        return self._pages(f"/api/v2/tickets/{ticket_id}/audits.json", "audits",
                           too_long="too long a story to decide on; nothing is sent on this "
                                    "ticket")

    def _pages(self, path: str, key: str, too_long: str = "") -> list[dict[str, Any]]:
        """Every item of a listing, read with cursor pages of 100 (each one request)."""
        url: str | None = path
        params: dict[str, str] = {"page[size]": "100"}
        items: list[dict[str, Any]] = []
        for _ in range(MAX_AUDIT_PAGES):
            if url is None:
                return items
            data = self._get_json(url, params)
            items += [a for a in data.get(key) or () if isinstance(a, dict)]
            more = (data.get("meta") or {}).get("has_more")
            url = ((data.get("links") or {}).get("next") or "").removeprefix(self.base_url) \
                if more else None
            params = {}  # the next link carries its own cursor
        # Deciding on part of the story could repeat a step: this ticket is left to people.
        raise Rejected(SERVICE, "GET", path, None,
                       f"more than {MAX_AUDIT_PAGES * 100} {key}: {too_long or 'too many'}")

    def person_by_email(self, email: str) -> Person | None:
        """The Zendesk user with exactly this email, if any (for `--as` and PagerDuty people)."""
        path = "/api/v2/users/search.json"
        for user in self._get_json(path, {"query": email}).get("users") or ():
            person = _parsed(person_from, user, path)
            if person.email.lower() == email.lower():
                self._people[person.id] = person
                return person
        return None

    def api_user(self) -> Person | None:
        """Whom the credentials sign in as (`GET /users/me`); None when Zendesk answers with
        its anonymous user, as it does to a request it took for nobody's."""
        user = self._get_json("/api/v2/users/me.json", {}).get("user")
        if not isinstance(user, dict) or user.get("id") is None:
            return None
        return person_from(user)

    def view_title(self, view_id: int) -> str:
        """The title of a view the API user can read; NotFound when there is no such view."""
        view = self._get_json(f"/api/v2/views/{view_id}.json", {}).get("view")
        return str(view.get("title") or "") if isinstance(view, dict) else ""

    def macro_id(self, title: str) -> int:
        """The id of the active macro with exactly this title; NotFound when there is none."""
        path = "/api/v2/macros/search.json"
        data = self._get_json(path, {"query": title})
        matches = [m for m in data.get("macros") or () if m.get("title") == title
                   and m.get("active", True)]
        if not matches:
            raise NotFound(SERVICE, "GET", path, 404, f"no active macro titled {title!r}")
        return int(matches[0]["id"])

    def macro_body(self, ticket_id: int, title: str) -> str:
        """The comment a macro would add to this ticket, from Zendesk's own apply preview.

        Only the text is taken: the update is built here, so a macro can neither null
        fields nor make an internal comment public.
        """
        apply_path = f"/api/v2/tickets/{ticket_id}/macros/{self.macro_id(title)}/apply.json"
        result = self._get_json(apply_path, {}).get("result") or {}
        comment = (result.get("ticket") or {}).get("comment") or result.get("comment") or {}
        body = comment.get("body") or ""
        if not body.strip():
            raise NotFound(SERVICE, "GET", apply_path, 200, f"macro {title!r} adds no comment")
        if comment.get("public") is False:
            # Its author meant that text for agents only: it must not start a public reply.
            raise ConfigError(f"[macros] post_call: the macro {title!r} adds an internal "
                              "comment; name a macro whose comment is public")
        return str(body)

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return self._get(path, params)[0]

    def _get(self, path: str, params: dict[str, str]) -> tuple[dict[str, Any], datetime | None]:
        """A GET through the session: the JSON, and the `Date` of its answer."""
        try:
            response = self.session.request("GET", self.base_url + path, params=params)
        except requests.RequestException as exc:
            raise Unreachable(SERVICE, "GET", path, None, _connection_text(exc)) from None
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            # An HTML page or a proxy's answer: not Zendesk's API at all.
            raise Unreachable(SERVICE, "GET", path, status, excerpt(response),
                              "the answer is not Zendesk's JSON: check [zendesk] url") from None
        if status == 404:
            raise NotFound(SERVICE, "GET", path, 404, excerpt(response))
        if not 200 <= status < 300:
            raise Rejected(SERVICE, "GET", path, status, excerpt(response))
        return (data if isinstance(data, dict) else {}), answer_date(response)

    def agent_url(self, ticket_id: int) -> str:
        """Where an agent opens the ticket (for internal notes and Slack)."""
        return f"{self.base_url}/agent/tickets/{ticket_id}"

    def find_briefs(self, organization_id: int) -> list[Brief]:
        """Pre-task briefs filed on the organization's tickets (by anyone, from any machine).

        A brief is an internal note of the `brief` template on a ticket tagged with
        BRIEF_TAG: its "What is planned:" and "When:" lines are read back.
        """
        query = f"type:ticket tags:{BRIEF_TAG} organization:{organization_id}"
        path = "/api/v2/search.json"
        data = self._get_json(path, {"query": query, "sort_by": "created_at",
                                     "sort_order": "desc", "per_page": str(MAX_BRIEF_TICKETS)})
        tickets = [_parsed(ticket_from, t, path) for t in data.get("results") or ()
                   if isinstance(t, dict) and t.get("id") is not None
                   and t.get("result_type", "ticket") == "ticket"]
        organization = self.organization(organization_id)
        found = []
        for ticket in tickets[:MAX_BRIEF_TICKETS]:
            comments = self.comments(ticket.id)
            authors = self.people(c.author_id for c in comments)
            for comment in comments:
                brief = brief_from(comment, ticket, organization, authors,
                                   self.agent_url(ticket.id))
                if brief is not None:
                    found.append(brief)
        return found

    def record(self, snapshot: Snapshot, tags: Iterable[str], stamp: dict[str, Any],
               comment: Rendered | None = None) -> Snapshot:
        """Record a step of ours on the ticket: `tags` for people and views, and `stamp` in
        the update's audit, which is what counts (the step is done when a stamp of the same
        step and emergency is in the audits). A conflict or a lost answer means: read the
        ticket again and stop if the audits say it is done. Raises Conflict when the ticket
        kept changing under every try. Returns the snapshot as it is after the write."""
        tags = list(tags)
        for _ in range(MAX_TAG_ATTEMPTS):
            snapshot = self.settled(snapshot) or snapshot  # still moving: safe_update says
            if _stamped(snapshot, stamp):
                return snapshot
            try:
                update = self.update(snapshot.ticket, comment, tags, stamp=stamp)
                return self.applied(update, snapshot)
            except (Conflict, WriteUncertain):
                snapshot = self.fresh(snapshot)
        if _stamped(snapshot, stamp):
            return snapshot
        raise Conflict(SERVICE, "PUT", f"/api/v2/tickets/{snapshot.ticket.id}.json", 409,
                       f"could not record {stamp['step']}: the ticket kept changing "
                       f"under {MAX_TAG_ATTEMPTS} tries", "the next pass tries again")

    def applied(self, update: Update, snapshot: Snapshot) -> Snapshot:
        """The snapshot as it is after our write (from its answer: nothing is read again but
        a new author, who is usually cached)."""
        after = update.applied_to(snapshot)
        authors = [c.author_id for c in update.audit.comments if c.author_id not in after.people]
        if not authors:
            return after
        return replace(after, people={**after.people, **self.people(authors)})

    # --- the one write -------------------------------------------------------------------------

    def update(self, ticket: Ticket, comment: Rendered | None, tags_to_add: Iterable[str] = (),
               priority: str | None = None, author_id: int | None = None,
               tags_to_remove: Iterable[str] = (),
               stamp: dict[str, Any] | None = None) -> Update:
        """One safe update: the comment, its field changes and our stamp (in the audit's
        metadata) land together or not at all.

        Raises Conflict on 409 (the ticket moved since it was read) and WriteUncertain when
        the answer was lost or a 5xx/429: the caller re-reads before deciding anything.
        """
        path = f"/api/v2/tickets/{ticket.id}.json"
        body = build_update(ticket, comment, tags_to_add, priority, author_id, tags_to_remove,
                            stamp)
        self._spend_write(ticket.id, path)
        try:
            response = self.session.request("PUT", self.base_url + path, json=body)
        except requests.RequestException as exc:
            # Broken before, during or after the answer (e.g. a body cut short): unknown.
            raise WriteUncertain(SERVICE, "PUT", path, None, _connection_text(exc)) from None
        status = response.status_code
        if status == 409:
            raise Conflict(SERVICE, "PUT", path, status, excerpt(response))
        if status in RETRYABLE_STATUSES:
            raise WriteUncertain(SERVICE, "PUT", path, status, excerpt(response))
        if status == 404:
            raise NotFound(SERVICE, "PUT", path, status, excerpt(response))
        if not 200 <= status < 300:
            raise Rejected(SERVICE, "PUT", path, status, excerpt(response))
        try:
            data = response.json()
            updated = ticket_from(data["ticket"])
            audit = data.get("audit")
            facts = audit_facts([audit] if isinstance(audit, dict) else [])
        except (ValueError, KeyError, TypeError):
            raise WriteUncertain(SERVICE, "PUT", path, status, "unreadable answer") from None
        if author_id is None and isinstance(audit, dict) and audit.get("author_id"):
            self._remember_me(int(audit["author_id"]))  # we wrote it: its author is us
        return Update(ticket=updated, comment_id=comment_id_from_audit(audit), audit=facts,
                      read_at=answer_date(response))

    def _spend_write(self, ticket_id: int, path: str) -> None:
        """Wait for the account's write budget; BudgetSpent when this ticket already had
        Zendesk's 30 updates in 10 minutes from us (its write waits for a later pass)."""
        clock = self.session.clock
        writes = self._ticket_writes.setdefault(ticket_id, deque())
        while writes and writes[0] <= clock.now() - TICKET_UPDATE_WINDOW:
            writes.popleft()
        if len(writes) >= UPDATES_PER_TICKET:
            raise BudgetSpent(SERVICE, "PUT", path, None,
                              f"{UPDATES_PER_TICKET} updates of this ticket in 10 minutes",
                              "Zendesk's per-ticket limit: a later pass tries again")
        self.session.updates.take()
        writes.append(clock.now())

    def _remember_me(self, user_id: int) -> None:
        """The API user, learnt from the audit of our own write (no request needed): an
        agent, known by the email we sign in with."""
        if self._me != user_id and self.cache is not None:
            self.cache.keep("me", ME, {"id": user_id, "email": self.email}, self._cache_now())
        self._me = user_id
        self._people.setdefault(user_id, Person(user_id, self.email, self.email, "agent"))

    def _recall_me(self) -> None:
        """The API user as an earlier process learnt it (for the same email)."""
        self._me_recalled = True
        if self.cache is None:
            return
        for value in self.cache.recall("me", [ME], self._cache_now() - CACHE_TTL):
            if value.get("email") == self.email and isinstance(value.get("id"), int):
                self._me = value["id"]
                # As the process that learnt it knew it: an agent, named by its email (its
                # name is not worth a read for each emergency of a cron `tick`).
                self._people.setdefault(self._me, Person(self._me, self.email, self.email,
                                                         "agent"))


def _stamped(snapshot: Snapshot, stamp: dict[str, Any]) -> bool:
    """Whether an audit of the ticket already carries this stamp (its step and emergency)."""
    return any(s.step == stamp["step"] and s.episode == stamp["episode"]
               for s in snapshot.stamps)


def build_update(ticket: Ticket, comment: Rendered | None, tags_to_add: Iterable[str] = (),
                 priority: str | None = None, author_id: int | None = None,
                 tags_to_remove: Iterable[str] = (),
                 stamp: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PUT body. `public` comes from the template's registered visibility, always explicit;
    the stamp goes to the update's audit (`metadata.custom`), where nobody can change it."""
    payload: dict[str, Any] = {"safe_update": True, "updated_stamp": ticket.updated_stamp}
    if stamp is not None:
        payload["metadata"] = {STAMP_KEY: stamp}
    if comment is not None:
        payload["comment"] = {"body": comment.body, "public": bool(comment.public)}
        if author_id is not None:
            payload["comment"]["author_id"] = author_id
    added = list(tags_to_add)
    removed = set(tags_to_remove) - set(added)  # a tag both added and removed stays
    new_tags = [t for t in added if t not in ticket.tags]
    if new_tags or removed & set(ticket.tags):
        # `tags` replaces the list; safe_update guarantees nobody changed it since our read.
        payload["tags"] = [*(t for t in ticket.tags if t not in removed), *new_tags]
    if priority is not None:
        payload["priority"] = priority
    return {"ticket": payload}


BRIEF_PLANNED = re.compile(r"^What is planned: (.+)$", re.MULTILINE)
BRIEF_WHEN = re.compile(r"^When: (\d{4}-\d\d-\d\d \d\d:\d\d) UTC$", re.MULTILINE)


def brief_from(comment: Comment, ticket: Ticket, organization: Organization | None,
               authors: dict[int, Person], url: str) -> Brief | None:
    """A brief read back from its internal note, or None for any other comment."""
    if comment.public:
        return None
    planned, when = BRIEF_PLANNED.search(comment.body), BRIEF_WHEN.search(comment.body)
    if planned is None or when is None:
        return None
    try:
        moment = datetime.strptime(when.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:  # a note typed by hand that only looks like a brief
        log.warning("ticket %s: comment %s looks like a brief but its When: is no date",
                    ticket.id, comment.id, extra={"ticket": ticket.id})
        return None
    author = authors.get(comment.author_id)
    return Brief(ticket_id=ticket.id, organization_id=ticket.organization_id,
                 organization=organization.name if organization else "",
                 author=author.name if author else f"user {comment.author_id}",
                 planned=planned.group(1).strip(), when=moment, url=url,
                 filed_at=comment.created_at)


def comment_id_from_audit(audit: Any) -> int | None:
    if not isinstance(audit, dict):
        return None
    for event in audit.get("events") or ():
        if isinstance(event, dict) and event.get("type") == "Comment":
            return event.get("id")
    return None


def _parsed(build: Any, data: Any, path: str) -> Any:
    """One record of Zendesk's JSON in the project's type, or Rejected naming what is off."""
    try:
        return build(data)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise Rejected(SERVICE, "GET", path, None,
                       f"unexpected answer: {type(exc).__name__}: {exc}"[:160]) from None


def ticket_from(data: dict[str, Any]) -> Ticket:
    """A ticket of Zendesk's JSON (run for every ticket of every listing: plain dict reads)."""
    get = data.get
    updated = data["updated_at"]
    return Ticket(
        id=int(data["id"]),
        subject=get("subject") or "",
        status=get("status") or "new",
        priority=get("priority"),
        tags=tuple(get("tags") or ()),
        requester_id=int(data["requester_id"]),
        organization_id=get("organization_id"),
        created_at=parse_time(data["created_at"]),
        updated_at=parse_time(updated),
        updated_stamp=updated,
        url=get("url") or "",
        brand_id=get("brand_id"),
        form_id=get("ticket_form_id"),
    )


def _ticket_with_ccs(data: dict[str, Any]) -> tuple[Ticket, list[int]]:
    """A ticket of Zendesk's JSON, and whom it copies (email CCs and collaborators)."""
    ccs = [int(i) for key in ("email_cc_ids", "collaborator_ids") for i in data.get(key) or ()]
    return ticket_from(data), ccs


def comment_from(data: dict[str, Any]) -> Comment:
    return Comment(
        id=int(data["id"]),
        author_id=int(data["author_id"]),
        public=bool(data.get("public")),
        created_at=parse_time(data["created_at"]),
        body=data.get("body") or "",
    )


def person_from(data: dict[str, Any]) -> Person:
    return Person(id=int(data["id"]), name=data.get("name") or "",
                  email=data.get("email") or "", role=data.get("role") or "end-user")


def organization_from(data: dict[str, Any]) -> Organization:
    fields = data.get("organization_fields") or {}
    return Organization(id=int(data["id"]), name=data.get("name") or "",
                        fields=fields if isinstance(fields, dict) else {},
                        tags=tuple(data.get("tags") or ()))


def _stamp(moment: datetime) -> str:
    """A time as Zendesk's search takes it (ISO 8601, whole seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Our writes' audits carry {STAMP_KEY: {"step": ..., "episode": ..., ...}} in metadata.custom.
STAMP_KEY = "emergency_automation"
# Audits Zendesk makes itself, whose comments are nobody's word: a merge's note, a trigger's or
# an automation's reply.
SYSTEM_RELS = frozenset({"merge"})
SYSTEM_CHANNELS = frozenset({"rule", "system"})


def clock_reading(base_url: str, timeout: float = 2.0) -> datetime | None:
    """Zendesk's time now: the `Date` of one quick answer, whatever its status (no credentials
    are sent); None when Zendesk does not answer in `timeout` seconds.

    What the CLI shows (`status`, `oncall`) runs on this clock, as the timers do, not on the
    machine's: the two differ against the sandbox, whose clock runs faster.
    """
    try:
        response = requests.get(base_url.rstrip("/") + "/api/v2/users/me", timeout=timeout)
    except requests.RequestException:
        return None
    return answer_date(response)


def answer_date(response: requests.Response) -> datetime | None:
    """The answer's `Date` header: Zendesk's clock when it answered."""
    try:
        return parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return None


def audit_facts(audits: Iterable[dict[str, Any]]) -> AuditFacts:
    """Comments, our stamps, the running emergency and the priority's history, from audits
    oldest first."""
    comments: list[Comment] = []
    stamps: list[Stamp] = []
    priorities: list[PriorityChange] = []
    episode: Episode | None = None
    for audit in audits:
        audit_id, at = int(audit["id"]), parse_time(audit["created_at"])
        via: dict[str, Any] = audit.get("via") or {}
        source: dict[str, Any] = via.get("source") or {}
        system = via.get("channel") in SYSTEM_CHANNELS or source.get("rel") in SYSTEM_RELS
        for event in audit.get("events") or ():
            if not isinstance(event, dict):
                continue
            if event.get("type") == "Comment":
                comments.append(Comment(
                    id=int(event["id"]), author_id=int(event.get("author_id")
                                                       or audit["author_id"]),
                    public=bool(event.get("public")), created_at=at,
                    body=event.get("body") or event.get("plain_body") or "",
                    audit_id=audit_id, system=system))
            elif event.get("field_name") == "priority" \
                    and event.get("type") in ("Create", "Change"):
                value = event.get("value")
                priorities.append(PriorityChange(audit_id, at, str(value) if value else None))
                if value == "urgent":
                    episode = Episode(audit_id, at)
        stamp = stamp_from(audit, audit_id, at)
        if stamp is not None:
            stamps.append(stamp)
    return AuditFacts(tuple(comments), tuple(stamps), episode, tuple(priorities))


def stamp_from(audit: dict[str, Any], audit_id: int, at: datetime) -> Stamp | None:
    custom = ((audit.get("metadata") or {}).get("custom") or {}).get(STAMP_KEY)
    if not isinstance(custom, dict) or not isinstance(custom.get("step"), str):
        return None
    episode = custom.get("episode")
    if isinstance(episode, bool) or not isinstance(episode, int):
        return None
    detail = {k: str(v) for k, v in custom.items() if k not in ("step", "episode")}
    return Stamp(custom["step"], episode, audit_id, at, detail)
