"""Zendesk's ticket-update budget, as the sandbox enforces it when asked.

Zendesk limits ticket updates per account (100 a minute) and per ticket (30 per user in 10
minutes), whoever makes them: the worker's API writes and the saves of every agent in the
browser spend the same budget. Past it, an API update is answered 429 with `Retry-After`, and
a person's save is refused. The sandbox counts over a sliding window, the strictest reading.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ACCOUNT_WINDOW = timedelta(minutes=1)
TICKET_WINDOW = timedelta(minutes=10)


class UpdateLimit:
    """The account's and each ticket's budget of updates over their sliding windows."""

    def __init__(self, per_minute: int = 100, per_ticket: int = 30) -> None:
        if per_minute < 1 or per_ticket < 1:
            raise ValueError("update limits must be at least 1")
        self.per_minute = per_minute
        self.per_ticket = per_ticket
        self._account: deque[datetime] = deque()
        self._tickets: dict[tuple[int, int], deque[datetime]] = {}
        self.counted = 0  # updates let through
        self.refused = 0  # updates refused (API and people alike)

    def spend(self, at: datetime, ticket_id: int, user_id: int) -> int | None:
        """Count one update by ``user_id`` on the ticket at ``at``: None when the budget
        allows it, else the whole seconds until it would (as Retry-After says it)."""
        ticket = self._tickets.setdefault((user_id, ticket_id), deque())
        waits = [_wait(self._account, at, ACCOUNT_WINDOW, self.per_minute),
                 _wait(ticket, at, TICKET_WINDOW, self.per_ticket)]
        wait = max(waits)
        if wait > 0:
            self.refused += 1
            return max(math.ceil(wait), 1)
        self._account.append(at)
        ticket.append(at)
        self.counted += 1
        return None


def _wait(window: deque[datetime], at: datetime, length: timedelta, limit: int) -> float:
    """Seconds until ``window`` (times, oldest first) has room for one more at ``at``."""
    while window and window[0] <= at - length:
        window.popleft()
    if len(window) < limit:
        return 0.0
    return (window[len(window) - limit] + length - at).total_seconds()


@dataclass
class PersonSaving:
    """An agent who saves one of ``ticket_ids`` (in turn) every ``every``, in the browser:
    each save spends the account's update budget, and is refused when it is spent."""

    author_id: int
    ticket_ids: tuple[int, ...]
    every: timedelta
    next_at: datetime
    saved: int = 0
    refused_at: list[datetime] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return len(self.refused_at)

    def due(self, now: datetime) -> list[tuple[datetime, int]]:
        """The saves due by ``now`` (when, which ticket), in order; they count as made."""
        found = []
        while self.next_at <= now:
            turn = self.saved + self.refused
            found.append((self.next_at, self.ticket_ids[turn % len(self.ticket_ids)]))
            self.next_at += self.every
            self.saved += 1  # corrected by `refuse` when the budget says no
        return found

    def refuse(self, at: datetime) -> None:
        self.saved -= 1
        self.refused_at.append(at)
