"""The suite's in-process path to the sandbox (tests/in_process.py) answers as the socket does,
for the three clients that take it: `requests` (Zendesk), httpx2 (PagerDuty, over TLS) and
urllib (Slack)."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from urllib.error import HTTPError

import httpx2
import pytest
import requests
import slack_sdk.web.base_client

from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox, seed_account
from tests import in_process

pytestmark = pytest.mark.skipif(not in_process.ENABLED,
                                reason="EMERGENCY_SANDBOX_SOCKETS is set: all over the socket")

Arm = Callable[[Sandbox], Any]
NOTHING: Arm = lambda sandbox: None  # noqa: E731
# (what the test does to the sandbox first, method, path, JSON body, authenticated)
ZENDESK: list[tuple[Arm, str, str, Any, bool]] = [
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
PAGERDUTY: list[tuple[Arm, str, str, Any, bool]] = [
    (NOTHING, "GET", "/users?limit=5", None, True),
    (NOTHING, "GET", "/users", None, False),
    (NOTHING, "GET", "/incidents?statuses[]=triggered", None, True),
    (NOTHING, "GET", "/incidents/PNOPE", None, True),
    (NOTHING, "POST", "/incidents", {"incident": {"type": "incident", "title": "Down"}}, True),
    (lambda s: s.pagerduty.faults.rate_limit("GET", "/oncalls", retry_after=3), "GET",
     "/oncalls", None, True),
    (lambda s: s.pagerduty.faults.server_error("GET", "/services"), "GET", "/services", None,
     True),
    (lambda s: s.pagerduty.faults.drop("GET", "/schedules"), "GET", "/schedules", None, True),
    (NOTHING, "GET", "/schedules", None, True),
]


def zendesk_calls(sandbox: Sandbox, account: Account, sockets: bool) -> list[Any]:
    outcomes: list[Any] = []
    with requests.Session() as session:
        for arm, method, path, body, authenticated in ZENDESK:
            arm(sandbox)
            try:
                with in_process.over_sockets() if sockets else nullcontext():
                    response = session.request(method, sandbox.url + path, json=body,
                                               auth=sandbox.auth if authenticated else None,
                                               timeout=(2, 5))
            except requests.RequestException as exc:
                outcomes.append((type(exc).__name__, str(exc.__context__ or exc)[:40]))
                continue
            outcomes.append((response.status_code, response.reason, dict(response.headers),
                             response.content, response.encoding))
    return outcomes


def pagerduty_calls(sandbox: Sandbox, account: Account, sockets: bool) -> list[Any]:
    outcomes = []
    verify = ssl.create_default_context(cafile=sandbox.pagerduty_ca)
    with httpx2.Client(verify=verify, timeout=5) as client:
        for arm, method, path, body, authenticated in PAGERDUTY:
            arm(sandbox)
            headers = {"From": sandbox.email, "Accept": "application/json"}
            if authenticated:
                headers["Authorization"] = f"Token token={sandbox.pagerduty.token}"
            try:
                with in_process.over_sockets() if sockets else nullcontext():
                    response = client.request(method, sandbox.pagerduty_url + path, json=body,
                                              headers=headers)
            except httpx2.HTTPError as exc:
                outcomes.append((type(exc).__name__, str(exc)))
                continue
            outcomes.append((response.status_code, response.reason_phrase,
                             dict(response.headers), response.content, response.encoding,
                             response.http_version, response.elapsed.total_seconds() >= 0))
    return outcomes


SLACK: list[tuple[Arm, str, bytes | None, dict[str, str]]] = [
    (NOTHING, "auth.test", None, {}),
    (NOTHING, "auth.test", None, {"Authorization": "Bearer wrong"}),
    (NOTHING, "chat.postMessage", b"channel={channel}&text=hi", {}),
    (NOTHING, "chat.postMessage", b'{{"channel": "{channel}", "text": "hi"}}',
     {"Content-Type": "application/json; charset=utf-8"}),
    (lambda s: s.faults.rate_limit("POST", "/chat.postMessage", retry_after=4, service="slack"),
     "chat.postMessage", b"channel={channel}&text=hi", {}),
    (lambda s: s.faults.server_error("POST", "/chat.postMessage", service="slack"),
     "chat.postMessage", b"channel={channel}&text=hi", {}),
    (lambda s: s.faults.drop("POST", "/chat.postMessage", service="slack"),
     "chat.postMessage", b"channel={channel}&text=hi", {}),
    (lambda s: s.faults.apply_then_drop("POST", "/chat.postMessage", service="slack"),
     "chat.postMessage", b"channel={channel}&text=again", {}),
    (NOTHING, "conversations.history", b"channel={channel}", {}),
]


def slack_calls(sandbox: Sandbox, account: Account, sockets: bool) -> list[Any]:
    """Through the urlopen slack_sdk's client calls, as it builds its requests."""
    outcomes: list[Any] = []
    for arm, method, body, extra in SLACK:
        arm(sandbox)
        headers = {"Authorization": f"Bearer {sandbox.slack.token}", **extra}
        if body is not None:
            body = body.decode().format(channel=account.self_managed_channel).encode()
        request = urllib.request.Request(sandbox.slack_url + method, data=body,
                                         headers=headers, method="POST")
        try:
            with in_process.over_sockets() if sockets else nullcontext():
                response = slack_sdk.web.base_client.urlopen(request, timeout=5)
        except HTTPError as exc:
            outcomes.append(("HTTPError", exc.code, exc.reason, dict(exc.headers.items()),
                             exc.read()))
            continue
        except OSError as exc:
            outcomes.append((type(exc).__name__, str(exc)))
            continue
        outcomes.append((response.status, dict(response.headers.items()),
                         response.headers.get_content_charset(), response.read()))
    return outcomes


