"""The sandbox's one HTTP layer: the reply type, the route table and the server for all fakes.

Each fake (Zendesk, Slack, PagerDuty) is an ``Api``: a pure ``handle`` of one request and the
``fault_reply`` its service's edge sends for an injected 429 or 5xx. ``SandboxServer`` moves the
bytes on 127.0.0.1, in plain HTTP or in TLS (python-pagerduty accepts only https:// URLs), and
hands every request to one dispatch, where the shared fault layer applies.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from automation.sandbox.faults import Fault

log = logging.getLogger(__name__)

Query = Mapping[str, Any]

TLS_DIR = Path(__file__).with_name("tls")
CA_PATH = TLS_DIR / "sandbox-only-ca.pem"
SERVER_CERT_PATH = TLS_DIR / "sandbox-only-server.pem"
SERVER_KEY_PATH = TLS_DIR / "sandbox-only-server.key"


class Reply(NamedTuple):
    """An HTTP answer: status, headers and a JSON-serializable body (None: no body)."""

    status: int
    headers: dict[str, str]
    body: Any


F = TypeVar("F", bound=Callable[..., Any])
J = TypeVar("J")


def json_copy(value: J) -> J:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), three times faster than
    `copy.deepcopy`, which the fakes pay at every answer they build from their state."""
    if isinstance(value, dict):
        return cast(J, {key: json_copy(item) for key, item in value.items()})
    if isinstance(value, list):
        return cast(J, [json_copy(item) for item in value])
    if value is None or isinstance(value, (str, int, float)):
        return value
    return copy.deepcopy(value)


class Routes:
    """A route table filled by decorating handlers: ``@routes("GET", r"/users/(\\d+)")``.

    The method may be ``*`` (any); the pattern is matched in full; the table keeps handler names,
    so a fake looks the handler up on itself (``getattr(self, name)``).
    """

    def __init__(self) -> None:
        self._table: list[tuple[str, re.Pattern[str], str]] = []

    def __call__(self, method: str, pattern: str) -> Callable[[F], F]:
        """Register the decorated handler for ``method`` and ``pattern``."""
        def register(handler: F) -> F:
            self._table.append((method, re.compile(pattern), handler.__name__))
            return handler
        return register

    def names(self) -> list[str]:
        """The handler names in the table, in registration order."""
        return [name for _, _, name in self._table]

    def find(self, method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
        """The handler name and the pattern's groups for this request, or None."""
        for route_method, pattern, name in self._table:
            match = pattern.fullmatch(path)
            if match and route_method in ("*", method.upper()):
                return name, match.groups()
        return None


class Api(Protocol):
    """One fake service as the server sees it."""

    name: str  # "zendesk", "slack" or "pagerduty": what a fault's ``service`` names

    def handle(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> Reply:
        """Answer one request as the service would, faults aside; never raises."""
        ...

    def record(self, method: str, path: str, query: Query, headers: Mapping[str, str],
               body: bytes | None) -> None:
        """Note a request as it arrives (faulted ones included)."""
        ...

    def fault_reply(self, fault: Fault) -> Reply:
        """The answer the service's edge gives for an injected 429 or 5xx."""
        ...


# (api, method, target with query string, headers, body) -> a reply, or None to drop the line.
Dispatch = Callable[[Api, str, str, dict[str, str], "bytes | None"], "Reply | None"]


class SandboxServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 (TLS with the sandbox-only certificate if asked)."""

    daemon_threads = True

    def __init__(self, mount: Callable[[str], Api], dispatch: Dispatch, port: int = 0,
                 tls: bool = False) -> None:
        self.mount = mount
        self.dispatch = dispatch
        self.ssl_context = _server_context() if tls else None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        # stop() wakes the serving loop at once, rather than at its next poll.
        self._stopping, self._serving, self._stopped = (threading.Event(), threading.Event(),
                                                        threading.Event())
        self._wake, self._waker = socket.socketpair()
        super().__init__(("127.0.0.1", port), _Handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """socketserver's loop, which stop() wakes at once (a sandbox stops in a fraction of
        a millisecond, not at the loop's next poll)."""
        self._serving.set()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in selector.select(poll_interval):
                        if key.fileobj is self and not self._stopping.is_set():
                            self.handle_request()  # a connection is waiting: no blocking
                    self.service_actions()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the serving loop and wait for it to end (at once if it never began)."""
        self._stopping.set()
        self._waker.send(b"\0")
        if self._serving.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake.close()
        self._waker.close()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:54321``."""
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm and
        # delayed ACKs hold each answer back by some 40 ms.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            # The handshake runs here, in the connection's thread: a slow client blocks no one.
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("sandbox: TLS handshake with %s failed: %s", client_address, exc)
                return
        self._track(request, True)
        try:
            _Handler(request, client_address, self)
        finally:
            self._track(request, False)
            if self.ssl_context is not None:
                _close(request)  # the wrapped socket; socketserver closes only the raw one

    def stop(self) -> None:
        """Stop serving, close open keep-alive connections and the listening socket."""
        self.shutdown()
        # Idle keep-alive connections would otherwise hold their handler threads.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


@functools.cache
def _server_context() -> ssl.SSLContext:
    """The sandbox-only certificate, loaded once per process (every sandbox serves it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(SERVER_CERT_PATH, SERVER_KEY_PATH)
    return context


def _close(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool their connections
    server_version = "Sandbox/1.0"
    sys_version = ""
    timeout = 60

    @property
    def _server(self) -> SandboxServer:
        return cast(SandboxServer, self.server)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        api = self._server.mount(self.path)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._bad_request(api, str(exc))
            return
        reply = self._server.dispatch(api, self.command, self.path, dict(self.headers.items()),
                                      body)
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

    def _bad_request(self, api: Api, message: str) -> None:
        self._error(api, HTTPStatus.BAD_REQUEST, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a malformed request line...) are answered like the rest.
        self._error(self._server.mount(getattr(self, "path", "") or ""), code, message)

    def _error(self, api: Api, code: int, message: str | None) -> None:
        # JSON with the service's Date like every other answer, not http.server's HTML page.
        status = HTTPStatus(code)
        reply = api.fault_reply(Fault("server_error", "*", "", status=status))
        self.close_connection = True
        self._write(reply._replace(
            headers={**reply.headers, "Connection": "close"},
            body={"error": status.phrase.replace(" ", ""),
                  "description": message or status.phrase}))

    def _write(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response_only(reply.status)
        self.send_header("Server", self.version_string())
        for name, value in reply.headers.items():
            if name.lower() not in ("content-length", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.log_request(reply.status)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("%s %s", self.address_string(), format % args)
