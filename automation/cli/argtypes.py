"""The command line's argument types: each turns one flag's text into a value, or says in
one line what was expected."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

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


SINCE_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1)}


def since(value: str) -> timedelta | datetime:
    """How far back: a span back from now (`30d`, `12h`, `2w`), or a moment (`2026-01-05`,
    midnight UTC, or `2026-01-05T09:00+00:00`)."""
    text = value.strip()
    match = re.fullmatch(r"(\d+)([wdh])", text.lower())
    if match and int(match.group(1)) > 0:
        return int(match.group(1)) * SINCE_UNITS[match.group(2)]
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            "expected how far back, like 30d, 12h or 2w, or a date like 2026-01-05 (UTC) "
            f"or 2026-01-05T09:00+00:00, got {value!r}")
    return parsed


class Scenarios:
    """The demo's scenario names, read from automation.demo (and the sandbox) only when used."""

    def _names(self) -> list[str]:
        from automation.demo import scenario_names

        return scenario_names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())
