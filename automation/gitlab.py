"""GitLab adapter on python-gitlab: the Emergency Runbook issues of one project.

- python-gitlab sleeps on the wall clock for a 429 (honouring `Retry-After`, ten times) and,
  with ``retry_transient_errors=True``, re-sends a POST whose connection dropped after it
  landed: a second issue. Both are switched off per request; this adapter retries reads on the
  injected clock within ``max_retry_seconds``, and a write only after a 429 (nothing applied).
- `issue.save()` re-sends every list attribute it read (a label a person removed since comes
  back): notes are created on their own, and closing sends `state_event` alone.
- Errors become the project's own, naming method, path and status; never the token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabAuthenticationError, GitlabError

from automation.clock import Clock
from automation.errors import (
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    UpstreamError,
    WriteUncertain,
)

SERVICE = "GitLab"
TOKEN_HINT = "check the GITLAB_TOKEN environment variable (a token with the api scope)"
TRANSIENT = frozenset({500, 502, 503, 504})
# Every call turns python-gitlab's own waiting off: waits happen here, on the injected clock.
NO_RETRY: dict[str, Any] = {"obey_rate_limit": False, "retry_transient_errors": False}
T = TypeVar("T")


@dataclass(frozen=True)
class Issue:
    iid: int
    url: str
    state: str  # "opened" or "closed", as GitLab says
    title: str = ""
    description: str = ""
    labels: tuple[str, ...] = ()


class _Session(requests.Session):
    """Remembers the last answer's `Retry-After` (python-gitlab's errors drop the headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(*args, **kwargs)
        self.local.retry_after = response.headers.get("Retry-After")
        return response


