"""`emergency demo` plays each story to its end and checks it against the runbook."""

from __future__ import annotations

import functools
import io
import random
from dataclasses import replace
from pathlib import Path

import pytest

from automation.clock import FakeClock, PacedClock
from automation.demo import (
    CONTINUED,
    LENGTH,
    POLL,
    SCENARIOS,
    START,
    Expectation,
    run_demo,
)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_demo_scenario_ends_as_the_runbook_says(scenario: str) -> None:
    out = io.StringIO()

    code = run_demo(out, scenario, clock=FakeClock(START))

    text = out.getvalue()
    assert code == 0, text
    assert "Every message was posted exactly once, on time." in text
    assert "slack thread" in text and "slack channel" in text
    # Francesca, on the FRT shift, takes the silent customer's page: she hands FRT over once
    assert text.count("FRT hand-over for emergency") == (scenario != "replies")
    assert max(len(line) for line in text.splitlines()) <= 100  # fits a terminal
    ended = [line.split()[0] for line in text.split("Where each emergency ended:")[1]
             .splitlines() if line.startswith("  #")]
    assert ended == sorted(ended, key=lambda t: int(t[1:]))  # in ticket order
    unwrapped = text.replace("\n" + CONTINUED, " ")
    assert unwrapped.index("ASE") == unwrapped.index("ASE (Assigned Support Engineer")


def test_busy_oncall_demo_shows_the_manager_being_paged() -> None:
    out = io.StringIO()

    run_demo(out, "busy-oncall", clock=FakeClock(START))

    lines = out.getvalue().replace("\n" + CONTINUED, " ").splitlines()  # unwrapped
    assert any("pagerduty    manager-paged:" in line for line in lines)
    assert any("Support Manager paged" in line and "slack thread" in line for line in lines)
    assert any("Ravi Patel acknowledges the page" in line for line in lines)


def test_the_demo_writes_the_report_of_the_night_it_played(tmp_path: Path) -> None:
    out = io.StringIO()
    page = tmp_path / "night.html"

    code = run_demo(out, "all", clock=FakeClock(START), report=page)

    text = out.getvalue().replace("\n" + CONTINUED, " ")
    assert code == 0, text
    # By hand: #2 contacted after 3 min (Francesca), the Globex ticket after 5 (Ravi), the
    # third after 20 min 30 s (the team's fallback): p50 the 2nd, p90 the 3rd.
    assert ("The night's report: 3 emergencies, time to contact p50 5 min, p90 20 min 30 s; "
            f"written to {page}") in text
    assert max(len(line) for line in out.getvalue().splitlines()) <= 100
    html = page.read_text(encoding="utf-8")
    for who in ("Francesca Rossi", "Ravi Patel", "the team (fallback)"):
        assert who in html
    assert html.count('src="data:image/png;base64,') == 2


class LoadedMachine:
    """A wall clock on a busy machine: each reading finds `cost` seconds and up to `jitter`
    more gone since the last one."""

    def __init__(self, cost: float = 0.0, jitter: float = 0.0, seed: int = 0) -> None:
        self.cost, self.jitter = cost, jitter
        self.random = random.Random(seed)
        self.seconds = 0.0
        self.waited = 0.0
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        self.seconds += self.cost + self.random.uniform(0, self.jitter)
        return self.seconds

    def wait(self, seconds: float) -> None:
        self.waited += seconds
        self.seconds += seconds


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_at_top_speed_plays_the_same_story_on_a_loaded_machine(seed: int) -> None:
    # Given a machine where the work between two steps takes up to 2 s of wall time
    # (20 simulated minutes at 600x, had simulated time run on while the machine worked)
    machine = LoadedMachine(jitter=2.0, seed=seed)
    clock = PacedClock(START, speed=600, monotonic=machine.monotonic, wait=machine.wait)

    # When the demo plays at 600x on it
    out = io.StringIO()
    code = run_demo(out, "all", speed=600, clock=clock)

    # Then it ends as the runbook says, with the very timeline of a machine with no load
    assert code == 0, out.getvalue()
    assert out.getvalue() == unhurried_timeline()


@functools.cache
def unhurried_timeline() -> str:
    """The demo at 600x on a machine with no load (a fake clock): the same for every seed."""
    out = io.StringIO()
    run_demo(out, "all", speed=600, clock=FakeClock(START))
    return out.getvalue()


def test_demo_takes_its_length_over_speed_when_each_step_costs_wall_time() -> None:
    # Given a machine where the work between two steps takes 20 ms (12 simulated s at 600x)
    machine = LoadedMachine(cost=0.02)
    clock = PacedClock(START, speed=600, monotonic=machine.monotonic, wait=machine.wait)

    # When the demo plays at 600x
    code = run_demo(io.StringIO(), "all", speed=600, clock=clock)

    # Then the work is done in the time the schedule gives it, not added to it
    assert code == 0
    last_pass = (LENGTH - POLL).total_seconds() / 600
    assert machine.readings * machine.cost > 1.0  # what the work would add
    assert last_pass <= machine.seconds < last_pass + 0.2


def test_a_demo_that_fails_says_what_was_expected_and_what_happened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a story whose check expects Ravi to take a page nobody takes
    replies = SCENARIOS["replies"]
    wrong = Expectation("replies", 1, "urgent", replies.expectations[0].state, "ravi",
                        manager_paged=True)
    monkeypatch.setitem(SCENARIOS, "replies", replace(replies, expectations=[wrong]))

    # When it plays
    out = io.StringIO()
    code = run_demo(out, "replies", clock=FakeClock(START))

    # Then it fails, naming each difference with what the runbook expected and what happened
    text = out.getvalue()
    assert code == 1
    assert "acknowledged by team" in text and "UNEXPECTED" in text
    assert f"{CONTINUED}acknowledged by: expected ravi, got team\n" in text
    assert f"{CONTINUED}Support Manager pages: expected 1, got 0\n" in text
    assert "state:" not in text and "priority:" not in text  # what held is not listed
    assert "1 emergency did not end as the runbook says" in text


def test_a_demo_whose_ticket_is_never_filed_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a story whose customer would file the ticket after the night is over
    replies = SCENARIOS["replies"]
    late = [(LENGTH.total_seconds() / 60 + 1, act) for _, act in replies.events]
    monkeypatch.setitem(SCENARIOS, "replies", replace(replies, events=late))

    # When it plays
    out = io.StringIO()
    code = run_demo(out, "replies", clock=FakeClock(START))

    # Then it fails and says which ticket never came, instead of stopping on an error
    assert code == 1
    assert "the replies customer's ticket was never filed: the night ended first" in \
        out.getvalue()
