"""`emergency report` end to end: a scripted week of emergencies in the sandbox, played by the
worker's passes and by people, and the report's figures against the ones computed by hand."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automation import cli
from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from tests.conftest import make_worker


def on(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """January `day`, 2026, in UTC (the 5th is a Monday, when the sandbox's clock starts)."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


class Week:
    """The sandbox's clock, people and the worker, moved forward one moment at a time."""

    def __init__(self, sandbox: Sandbox, account: Account, clock: FakeClock, state: Path):
        self.sandbox, self.account, self.clock = sandbox, account, clock
        self.zendesk = sandbox.zendesk
        self.worker = make_worker(sandbox, clock, state)
        self.globex = self.zendesk.add_organization("Globex Inc")
        self.sam = self.zendesk.add_user("Sam Okafor", "sam@globex.example.com", "end-user",
                                         self.globex)

    def at(self, moment: datetime) -> None:
        assert moment >= self.clock.now(), f"{moment} is in the past"
        self.clock.advance(moment - self.clock.now())

    def passes(self, *moments: datetime) -> None:
        for moment in moments:
            self.at(moment)
            report = self.worker.run_once()
            assert report.ok, report

    def ticket(self, moment: datetime, subject: str, priority: str = "urgent",
               requester: int | None = None, organization: int | None = None) -> int:
        self.at(moment)
        return self.zendesk.create_ticket(
            requester or self.account.requester_id, subject, "Everything is down!",
            priority=priority, organization_id=organization or self.account.organization_id)

    def says(self, moment: datetime, ticket_id: int, author: int, public: bool = True) -> None:
        self.at(moment)
        self.zendesk.add_comment(ticket_id, author, "On it.", public=public)

    def priority(self, moment: datetime, ticket_id: int, priority: str) -> None:
        self.at(moment)
        self.zendesk.set_priority(ticket_id, priority, author_id=self.account.agent_id)


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[zendesk]\nurl = "{sandbox.url}"\nemail = "{sandbox.email}"\n'
                    '[workflow]\nbridge_url = "https://bridge.example.com/x"\n'
                    '[state]\npath = "report-state.sqlite3"\n')
    return str(path)


