"""`emergency demo` plays each story to its end and checks it against the runbook."""

from __future__ import annotations

import io

import pytest

from automation.clock import FakeClock
from automation.demo import CONTINUED, SCENARIOS, START, run_demo


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_demo_scenario_ends_as_the_runbook_says(scenario: str) -> None:
    out = io.StringIO()

    code = run_demo(out, scenario, clock=FakeClock(START))

    text = out.getvalue()
    assert code == 0, text
    assert "Every message was posted exactly once, on time." in text
    assert "slack thread" in text and "slack channel" in text
    assert max(len(line) for line in text.splitlines()) <= 100  # fits a terminal
    ended = [line.split()[0] for line in text.split("Where each emergency ended:")[1]
             .splitlines() if line.startswith("  #")]
    assert ended == sorted(ended, key=lambda t: int(t[1:]))  # in ticket order


def test_busy_oncall_demo_shows_the_manager_being_paged() -> None:
    out = io.StringIO()

    run_demo(out, "busy-oncall", clock=FakeClock(START))

    lines = out.getvalue().replace("\n" + CONTINUED, " ").splitlines()  # unwrapped
    assert any("pagerduty    manager-paged:" in line for line in lines)
    assert any("Support Manager paged" in line and "slack thread" in line for line in lines)
    assert any("Ravi Patel acknowledges the page" in line for line in lines)
