"""The report's pure computation: emergencies from a ticket's audits, and their figures."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from automation.config import FederalConfig
from automation.model import (
    Comment,
    Episode,
    Organization,
    PageStep,
    PriorityChange,
    Snapshot,
    Stamp,
    Step,
)
from automation.report import (
    TEAM,
    build_report,
    emergencies_of,
    figures,
    percentile,
    search_queries,
    week_of,
    weeks_between,
)
from tests.factories import (
    AGENT_ID,
    BOT_ID,
    CUSTOMER_ID,
    T0,
    at,
    make_organization,
    make_snapshot,
)

_audits = itertools.count(10)


def said(author: int, minutes: float, public: bool = True, system: bool = False,
         audit: int | None = None) -> Comment:
    """A comment written in its own audit (ids grow with time, as Zendesk's do)."""
    audit_id = next(_audits) if audit is None else audit
    return Comment(id=audit_id * 10, author_id=author, public=public, created_at=at(minutes),
                   body="…", audit_id=audit_id, system=system)


def priority(audit: int, minutes: float, value: str | None) -> PriorityChange:
    return PriorityChange(audit, at(minutes), value)


def stamp(step: str, episode: int, minutes: float) -> Stamp:
    return Stamp(step, episode, next(_audits), at(minutes))


def test_contact_by_the_team_and_a_reply_within_15_minutes() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(BOT_ID, 2),
                              said(CUSTOMER_ID, 17)], priorities=(priority(1, 0, "urgent"),))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert emergency.urgent_at == T0 and emergency.ended_at is None
    assert emergency.time_to_contact == timedelta(minutes=2)
    assert (emergency.contact_by, emergency.contact_kind) == (TEAM, "team")
    assert emergency.answered_at == at(17) and emergency.answered_within  # 15 min exactly
    assert not (emergency.followed_up or emergency.stepped_down or emergency.manager_paged
                or emergency.off_hours)


def test_an_engineer_contact_and_a_reply_after_15_minutes() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 4),
                              said(CUSTOMER_ID, 19.5)],
                             priorities=(priority(1, 0, "urgent"),))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert (emergency.contact_by, emergency.contact_kind) == ("Alex Engineer", "engineer")
    assert emergency.answered_at is not None and not emergency.answered_within


def test_no_contact_yet() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 3, public=False),
                              said(CUSTOMER_ID, 5)], priorities=(priority(1, 0, "urgent"),))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)
    group = figures("all", [emergency])

    assert emergency.contact_at is None and emergency.time_to_contact is None
    assert emergency.contact_by is None and emergency.answered_at is None
    assert (group.emergencies, group.contacted, group.p50, group.p90) == (1, 0, None, None)
    assert group.answered_within is None and group.stepped_down == 0


def test_a_reply_from_before_the_raise_to_urgent_is_not_contact() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 5, audit=2),
                              said(AGENT_ID, 20, audit=4)],
                             priorities=(priority(1, 0, "normal"), priority(3, 10, "urgent")))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert emergency.urgent_at == at(10)
    assert emergency.time_to_contact == timedelta(minutes=10)


def test_merges_and_other_system_notes_are_not_contact() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 1, system=True),
                              said(AGENT_ID, 6)], priorities=(priority(1, 0, "urgent"),))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert emergency.time_to_contact == timedelta(minutes=6)


def test_a_ticket_urgent_twice_is_two_emergencies_each_with_its_own_steps() -> None:
    day = 24 * 60
    snapshot = make_snapshot(
        [said(CUSTOMER_ID, 0, audit=1), said(BOT_ID, 1, audit=2), said(BOT_ID, 16, audit=3),
         said(BOT_ID, 31, audit=4), said(CUSTOMER_ID, 40, audit=5),
         said(AGENT_ID, day + 7, audit=7)],
        priorities=(priority(1, 0, "urgent"), priority(4, 31, "high"),
                    priority(6, day, "urgent")),
        stamps=(stamp(Step.ACKNOWLEDGE, 1, 1), stamp(Step.FOLLOW_UP, 1, 16),
                stamp(Step.CLOSE, 1, 31), stamp(PageStep.MANAGER_PAGED, 1, 2)))

    first, second = emergencies_of(snapshot, me=BOT_ID)

    assert (first.episode, first.urgent_at, first.ended_at, first.lowered_to) == (
        1, T0, at(31), "high")
    assert first.followed_up and first.stepped_down and first.manager_paged
    assert first.answered_at is None  # the customer wrote after the bridge closed
    assert first.time_to_contact == timedelta(minutes=1)
    assert (second.episode, second.urgent_at, second.ended_at) == (6, at(day), None)
    assert not (second.followed_up or second.stepped_down or second.manager_paged)
    assert second.time_to_contact == timedelta(minutes=7) and second.contact_kind == "engineer"


def test_a_word_in_the_update_that_lowers_the_priority_counts() -> None:
    snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 9, audit=2)],
                             priorities=(priority(1, 0, "urgent"), priority(2, 9, "normal")))

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert emergency.time_to_contact == timedelta(minutes=9)
    assert emergency.lowered_to == "normal"


