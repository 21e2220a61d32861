"""Time, injected: the worker reads ``now`` once per pass and hands it down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; a test clock moves instead of waiting."""


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that moves only when told (or when something sleeps on it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(timedelta(seconds=max(seconds, 0)))

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than the wall clock.

    ``advance`` jumps ahead at once; ``sleep`` waits the scaled-down wall time.
    Used by the sandbox and the demo so a 30-minute lifecycle plays in seconds.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._start = start or datetime.now(UTC).replace(microsecond=0)
        self._wall_start = time.monotonic()
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._wall_start) * self.speed
        with self._lock:
            return self._start + self._offset + timedelta(seconds=elapsed)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._offset += delta
        return self.now()


class PacedClock:
    """Simulated time that moves only when stepped, paced at ``speed`` times the wall clock.

    Between two ``sleep`` calls it stands still, so what happens in simulated time does not
    depend on how long the machine took to do it: the demo's story plays in the same order on
    a loaded machine. ``sleep`` then waits until the wall clock has caught up with ``speed``
    (not at all when the work in between already took longer); ``advance`` jumps at once.
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], None] = time.sleep) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._now = start or datetime.now(UTC).replace(microsecond=0)
        self._monotonic, self._wait = monotonic, wait
        self._wall_start = monotonic()
        self._slept_seconds = 0.0  # simulated: the wall schedule is this over speed
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._slept_seconds += seconds
            due = self._wall_start + self._slept_seconds / self.speed
        ahead = due - self._monotonic()
        if ahead > 0:
            self._wait(ahead)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class Pause:
    """After a 429, no request to that service leaves before `Retry-After` has passed.

    One per service and shared by every request to it, not only the one that got the 429.
    """

    def __init__(self, clock: Clock, service: str) -> None:
        self.clock = clock
        self.service = service
        self._until: datetime | None = None
        self._lock = threading.Lock()
        self.waits = 0  # how many times a request waited, and for how long in all
        self.waited_seconds = 0.0

    def extend(self, seconds: float) -> datetime:
        """Hold requests `seconds` from now (never shortens a longer hold); the new end."""
        until = self.clock.now() + timedelta(seconds=seconds)
        with self._lock:
            if self._until is None or until > self._until:
                self._until = until
            return self._until

    @property
    def until(self) -> datetime | None:
        with self._lock:
            return self._until

    def remaining(self) -> float:
        until = self.until
        if until is None:
            return 0.0
        return max((until - self.clock.now()).total_seconds(), 0.0)

    def wait(self) -> float:
        """Sleep on the clock until the hold is over; the seconds waited."""
        seconds = self.remaining()
        if seconds > 0:
            log.warning("%s rate limit: waiting %.1f s before the next request", self.service,
                     seconds)
            self.waits += 1
            self.waited_seconds += seconds
            self.clock.sleep(seconds)
        return seconds


class TokenBucket:
    """Writes paced to `per_minute`: a token every 60/per_minute seconds, at most `capacity`
    saved up, so no minute holds more than `per_minute` (+ capacity - 1) of them.

    Waiting is a sleep on the clock. `empty_until` (a 429) spends every token and makes the
    next one wait for the end of the hold, so the budget and `Retry-After` agree.
    """

    def __init__(self, clock: Clock, per_minute: float, capacity: float = 1.0) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.clock = clock
        self.rate = per_minute / 60.0  # tokens a second
        self.capacity = capacity
        self._tokens = capacity
        self._stamp = clock.now()  # tokens are counted up to here; later after a hold
        self._lock = threading.Lock()

    def take(self) -> float:
        """One token, waiting on the clock until it is there; the seconds waited."""
        with self._lock:
            now = self._refill()
            self._tokens -= 1  # reserved: a second writer waits behind this one
            seconds = (self._stamp - now).total_seconds() + max(-self._tokens, 0.0) / self.rate
        if seconds > 0:
            self.clock.sleep(seconds)
        return seconds

    def empty_until(self, until: datetime) -> None:
        """No token before `until`, and none saved up at that moment."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)
            self._stamp = max(self._stamp, until)

    def _refill(self) -> datetime:
        """Count the tokens gained up to now (none during a hold); now."""
        now = self.clock.now()
        if now > self._stamp:
            gained = (now - self._stamp).total_seconds() * self.rate
            self._tokens = min(self.capacity, self._tokens + gained)
            self._stamp = now
        return now
