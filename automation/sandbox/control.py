"""The sandbox's own verbs, for people trying the worker by hand: what a customer, an engineer
or time itself would do, under ``/sandbox/`` on the Zendesk port of `emergency sandbox serve`.

``Control`` answers them inside the sandbox; ``Remote`` asks them from another process (the
`emergency sandbox ticket|reply|ack|advance` commands). They exist only in the sandbox: the real
services are never asked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from automation.config import LOOPBACK
from automation.errors import NotFound, Refused, Rejected, Unreachable
from automation.sandbox.faults import Fault
from automation.sandbox.http import Query, Reply, Routes

if TYPE_CHECKING:
    from automation.sandbox.server import Sandbox

PREFIX = "/sandbox/"
SERVICE = "sandbox"
DEFAULT_ORGANIZATION = "Acme Corp"
DEFAULT_SUBJECT = "Production down: every page answers 500"
DEFAULT_BODY = "Since a few minutes ago nobody can log in. Please call us."
DEFAULT_REPLY = "Thanks, we are joining the bridge now."

routes = Routes()


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Control:
    """The verbs, answered as one more ``Api`` of the sandbox (no faults apply to them)."""

    name = SERVICE

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def handle(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> Reply:
        found = routes.find(method, path)
        if found is None:
            return self.reply(404, {"error": f"no sandbox verb {method} {path}"})
        name, groups = found
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            return self.reply(400, {"error": f"the body is not JSON: {exc}"})
        try:
            if not isinstance(data, dict):
                raise ControlError(400, "the body must be a JSON object")
            return self.reply(200, getattr(self, name)(data, *groups))
        except ControlError as exc:
            return self.reply(exc.status, {"error": str(exc)})

    def record(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> None:
        """The verbs are not service traffic: nothing to note."""

    def fault_reply(self, fault: Fault) -> Reply:
        return self.reply(fault.status or 500, {"error": "sandbox error"})

    def reply(self, status: int, body: Any) -> Reply:
        return Reply(status, {"Content-Type": "application/json"}, body)

    # --- the verbs ---------------------------------------------------------------------------

    @routes("GET", r"/sandbox/clock")
    def _get_clock(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"now": self.sandbox.clock.now().isoformat()}

    @routes("POST", r"/sandbox/clock")
    def _post_clock(self, data: dict[str, Any]) -> dict[str, Any]:
        seconds = data.get("advance_seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
            raise ControlError(400, "advance_seconds: a positive number of seconds")
        return {"now": self.sandbox.advance(timedelta(seconds=seconds)).isoformat()}

    @routes("POST", r"/sandbox/tickets")
    def _post_ticket(self, data: dict[str, Any]) -> dict[str, Any]:
        """An urgent ticket from a customer of the organization (made if new, with a person)."""
        zendesk = self.sandbox.zendesk
        organization = _text(data, "organization", DEFAULT_ORGANIZATION)
        organization_id = zendesk.organization_id_by_name(organization)
        if organization_id is None:
            organization_id = zendesk.add_organization(organization)
        requester_id = self._customer(organization, organization_id)
        ticket_id = zendesk.create_ticket(
            requester_id, _text(data, "subject", DEFAULT_SUBJECT),
            _text(data, "body", DEFAULT_BODY), priority="urgent",
            organization_id=organization_id)
        return {"ticket": zendesk.ticket(ticket_id), "requester": zendesk.user(requester_id),
                "organization": zendesk.organization(organization_id)}

    @routes("POST", r"/sandbox/tickets/(\d+)/reply")
    def _post_reply(self, data: dict[str, Any], ticket_id: str) -> dict[str, Any]:
        """The ticket's requester answers with a public comment."""
        ticket = self._ticket(int(ticket_id))
        requester_id = int(ticket["requester_id"])
        self.sandbox.zendesk.add_comment(int(ticket_id), requester_id,
                                         _text(data, "body", DEFAULT_REPLY), public=True)
        return {"ticket": self._ticket(int(ticket_id)),
                "requester": self.sandbox.zendesk.user(requester_id)}

    @routes("POST", r"/sandbox/tickets/(\d+)/acknowledge")
    def _post_acknowledge(self, data: dict[str, Any], ticket_id: str) -> dict[str, Any]:
        """The engineer the ticket's page is assigned to (or `engineer`) acknowledges it."""
        self._ticket(int(ticket_id))
        pagerduty = self.sandbox.pagerduty
        incident = self._incident(int(ticket_id))
        if incident["status"] == "resolved":
            raise ControlError(409, f"the page of ticket #{ticket_id} ({incident['id']}) is "
                               "already resolved")
        engineer = data.get("engineer")
        if engineer:
            user_id = pagerduty.user_id_by_email(str(engineer))
            if user_id is None:
                raise ControlError(404, f"no PagerDuty user {engineer}")
        elif incident["assignments"]:
            user_id = incident["assignments"][0]["assignee"]["id"]
        else:
            raise ControlError(409, f"the page of ticket #{ticket_id} is assigned to nobody: "
                               "name the engineer")
        pagerduty.acknowledge(incident["id"], user_id)
        return {"incident": pagerduty.incident(incident["id"])}

    def _ticket(self, ticket_id: int) -> dict[str, Any]:
        try:
            return self.sandbox.zendesk.ticket(ticket_id)
        except KeyError:
            raise ControlError(404, f"no ticket #{ticket_id} in the sandbox") from None

    def _incident(self, ticket_id: int) -> dict[str, Any]:
        """The ticket's page: our incident key, or its number in the title (Zendesk's own)."""
        mentions = re.compile(rf"#{ticket_id}\b|/tickets/{ticket_id}\b")
        found = [i for i in self.sandbox.pagerduty.incidents()
                 if i["incident_key"] == f"zendesk-{ticket_id}" or mentions.search(i["title"])]
        if not found:
            raise ControlError(404, f"ticket #{ticket_id} has no page yet: the worker pages "
                               "when the ticket is urgent and nobody took it (run a pass)")
        return found[-1]

    def _customer(self, organization: str, organization_id: int) -> int:
        """The organization's person who files tickets (made the first time)."""
        zendesk = self.sandbox.zendesk
        if organization_id == zendesk.organization_id_by_name(DEFAULT_ORGANIZATION):
            email = "jordan.lee@acme.example.com"  # the seeded requester
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", organization.lower()).strip("-") or "customer"
            email = f"it-team@{slug}.example.com"
        existing = zendesk.user_id_by_email(email)
        if existing is not None:
            return existing
        return zendesk.add_user(f"{organization} IT team", email, "end-user", organization_id)


