"""Requests from the test process to a sandbox the test process runs, without the socket.

Most tests drive a worker against a ``Sandbox`` in the same process. Over 127.0.0.1 every one
of their requests is written to a socket, parsed again by ``http.server`` in a thread of the
sandbox, and answered the same way back; that round trip cost the suite more CPU than the
tests' own work. Here `requests` hands the request to the same ``Sandbox.dispatch`` in the
calling thread: the same route table, faults, request log, ``Date`` header and body bytes, and
the same exceptions a dropped or late answer raises (``ConnectionError``, ``ReadTimeout``).

What still goes over 127.0.0.1:
- every subprocess (``tick``, ``run``, ``serve``, ``sandbox serve``) and the browser;
- clients that are not `requests`: Slack's (urllib) and PagerDuty's (httpx, over TLS);
- a method the sandbox's server itself refuses (``OPTIONS``...), a body that is not bytes,
  and a sandbox that has stopped (connection refused, as before);
- every test marked ``sockets``, and the whole suite with ``EMERGENCY_SANDBOX_SOCKETS=1``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http import HTTPStatus
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakValueDictionary

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

from automation.sandbox import http as sandbox_http

ENABLED = os.environ.get("EMERGENCY_SANDBOX_SOCKETS", "") in ("", "0")
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})  # what the sandbox's handler serves

# What the sandbox's http.server handler names itself in every answer.
SERVER = f"{sandbox_http._Handler.server_version} {sandbox_http._Handler.sys_version}"
SOCKET_SEND = requests.adapters.HTTPAdapter.send
_servers: WeakValueDictionary[int, sandbox_http.SandboxServer] = WeakValueDictionary()
_sockets = [False]  # set by over_sockets(); tests run one at a time in a process


def install() -> None:
    """Route `requests` to plain-HTTP sandboxes of this process in-process (once)."""
    if not ENABLED or requests.adapters.HTTPAdapter.send is _send:
        return
    server_init = sandbox_http.SandboxServer.__init__

    def remembered(server: sandbox_http.SandboxServer, *args: Any, **kwargs: Any) -> None:
        server_init(server, *args, **kwargs)
        if server.ssl_context is None:  # TLS is left to the socket: its checks are the point
            _servers[int(server.server_address[1])] = server

    sandbox_http.SandboxServer.__init__ = remembered  # type: ignore[method-assign,assignment]
    requests.adapters.HTTPAdapter.send = _send  # type: ignore[method-assign,assignment]


@contextmanager
def over_sockets() -> Iterator[None]:
    """Within the block, every request goes over 127.0.0.1 as any client's does."""
    previous = _sockets[0]
    _sockets[0] = True
    try:
        yield
    finally:
        _sockets[0] = previous


def _send(adapter: requests.adapters.HTTPAdapter, request: requests.PreparedRequest,
          stream: bool = False, timeout: Any = None, verify: Any = True, cert: Any = None,
          proxies: Any = None) -> requests.Response:
    server = _server_for(request)
    if server is None:
        return SOCKET_SEND(adapter, request, stream=stream, timeout=timeout, verify=verify,
                           cert=cert, proxies=proxies)
    split = urlsplit(str(request.url))
    target = split.path + (f"?{split.query}" if split.query else "")
    body = request.body.encode() if isinstance(request.body, str) else request.body
    headers = {"Host": split.netloc, **{k: str(v) for k, v in request.headers.items()}}
    started = time.monotonic()
    reply = server.dispatch(server.mount(target), str(request.method), target, headers,
                            body if isinstance(body, bytes) else None)
    waited = time.monotonic() - started
    if waited > _read_timeout(timeout):  # the answer came after the client had given up
        raise requests.ReadTimeout(f"read timed out after {waited:.3f} s", request=request)
    if reply is None:  # the sandbox dropped the line, as a socket closing before the answer
        raise requests.ConnectionError(ProtocolError(
            "Connection aborted.",
            RemoteDisconnected("Remote end closed connection without response")),
            request=request)
    return _response(adapter, request, reply, timedelta(seconds=waited))


def _server_for(request: requests.PreparedRequest) -> sandbox_http.SandboxServer | None:
    if _sockets[0] or request.method not in METHODS:
        return None
    if not (request.body is None or isinstance(request.body, (bytes, str))):
        return None
    split = urlsplit(str(request.url))
    if split.scheme != "http" or split.hostname != "127.0.0.1" or split.port is None:
        return None
    server = _servers.get(split.port)
    if server is None or server.socket.fileno() < 0:  # stopped: refused over the socket
        return None
    return server


def _read_timeout(timeout: Any) -> float:
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    return float("inf") if timeout is None else float(timeout)


def _response(adapter: requests.adapters.HTTPAdapter, request: requests.PreparedRequest,
              reply: sandbox_http.Reply, elapsed: timedelta) -> requests.Response:
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    response = requests.Response()
    response.status_code = reply.status
    response.reason = HTTPStatus(reply.status).phrase
    response.headers = CaseInsensitiveDict({
        "Server": SERVER,
        **{k: v for k, v in reply.headers.items()
           if k.lower() not in ("content-length", "server")},
        "Content-Length": str(len(payload)),
    })
    response._content = payload
    response._content_consumed = True
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.url = request.url or ""
    response.request = request
    response.connection = adapter
    response.elapsed = elapsed
    return response
