"""Carries out a pass's PagerDuty and Slack work, each service under its own error policy.

Each service has a time budget per pass, measured on the injected clock (retries and
rate-limit waits included). A service that fails (down, refusing our token, out of budget) is
skipped for the rest of the pass: its work waits, journalled, for the next pass. So one
service being down never delays another service's work, nor any customer's Zendesk step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from automation.clock import Clock
from automation.errors import (
    CredentialsRejected,
    NotFound,
    Rejected,
    UpstreamError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a service may spend per pass; per call (its retries and rate-limit waits: a service
# that is down is known within seconds, and left alone for the rest of the pass); and per call
# at the start of a pass (its facts: the customers' Zendesk steps wait for them).
PASS_BUDGET_SECONDS = 20.0
CALL_BUDGET_SECONDS = 5.0
FACTS_BUDGET_SECONDS = 2.0


class Bounded(Protocol):
    """An adapter whose calls wait out retries at most ``max_retry_seconds``."""

    max_retry_seconds: float


@dataclass
class ServiceState:
    """One service's standing in this pass."""

    name: str
    adapter: Bounded
    budget_seconds: float
    spent_seconds: float = 0.0
    down: UpstreamError | None = None  # why it is skipped for the rest of the pass


@dataclass
class Trouble:
    """A service's failure in this pass, as the pass reports it."""

    service: str
    ticket_id: int
    what: str
    error: UpstreamError


@dataclass
class Executor:
    """Runs calls to the optional services; remembers which one failed this pass."""

    clock: Clock
    services: dict[str, ServiceState] = field(default_factory=dict)
    troubles: list[Trouble] = field(default_factory=list)

    def add(self, name: str, adapter: Bounded,
            budget_seconds: float = PASS_BUDGET_SECONDS) -> None:
        self.services[name] = ServiceState(name, adapter, budget_seconds)

    def up(self, name: str) -> bool:
        state = self.services.get(name)
        return state is not None and state.down is None

    def down(self, name: str) -> UpstreamError | None:
        state = self.services.get(name)
        return state.down if state is not None else None

    def call(self, name: str, ticket_id: int, what: str, work: Callable[[], T],
             limit_seconds: float | None = None) -> tuple[bool, T | None]:
        """Run ``work`` (which talks to service ``name``) unless that service is down.

        Returns (True, result) when it ran to the end, (False, None) when it was skipped or
        failed; a failure of that service marks it down for the rest of the pass. An error
        from another service (Zendesk, recording what was done) fails only this piece.
        """
        state = self.services[name]
        if state.down is not None:
            return False, None
        left = state.budget_seconds - state.spent_seconds
        started = self.clock.now()
        configured = state.adapter.max_retry_seconds
        state.adapter.max_retry_seconds = max(0.0, min(
            configured, left, CALL_BUDGET_SECONDS if limit_seconds is None else limit_seconds))
        try:
            return True, work()
        except UpstreamError as exc:
            self._failed(state, ticket_id, what, exc)
            return False, None
        finally:
            state.adapter.max_retry_seconds = configured
            self._spend(state, started)

    def _failed(self, state: ServiceState, ticket_id: int, what: str,
                exc: UpstreamError) -> None:
        self.troubles.append(Trouble(state.name, ticket_id, what, exc))
        if exc.service != state.name:
            log.warning("ticket %s: %s not recorded: %s", ticket_id, what, exc,
                        extra={"ticket": ticket_id or None, "service": exc.service})
            return
        if isinstance(exc, NotFound | Rejected):
            # The service answered and refused this one request (an archived channel, a line
            # too long): this ticket's work waits; the others' goes on.
            log.warning("ticket %s: %s refused: %s", ticket_id, what, exc,
                        extra={"ticket": ticket_id or None, "service": state.name})
            return
        state.down = exc
        if not isinstance(exc, CredentialsRejected):
            log.warning("%s unavailable: %s; its work waits for the next pass", state.name, exc,
                        extra={"service": state.name})

    def _spend(self, state: ServiceState, started: datetime) -> None:
        state.spent_seconds += max((self.clock.now() - started).total_seconds(), 0.0)
        if state.down is None and state.spent_seconds >= state.budget_seconds:
            state.down = UpstreamError(state.name, "-", "-", None,
                                       f"spent its {state.budget_seconds:g} s budget this pass")
            log.warning("%s: %s; the rest waits for the next pass", state.name, state.down,
                        extra={"service": state.name})
