"""Requests from the test process to a sandbox the test process runs, without the socket.

Most tests drive a worker against a ``Sandbox`` in the same process. Over 127.0.0.1 every one
of their requests is written to a socket, parsed again by ``http.server`` in a thread of the
sandbox, and answered the same way back; that round trip cost the suite more CPU than the
tests' own work. Here the client hands the request to the same ``Sandbox.dispatch`` in the
calling thread: the same route table, faults, request log, ``Date`` header and body bytes, and
the same exceptions a dropped or late answer raises. Three clients go this way: `requests`
(Zendesk, GitLab), httpx2 (PagerDuty, whose TLS is then skipped) and slack_sdk's urllib.
One thing differs: an answer later than the client's read timeout is applied before the
client hears of the timeout (see `late`).

What still goes over 127.0.0.1:
- every subprocess (``tick``, ``run``, ``serve``, ``sandbox serve``) and the browser;
- a method the sandbox's server itself refuses (``OPTIONS``...), a body that is not bytes,
  and a sandbox that has stopped (connection refused, as before);
- every test marked ``sockets``, and the whole suite with ``EMERGENCY_SANDBOX_SOCKETS=1``.
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http import HTTPStatus
from http.client import HTTPMessage, RemoteDisconnected, parse_headers
from typing import Any, NamedTuple
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.response import addinfourl
from weakref import WeakValueDictionary

import httpx2
import requests
import slack_sdk.web.base_client
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

from automation.sandbox import http as sandbox_http

ENABLED = os.environ.get("EMERGENCY_SANDBOX_SOCKETS", "") in ("", "0")
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})  # what the sandbox's handler serves

# What the sandbox's http.server handler names itself in every answer.
SERVER = f"{sandbox_http._Handler.server_version} {sandbox_http._Handler.sys_version}"
SOCKET_SEND = requests.adapters.HTTPAdapter.send
SOCKET_HANDLE = httpx2.HTTPTransport.handle_request
SOCKET_URLOPEN = urllib.request.urlopen
_servers: WeakValueDictionary[int, sandbox_http.SandboxServer] = WeakValueDictionary()
_sockets = [False]  # set by over_sockets(); tests run one at a time in a process


class Answer(NamedTuple):
    """The sandbox's answer as its handler would write it, or a line dropped (status 0)."""

    status: int
    reason: str
    headers: dict[str, str]  # as the socket's answer has them, Content-Length included
    payload: bytes
    waited: float


def install() -> None:
    """Route the three clients to this process's sandboxes in-process (once)."""
    if not ENABLED or requests.adapters.HTTPAdapter.send is _requests_send:
        return
    server_init = sandbox_http.SandboxServer.__init__

    def remembered(server: sandbox_http.SandboxServer, *args: Any, **kwargs: Any) -> None:
        server_init(server, *args, **kwargs)
        _servers[int(server.server_address[1])] = server

    sandbox_http.SandboxServer.__init__ = remembered  # type: ignore[method-assign,assignment]
    requests.adapters.HTTPAdapter.send = _requests_send  # type: ignore[method-assign,assignment]
    httpx2.HTTPTransport.handle_request = _httpx_handle  # type: ignore[method-assign,assignment]
    slack_sdk.web.base_client.urlopen = _urlopen  # type: ignore[assignment] - its own import


@contextmanager
def over_sockets() -> Iterator[None]:
    """Within the block, every request goes over 127.0.0.1 as any client's does."""
    previous = _sockets[0]
    _sockets[0] = True
    try:
        yield
    finally:
        _sockets[0] = previous


def server_for(scheme: str, host: str | None, port: int | None,
               method: str) -> sandbox_http.SandboxServer | None:
    """The running sandbox server of this process at that address, or None (the socket)."""
    if _sockets[0] or method not in METHODS or host != "127.0.0.1" or port is None:
        return None
    server = _servers.get(port)
    if server is None or server.socket.fileno() < 0:  # stopped: refused over the socket
        return None
    return server if (server.ssl_context is not None) == (scheme == "https") else None


def answer(server: sandbox_http.SandboxServer, method: str, target: str,
           headers: dict[str, str], body: bytes | None) -> Answer:
    """The sandbox's answer, as its handler would write it to the socket. A body is what
    Content-Length says there is (none without the header, as the handler reads it)."""
    sent = any(name.lower() == "content-length" for name in headers)
    started = time.monotonic()
    reply = server.dispatch(server.mount(target), method, target, headers,
                            (body or b"") if sent else None)
    waited = time.monotonic() - started
    if reply is None:
        return Answer(0, "", {}, b"", waited)
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    return Answer(reply.status, _phrase(reply.status), {
        "Server": SERVER,
        **{k: v for k, v in reply.headers.items() if k.lower() not in ("content-length", "server")},
        "Content-Length": str(len(payload)),
    }, payload, waited)