def test_off_hours_from_our_step_or_from_the_federal_hours() -> None:
    federal = FederalConfig(service_id="PF", escalation_policy_id="PEF",
                            organization_tags=("us_federal",))
    night = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # 02:00 in Los Angeles
    day = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles
    agency = make_organization(name="Agency", tags=("us_federal",))

    def ticket(raised: datetime, organization: Organization, *stamps: Stamp) -> bool:
        snapshot = make_snapshot([said(CUSTOMER_ID, 0, audit=1)], organization=organization,
                                 stamps=stamps,
                                 priorities=(PriorityChange(1, raised, "urgent"),))
        [emergency] = emergencies_of(snapshot, me=BOT_ID, federal=federal)
        return emergency.off_hours

    assert ticket(night, agency)
    assert not ticket(day, agency)
    assert not ticket(night, make_organization(name="Acme"))  # not a federal account
    assert ticket(day, make_organization(name="Acme"), stamp(Step.OFF_HOURS, 1, 0))


def test_percentile_is_the_nearest_rank() -> None:
    minutes = [timedelta(minutes=m) for m in (1, 2, 3, 4)]
    ten = [timedelta(minutes=m) for m in range(1, 11)]

    assert percentile(minutes, 50) == timedelta(minutes=2)
    assert percentile(minutes, 90) == timedelta(minutes=4)
    assert percentile(ten, 90) == timedelta(minutes=9)
    assert percentile(ten[:1], 50) == percentile(ten[:1], 90) == timedelta(minutes=1)
    assert percentile([], 50) is None


def test_the_report_keeps_the_window_and_groups_by_week_organization_and_engineer() -> None:
    def emergency(ticket_id: int, day: int, contact_after: float | None, who: int = BOT_ID,
                  org: str = "Acme") -> Snapshot:
        start = day * 24 * 60
        comments = [said(CUSTOMER_ID, start, audit=1)]
        if contact_after is not None:
            comments.append(said(who, start + contact_after))
        return make_snapshot(comments, id=ticket_id, organization=make_organization(name=org),
                             priorities=(priority(1, start, "urgent"),))

    snapshots = [emergency(1, -1, 2),  # before the window
                 emergency(2, 0, 2), emergency(3, 1, 10, AGENT_ID),
                 emergency(4, 8, 4, org="Globex"), emergency(5, 9, None)]

    report = build_report(snapshots, since=T0, until=T0 + timedelta(days=14), me=BOT_ID)

    assert [e.ticket_id for e in report.emergencies] == [2, 3, 4, 5]
    assert [(f.label, f.emergencies) for f in report.by_week] == [
        ("2026-W02", 2), ("2026-W03", 2), ("2026-W04", 0)]
    assert [(f.label, f.emergencies) for f in report.by_organization] == [
        ("Acme", 3), ("Globex", 1)]
    assert [(f.label, f.emergencies) for f in report.by_engineer] == [
        (TEAM, 2), ("(no contact yet)", 1), ("Alex Engineer", 1)]
    overall = report.overall
    assert (overall.emergencies, overall.contacted) == (4, 3)
    assert (overall.p50, overall.p90) == (timedelta(minutes=4), timedelta(minutes=10))
    assert report.as_json()["overall"]["time_to_contact_p90_seconds"] == 600


def test_weeks_without_emergencies_are_kept_for_the_trend() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday, in 2026-W01

    assert weeks_between(since, since + timedelta(days=30)) == [
        "2026-W01", "2026-W02", "2026-W03", "2026-W04", "2026-W05"]
    assert week_of(datetime(2025, 12, 29, tzinfo=UTC)) == "2026-W01"


def test_the_last_partial_week_is_kept_when_the_daily_steps_stop_short_of_it() -> None:
    # daily steps from a Sunday noon: the last one (Sunday noon) is in 2026-W03, the next one
    # (Monday noon) already past `until`; the hours of Monday before it are 2026-W04's
    since = datetime(2026, 1, 4, 12, tzinfo=UTC)  # a Sunday, the last day of 2026-W01
    monday = datetime(2026, 1, 19, tzinfo=UTC)  # the first day of 2026-W04

    assert weeks_between(since, monday + timedelta(hours=6)) == [
        "2026-W01", "2026-W02", "2026-W03", "2026-W04"]
    assert weeks_between(since, monday + timedelta(microseconds=1)) == [
        "2026-W01", "2026-W02", "2026-W03", "2026-W04"]
    # the window is half-open: one that ends as the week begins has none of it
    assert weeks_between(since, monday) == ["2026-W01", "2026-W02", "2026-W03"]
    # a window within one day's step
    assert weeks_between(since, since + timedelta(hours=13)) == ["2026-W01", "2026-W02"]
    assert weeks_between(since, since) == weeks_between(monday, since) == []


def test_the_searches_find_urgent_tickets_and_those_our_steps_marked() -> None:
    urgent, marked = search_queries(datetime(2026, 1, 5, 9, 30, tzinfo=UTC))

    assert urgent == "type:ticket updated>=2026-01-05T09:30:00Z priority:urgent"
    assert marked.startswith("type:ticket updated>=2026-01-05T09:30:00Z tags:")
    assert "tags:emergency_closed_to_high" in marked and "tags:emergency_acknowledged" in marked


def test_a_snapshot_without_its_priority_history_still_has_its_running_emergency() -> None:
    snapshot = replace(make_snapshot([said(CUSTOMER_ID, 0, audit=1), said(AGENT_ID, 3)],
                                     episode=Episode(1, T0)), priorities=())

    [emergency] = emergencies_of(snapshot, me=BOT_ID)

    assert emergency.urgent_at == T0 and emergency.time_to_contact == timedelta(minutes=3)