def emergency(sandbox: Sandbox, clock: FakeClock, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(list(argv), out=out, err=err, clock=clock,
                   environ={"ZENDESK_API_TOKEN": sandbox.token})
    return code, out.getvalue(), err.getvalue()


def play_the_week(sandbox: Sandbox, account: Account, clock: FakeClock,
                  state: Path) -> dict[str, int]:
    week = Week(sandbox, account, clock, state)
    customer, francesca, ravi = account.requester_id, account.agent_id, account.second_agent_id
    t: dict[str, int] = {}
    # Before the window (09:30 on Monday): raised at 09:00, stepped down at 09:31. Its last
    # steps fall in the window, so the search finds it; the report leaves it out.
    t["early"] = week.ticket(on(5, 9, 0), "Before the window")
    week.passes(on(5, 9, 1), on(5, 9, 16), on(5, 9, 31))
    # A: the team acknowledges after 3 minutes; the customer never answers: follow-up, HIGH.
    t["a"] = week.ticket(on(5, 10, 0), "Every git push fails with 502")
    week.passes(on(5, 10, 3), on(5, 10, 18), on(5, 10, 33))
    # Not an emergency: a normal ticket with a reply, updated in the window.
    t["normal"] = week.ticket(on(5, 12, 0), "A question", priority="normal")
    week.says(on(5, 12, 5), t["normal"], francesca)
    # B: Francesca answers after 6 minutes, the customer 10 minutes later.
    t["b"] = week.ticket(on(6, 10, 0), "Pushes fail <script>alert(1)</script>")
    week.says(on(6, 10, 6), t["b"], francesca)
    week.passes(on(6, 10, 7))
    week.says(on(6, 10, 16), t["b"], customer)
    # C (Globex): Ravi's reply before the raise to urgent is no contact; the team acknowledges
    # 12 minutes after the raise, follows up, and the customer answers 23 minutes after contact.
    t["c"] = week.ticket(on(7, 13, 0), "Runners stuck", priority="normal", requester=week.sam,
                         organization=week.globex)
    week.says(on(7, 13, 10), t["c"], ravi)
    week.priority(on(7, 14, 0), t["c"], "urgent")
    week.passes(on(7, 14, 12), on(7, 14, 27))
    week.says(on(7, 14, 35), t["c"], week.sam)
    # D, twice urgent. Thursday: a ticket merged into it (a public system note: no contact),
    # the team after 5 minutes, the customer 3 minutes later; lowered to high by hand.
    t["d"] = week.ticket(on(8, 9, 0), "Geo replication stopped")
    duplicate = week.ticket(on(8, 9, 0, 30), "Same problem", priority="normal")
    week.at(on(8, 9, 1))
    sandbox.zendesk.merge(t["d"], [duplicate], francesca, target_comment="Merged #dup",
                          target_public=True)
    week.passes(on(8, 9, 5))
    week.says(on(8, 9, 8), t["d"], customer)
    week.passes(on(8, 9, 30))
    week.priority(on(8, 10, 0), t["d"], "high")
    # Friday, urgent again: a new emergency. Ravi after 20 minutes; silence: follow-up, HIGH.
    week.priority(on(9, 11, 0), t["d"], "urgent")
    week.says(on(9, 11, 20), t["d"], ravi)
    week.passes(on(9, 11, 21), on(9, 11, 35), on(9, 11, 50))
    # F: the next Monday, a minute before the report, nobody has made contact yet.
    t["f"] = week.ticket(on(12, 9, 29), "Registry is read-only")
    week.at(on(12, 9, 30))
    week.worker.close()
    return t


def test_the_reports_figures_for_a_scripted_week_match_those_computed_by_hand(
        sandbox: Sandbox, account: Account, clock: FakeClock, config: str,
        tmp_path: Path) -> None:
    state = tmp_path / "worker-state.sqlite3"
    t = play_the_week(sandbox, account, clock, state)
    state.unlink()  # the record is Zendesk's: losing the worker's state file loses nothing

    code, out, err = emergency(sandbox, clock, "--config", config, "report", "--since", "7d",
                               "--json")

    assert code == cli.EXIT_OK, err
    report = json.loads(out)
    assert (report["since"], report["until"]) == ("2026-01-05T09:30:00Z", "2026-01-12T09:30:00Z")
    minute = 60
    rows = [(e["ticket_id"], e["urgent_at"], e["time_to_contact_seconds"], e["contact_by"],
             e["answered"], e["answered_within_15_minutes"], e["followed_up"],
             e["stepped_down"]) for e in report["emergencies"]]
    team = "the team (fallback)"
    assert rows == [
        (t["a"], "2026-01-05T10:00:00Z", 3 * minute, team, False, False, True, True),
        (t["b"], "2026-01-06T10:00:00Z", 6 * minute, "Francesca Rossi", True, True, False,
         False),
        (t["c"], "2026-01-07T14:00:00Z", 12 * minute, team, True, False, True, False),
        (t["d"], "2026-01-08T09:00:00Z", 5 * minute, team, True, True, False, False),
        (t["d"], "2026-01-09T11:00:00Z", 20 * minute, "Ravi Patel", False, False, True, True),
        (t["f"], "2026-01-12T09:29:00Z", None, None, False, False, False, False),
    ]
    assert [e["lowered_to"] for e in report["emergencies"]] == [
        "high", None, None, "high", "high", None]

    def figures(group: dict[str, Any]) -> tuple[Any, ...]:
        return (group["label"], group["emergencies"], group["contacted"],
                group["time_to_contact_p50_seconds"], group["time_to_contact_p90_seconds"],
                group["share_stepped_down"], group["share_answered_within_15_minutes"])

    # By hand, nearest rank. All: contacts after 3, 5, 6, 12, 20 min: p50 the 3rd (6 min),
    # p90 the 5th (20); stepped down A and D's second: 2 of 6; answered within 15 min: B and
    # D's first, 2 of the 5 contacted.
    assert figures(report["overall"]) == (
        "all emergencies", 6, 5, 6 * minute, 20 * minute, 2 / 6, 2 / 5)
    assert [figures(f) for f in report["by_week"]] == [
        ("2026-W02", 5, 5, 6 * minute, 20 * minute, 2 / 5, 2 / 5),
        ("2026-W03", 1, 0, None, None, 0.0, None)]
    # Acme: 3, 5, 6, 20 min: p50 the 2nd (5), p90 the 4th (20).
    assert [figures(f) for f in report["by_organization"]] == [
        ("Acme Corp", 5, 4, 5 * minute, 20 * minute, 2 / 5, 2 / 4),
        ("Globex Inc", 1, 1, 12 * minute, 12 * minute, 0.0, 0.0)]
    # The team: 3, 5, 12 min: p50 the 2nd (5), p90 the 3rd (12).
    assert [figures(f) for f in report["by_engineer"]] == [
        (team, 3, 3, 5 * minute, 12 * minute, 1 / 3, 1 / 3),
        ("(no contact yet)", 1, 0, None, None, 0.0, None),
        ("Francesca Rossi", 1, 1, 6 * minute, 6 * minute, 0.0, 1.0),
        ("Ravi Patel", 1, 1, 20 * minute, 20 * minute, 1.0, 0.0)]


def test_the_report_as_a_table_and_as_an_html_page_with_its_charts(
        sandbox: Sandbox, account: Account, clock: FakeClock, config: str,
        tmp_path: Path) -> None:
    t = play_the_week(sandbox, account, clock, tmp_path / "worker-state.sqlite3")
    page = tmp_path / "report.html"

    code, out, err = emergency(sandbox, clock, "--config", config, "report", "--since",
                               "2026-01-05T09:30+00:00", "--html", str(page))

    assert code == cli.EXIT_OK, err
    lines = out.splitlines()
    assert lines[0] == ("Emergencies raised from 2026-01-05 09:30 to 2026-01-12 09:30 UTC "
                        "(Zendesk's audits): 6")
    assert any(line.startswith(f"#{t['b']}") and "6 min" in line and "Francesca Rossi" in line
               and "within 15" in line for line in lines)
    assert any(line.startswith("all emergencies") and "6 min" in line and "20 min" in line
               and "33%" in line and "40%" in line for line in lines)
    # The table fits 100 columns (the line naming the page is as long as its path).
    assert max(len(line) for line in lines if str(page) not in line) <= 100
    assert f"HTML report written to {page}" in out
    html = page.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2  # distribution and weekly trend
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert 'href="http' in html and f"#{t['f']}</a>" in html


def test_the_since_flag_says_what_it_expects(sandbox: Sandbox, clock: FakeClock,
                                             config: str) -> None:
    code, out, err = emergency(sandbox, clock, "--config", config, "report", "--since", "soon")

    assert code == cli.EXIT_CONFIG
    assert "expected how far back, like 30d" in err and out == ""


def test_html_without_matplotlib_says_in_one_line_how_to_install_it(
        sandbox: Sandbox, clock: FakeClock, config: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    page = tmp_path / "report.html"

    code, out, err = emergency(sandbox, clock, "--config", config, "report", "--html",
                               str(page))

    assert code == cli.EXIT_CONFIG and out == "" and not page.exists()
    assert err == ("error: the HTML report draws its charts with matplotlib, which is not "
                   "installed: pip install 'emergency-automation[report]'\n")
    assert sandbox.request_bodies("GET", r"/api/v2/search.*") == []  # nothing read first
