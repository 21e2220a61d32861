"""A stateful fake of the GitLab REST API (v4) subset python-gitlab uses for runbook issues.

Mounted under a prefix such as ``/gitlab/api/v4/``: projects (by id or URL-encoded path), their
issue templates, issues (create, list by labels or search, get, update with `state_event`) and
notes. Errors are GitLab's: ``{"message": "404 Project Not Found"}``, 401 without a valid
`PRIVATE-TOKEN`, 429 with `Retry-After` for an injected rate limit.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from automation.clock import Clock
from automation.sandbox.faults import Fault
from automation.sandbox.http import Reply, Routes

log = logging.getLogger(__name__)

Json = dict[str, Any]

PREFIX = "/gitlab/api/v4"
DEFAULT_TOKEN = "glpat-sandbox-token"
WEB_BASE = "https://gitlab.example.com"
_JSON = {"Content-Type": "application/json"}
routes = Routes()


class GitLabError(Exception):
    """Raised inside a handler to answer ``{"message": ...}`` with a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Note:
    id: int
    body: str
    author: str
    created_at: datetime
    system: bool = False


@dataclass
class Issue:
    iid: int
    title: str
    description: str
    labels: list[str]
    created_at: datetime
    author: str
    state: str = "opened"
    closed_at: datetime | None = None
    notes: list[Note] = field(default_factory=list)


@dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    templates: dict[str, str] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)


