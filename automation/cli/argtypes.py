"""The command line's argument types: each turns one flag's text into a value, or says in
one line what was expected."""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from automation.config import ServerConfig, parse_listen


def positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


MAX_INTERVAL_SECONDS = 3600  # as [workflow] poll_interval_seconds


def interval_seconds(value: str) -> float:
    number = positive_number(value)
    if number > MAX_INTERVAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_INTERVAL_SECONDS} seconds, got {value!r}")
    return number


# A night on call in 4 s: faster scrolls by unread. (The story plays the same at any speed:
# the demo's clock moves only when the demo steps it, see automation.clock.PacedClock.)
MAX_DEMO_SPEED = 600


def demo_speed(value: str) -> float:
    speed = positive_number(value)
    if speed > MAX_DEMO_SPEED:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_DEMO_SPEED}, got {value!r}")
    return speed


def duration_seconds(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value.strip())
    seconds = 0
    if match and value.strip():
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 15m, 90s or 1h30m, "
                                         f"got {value!r}")
    return seconds


def listen_address(value: str) -> ServerConfig:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ticket_number(value: str) -> int:
    try:
        number = int(value.strip().lstrip("#"))
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a ticket number like 12345, got {value!r}")
    return number


def moment(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date and time like 2026-11-28T02:00+00:00, got {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a time zone (e.g. {value}+00:00), "
                                         f"got {value!r}")
    return parsed


def port_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value!r}")
    return number
