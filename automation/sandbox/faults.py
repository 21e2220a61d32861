"""Failure injection for the sandbox: armed faults, matched by service, method and path, in order.

One ``Faults`` register serves the fakes: a fault names its service ("zendesk", "slack",
"pagerduty", "gitlab"; None: any), e.g.
``faults.server_error("*", "", service="slack", times=None)`` makes Slack answer 503 to
everything. ``faults.scoped(name)`` arms for one service only.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "rate_limit", "server_error", "apply_then_fail", "apply_then_drop", "drop", "latency"
]
PathMatcher = str | re.Pattern[str]
ServiceName = Literal["zendesk", "slack", "pagerduty", "gitlab"]

# Faults that answer without letting the request reach the state.
REJECTING: frozenset[FaultKind] = frozenset({"rate_limit", "server_error", "drop"})


@dataclass
class Fault:
    """One armed fault; ``times`` left to fire (None: until cleared)."""

    kind: FaultKind
    method: str
    path: PathMatcher
    times: int | None = 1
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    service: str | None = None
    after: int = 0  # matching requests let through before the fault starts firing

    def matches(self, method: str, path: str, service: str | None = None) -> bool:
        """Whether a request to this service, method and path (no query) triggers the fault."""
        if self.service is not None and service is not None and self.service != service:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if isinstance(self.path, re.Pattern):
            return self.path.search(path) is not None
        return self.path in path


@dataclass
class InterleavedComment:
    """A comment someone adds just before the next PUT to ``ticket_id`` is processed."""

    ticket_id: int
    author_id: int
    body: str
    public: bool = True

    def matches(self, method: str, path: str) -> bool:
        """Whether the request is a PUT to this ticket."""
        pattern = rf"/api/v2/tickets/{self.ticket_id}(\.json)?/?"
        return method.upper() == "PUT" and re.fullmatch(pattern, path) is not None


class Faults:
    """The sandbox's armed faults. Each request triggers at most one non-latency fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._interleaved: list[InterleavedComment] = []

    def rate_limit(self, method: str, path: PathMatcher, retry_after: int = 2,
                   times: int | None = 1, service: ServiceName | None = None) -> Fault:
        """Answer 429 with Retry-After; the request is not applied."""
        return self._arm(Fault("rate_limit", method, path, times, 429, retry_after,
                               service=service))

    def server_error(self, method: str, path: PathMatcher, status: int = 503,
                     times: int | None = 1, retry_after: int | None = None,
                     service: ServiceName | None = None, after: int = 0) -> Fault:
        """Answer an error status (a 5xx; or 409, 422...); the request is not applied.

        ``after``: let that many matching requests through first (the third PUT fails).
        """
        return self._arm(Fault("server_error", method, path, times, status, retry_after,
                               service=service, after=after))

    def apply_then_fail(self, method: str, path: PathMatcher, status: int = 503,
                        times: int | None = 1, service: ServiceName | None = None) -> Fault:
        """Apply the request, then answer a 5xx, as when a gateway times out after the write."""
        return self._arm(Fault("apply_then_fail", method, path, times, status, service=service))

    def apply_then_drop(self, method: str, path: PathMatcher, times: int | None = 1,
                        service: ServiceName | None = None) -> Fault:
        """Apply the request, then close the connection without any response."""
        return self._arm(Fault("apply_then_drop", method, path, times, service=service))

    def drop(self, method: str, path: PathMatcher, times: int | None = 1,
             service: ServiceName | None = None) -> Fault:
        """Close the connection without applying the request or answering."""
        return self._arm(Fault("drop", method, path, times, service=service))

    def latency(self, method: str, path: PathMatcher, seconds: float, times: int | None = 1,
                service: ServiceName | None = None) -> Fault:
        """Wait ``seconds`` of real time before answering (combines with other faults)."""
        return self._arm(Fault("latency", method, path, times, seconds=seconds,
                               service=service))

    def interleave_comment(
        self, ticket_id: int, author_id: int, body: str, public: bool = True
    ) -> InterleavedComment:
        """Add a comment just before the next PUT to the ticket, making its stamp stale."""
        interleaved = InterleavedComment(ticket_id, author_id, body, public)
        with self._lock:
            self._interleaved.append(interleaved)
        return copy.copy(interleaved)

    def pending(self, service: ServiceName | None = None) -> list[Fault | InterleavedComment]:
        """Copies of what is still armed (for ``service`` only, if named), in firing order."""
        with self._lock:
            armed: list[Fault | InterleavedComment] = [
                *(f for f in self._faults if service is None or f.service == service),
                *(c for c in self._interleaved if service in (None, "zendesk"))]
            return [copy.copy(f) for f in armed]

    def clear(self, service: ServiceName | None = None) -> None:
        """Disarm everything (armed for ``service`` only, if named)."""
        with self._lock:
            self._faults = [f for f in self._faults
                            if service is not None and f.service != service]
            if service in (None, "zendesk"):
                self._interleaved.clear()

    def scoped(self, service: ServiceName) -> ScopedFaults:
        """This register, arming for one service only."""
        return ScopedFaults(self, service)

    def take_latency(self, method: str, path: str, service: str | None = None) -> float:
        """Consume the matching latency faults; the total delay in seconds."""
        with self._lock:
            matching = [f for f in self._faults
                        if f.kind == "latency" and f.matches(method, path, service)]
            for fault in matching:
                self._consume(fault)
            return sum(f.seconds for f in matching)

    def take(self, method: str, path: str, service: str | None = None) -> Fault | None:
        """Consume the first matching non-latency fault and return a copy of it."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != "latency" and fault.matches(method, path, service):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    self._consume(fault)
                    return copy.copy(fault)
            return None

    def take_interleaved(self, method: str, path: str) -> list[InterleavedComment]:
        """Consume the comments armed for this request (a PUT to their ticket)."""
        with self._lock:
            due = [c for c in self._interleaved if c.matches(method, path)]
            self._interleaved = [c for c in self._interleaved if not c.matches(method, path)]
            return due

    def _arm(self, fault: Fault) -> Fault:
        if fault.times is not None and fault.times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), got {fault.times}")
        with self._lock:
            self._faults.append(fault)
        return copy.copy(fault)

    def _consume(self, fault: Fault) -> None:
        if fault.times is None:
            return
        fault.times -= 1
        if fault.times == 0:
            self._faults = [f for f in self._faults if f is not fault]


class ScopedFaults:
    """A view of a ``Faults`` register that arms, lists and clears one service's faults."""

    def __init__(self, faults: Faults, service: ServiceName) -> None:
        self.register = faults
        self.service: ServiceName = service

    def rate_limit(self, method: str, path: PathMatcher, retry_after: int = 2,
                   times: int | None = 1) -> Fault:
        """Answer 429 with Retry-After; the request is not applied."""
        return self.register.rate_limit(method, path, retry_after, times, self.service)

    def server_error(self, method: str, path: PathMatcher, status: int = 503,
                     times: int | None = 1, retry_after: int | None = None,
                     after: int = 0) -> Fault:
        """Answer an error status; the request is not applied."""
        return self.register.server_error(method, path, status, times, retry_after,
                                          self.service, after)

    def apply_then_fail(self, method: str, path: PathMatcher, status: int = 503,
                        times: int | None = 1) -> Fault:
        """Apply the request, then answer a 5xx."""
        return self.register.apply_then_fail(method, path, status, times, self.service)

    def apply_then_drop(self, method: str, path: PathMatcher, times: int | None = 1) -> Fault:
        """Apply the request, then close the connection without any response."""
        return self.register.apply_then_drop(method, path, times, self.service)

    def drop(self, method: str, path: PathMatcher, times: int | None = 1) -> Fault:
        """Close the connection without applying the request or answering."""
        return self.register.drop(method, path, times, self.service)

    def latency(self, method: str, path: PathMatcher, seconds: float,
                times: int | None = 1) -> Fault:
        """Wait ``seconds`` of real time before answering."""
        return self.register.latency(method, path, seconds, times, self.service)

    def pending(self) -> list[Fault | InterleavedComment]:
        """Copies of what is still armed for this service, in firing order."""
        return self.register.pending(self.service)

    def clear(self) -> None:
        """Disarm this service's faults."""
        self.register.clear(self.service)