class GitLab:
    """One project's issues, its issue templates and notes."""

    def __init__(self, url: str, token: str, project: str, clock: Clock,
                 timeout: float = 10.0, max_retry_seconds: float = 10.0) -> None:
        self.clock = clock
        self.max_retry_seconds = max_retry_seconds
        self.project_path = project
        self.base = url.rstrip("/")
        self._session = _Session()
        self._client = gitlab.Gitlab(self.base, private_token=token, timeout=timeout,
                                     session=self._session, retry_transient_errors=False)
        self._project = self._client.projects.get(project, lazy=True)

    def close(self) -> None:
        self._session.close()

    def issue_link(self, iid: int) -> str:
        """A person's link to an issue (also when only its iid is known)."""
        return f"{self.base}/{self.project_path}/-/issues/{iid}"

    # --- reads ---------------------------------------------------------------------------------

    def template(self, name: str) -> str:
        """The content of the project's issue template ``name``."""
        found = self._call("GET", f"templates/issues/{name}", lambda: (
            self._project.issue_templates.get(name, **NO_RETRY)))
        return str(found.attributes.get("content") or "")

    def find_issue(self, label: str) -> Issue | None:
        """The issue (open or closed) that carries ``label``, else the one whose description
        names it (a person may have removed the label)."""
        for query in ({"labels": [label]}, {"search": label, "in": "description"}):
            found = self._call("GET", "issues", lambda q=query: self._project.issues.list(  # type: ignore[misc]
                state="all", order_by="created_at", sort="asc", get_all=False, per_page=20,
                **q, **NO_RETRY))
            for obj in found:
                issue = _issue(obj)
                if label in issue.labels or label in issue.description:
                    return issue
        return None

    def issue(self, iid: int) -> Issue:
        return _issue(self._call("GET", f"issues/{iid}", lambda: self._project.issues.get(
            iid, **NO_RETRY)))

    def note_bodies(self, iid: int) -> list[str]:
        """The issue's latest notes (system notes included), newest first."""
        notes = self._call("GET", f"issues/{iid}/notes", lambda: (
            self._project.issues.get(iid, lazy=True).notes.list(
                sort="desc", order_by="created_at", get_all=False, per_page=50, **NO_RETRY)))
        return [str(n.attributes.get("body") or "") for n in notes]

    def whoami(self) -> str:
        """The token's user name (`check --online`)."""
        def read() -> str:
            self._client.auth()
            user = self._client.user
            return str(user.attributes.get("username")) if user else "?"
        return self._call("GET", "user", read, absolute=True)

    # --- writes --------------------------------------------------------------------------------

    def create_issue(self, title: str, description: str, labels: list[str]) -> Issue:
        """Open an issue. A lost answer raises WriteUncertain: look it up before trying again."""
        return _issue(self._call("POST", "issues", lambda: self._project.issues.create(
            {"title": title, "description": description, "labels": labels}, **NO_RETRY),
            write=True))

    def add_note(self, iid: int, body: str) -> None:
        self._call("POST", f"issues/{iid}/notes", lambda: (
            self._project.issues.get(iid, lazy=True).notes.create({"body": body}, **NO_RETRY)),
            write=True)

    def close_issue(self, iid: int) -> Issue:
        """Close it, sending `state_event` alone (its labels stay as people left them)."""
        answer = self._call("PUT", f"issues/{iid}", lambda: self._project.issues.update(
            iid, {"state_event": "close"}, **NO_RETRY), write=True)
        return Issue(iid, str(answer.get("web_url") or self.issue_link(iid)),
                     str(answer.get("state") or "closed"))

    # --- the one error policy ------------------------------------------------------------------

    def _call(self, method: str, what: str, work: Callable[[], T], write: bool = False,
              absolute: bool = False) -> T:
        path = f"/api/v4/{what}" if absolute else \
            f"/api/v4/projects/{self.project_path}/{what}"
        started = self.clock.now()
        attempt = 0
        while True:
            try:
                return work()
            except GitlabError as exc:
                status = exc.response_code
                wait = self._wait(status, attempt, write)
                error = _error(method, path, status, exc, write)
            except (requests.ConnectionError, requests.Timeout) as exc:
                status, wait = None, None if write else float(2 ** attempt)
                error = (WriteUncertain if write else Unreachable)(
                    SERVICE, method, path, None, type(exc).__name__,
                    "it may have landed: look before sending again" if write else "")
            spent = (self.clock.now() - started).total_seconds()
            if wait is None or spent + wait > self.max_retry_seconds:
                raise error from None
            self.clock.sleep(wait)
            attempt += 1

    def _wait(self, status: int | None, attempt: int, write: bool) -> float | None:
        """How long to wait before trying again (None: do not)."""
        if status == 429:  # nothing was applied, so a write may go again too
            text = getattr(self._session.local, "retry_after", None) or "1"
            return float(text) if text.isdigit() else 1.0
        if status in TRANSIENT and not write:
            return float(2 ** attempt)
        return None


def _error(method: str, path: str, status: int | None, exc: GitlabError,
           write: bool) -> UpstreamError:
    excerpt = str(exc.error_message)[:160]
    if isinstance(exc, GitlabAuthenticationError) or status in (401, 403):
        return CredentialsRejected(SERVICE, method, path, status, excerpt, TOKEN_HINT)
    if status == 404:
        return NotFound(SERVICE, method, path, status, excerpt)
    if status == 429:
        return Unreachable(SERVICE, method, path, status, excerpt, "rate limited")
    if status is None or status >= 500:
        kind = WriteUncertain if write else Unreachable
        return kind(SERVICE, method, path, status, excerpt)
    return Rejected(SERVICE, method, path, status, excerpt)


def _issue(obj: Any) -> Issue:
    data = obj.attributes if hasattr(obj, "attributes") else obj
    labels = data.get("labels") or []
    return Issue(iid=int(data["iid"]), url=str(data.get("web_url") or ""),
                 state=str(data.get("state") or "opened"), title=str(data.get("title") or ""),
                 description=str(data.get("description") or ""),
                 labels=tuple(str(label) for label in labels))
