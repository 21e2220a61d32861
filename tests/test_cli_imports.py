"""A cron tick starts fast: importing the CLI loads no integration it may not need."""

from __future__ import annotations

import subprocess
import sys

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