def went_over_the_socket(*args: object, **kwargs: object) -> None:
    raise AssertionError("a call meant for the sandbox went over the socket")


def played(calls: Callable[[Sandbox, Account, bool], list[Any]], sockets: bool) -> list[Any]:
    """Every call's outcome on a fresh sandbox, then what the sandbox logged; the sandbox's
    ports, which differ from one sandbox to the next, read as SANDBOX and PAGERDUTY."""
    with Sandbox(clock=FakeClock()) as sandbox:
        account = seed_account(sandbox)
        sandbox.zendesk.create_ticket(account.requester_id, "Down", "Everything is down!")
        outcomes = calls(sandbox, account, sockets)
        outcomes.append([(r.method, r.path, r.status) for r in sandbox.requests])
        text = repr(outcomes)
        for url, name in ((sandbox.url, "SANDBOX"), (sandbox.pagerduty_url, "PAGERDUTY")):
            text = text.replace(url, name).replace(url.split(":")[-1], name)
        return text.split("), (")


@pytest.mark.parametrize("calls", [zendesk_calls, pagerduty_calls, slack_calls],
                         ids=["requests", "httpx2", "urllib"])
def test_each_answer_in_process_is_the_answer_over_the_socket(
        calls: Callable[[Sandbox, Account, bool], list[Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as no_socket:  # in-process, every one of them
        for way_out in ("SOCKET_SEND", "SOCKET_HANDLE", "SOCKET_URLOPEN"):
            no_socket.setattr(in_process, way_out, went_over_the_socket)
        direct = played(calls, sockets=False)
    over_socket = played(calls, sockets=True)

    assert direct == over_socket
    assert any(x.lstrip("[(").startswith("200, ") for x in direct)  # answers, and
    assert any("Error', " in x for x in direct)  # a line dropped


def test_requests_skip_the_socket_unless_told_to_go_over_it() -> None:
    with Sandbox(clock=FakeClock()) as sandbox:
        url = f"{sandbox.url}/api/v2/users/me.json"
        direct = requests.get(url, auth=sandbox.auth, timeout=5)
        with in_process.over_sockets():
            over_socket = requests.get(url, auth=sandbox.auth, timeout=5)

    assert direct.raw is None and over_socket.raw is not None
    assert direct.json() == over_socket.json()


def test_an_answer_later_than_the_read_timeout_is_a_timeout_once_applied() -> None:
    with Sandbox(clock=FakeClock()) as sandbox:
        account = seed_account(sandbox)
        ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Down", "Down!")
        sandbox.faults.latency("PUT", f"/api/v2/tickets/{ticket_id}", seconds=0.05)
        sandbox.faults.latency("GET", "/users", seconds=0.05, service="pagerduty")
        sandbox.faults.latency("POST", "/chat.postMessage", seconds=0.05, service="slack")
        headers = {"Authorization": f"Token token={sandbox.pagerduty.token}",
                   "From": sandbox.email}
        post = urllib.request.Request(
            sandbox.slack_url + "chat.postMessage", method="POST",
            data=f"channel={account.self_managed_channel}&text=late".encode(),
            headers={"Authorization": f"Bearer {sandbox.slack.token}"})

        with pytest.raises(requests.ReadTimeout):
            requests.put(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json", auth=sandbox.auth,
                         json={"ticket": {"status": "pending"}}, timeout=(2, 0.01))
        with httpx2.Client(verify=ssl.create_default_context(cafile=sandbox.pagerduty_ca),
                           timeout=httpx2.Timeout(2, read=0.01)) as client:
            with pytest.raises(httpx2.ReadTimeout):
                client.get(sandbox.pagerduty_url + "/users", headers=headers)
        with pytest.raises(TimeoutError):
            slack_sdk.web.base_client.urlopen(post, timeout=0.01)

        # each applied, as over a socket (where the client may hear of the timeout first)
        assert sandbox.zendesk.ticket(ticket_id)["status"] == "pending"
        assert ("GET", "/users", 200) in sandbox.requests
        assert [m["text"] for m in sandbox.slack.messages(account.self_managed_channel)] == [
            "late"]
