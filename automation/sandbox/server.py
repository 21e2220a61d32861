"""The sandbox server: the fake Zendesk over HTTP on 127.0.0.1, with faults and a request log."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

from automation.clock import Clock, ScaledClock
from automation.sandbox.faults import REJECTING, Fault, Faults
from automation.sandbox.pagerduty import PagerDutySandbox, TLSSandboxServer, serve_tls
from automation.sandbox.slack import SlackSandbox
from automation.sandbox.zendesk import FakeZendesk, Reply, error_body

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
    """A fake Zendesk served on 127.0.0.1, driven by an injected clock."""

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
        self.zendesk = FakeZendesk(self.clock, api_email=email, api_token=token)
        # Slack's Web API is served from the same port, under SLACK_PREFIX.
        self.slack = SlackSandbox(self.clock)
        # PagerDuty's client speaks only https: it gets a TLS server of its own.
        self.pagerduty = PagerDutySandbox(self.clock)
        self._pagerduty_server: TLSSandboxServer | None = None
        self.pagerduty_url = ""
        self.pagerduty_ca = ""
        self.faults = Faults()
        self._requested_port = port
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{HOST}:{self.port}"

    @property
    def slack_url(self) -> str:
        """The Slack Web API base URL, as slack_sdk's `base_url` takes it."""
        return f"{self.url}{SLACK_PREFIX}"

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

    def advance(self, delta: timedelta) -> datetime:
        """Move the sandbox clock forward (FakeClock or ScaledClock)."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError(f"{type(self.clock).__name__} cannot be advanced")
        return cast(datetime, advance(delta))

    def start(self) -> Sandbox:
        """Bind the port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._server = _Server((HOST, self._requested_port), self)
        self.zendesk.base_url = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name=f"zendesk-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._pagerduty_server, _, self.pagerduty_url, self.pagerduty_ca = serve_tls(
            self.pagerduty)
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._pagerduty_server is not None:
            self._pagerduty_server.stop()
            self._pagerduty_server = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> Reply | None:
        """Run one request through faults and the fake; None means drop the connection."""
        split = urlsplit(target)
        path = split.path
        if path.startswith(SLACK_PREFIX):
            slack_reply = self.slack.handle(method, path, parse_qs(split.query), headers, body)
            with self._requests_lock:
                self._requests.append(
                    RequestRecord(method, path, slack_reply.status if slack_reply else None))
            return slack_reply
        delay = self.faults.take_latency(method, path)
        if delay > 0:
            time.sleep(delay)  # outside any lock: other requests proceed meanwhile
        fault = self.faults.take(method, path)
        reply: Reply | None
        if fault is not None and fault.kind in REJECTING:
            reply = self._fault_reply(fault)
        else:
            self._interleave(method, path)
            query = parse_qs(split.query, keep_blank_values=True)
            reply = self.zendesk.handle(method, path, query, headers, body)
            if fault is not None:
                reply = self._fault_reply(fault)
        with self._requests_lock:
            self._requests.append(RequestRecord(method, path, reply.status if reply else None))
        return reply

    def _interleave(self, method: str, path: str) -> None:
        for comment in self.faults.take_interleaved(method, path):
            try:
                self.zendesk.add_comment(
                    comment.ticket_id, comment.author_id, comment.body, comment.public
                )
            except (KeyError, ValueError):
                log.exception("sandbox: could not interleave %r", comment)

    def _fault_reply(self, fault: Fault) -> Reply | None:
        if fault.kind in ("drop", "apply_then_drop"):
            return None
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.kind == "rate_limit":
            body = {
                "error": "TooManyRequests",
                "description": "You have exceeded the rate limit. "
                f"Retry after {fault.retry_after} seconds.",
            }
            return self.zendesk.reply(429, body, headers)
        return self.zendesk.reply(fault.status, error_body(fault.status), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Idle keep-alive connections would otherwise hold their handler threads after stop().
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections to Zendesk
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls
    server_version = "ZendeskSandbox/1.0"
    sys_version = ""
    timeout = 60

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server.track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        sandbox = self._server.sandbox
        try:
            body = self._read_body()
        except ValueError as exc:
            self.send_error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        try:
            reply = sandbox.dispatch(self.command, self.path, dict(self.headers.items()), body)
        except Exception:
            log.exception("sandbox: unhandled error for %s %s", self.command, self.path)
            reply = sandbox.zendesk.reply(500, error_body(500))
        if reply is None:
            self.close_connection = True  # the client sees the socket close, no response
            return
        self._write(reply)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ValueError("chunked request bodies are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        if not length.isdigit():
            raise ValueError(f"invalid Content-Length {length!r}")
        return self.rfile.read(int(length))

    def _write(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response_only(reply.status)
        self.send_header("Server", self.version_string())
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.log_request(reply.status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # JSON like every other answer, with the sandbox's Date, not http.server's HTML page.
        status = HTTPStatus(code)
        body = {"error": status.phrase.replace(" ", ""), "description": message or status.phrase}
        self.close_connection = True
        self._write(self._server.sandbox.zendesk.reply(code, body, {"Connection": "close"}))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("%s %s", self.address_string(), format % args)
