"""A small stateful Zendesk behind `responses`: enough for the worker's unit tests.

The end-to-end tests use the real sandbox over HTTP; this double keeps unit tests in-process
and lets a test script exactly what Zendesk answers (409, 503-after-apply, 429...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from automation.clock import FakeClock

BASE = "https://acme.zendesk.com"
API_USER = 900
AGENT = 901
REQUESTER = 100
CC = 101


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DoubleTicket:
    id: int
    subject: str
    created_at: datetime
    updated_at: datetime
    priority: str = "urgent"
    status: str = "new"
    tags: list[str] = field(default_factory=list)
    requester_id: int = REQUESTER
    organization_id: int | None = 50
    comments: list[dict[str, Any]] = field(default_factory=list)
    # (when, priority): the audits' priority events, creation first.
    priority_changes: list[tuple[datetime, str]] = field(default_factory=list)
    # (when, tags after, tags before): the audits' tag events.
    tag_changes: list[tuple[datetime, list[str], list[str]]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "subject": self.subject, "status": self.status,
                "priority": self.priority, "tags": list(self.tags),
                "requester_id": self.requester_id, "organization_id": self.organization_id,
                "created_at": stamp(self.created_at), "updated_at": stamp(self.updated_at),
                "url": f"{BASE}/api/v2/tickets/{self.id}.json"}


class ZendeskDouble:
    """Stateful fake: tickets, comments, users; every PUT and its body is kept for asserts."""

    def __init__(self, rsps: responses.RequestsMock, clock: FakeClock) -> None:
        self.rsps = rsps
        self.clock = clock
        self.tickets: dict[int, DoubleTicket] = {}
        self.users = {
            API_USER: {"id": API_USER, "name": "Emergency Bot", "email": "bot@example.com",
                       "role": "admin"},
            AGENT: {"id": AGENT, "name": "Francesca Rossi", "email": "fr@example.com",
                    "role": "agent"},
            REQUESTER: {"id": REQUESTER, "name": "Dana Customer", "email": "dana@example.com",
                        "role": "end-user"},
            CC: {"id": CC, "name": "Chris Colleague", "email": "chris@example.com",
                 "role": "end-user"},
        }
        self.puts: list[dict[str, Any]] = []
        self.macros: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        # Hooks a test sets to script one answer: called with the PUT body before applying.
        self.before_put: list[Callable[[int, dict[str, Any]], tuple[int, Any] | None]] = []
        self.after_put: list[Callable[[int, dict[str, Any]], tuple[int, Any] | None]] = []
        self._next_comment = 1000
        self.install()

    # --- state helpers -------------------------------------------------------------------------
    def _touch(self, ticket: DoubleTicket) -> None:
        now = self.clock.now().replace(microsecond=0)
        ticket.updated_at = now if now > ticket.updated_at else ticket.updated_at + timedelta(
            seconds=1)

    def create(self, ticket_id: int, subject: str = "Production down", **kw: Any) -> DoubleTicket:
        now = self.clock.now().replace(microsecond=0)
        ticket = DoubleTicket(id=ticket_id, subject=subject, created_at=now, updated_at=now, **kw)
        self.tickets[ticket_id] = ticket
        ticket.priority_changes.append((now, ticket.priority))
        self._add_comment(ticket, ticket.requester_id, "Everything is down!", True)
        return ticket

    def raise_priority(self, ticket_id: int, priority: str) -> None:
        """An agent changes the priority in the UI."""
        ticket = self.tickets[ticket_id]
        ticket.priority = priority
        self._touch(ticket)
        ticket.priority_changes.append((ticket.updated_at, priority))

    def _add_comment(self, ticket: DoubleTicket, author: int, body: str, public: bool) -> int:
        self._next_comment += 1
        ticket.comments.append({"id": self._next_comment, "type": "Comment", "author_id": author,
                                "body": body, "public": public,
                                "created_at": stamp(self.clock.now())})
        return self._next_comment

    def comment(self, ticket_id: int, author: int, body: str, public: bool = True) -> None:
        ticket = self.tickets[ticket_id]
        self._add_comment(ticket, author, body, public)
        self._touch(ticket)

    def public_comments(self, ticket_id: int, author: int | None = None) -> list[dict[str, Any]]:
        return [c for c in self.tickets[ticket_id].comments
                if c["public"] and (author is None or c["author_id"] == author)]

    # --- HTTP ----------------------------------------------------------------------------------
    def install(self) -> None:
        r = self.rsps
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/search\.json.*"),
                       callback=self._search)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/tickets/\d+/comments\.json.*"),
                       callback=self._comments)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/tickets/\d+\.json.*"),
                       callback=self._show)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/tickets/\d+/audits\.json.*"),
                       callback=self._audits)
        r.add_callback(responses.PUT, re.compile(rf"{BASE}/api/v2/tickets/\d+\.json"),
                       callback=self._put)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/users/show_many\.json.*"),
                       callback=self._users)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/users/me\.json"),
                       callback=lambda req: self._json(200, {"user": self.users[API_USER]}))
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/users/search\.json.*"),
                       callback=self._user_search)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/macros/search\.json.*"),
                       callback=lambda req: self._json(200, {"macros": self.macros, "count": len(
                           self.macros), "next_page": None}))
        r.add_callback(responses.GET,
                       re.compile(rf"{BASE}/api/v2/tickets/\d+/macros/\d+/apply\.json"),
                       callback=self._macro_apply)
        r.add_callback(responses.GET, re.compile(rf"{BASE}/api/v2/organizations/\d+\.json"),
                       callback=lambda req: self._json(200, {"organization": {
                           "id": 50, "name": "Acme Corp", "organization_fields": {},
                           "tags": []}}))

    def _json(self, status: int, body: Any) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _log(self, request: Any) -> None:
        self.requests.append((request.method, urlsplit(request.url).path))

    def _search(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        results = [dict(t.as_json(), result_type="ticket") for t in self.tickets.values()
                   if t.priority == "urgent" and t.status not in ("solved", "closed")]
        return self._json(200, {"results": results, "count": len(results), "next_page": None,
                                "previous_page": None})

    def _ticket(self, request: Any) -> DoubleTicket | None:
        match = re.search(r"/tickets/(\d+)", request.url)
        return self.tickets.get(int(match.group(1))) if match else None

    def _show(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        ticket = self._ticket(request)
        if ticket is None:
            return self._json(404, {"error": "RecordNotFound", "description": "Not found"})
        return self._json(200, {"ticket": ticket.as_json()})

    def _comments(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        ticket = self._ticket(request)
        if ticket is None:
            return self._json(404, {"error": "RecordNotFound", "description": "Not found"})
        return self._json(200, {"comments": ticket.comments, "meta": {"has_more": False},
                                "links": {"next": None}})

    def _audits(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        ticket = self._ticket(request)
        if ticket is None:
            return self._json(404, {"error": "RecordNotFound", "description": "Not found"})
        audits = [{"created_at": stamp(when), "events": [
            {"type": "Create" if n == 0 else "Change", "field_name": "priority",
             "value": value}]} for n, (when, value) in enumerate(ticket.priority_changes)]
        audits += [{"created_at": stamp(when), "events": [
            {"type": "Change", "field_name": "tags", "value": after, "previous_value": before}]}
            for when, after, before in ticket.tag_changes]
        audits.sort(key=lambda audit: audit["created_at"])
        return self._json(200, {"audits": audits, "meta": {"has_more": False},
                                "links": {"next": None}})

    def _users(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        ids = parse_qs(urlsplit(request.url).query)["ids"][0].split(",")
        return self._json(200, {"users": [self.users[int(i)] for i in ids
                                          if int(i) in self.users]})

    def _user_search(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        query = parse_qs(urlsplit(request.url).query)["query"][0]
        found = [u for u in self.users.values() if u["email"] == query]
        return self._json(200, {"users": found, "count": len(found), "next_page": None})

    def _macro_apply(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        macro_id = int(re.search(r"/macros/(\d+)/", request.url).group(1))  # type: ignore[union-attr]
        macro = next(m for m in self.macros if m["id"] == macro_id)
        return self._json(200, {"result": {"ticket": {
            "id": 1, "comment": {"body": macro["body"], "public": macro.get("public", True)},
            "priority": None}}})

    def _put(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._log(request)
        ticket = self._ticket(request)
        assert ticket is not None
        body = json.loads(request.body)
        self.puts.append(body)
        for hook in list(self.before_put):
            self.before_put.remove(hook)
            scripted = hook(ticket.id, body)
            if scripted is not None:
                return self._json(*scripted)
        update = body["ticket"]
        if update.get("safe_update") and update.get("updated_stamp") != stamp(ticket.updated_at):
            return self._json(409, {"error": "UpdateConflict",
                                    "description": "Safe Update prevented the update"})
        comment = update.get("comment")
        comment_id = None
        if comment:
            comment_id = self._add_comment(ticket, comment.get("author_id", API_USER),
                                           comment["body"], comment["public"])
        if "tags" in update:
            ticket.tag_changes.append((self.clock.now(), list(update["tags"]), list(ticket.tags)))
            ticket.tags = list(update["tags"])
        if "priority" in update:
            ticket.priority = update["priority"]
            ticket.priority_changes.append((self.clock.now(), update["priority"]))
        if ticket.status == "new":
            ticket.status = "open"
        self._touch(ticket)
        for hook in list(self.after_put):
            self.after_put.remove(hook)
            scripted = hook(ticket.id, body)
            if scripted is not None:
                return self._json(*scripted)
        return self._json(200, {"ticket": ticket.as_json(), "audit": {
            "id": comment_id, "events": [{"id": comment_id, "type": "Comment"}]}})
