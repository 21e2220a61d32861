"""The Emergency Runbook issue decided from the ticket's facts (pure), and `[gitlab]` read
from config.toml with one line per mistake."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from automation.config import GitLabConfig, WorkflowConfig, gitlab_token, parse
from automation.errors import ConfigError
from automation.model import (
    ISSUE_STAMP,
    Assessment,
    Episode,
    Organization,
    Person,
    Snapshot,
    Stamp,
    State,
    Ticket,
)
from automation.runbook import Close, Open, Record, content, decide, marker, text
from automation.store import IssueRow

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
VALID: dict[str, Any] = {
    "zendesk": {"url": "https://acme.zendesk.com", "email": "bot@acme.example"},
    "workflow": {"bridge_url": "https://zoom.example.com/j/123"},
    "gitlab": {"url": "https://gitlab.example.com", "project": "support/emergencies",
               "template": "Emergency Runbook", "labels": ["emergency"]},
}
CONFIG = GitLabConfig(url="https://gitlab.example.com", project="support/emergencies",
                      template="Emergency Runbook", labels=("emergency",))
SETTINGS = WorkflowConfig(bridge_url="https://bridge.example.com/team",
                          bridges={"fr@example.com": "https://bridge.example.com/fr"})


def with_gitlab(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["gitlab"].update(changes)
    return data


def test_gitlab_section_is_read_with_its_labels() -> None:
    cfg = parse(VALID, Path("config.toml"))

    assert cfg.gitlab == CONFIG


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"url": "http://gitlab.example.com"}, "[gitlab] url: expected an https:// URL"),
    ({"project": "emergencies"}, "[gitlab] project: expected the project's path"),
    ({"template": ""}, "[gitlab] template: expected a non-empty string"),
    ({"labels": ["a,b"]}, "[gitlab] labels: expected label names without commas"),
    ({"labels": "emergency"}, "[gitlab] labels: expected a list of str"),
    ({"token": "glpat-x"}, "set the GITLAB_TOKEN environment variable instead"),
])
def test_a_bad_gitlab_section_is_one_line_naming_the_key(changes: dict[str, Any],
                                                         complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_gitlab(**changes), Path("config.toml"))

    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_token_comes_from_the_environment_only() -> None:
    with pytest.raises(ConfigError, match="GITLAB_TOKEN is not set"):
        gitlab_token({})
    assert gitlab_token({"GITLAB_TOKEN": " glpat-x "}) == "glpat-x"


def snapshot(stamps: tuple[Stamp, ...] = (), subject: str = "Production down") -> Snapshot:
    ticket = Ticket(id=42, subject=subject, status="open", priority="urgent", tags=(),
                    requester_id=7, organization_id=3, created_at=NOW, updated_at=NOW,
                    updated_stamp="2026-01-05T09:00:00Z")
    return Snapshot(ticket=ticket, comments=(),
                    people={7: Person(7, "Jordan Lee", "jordan@acme.example", "end-user"),
                            9: Person(9, "Francesca Rossi", "fr@example.com", "agent")},
                    organization=Organization(3, "Acme Corp"), me=1,
                    episode=Episode(500, NOW), stamps=stamps)


def assessment(state: State, contact_by: int | None = None) -> Assessment:
    return Assessment(ticket_id=42, state=state, next_step=None, due_at=None,
                      contact_by=contact_by)


def stamp(step: str, episode: int = 500, **detail: str) -> Stamp:
    return Stamp(step, episode, 900, NOW, detail)


def wanted(snap: Snapshot) -> Any:
    return content(snap, CONFIG, SETTINGS, "https://acme.zendesk.com/agent/tickets/42", None)


def test_a_new_emergency_without_an_issue_opens_one() -> None:
    snap = snapshot()

    assert decide(snap, assessment(State.NEW), None, wanted(snap)) == [Open(wanted(snap))]


def test_an_issue_recorded_on_the_ticket_is_never_opened_again() -> None:
    snap = snapshot((stamp(ISSUE_STAMP, iid="3", url="https://g/3"),))

    assert decide(snap, assessment(State.AWAITING_CUSTOMER), None, wanted(snap)) == []


def test_an_issue_of_an_earlier_emergency_does_not_count() -> None:
    snap = snapshot((stamp(ISSUE_STAMP, episode=100, iid="3", url="https://g/3"),))

    assert decide(snap, assessment(State.NEW), None, wanted(snap)) == [Open(wanted(snap))]


def test_an_issue_this_worker_made_but_did_not_record_is_recorded() -> None:
    snap = snapshot()
    ours = IssueRow(42, 500, 3, "https://g/3", False, None, False)

    [intent] = decide(snap, assessment(State.NEW), ours, wanted(snap))

    assert isinstance(intent, Record) and intent.issue.iid == 3


@pytest.mark.parametrize(("stamps", "state"), [
    ((), State.CLOSED_TO_HIGH),
    ((stamp("post-call"),), State.ENGAGED),
])
def test_the_issue_is_closed_when_the_emergency_ends(stamps: tuple[Stamp, ...],
                                                     state: State) -> None:
    snap = snapshot((stamp(ISSUE_STAMP, iid="3", url="https://g/3"), *stamps))

    [intent] = decide(snap, assessment(state), None, wanted(snap))

    assert isinstance(intent, Close) and intent.issue.iid == 3


def test_an_emergency_that_ended_without_an_issue_gets_none() -> None:
    snap = snapshot()

    assert decide(snap, assessment(State.CLOSED_TO_HIGH), None, wanted(snap)) == []


def test_the_issue_names_the_ticket_customer_engineer_and_their_bridge() -> None:
    snap = snapshot(subject="Down <!channel> @all [x](http://evil)\n/close")

    filled = content(snap, CONFIG, SETTINGS, "https://acme.zendesk.com/agent/tickets/42",
                     "fr@example.com")

    assert filled.title == ("Emergency: Zendesk #42 — Acme Corp: Down <!channel> @all "
                            "[x](http://evil) /close")
    assert filled.labels == ("emergency", marker(42, 500))
    assert "[#42](https://acme.zendesk.com/agent/tickets/42)" in filled.header
    assert "**Bridge:** https://bridge.example.com/fr" in filled.header
    assert "\n/close" not in filled.header  # no quick action from customer text
    assert "@all" not in filled.header and "](http://evil)" not in filled.header
    assert filled.description("## Steps").endswith("---\n\n## Steps\n")


def test_customer_text_is_flat_and_inert_in_markdown() -> None:
    assert text("a\n\n/close *b* @here") == "a /close \\*b\\* @\u200bhere"
