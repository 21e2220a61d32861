"""`emergency run`: passes on a timer, and a warm stop on SIGTERM."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock, ScaledClock
from automation.config import WorkflowConfig
from automation.errors import Unreachable
from automation.heartbeat import Heartbeat
from automation.sandbox import Account, Sandbox
from automation.service import Service
from automation.worker import PassReport, Worker
from tests.conftest import BRIDGE, emergency_ticket, fill_the_disk, sandbox_worker


def test_run_forever_finishes_the_pass_in_hand_then_stops(worker: Worker, sandbox: Sandbox,
                                                         account: Account) -> None:
    stop = threading.Event()
    passes: list[PassReport] = []
    original = worker.run_once

    def one_pass() -> PassReport:
        report = original()
        passes.append(report)
        stop.set()  # as SIGTERM would, during the pass
        return report

    emergency_ticket(sandbox, account)
    worker.run_once = one_pass  # type: ignore[method-assign]

    worker.run_forever(stop, interval_seconds=3600)

    assert len(passes) == 1
    assert [r.step for r in passes[0].posted] == ["acknowledge"]


def test_sigterm_stops_emergency_run_cleanly(sandbox: Sandbox, account: Account,
                                             tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                      '[workflow]\nbridge_url = "https://b.example/x"\n')
    sandbox.zendesk.create_ticket(account.requester_id, "Down", "Help", priority="urgent")
    sandbox.advance(timedelta(minutes=1))  # the sandbox's clock stands still from here on
    env = {**os.environ, "ZENDESK_API_TOKEN": sandbox.token}
    process = subprocess.Popen(
        [sys.executable, "-c", "from automation.cli import main; main()", "--config",
         str(config), "run", "--interval", "3600"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parent.parent)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # wait for the first step, then ask it to stop
        lines.append(line)
        if "acknowledge posted" in line:
            break
    process.send_signal(signal.SIGTERM)
    lines.extend(process.stderr)  # the rest of the log, until the process closes it
    process.wait(timeout=30)
    process.stderr.close()
    log = "".join(lines)

    assert process.returncode == 0, log
    assert "SIGTERM received: finishing the pass in hand, then stopping" in log
    assert log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_an_unexpected_error_in_a_pass_is_logged_with_its_traceback_and_the_service_goes_on(
        worker: Worker, caplog) -> None:
    stop = threading.Event()
    calls = []

    def failing_pass() -> PassReport:
        calls.append(1)
        if len(calls) == 2:
            stop.set()
        raise RuntimeError("a bug")

    worker.run_once = failing_pass  # type: ignore[method-assign]
    logger = logging.getLogger("automation")  # the CLI may have stopped its propagation
    logger.addHandler(caplog.handler)
    try:
        worker.run_forever(stop, interval_seconds=0)
    finally:
        logger.removeHandler(caplog.handler)

    assert len(calls) == 2
    assert "unexpected error" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_sandbox_serve_is_ready_for_the_cli_by_hand(tmp_path: Path) -> None:
    from automation import cli

    config = tmp_path / "sandbox.toml"
    # At 60 times the wall clock, on both sides: each write's wait for Zendesk's second to
    # pass (2 s, five of them in the first tick) takes a thirtieth of a second.
    clock = ScaledClock(speed=60)
    process = subprocess.Popen(
        [sys.executable, "-c", "from automation.cli import main; main()", "sandbox", "serve",
         "--port", "0", "--speed", "60", "--write-config", str(config)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert process.stdout is not None
    try:
        printed = []
        for line in process.stdout:  # wait until it says it is serving
            printed.append(line)
            if "Ctrl-C stops the sandbox" in line:
                break
        exports = next(line for line in printed if "export ZENDESK_API_TOKEN=" in line)
        environ = dict(pair.split("=", 1) for pair in exports.split()[1:])
        out, err = io.StringIO(), io.StringIO()

        code = cli.run(["--config", str(config), "tick"], out=out, err=err, environ=environ,
                       clock=clock)

        assert code == cli.EXIT_OK, err.getvalue()
        # The seeded emergency is paged at once; its acknowledgement waits for a person,
        # whose part the sandbox's verbs play from another process.
        assert "#1 paged: done" in out.getvalue()
        assert "#1 gitlab-issue: done: Emergency Runbook issue support/emergencies#1 opened" \
            in out.getvalue()
        assert "1 emergency listed, 1 read, 2 posted, 0 failed" in out.getvalue()
        for argv in (["sandbox", "ack", "1"], ["tick"]):
            out = io.StringIO()
            code = cli.run(["--config", str(config), *argv], out=out, err=err, environ=environ,
                           clock=clock)
            assert code == cli.EXIT_OK, err.getvalue()
        assert "#1 acknowledge: posted" in out.getvalue()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()
    assert process.returncode == 0


# The heartbeat ---------------------------------------------------------------------------------


def heartbeat_worker(sandbox: Sandbox, clock: FakeClock, tmp_path: Path, every: int) -> Worker:
    return sandbox_worker(sandbox, None, clock, tmp_path / "state.sqlite3",
                          workflow=WorkflowConfig(bridge_url=BRIDGE, heartbeat_passes=every))


def run_passes(worker: Worker, passes: int, pass_seconds: float = 0,
               failing: frozenset[int] = frozenset()) -> None:
    """`run_forever` for ``passes`` passes, each taking ``pass_seconds`` on the worker's clock;
    the passes numbered in ``failing`` end on an error."""
    stop = threading.Event()
    original = worker.run_once
    count = [0]

    def one_pass() -> PassReport:
        count[0] += 1
        if count[0] == passes:
            stop.set()
        worker.clock.sleep(pass_seconds)
        if count[0] in failing:
            raise Unreachable("Zendesk", "GET", "/api/v2/search.json", None, "connection failed")
        return original()

    worker.run_once = one_pass  # type: ignore[method-assign]
    worker.run_forever(stop, interval_seconds=0)


def heartbeats(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("alive: ")]


@pytest.fixture
def worker_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The worker's INFO lines, once each, whatever an earlier CLI test made of the logger
    (the CLI stops it propagating; left propagating, caplog's own handler saw each twice)."""
    logger = logging.getLogger("automation")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)
    logger.propagate = propagate


