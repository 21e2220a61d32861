"""How log lines look: the human text line, or one JSON object per line for a log collector.

A log call that knows its ticket and step says so with
``extra={"ticket": ticket_id, "step": step}``; the text line is unchanged by it, the JSON
object carries them as keys. Only the fields named here ever leave a record, so nothing a
library hangs on it (a request, a header) can end up in the log.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
TEXT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Characters that end a line for some readers and that json.dumps leaves as they are (they
# occur only inside strings, where their \u escape means the same).
LINE_BREAKERS = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))

# The `extra=` keys a JSON line carries when the log call gives them.
FIELDS = ("ticket", "step", "service", "passes", "tracked", "last_pass_seconds", "failures")


def text_formatter() -> logging.Formatter:
    """`2026-01-05T09:00:00Z INFO ticket 12345: acknowledge posted (public)`, in UTC."""
    formatter = logging.Formatter(TEXT_FORMAT, datefmt=TEXT_TIME_FORMAT)
    formatter.converter = time.gmtime  # log times in UTC, and say so
    return formatter


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, with Z), `level`, `event`, `logger`, then
    `ticket`, `step` and the like when the call gave them, and `error` and `traceback` for an
    exception. A line break in the message (customer text, an upstream error) is escaped, so
    it can never start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "event": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value if isinstance(value, int | float | bool) else str(value)
        line["logger"] = record.name
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error"] = f"{type(exc).__name__}: {exc}"
            line["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        # json.dumps escapes every control character but these, which some readers (Python's
        # splitlines, older JavaScript) take for line ends: escaped, they stay inside the line.
        for breaker, escaped in LINE_BREAKERS:
            text = text.replace(breaker, escaped)
        return text


def utc_time(created: float) -> str:
    """`2026-01-05T09:00:00.123Z`: milliseconds, so lines of one second keep their order."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of `--log-format` (`text` or `json`)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return text_formatter()
    raise ValueError(f"log format: expected one of {', '.join(LOG_FORMATS)}, got {log_format!r}")


# What prints a record no handler takes: a library's warning (PagerDuty's client retrying), as
# Python prints it, its bare message on stderr.
DEFAULT_LAST_RESORT = logging.lastResort


def last_resort(stream: TextIO, log_format: str) -> logging.Handler | None:
    """Python's own for text; for JSON, a library's warning is a JSON line like ours (a bare
    line would be the one line of the log that is no JSON)."""
    if log_format != "json":
        return DEFAULT_LAST_RESORT
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(JsonFormatter())
    return handler


def fields(ticket: int | None, step: object = None) -> dict[str, object]:
    """`extra=` for a log call about a ticket and, when known, its step."""
    extra: dict[str, object] = {"ticket": ticket}
    if step is not None and str(step) not in ("", "-"):
        extra["step"] = str(step)
    return extra
