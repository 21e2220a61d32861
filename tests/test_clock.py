"""PacedClock: simulated time that moves only when stepped, paced by the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automation.clock import PacedClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Wall:
    """A wall clock the test moves: `work` is time the machine spent between two sleeps."""

    def __init__(self) -> None:
        self.seconds = 100.0
        self.waited: list[float] = []

    def monotonic(self) -> float:
        return self.seconds

    def wait(self, seconds: float) -> None:
        self.waited.append(seconds)
        self.seconds += seconds

    def work(self, seconds: float) -> None:
        self.seconds += seconds


def test_paced_clock_stands_still_however_long_the_machine_works() -> None:
    wall = Wall()
    clock = PacedClock(START, speed=600, monotonic=wall.monotonic, wait=wall.wait)

    wall.work(3.0)  # half an hour of simulated time on a free-running clock

    assert clock.now() == START


def test_paced_clock_sleep_waits_only_the_wall_time_its_schedule_has_left() -> None:
    wall = Wall()
    clock = PacedClock(START, speed=60, monotonic=wall.monotonic, wait=wall.wait)

    clock.sleep(60)  # one simulated minute: one wall second at 60x
    wall.work(0.4)
    clock.sleep(60)  # the work took 0.4 s of this minute's second
    wall.work(5.0)
    clock.sleep(60)  # behind schedule: no wait, the story goes on at once

    assert wall.waited == pytest.approx([1.0, 0.6])
    assert clock.now() == START + timedelta(minutes=3)


def test_paced_clock_advance_jumps_without_waiting() -> None:
    wall = Wall()
    clock = PacedClock(START, speed=60, monotonic=wall.monotonic, wait=wall.wait)

    clock.advance(timedelta(minutes=10))
    clock.sleep(60)

    assert clock.now() == START + timedelta(minutes=11)
    assert wall.waited == [1.0]  # a jump is not paced