class GitLabSandbox:
    """In-memory GitLab: projects with issue templates, issues and notes."""

    name = "gitlab"

    def __init__(self, clock: Clock, token: str = DEFAULT_TOKEN) -> None:
        self.clock = clock
        self.token = token
        self.username = "emergency-bot"
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._projects: dict[int, Project] = {}
        self._calls: list[tuple[str, str]] = []

    # ----- Python API (tests and the demo) ------------------------------------------------

    def add_project(self, path: str, templates: Mapping[str, str] | None = None) -> int:
        """A project (``group/name``) with issue templates by name; returns its id."""
        with self._lock:
            project = Project(next(self._ids), path, dict(templates or {}))
            self._projects[project.id] = project
            return project.id

    def issues(self, project: str) -> list[Json]:
        """Every issue of the project, oldest first, as the API shows it."""
        with self._lock:
            found = self._project(project)
            return [self._issue_json(found, i) for i in found.issues.values()]

    def notes(self, project: str, iid: int) -> list[Json]:
        """The issue's notes, oldest first."""
        with self._lock:
            issue = self._issue(self._project(project), str(iid))
            return [_note_json(n) for n in issue.notes]

    def set_labels(self, project: str, iid: int, labels: list[str]) -> None:
        """A person edits the issue's labels."""
        with self._lock:
            self._issue(self._project(project), str(iid)).labels = list(labels)

    def calls(self, method: str = "", pattern: str = "") -> list[tuple[str, str]]:
        """The requests received (faulted ones included), optionally filtered."""
        with self._lock:
            return [(m, p) for m, p in self._calls
                    if (not method or m == method) and re.search(pattern, p)]

    # ----- HTTP surface --------------------------------------------------------------------

    def record(self, method: str, path: str, query: Mapping[str, Any],
               headers: Mapping[str, str], body: bytes | None) -> None:
        with self._lock:
            self._calls.append((method.upper(), path))

    def handle(self, method: str, path: str, query: Mapping[str, list[str]],
               headers: Mapping[str, str], body: bytes | None) -> Reply:
        """Answer one request as GitLab would; never raises."""
        with self._lock:
            try:
                return self._handle(method, path, query, headers, body)
            except GitLabError as exc:
                return Reply(exc.status, dict(_JSON), {"message": exc.message})
            except Exception:
                log.exception("gitlab sandbox: unhandled error for %s %s", method, path)
                return Reply(500, dict(_JSON), {"message": "500 Internal Server Error"})

    def fault_reply(self, fault: Fault) -> Reply:
        """GitLab's answer to an injected 429 or 5xx."""
        if fault.kind == "rate_limit" or fault.status == 429:
            seconds = str(fault.retry_after if fault.retry_after is not None else 1)
            return Reply(429, {**_JSON, "Retry-After": seconds, "RateLimit-Remaining": "0"},
                         {"message": "Retry later"})
        status = fault.status or 503
        return Reply(status, dict(_JSON), {"message": f"{status} Service Unavailable"})

    def _handle(self, method: str, path: str, query: Mapping[str, list[str]],
                headers: Mapping[str, str], body: bytes | None) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        token = lowered.get("private-token", "")
        if not token or not hmac.compare_digest(token.encode(), self.token.encode()):
            raise GitLabError(401, "401 Unauthorized")
        found = routes.find(method, path.removeprefix(PREFIX))
        if found is None:
            raise GitLabError(404, "404 Not Found")
        name, groups = found
        params = {k: v[-1] for k, v in query.items()}
        if body:
            params.update(json.loads(body))
        status, answer = getattr(self, name)(params, *groups)
        return Reply(status, dict(_JSON), answer)

    # ----- the API -------------------------------------------------------------------------

    @routes("GET", r"/user")
    def _user(self, params: Json) -> tuple[int, Json]:
        return 200, {"id": 1, "username": self.username, "name": "Emergency Bot"}

    @routes("GET", r"/projects/([^/]+)/templates/issues/([^/]+)")
    def _template(self, params: Json, ref: str, name: str) -> tuple[int, Json]:
        project = self._project(ref)
        content = project.templates.get(unquote(name))
        if content is None:
            raise GitLabError(404, "404 Template Not Found")
        return 200, {"name": unquote(name), "content": content}

    @routes("GET", r"/projects/([^/]+)/issues")
    def _list(self, params: Json, ref: str) -> tuple[int, list[Json]]:
        project = self._project(ref)
        wanted = set(_labels(params.get("labels")))
        search = str(params.get("search") or "")
        state = params.get("state", "all")
        found = [i for i in project.issues.values()
                 if wanted <= set(i.labels) and (state == "all" or i.state == state)
                 and (not search or search in i.title or search in i.description)]
        if params.get("sort", "desc") == "desc":
            found.reverse()
        per_page = int(params.get("per_page") or 20)
        return 200, [self._issue_json(project, i) for i in found[:per_page]]

    @routes("POST", r"/projects/([^/]+)/issues")
    def _create(self, params: Json, ref: str) -> tuple[int, Json]:
        project = self._project(ref)
        title = str(params.get("title") or "").strip()
        if not title:
            raise GitLabError(400, "title is missing")
        iid = max(project.issues, default=0) + 1
        project.issues[iid] = Issue(iid, title[:255], str(params.get("description") or ""),
                                    _labels(params.get("labels")), self._now(), self.username)
        return 201, self._issue_json(project, project.issues[iid])

    @routes("GET", r"/projects/([^/]+)/issues/(\d+)")
    def _get(self, params: Json, ref: str, iid: str) -> tuple[int, Json]:
        project = self._project(ref)
        return 200, self._issue_json(project, self._issue(project, iid))

    @routes("PUT", r"/projects/([^/]+)/issues/(\d+)")
    def _update(self, params: Json, ref: str, iid: str) -> tuple[int, Json]:
        project = self._project(ref)
        issue = self._issue(project, iid)
        if "labels" in params:
            issue.labels = _labels(params["labels"])
        event = params.get("state_event")
        if event == "close" and issue.state != "closed":
            issue.state, issue.closed_at = "closed", self._now()
            issue.notes.append(Note(next(self._ids), "closed", self.username, self._now(),
                                    system=True))
        elif event == "reopen" and issue.state != "opened":
            issue.state, issue.closed_at = "opened", None
        return 200, self._issue_json(project, issue)

    @routes("GET", r"/projects/([^/]+)/issues/(\d+)/notes")
    def _notes(self, params: Json, ref: str, iid: str) -> tuple[int, list[Json]]:
        notes = [_note_json(n) for n in self._issue(self._project(ref), iid).notes]
        return 200, notes[::-1] if params.get("sort", "desc") == "desc" else notes

    @routes("POST", r"/projects/([^/]+)/issues/(\d+)/notes")
    def _add_note(self, params: Json, ref: str, iid: str) -> tuple[int, Json]:
        issue = self._issue(self._project(ref), iid)
        body = str(params.get("body") or "")
        if not body.strip():
            raise GitLabError(400, "body is missing")
        issue.notes.append(Note(next(self._ids), body, self.username, self._now()))
        return 201, _note_json(issue.notes[-1])

    # ----- helpers -------------------------------------------------------------------------

    def _project(self, ref: str) -> Project:
        ref = unquote(ref)
        for project in self._projects.values():
            if ref in (str(project.id), project.path):
                return project
        raise GitLabError(404, "404 Project Not Found")

    @staticmethod
    def _issue(project: Project, iid: str) -> Issue:
        issue = project.issues.get(int(iid))
        if issue is None:
            raise GitLabError(404, "404 Not found")
        return issue

    def _now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def _issue_json(self, project: Project, issue: Issue) -> Json:
        return {
            "id": project.id * 100_000 + issue.iid, "iid": issue.iid, "project_id": project.id,
            "title": issue.title, "description": issue.description, "state": issue.state,
            "created_at": _time(issue.created_at), "updated_at": _time(issue.created_at),
            "closed_at": _time(issue.closed_at) if issue.closed_at else None,
            "labels": list(issue.labels), "author": {"username": issue.author},
            "web_url": f"{WEB_BASE}/{project.path}/-/issues/{issue.iid}",
        }


def _labels(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _note_json(note: Note) -> Json:
    return {"id": note.id, "body": note.body, "author": {"username": note.author},
            "created_at": _time(note.created_at), "system": note.system,
            "noteable_type": "Issue"}


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
