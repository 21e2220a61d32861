"""`emergency run`: passes on a timer, and a warm stop on SIGTERM."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from automation.sandbox import Account, Sandbox
from automation.worker import PassReport, Worker
from tests.conftest import emergency_ticket


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
    process = subprocess.Popen(
        [sys.executable, "-c", "from automation.cli import main; main()", "sandbox", "serve",
         "--port", "0", "--write-config", str(config)],
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

        code = cli.run(["--config", str(config), "tick"], out=out, err=err, environ=environ)

        assert code == cli.EXIT_OK, err.getvalue()
        # The seeded emergency is paged at once; its acknowledgement waits for a person,
        # whose part the sandbox's verbs play from another process.
        assert "#1 paged: done" in out.getvalue()
        assert "1 emergency listed, 1 read, 1 posted, 0 failed" in out.getvalue()
        for argv in (["sandbox", "ack", "1"], ["tick"]):
            out = io.StringIO()
            code = cli.run(["--config", str(config), *argv], out=out, err=err, environ=environ)
            assert code == cli.EXIT_OK, err.getvalue()
        assert "#1 acknowledge: posted" in out.getvalue()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()
    assert process.returncode == 0
