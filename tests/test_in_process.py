"""The suite's in-process path to the sandbox (tests/in_process.py) answers as the socket does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from automation.clock import FakeClock
from automation.sandbox import Sandbox, seed_account
from tests import in_process

# (what the test does to the sandbox first, method, path, JSON body, authenticated)
Call = tuple[Callable[[Sandbox], Any], str, str, Any, bool]
NOTHING: Callable[[Sandbox], Any] = lambda sandbox: None  # noqa: E731
CALLS: list[Call] = [
    (NOTHING, "GET", "/api/v2/users/me.json", None, True),
    (NOTHING, "GET", "/api/v2/users/me.json", None, False),
    (NOTHING, "GET", "/api/v2/search.json?query=type%3Aticket+priority%3Aurgent", None, True),
    (NOTHING, "GET", "/api/v2/tickets/1.json", None, True),
    (NOTHING, "GET", "/api/v2/tickets/1/audits.json", None, True),
    (NOTHING, "GET", "/api/v2/tickets/999.json", None, True),
    (NOTHING, "PUT", "/api/v2/tickets/1.json",
     {"ticket": {"comment": {"body": "On it.", "public": True}}}, True),
    (NOTHING, "PUT", "/api/v2/tickets/1.json", {"ticket": {"priority": "urgent!"}}, True),
    (lambda s: s.faults.rate_limit("GET", "/api/v2/tickets/1", retry_after=7), "GET",
     "/api/v2/tickets/1.json", None, True),
    (lambda s: s.faults.server_error("PUT", "/api/v2/tickets/1", status=503), "PUT",
     "/api/v2/tickets/1.json", {"ticket": {"status": "open"}}, True),
    (lambda s: s.faults.apply_then_drop("PUT", "/api/v2/tickets/1"), "PUT",
     "/api/v2/tickets/1.json", {"ticket": {"status": "pending"}}, True),
    (lambda s: s.faults.drop("GET", "/api/v2/tickets/1"), "GET", "/api/v2/tickets/1.json",
     None, True),
    (lambda s: s.faults.latency("GET", "/api/v2/users/me", seconds=0.05), "GET",
     "/api/v2/users/me.json", None, True),
    (NOTHING, "POST", "/slack/api/chat.postMessage", {"channel": "C1", "text": "hi"}, False),
]


def played(sockets: bool) -> list[Any]:
    """Every call's outcome on a fresh sandbox: status, headers, body; or the exception."""
    outcomes: list[Any] = []
    with Sandbox(clock=FakeClock()) as sandbox:
        account = seed_account(sandbox)
        sandbox.zendesk.create_ticket(account.requester_id, "Down", "Everything is down!")
        session = requests.Session()
        for arm, method, path, body, authenticated in CALLS:
            arm(sandbox)
            auth = sandbox.auth if authenticated else None
            try:
                if sockets:
                    with in_process.over_sockets():
                        response = session.request(method, sandbox.url + path, json=body,
                                                   auth=auth, timeout=(2, 5))
                else:
                    response = session.request(method, sandbox.url + path, json=body, auth=auth,
                                               timeout=(2, 5))
            except requests.RequestException as exc:
                outcomes.append((type(exc).__name__, str(exc.__context__ or exc)[:40]))
                continue
            headers = {k.lower(): v for k, v in response.headers.items()
                       if k.lower() not in ("connection", "keep-alive")}
            content = response.content.replace(sandbox.url.encode(), b"SANDBOX")  # its port
            outcomes.append((response.status_code, response.reason, headers, content,
                             response.encoding, response.raw is None))
        outcomes.append([(r.method, r.path, r.status) for r in sandbox.requests])
    return outcomes


def test_each_answer_in_process_is_the_answer_over_the_socket() -> None:
    if not in_process.ENABLED:
        pytest.skip("EMERGENCY_SANDBOX_SOCKETS is set: the suite runs over the socket")
    direct, over_socket = played(sockets=False), played(sockets=True)

    for n, (a, b) in enumerate(zip(direct[:-1], over_socket[:-1], strict=True)):
        if isinstance(a, tuple) and isinstance(a[0], int):
            assert a[-1] and not b[-1], f"call {n}: in-process has no socket, the other has one"
            a, b = a[:-1], b[:-1]
        assert a == b, f"call {n} ({CALLS[n][1]} {CALLS[n][2]})"
    assert direct[-1] == over_socket[-1]  # the sandbox logged the same requests
    statuses = [a[0] for a in direct[:-1]]
    assert {200, 401, 404, 422, 429, 503, "ConnectionError"} <= set(statuses)


def test_an_answer_later_than_the_read_timeout_is_a_read_timeout_once_applied() -> None:
    if not in_process.ENABLED:
        pytest.skip("EMERGENCY_SANDBOX_SOCKETS is set: the suite runs over the socket")
    with Sandbox(clock=FakeClock()) as sandbox:
        account = seed_account(sandbox)
        ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Down", "Down!")
        sandbox.faults.latency("PUT", f"/api/v2/tickets/{ticket_id}", seconds=0.05)

        with pytest.raises(requests.ReadTimeout):
            requests.put(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json", auth=sandbox.auth,
                         json={"ticket": {"status": "pending"}}, timeout=(2, 0.01))

        assert sandbox.zendesk.ticket(ticket_id)["status"] == "pending"  # as over a socket
