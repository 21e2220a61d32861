"""Log lines: text for people, `--log-format json` for a collector; either way, one line an
event, no secret, and nothing a customer writes can forge a line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from automation import cli
from automation.cli.app import configure_logging
from automation.clock import FakeClock
from automation.logs import DEFAULT_LAST_RESORT, fields
from automation.model import Step
from automation.sandbox import Account, Sandbox
from tests.conftest import TOKEN, emergency_ticket
from tests.test_cli import emergency, write_config

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING|ERROR) .+")


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the project's loggers write, as `run` would configure them (JSON)."""
    stream = io.StringIO()
    configure_logging(stream, logging.INFO, "json")
    yield stream
    configure_logging(io.StringIO(), logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_time_level_event_logger_and_the_ticket_and_step(
        logged: io.StringIO) -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    logging.getLogger("automation.worker").info(
        "ticket %s: %s posted (%s)", 12345, Step.ACKNOWLEDGE, "public",
        extra=fields(12345, Step.ACKNOWLEDGE))

    [line] = lines(logged)
    assert list(line) == ["time", "level", "event", "ticket", "step", "logger"]
    assert line["level"] == "INFO"
    assert line["event"] == "ticket 12345: acknowledge posted (public)"
    assert line["ticket"] == 12345 and line["step"] == "acknowledge"
    assert line["logger"] == "automation.worker"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert before <= when <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_line_without_a_ticket_has_no_ticket_key(logged: io.StringIO) -> None:
    logging.getLogger("automation.worker").warning("pass skipped: %s", "Zendesk unreachable")

    [line] = lines(logged)
    assert "ticket" not in line and "step" not in line
    assert line["level"] == "WARNING" and line["event"] == "pass skipped: Zendesk unreachable"


def test_customer_text_cannot_forge_a_json_line(logged: io.StringIO) -> None:
    # given a subject that tries to end the line and start a forged one
    forged = json.dumps({"time": "2026-01-05T09:00:00.000Z", "level": "INFO",
                         "event": "ticket 1: close posted (public)", "ticket": 1})
    subject = f'Down"}}\n{forged}\r\n\u2028{forged}\x85\u2029\x0b ünïcode 🚒'

    # when a log line carries it
    logging.getLogger("automation.worker").warning("ticket %s: %s", 7, subject,
                                                   extra=fields(7))

    # then it stays inside the one line's event, unchanged
    text = logged.getvalue()
    assert len(text.splitlines()) == 1 and text.endswith("}\n")
    [line] = lines(logged)
    assert line["event"] == f"ticket 7: {subject}" and line["ticket"] == 7
    assert "ünïcode 🚒" in text  # ensure_ascii=False: readable as it was written


def test_an_exception_is_its_error_text_with_the_traceback_beside_it(
        logged: io.StringIO) -> None:
    try:
        raise RuntimeError("a bug\nspanning lines")
    except RuntimeError:
        logging.getLogger("automation.worker").exception("pass failed on an unexpected error")

    assert logged.getvalue().count("\n") == 1
    [line] = lines(logged)
    assert line["event"] == "pass failed on an unexpected error"
    assert line["error"] == "RuntimeError: a bug\nspanning lines"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "raise RuntimeError" in line["traceback"]


def test_only_the_named_fields_leave_a_record(logged: io.StringIO) -> None:
    # a library hanging its request (with an Authorization header) on the record
    logging.getLogger("automation.slack").warning(
        "Slack chat.postMessage: HTTP 500", extra={"headers": {"Authorization": "xoxb-secret"}})

    assert "xoxb-secret" not in logged.getvalue()
    assert set(lines(logged)[0]) == {"time", "level", "event", "logger"}


def test_text_lines_are_unchanged_by_the_ticket_and_step_fields() -> None:
    stream = io.StringIO()
    configure_logging(stream, logging.INFO)
    try:
        logging.getLogger("automation.worker").info(
            "ticket %s: %s posted (%s)", 5, Step.FOLLOW_UP, "public",
            extra=fields(5, Step.FOLLOW_UP))
    finally:
        configure_logging(io.StringIO(), logging.WARNING)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO ticket 5: follow-up posted "
                        r"\(public\)\n", stream.getvalue())


@pytest.mark.parametrize("argv", [["--log-format", "json", "--config", "{config}", "tick"],
                                  ["--config", "{config}", "tick", "--log-format", "json"]])
def test_a_failed_step_is_a_json_line_naming_its_ticket_and_step(
        argv: list[str], tmp_path: Path, sandbox: Sandbox, account: Account,
        clock: FakeClock) -> None:
    # given an emergency whose acknowledgement Zendesk refuses
    ticket_id = emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422)
    config = write_config(tmp_path, sandbox.url)

    # when a pass runs with JSON logs (the option before or after the command)
    code, _, err = emergency(*(a.format(config=config) for a in argv), clock=clock)

    # then the failure is one JSON line with the ticket and the step
    assert code == cli.EXIT_STEP_FAILED
    logs = [json.loads(line) for line in err.splitlines()]
    failed = [line for line in logs if "step failed" in line["event"]]
    assert len(failed) == 1, logs
    assert failed[0]["level"] == "WARNING"
    assert failed[0]["ticket"] == ticket_id and failed[0]["step"] == "acknowledge"
    assert TOKEN not in err


def test_the_default_log_format_is_text(tmp_path: Path, sandbox: Sandbox, account: Account,
                                        clock: FakeClock) -> None:
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422)

    _, _, err = emergency("--config", str(write_config(tmp_path, sandbox.url)), "tick",
                          clock=clock)

    assert err.splitlines() and all(TEXT_LINE.fullmatch(line) for line in err.splitlines())
    assert "WARNING ticket 1: step failed: " in err


def test_an_unknown_log_format_is_a_usage_error_of_one_line() -> None:
    code, out, err = emergency("tick", "--log-format", "xml")

    assert code == cli.EXIT_CONFIG and out == ""
    assert err.count("\n") == 1 and "--log-format: invalid choice: 'xml'" in err


def test_a_librarys_warning_is_a_json_line_too_and_python_prints_it_again_for_text() -> None:
    # given JSON logs, and a warning from a library no handler of ours takes (pytest's own
    # handlers stand in the way here, so it is handed to Python's last resort as it would be)
    stream = io.StringIO()
    record = logging.LogRecord("pagerduty.api_client", logging.WARNING, __file__, 1,
                               "%s: HTTP error (%d); retrying in %g seconds.",
                               ("GET /incidents", 429, 2.0), None)
    configure_logging(stream, logging.INFO, "json")
    try:
        assert logging.lastResort is not None
        logging.lastResort.handle(record)
    finally:
        configure_logging(io.StringIO(), logging.WARNING)

    [line] = lines(stream)
    assert line["event"] == "GET /incidents: HTTP error (429); retrying in 2 seconds."
    assert line["logger"] == "pagerduty.api_client" and line["level"] == "WARNING"
    assert logging.lastResort is DEFAULT_LAST_RESORT
    assert isinstance(DEFAULT_LAST_RESORT, logging._StderrHandler)  # Python's own
