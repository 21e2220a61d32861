"""A long-running worker says it is alive: one INFO line every N passes.

An idle pass logs nothing, so without it a quiet night and a hung worker look the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

log = logging.getLogger(__name__)


@dataclass
class Heartbeat:
    """Counts passes and their failures; every ``every_passes``-th pass logs the line."""

    every_passes: int  # 0: never
    passes: int = 0
    failures: int = 0  # since the last line

    def beat(self, took: timedelta, failures: int, tracked: Callable[[], int]) -> bool:
        """Count one pass (``failures``: its failed steps, or 1 for a pass that failed);
        log the line when it is due. ``tracked`` is asked only then. Whether it logged."""
        self.passes += 1
        self.failures += failures
        if not self.every_passes or self.passes % self.every_passes:
            return False
        count, seconds = tracked(), took.total_seconds()
        log.info("alive: %s so far, %s tracked, last pass took %.1f s, %s since the last "
                 "heartbeat", _counted(self.passes, "pass", "passes"),
                 _counted(count, "emergency", "emergencies"), seconds,
                 _counted(self.failures, "failure", "failures"),
                 extra={"passes": self.passes, "tracked": count,
                        "last_pass_seconds": round(seconds, 3), "failures": self.failures})
        self.failures = 0
        return True


def _counted(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"