def _text(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ControlError(400, f"{key}: text expected")
    return value


class Remote:
    """The verbs asked of a sandbox served by another process, found at its Zendesk URL."""

    def __init__(self, zendesk_url: str, timeout: float = 5.0) -> None:
        host = urlsplit(zendesk_url).hostname or ""
        if host not in LOOPBACK:
            raise ValueError(f"[zendesk] url {zendesk_url} is not the sandbox (sandbox verbs "
                             "only talk to 127.0.0.1: use the config `emergency sandbox serve` "
                             "wrote)")
        self.base_url = zendesk_url.rstrip("/")
        self.timeout = timeout

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "clock")

    def advance(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "clock", {"advance_seconds": seconds})

    def new_ticket(self, organization: str | None, subject: str | None,
                   body: str | None) -> dict[str, Any]:
        return self._call("POST", "tickets", {"organization": organization,
                                              "subject": subject, "body": body})

    def reply(self, ticket_id: int, body: str | None) -> dict[str, Any]:
        return self._call("POST", f"tickets/{ticket_id}/reply", {"body": body})

    def acknowledge(self, ticket_id: int, engineer: str | None) -> dict[str, Any]:
        return self._call("POST", f"tickets/{ticket_id}/acknowledge", {"engineer": engineer})

    def _call(self, method: str, verb: str, data: dict[str, Any] | None = None) -> Any:
        path = PREFIX + verb
        try:
            response = requests.request(method, self.base_url + path, json=data,
                                        timeout=self.timeout)
        except requests.RequestException:
            raise Unreachable(SERVICE, method, path, None, "connection failed",
                              f"no sandbox answers at {self.base_url}: start one with "
                              "`emergency sandbox serve`") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or (response.ok and "error" in answer):
            raise Unreachable(SERVICE, method, path, response.status_code,
                              response.text[:120], f"{self.base_url} is not the sandbox")
        error = str(answer.get("error", ""))
        if response.status_code == 404:
            raise NotFound(SERVICE, method, path, 404, error)
        if response.status_code == 409:
            raise Refused(error)
        if not response.ok:
            raise Rejected(SERVICE, method, path, response.status_code, error)
        return answer
