"""A cron tick starts fast: importing the CLI loads no integration it may not need."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from automation.clock import FakeClock

# Loaded by the handlers that use them (oncall, page, demo, sandbox serve, report --html), or
# by wiring.py when config.toml switches PagerDuty or Slack on. python-pagerduty runs on httpx2.
LAZY = ("slack_sdk", "pagerduty", "httpx", "httpx2", "automation.sandbox", "automation.demo",
        "automation.chat", "automation.paging", "automation.report_html", "matplotlib",
        "numpy", "gitlab", "automation.gitlab", "automation.runbook")


def imported_modules(statement: str) -> list[str]:
    """The modules a fresh interpreter imports to run `statement`, from `-X importtime`."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                            capture_output=True, text=True, check=True, timeout=60)
    return [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2][1:]


def is_lazy(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in LAZY)


def test_importing_the_cli_loads_no_integration() -> None:
    modules = imported_modules("import automation.cli")

    assert "automation.cli" in modules
    assert [m for m in modules if is_lazy(m)] == []


def test_reading_a_tick_command_line_loads_no_integration() -> None:
    modules = imported_modules("from automation.cli.parser import build_parser; "
                               "build_parser().parse_args(['tick'])")

    assert [m for m in modules if is_lazy(m)] == []


def test_the_check_for_lazy_modules_sees_an_eager_import() -> None:
    modules = imported_modules("import automation.cli; import automation.paging")

    assert "automation.paging" in [m for m in modules if is_lazy(m)]


def tick_modules(tmp_path: Path, sandbox_url: str, token: str) -> list[str]:
    """The modules one `emergency tick` process imports, against the sandbox."""
    config = tmp_path / "config.toml"
    config.write_text(f'[zendesk]\nurl = "{sandbox_url}"\nemail = "automation@example.com"\n'
                      '[workflow]\nbridge_url = "https://bridge.example.com/x"\n'
                      '[state]\npath = "state.sqlite3"\n', encoding="utf-8")
    statement = ("import sys; from automation.cli import run; "
                 f"sys.exit(run(['--config', {str(config)!r}, 'tick']))")
    environ = {**os.environ, "ZENDESK_API_TOKEN": token}
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=environ,
                            capture_output=True, text=True, check=True, timeout=60)
    return [line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2][1:]


def test_an_idle_tick_loads_no_jinja_once_the_state_file_saw_its_templates(
        tmp_path: Path) -> None:
    from automation.sandbox import Sandbox

    with Sandbox(clock=FakeClock()) as sandbox:
        first = tick_modules(tmp_path, sandbox.url, sandbox.token)
        second = tick_modules(tmp_path, sandbox.url, sandbox.token)

    assert "jinja2" in first  # every template rendered once, for every kind of ticket
    assert "jinja2" not in second
    assert "automation.shapes" not in second


# What the other commands need: a tick never loads them.
NOT_FOR_A_TICK = ("automation.cli.serving", "automation.cli.playground",
                  "automation.cli.reporting", "automation.cli.writing", "automation.cli.check",
                  "automation.cli.online", "automation.report", "automation.commands",
                  "automation.service", "automation.server", "starlette", "uvicorn")


def test_a_tick_loads_no_other_commands_modules(tmp_path: Path) -> None:
    from automation.sandbox import Sandbox

    with Sandbox(clock=FakeClock()) as sandbox:
        modules = tick_modules(tmp_path, sandbox.url, sandbox.token)

    assert "automation.worker" in modules
    assert [m for m in modules if m.startswith(NOT_FOR_A_TICK)] == []


def test_changed_templates_are_validated_again(tmp_path: Path) -> None:
    from automation.config import WorkflowConfig
    from automation.errors import TemplateError
    from automation.sandbox import Sandbox, sandbox_config, sandbox_environ
    from automation.wiring import build_worker

    with Sandbox(clock=FakeClock()) as sandbox:
        (tmp_path / "templates").mkdir()
        cfg = replace(sandbox_config(sandbox, None, tmp_path / "state.sqlite3", slack=False,
                                     pagerduty=False,
                                     workflow=WorkflowConfig(bridge_url="https://b/x")),
                      templates_path=tmp_path / "templates")
        environ = sandbox_environ(sandbox)
        build_worker(cfg, FakeClock(), environ).close()
        (tmp_path / "templates" / "follow_up.j2").write_text("{{ no_such_fact.x }}")

        with pytest.raises(TemplateError, match="follow_up"):
            build_worker(cfg, FakeClock(), environ)


def test_a_process_renders_the_templates_once_for_the_same_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from automation import shapes, wiring
    from automation.config import WorkflowConfig
    from automation.sandbox import Sandbox, sandbox_config, sandbox_environ
    from automation.store import Store

    validated: list[int] = []
    validate = shapes.validate
    monkeypatch.setattr(shapes, "validate", lambda templates, cfg: (
        validated.append(cfg.workflow.follow_up_after_minutes), validate(templates, cfg))[1])
    monkeypatch.setattr(wiring, "_validated_here", set())
    with Sandbox(clock=FakeClock()) as sandbox:
        environ = sandbox_environ(sandbox)
        cfg = sandbox_config(sandbox, None, tmp_path / "a.sqlite3", slack=False, pagerduty=False,
                             workflow=WorkflowConfig(bridge_url="https://b/x"))
        for each in (cfg, replace(cfg, state_path=tmp_path / "b.sqlite3"),
                     replace(cfg, workflow=replace(cfg.workflow, follow_up_after_minutes=20))):
            wiring.build_worker(each, FakeClock(), environ).close()

    assert validated == [15, 20]  # the second worker differs only in its state file
    assert Store(tmp_path / "b.sqlite3").recall("templates", [wiring.VALIDATED], wiring.EVER)
