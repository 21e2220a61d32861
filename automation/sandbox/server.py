"""The sandbox: Zendesk, Slack, PagerDuty and GitLab fakes on 127.0.0.1, one dispatch, one fault
layer."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

from automation.clock import Clock, ScaledClock
from automation.sandbox.control import PREFIX as CONTROL_PREFIX
from automation.sandbox.control import Control
from automation.sandbox.faults import REJECTING, Fault, Faults
from automation.sandbox.gitlab import PREFIX as GITLAB_PREFIX
from automation.sandbox.gitlab import GitLabSandbox
from automation.sandbox.http import CA_PATH, Api, Reply, SandboxServer, json_copy
from automation.sandbox.pagerduty import PagerDutySandbox
from automation.sandbox.slack import SlackSandbox
from automation.sandbox.zendesk import FakeZendesk

log = logging.getLogger(__name__)

DEFAULT_EMAIL = "automation@example.com"
DEFAULT_TOKEN = "sandbox-token"
HOST = "127.0.0.1"
SLACK_PREFIX = "/slack/api/"


class RequestRecord(NamedTuple):
    """One request the sandbox received; status is None when the connection was dropped."""

    method: str
    path: str
    status: int | None


class Sandbox:
    """Fake Zendesk, Slack, PagerDuty and GitLab on 127.0.0.1, driven by an injected clock.

    Zendesk, Slack (under ``SLACK_PREFIX``) and GitLab (under ``/gitlab/api/v4``) share a plain
    HTTP port; PagerDuty has a TLS port of its own. Every request goes through ``dispatch``,
    where ``faults`` apply to all of them.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        port: int = 0,
        email: str = DEFAULT_EMAIL,
        token: str = DEFAULT_TOKEN,
    ) -> None:
        self.clock: Clock = clock if clock is not None else ScaledClock(speed=1)
        self.email = email
        self.token = token
        self.faults = Faults()
        self.zendesk = FakeZendesk(self.clock, api_email=email, api_token=token)
        self.slack = SlackSandbox(self.clock, faults=self.faults)
        self.pagerduty = PagerDutySandbox(self.clock, faults=self.faults)
        self.gitlab = GitLabSandbox(self.clock)
        self.control = Control(self)  # the verbs of `emergency sandbox ticket|reply|ack|advance`
        self.pagerduty_url = ""
        self.pagerduty_ca = ""
        self._requested_port = port
        self._requests: list[RequestRecord] = []
        self._bodies: list[tuple[str, str, Any]] = []  # (method, path, JSON body) as received
        self._requests_lock = threading.Lock()
        self._server: SandboxServer | None = None
        self._pagerduty_server: SandboxServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{HOST}:{self.port}"

    @property
    def slack_url(self) -> str:
        """The Slack Web API base URL, as slack_sdk's `base_url` takes it."""
        return f"{self.url}{SLACK_PREFIX}"

    @property
    def gitlab_url(self) -> str:
        """The GitLab instance's URL, as python-gitlab takes it (it adds /api/v4)."""
        return f"{self.url}{GITLAB_PREFIX.removesuffix('/api/v4')}"

    @property
    def port(self) -> int:
        """The bound port once started."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def auth(self) -> tuple[str, str]:
        """HTTP Basic credentials of the API user, as ``requests`` takes them."""
        return f"{self.email}/token", self.token

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, in arrival order."""
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log (e.g. after seeding)."""
        with self._requests_lock:
            self._requests.clear()
            self._bodies.clear()

    def request_bodies(self, method: str, path: str = "") -> list[Any]:
        """The JSON bodies received with ``method`` (faulted requests included), in order;
        ``path`` is a regular expression searched in the request's path."""
        with self._requests_lock:
            return [json_copy(body) for m, p, body in self._bodies
                    if m == method.upper() and re.search(path, p)]

    def advance(self, delta: timedelta) -> datetime:
        """Move the sandbox clock forward (FakeClock or ScaledClock)."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError(f"{type(self.clock).__name__} cannot be advanced")
        return cast(datetime, advance(delta))

    def start(self) -> Sandbox:
        """Bind the ports and serve in background threads."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._server = self._serve(self._zendesk_or_slack, self._requested_port, tls=False)
        self.zendesk.base_url = self.url
        # PagerDuty's client speaks only https: it gets a TLS port of its own.
        self._pagerduty_server = self._serve(lambda _: self.pagerduty, 0, tls=True)
        self.pagerduty_url = self._pagerduty_server.url
        self.pagerduty_ca = str(CA_PATH)
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        servers = [s for s in (self._server, self._pagerduty_server) if s is not None]
        self._server = self._pagerduty_server = None
        for server in servers:
            server.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def dispatch(self, api: Api, method: str, target: str, headers: dict[str, str],
                 body: bytes | None) -> Reply | None:
        """Run one request through the faults and the fake; None means drop the connection."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        if api is self.control:  # a person's verb, not service traffic: no faults, no log
            return self.control.handle(method, path, query, headers, body)
        api.record(method, path, query, headers, body)
        self._keep_body(method, path, body)
        delay = self.faults.take_latency(method, path, api.name)
        if delay > 0:
            time.sleep(delay)  # real time, outside any lock: it exercises the client's timeout
        fault = self.faults.take(method, path, api.name)
        reply: Reply | None
        if fault is not None and fault.kind in REJECTING:
            reply = None if fault.kind == "drop" else api.fault_reply(fault)
        else:
            if api is self.zendesk:
                self._interleave(method, path)
            reply = self._handle(api, method, path, query, headers, body)
            if fault is not None:  # applied; then the answer is replaced, or lost
                log.info("sandbox: applied %s %s (HTTP %s), then %s", method, path,
                         reply.status, fault.kind)
                reply = api.fault_reply(fault) if fault.kind == "apply_then_fail" else None
        with self._requests_lock:
            self._requests.append(RequestRecord(method, path, reply.status if reply else None))
        return reply

    def _keep_body(self, method: str, path: str, body: bytes | None) -> None:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body  # a form (Slack) or a broken body: kept as sent
        with self._requests_lock:
            self._bodies.append((method.upper(), path, parsed))

    def _serve(self, mount: Callable[[str], Api], port: int, tls: bool) -> SandboxServer:
        server = SandboxServer(mount, self.dispatch, port, tls)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},  # stop() wakes it at once
            name=f"sandbox-{server.server_address[1]}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return server

    def _zendesk_or_slack(self, target: str) -> Api:
        if target.startswith(SLACK_PREFIX):
            return self.slack
        if target.startswith(GITLAB_PREFIX + "/"):
            return self.gitlab
        return self.control if target.startswith(CONTROL_PREFIX) else self.zendesk

    @staticmethod
    def _handle(api: Api, method: str, path: str, query: dict[str, list[str]],
                headers: dict[str, str], body: bytes | None) -> Reply:
        try:
            return api.handle(method, path, query, headers, body)
        except Exception:  # the fakes answer their own errors; this is a sandbox bug
            log.exception("sandbox: unhandled error for %s %s", method, path)
            return api.fault_reply(Fault("server_error", method, path, status=500))

    def _interleave(self, method: str, path: str) -> None:
        for comment in self.faults.take_interleaved(method, path):
            try:
                self.zendesk.add_comment(
                    comment.ticket_id, comment.author_id, comment.body, comment.public
                )
            except (KeyError, ValueError):
                log.exception("sandbox: could not interleave %r", comment)