def test_run_says_it_is_alive_every_n_passes_with_what_it_tracks(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        worker_log: pytest.LogCaptureFixture) -> None:
    # given two emergencies and a heartbeat every 3 passes
    emergency_ticket(sandbox, account)
    emergency_ticket(sandbox, account, subject="Also down")
    worker = heartbeat_worker(sandbox, clock, tmp_path, every=3)

    # when 7 passes run, each taking 2.5 s, the 5th failing as a whole
    run_passes(worker, 7, pass_seconds=2.5, failing=frozenset({5}))

    # then passes 3 and 6 said so, each with the failures since the one before
    beats = heartbeats(worker_log)
    assert [b.getMessage() for b in beats] == [
        "alive: 3 passes so far, 2 emergencies tracked, last pass took 2.5 s, "
        "0 failures since the last heartbeat",
        "alive: 6 passes so far, 2 emergencies tracked, last pass took 2.5 s, "
        "1 failure since the last heartbeat"]
    assert all(b.levelno == logging.INFO for b in beats)
    assert [(b.passes, b.tracked, b.last_pass_seconds, b.failures)  # type: ignore[attr-defined]
            for b in beats] == [(3, 2, 2.5, 0), (6, 2, 2.5, 1)]


def test_a_failed_step_counts_as_a_failure_in_the_next_heartbeat_only(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        worker_log: pytest.LogCaptureFixture) -> None:
    # given an emergency whose acknowledgement Zendesk refuses once, and a heartbeat every pass
    emergency_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", "/api/v2/tickets/", status=422)
    worker = heartbeat_worker(sandbox, clock, tmp_path, every=1)

    run_passes(worker, 2)

    # then the first heartbeat counts it; the second, after a pass that posted it, does not
    assert [b.failures for b in heartbeats(worker_log)] == [1, 0]  # type: ignore[attr-defined]