def late(got: Answer, read_timeout: float | None) -> bool:
    """The answer came after the client had given up. Unlike over a socket, the client
    hears so only once the sandbox has applied the request (over a socket it may hear first
    and read the ticket before the write lands): a test of that race goes over the socket."""
    return read_timeout is not None and got.waited > read_timeout


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""  # http.server's reason for a status it does not know


# --- requests ------------------------------------------------------------------------------


def _requests_send(adapter: requests.adapters.HTTPAdapter, request: requests.PreparedRequest,
                   stream: bool = False, timeout: Any = None, verify: Any = True,
                   cert: Any = None, proxies: Any = None) -> requests.Response:
    url = requests.utils.urlparse(str(request.url))
    body = request.body.encode("latin-1") if isinstance(request.body, str) else request.body
    server = server_for(url.scheme, url.hostname, url.port, str(request.method))
    if server is None or not (body is None or isinstance(body, bytes)):
        return SOCKET_SEND(adapter, request, stream=stream, timeout=timeout, verify=verify,
                           cert=cert, proxies=proxies)
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {"Host": url.netloc, **{k: str(v) for k, v in request.headers.items()}}
    got = answer(server, str(request.method), target, headers, body)
    if late(got, timeout[1] if isinstance(timeout, tuple) else timeout):
        raise requests.ReadTimeout(f"read timed out after {got.waited:.3f} s", request=request)
    if not got.status:  # as urllib3 reports a socket closed before the answer
        raise requests.ConnectionError(ProtocolError(
            "Connection aborted.",
            RemoteDisconnected("Remote end closed connection without response")),
            request=request)
    response = requests.Response()
    response.status_code, response.reason = got.status, got.reason
    response.headers = CaseInsensitiveDict(got.headers)
    response._content, response._content_consumed = got.payload, True
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.url, response.request, response.connection = request.url or "", request, adapter
    response.elapsed = timedelta(seconds=got.waited)
    return response


# --- httpx2 (PagerDuty's client) -----------------------------------------------------------


def _httpx_handle(transport: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
    url = request.url
    server = server_for(url.scheme, url.host, url.port, request.method)
    if server is None:
        return SOCKET_HANDLE(transport, request)
    target = url.raw_path.decode("ascii")
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw}
    body = request.read()
    got = answer(server, request.method, target, headers, body)
    if late(got, request.extensions.get("timeout", {}).get("read")):
        raise httpx2.ReadTimeout("The read operation timed out", request=request)
    if not got.status:  # as httpcore reports a socket closed before the answer
        raise httpx2.RemoteProtocolError("Server disconnected without sending a response.",
                                         request=request)
    # A stream, as the socket's answer is: the client reads it, then stamps `elapsed`.
    return httpx2.Response(
        got.status, headers=[(k.lower(), v.strip()) for k, v in got.headers.items()],  # as h11
        stream=httpx2.ByteStream(got.payload),
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": got.reason.encode()})


# --- urllib (slack_sdk's client) -----------------------------------------------------------


def _urlopen(request: urllib.request.Request, *args: Any, timeout: float | None = None,
             **kwargs: Any) -> addinfourl:
    url = urlsplit(request.full_url)
    server = server_for(url.scheme, url.hostname, url.port, request.get_method())
    body = request.data
    if server is None or not (body is None or isinstance(body, bytes)):
        return SOCKET_URLOPEN(request, *args, timeout=timeout, **kwargs)  # type: ignore[misc]
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {"Host": url.netloc, **dict(request.header_items())}
    if body is not None:  # what urllib's handler adds to a request with a body
        headers.setdefault("Content-type", "application/x-www-form-urlencoded")
        headers["Content-Length"] = str(len(body))
    got = answer(server, request.get_method(), target, headers, body)
    if late(got, timeout):
        raise TimeoutError("timed out")  # as http.client's read raises it, through urllib
    if not got.status:  # as http.client reports a socket closed before the answer
        raise RemoteDisconnected("Remote end closed connection without response")
    message = _message(got)
    if not 200 <= got.status < 300:  # urllib's error processor: an HTTPError with the answer
        raise HTTPError(request.full_url, got.status, got.reason, message,
                        io.BytesIO(got.payload))
    return addinfourl(io.BytesIO(got.payload), message, request.full_url, got.status)


def _message(got: Answer) -> HTTPMessage:
    lines = "".join(f"{name}: {value}\r\n" for name, value in got.headers.items())
    return parse_headers(io.BytesIO(f"{lines}\r\n".encode("latin-1")))