@pytest.mark.parametrize("loop", ["run", "serve"])
def test_run_and_serve_say_alike_what_a_pass_did_and_what_failed(
        loop: str, sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path,
        worker_log: pytest.LogCaptureFixture) -> None:
    # given an emergency, a heartbeat every pass, and a state file whose disk is full
    emergency_ticket(sandbox, account)
    worker = heartbeat_worker(sandbox, clock, tmp_path, every=1)
    fill_the_disk(worker.store)

    # when a pass runs, in `run`'s loop or in `serve`'s, then one Zendesk fails as a whole
    one_pass = ((lambda: run_passes(worker, 1)) if loop == "run"
                else Service(worker, clock, poll_seconds=300).step)
    one_pass()
    sandbox.faults.server_error("GET", "/api/v2/search", status=503, times=None)
    clock.advance(timedelta(seconds=300))
    one_pass()

    # then the pass line says what it posted, the failed pass says why, and each heartbeat
    # counts its failures: the unusable state file, then the pass that failed
    lines = [r.getMessage() for r in worker_log.records if r.name == "automation.worker"]
    assert [line for line in lines if line.startswith("pass")] == [
        "pass: 1 listed, 1 read, 1 posted, 0 failed",
        'pass skipped: Zendesk GET /api/v2/search.json: HTTP 503: {"error": '
        '"ServiceUnavailable", "description": "Zendesk is temporarily unavailable. Please try '
        'again later."} (gave up after retrying)']
    assert [b.failures for b in heartbeats(worker_log)] == [1, 1]  # type: ignore[attr-defined]


def test_a_heartbeat_of_zero_passes_never_beats(
        sandbox: Sandbox, clock: FakeClock, tmp_path: Path,
        worker_log: pytest.LogCaptureFixture) -> None:
    worker = heartbeat_worker(sandbox, clock, tmp_path, every=0)

    run_passes(worker, 5)

    assert heartbeats(worker_log) == []


def test_the_heartbeat_reads_the_state_file_only_when_it_beats() -> None:
    heartbeat = Heartbeat(every_passes=4)
    asked: list[int] = []

    beats = [heartbeat.beat(timedelta(seconds=1), 0, lambda: asked.append(1) or 0)
             for _ in range(8)]

    assert beats == [False, False, False, True] * 2
    assert len(asked) == 2


def test_emergency_run_logs_json_lines_with_the_ticket_and_a_heartbeat(
        sandbox: Sandbox, account: Account, tmp_path: Path) -> None:
    # given a config with a heartbeat every pass, and an emergency waiting
    config = tmp_path / "config.toml"
    config.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                      '[workflow]\nbridge_url = "https://b.example/x"\nheartbeat_passes = 1\n')
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, 'Down\n{"level": "ERROR"}',
                                              "Help", priority="urgent")
    sandbox.advance(timedelta(minutes=1))
    env = {**os.environ, "ZENDESK_API_TOKEN": sandbox.token}

    # when `emergency run --log-format json` makes its first pass, then is stopped
    process = subprocess.Popen(
        [sys.executable, "-c", "from automation.cli import main; main()", "run",
         "--interval", "3600", "--config", str(config), "--log-format", "json"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parent.parent)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if '"alive: ' in line:
            break
    process.send_signal(signal.SIGTERM)
    lines.extend(process.stderr)
    process.wait(timeout=30)
    process.stderr.close()

    # then every line is one JSON object; the step and the heartbeat carry their fields
    assert process.returncode == 0, "".join(lines)
    logs = [json.loads(line) for line in lines]
    posted = next(line for line in logs if line["event"].endswith("acknowledge posted (public)"))
    assert (posted["ticket"], posted["step"], posted["level"]) == (
        ticket_id, "acknowledge", "INFO")
    beat = next(line for line in logs if line["event"].startswith("alive: "))
    assert (beat["passes"], beat["tracked"], beat["failures"]) == (1, 1, 0)
    assert logs[-1]["event"] == "stopped" and logs[-1]["time"].endswith("Z")
    assert sandbox.token not in "".join(lines)
