"""Runbook step 5, decided purely: who took the emergency, when, and whether they were on a
rotation's shift then."""

from __future__ import annotations

from automation.config import Rotation
from automation.handover import Ask, Taker, decide, taker
from automation.model import Assessment, State
from automation.workflow import Page
from tests.factories import AGENT_ID, BOT_ID, TICKET_ID, agent, at, bot, make_snapshot

FRT = Rotation("FRT", "PFRT", "C0FRTDUTY", "frt-team")
HAWK = Rotation("SLA Hawk", "PSLA", "C0SLAHAWK")
ALEX = agent().email
BOT_EMAIL = bot().email


def contact_by(author_id: int, minutes: float = 5) -> Assessment:
    return Assessment(TICKET_ID, State.AWAITING_CUSTOMER, None, None,
                      contact_at=at(minutes), contact_by=author_id)


def test_whoever_acknowledged_the_page_took_it_when_they_acknowledged():
    page = Page(incident_id="P1", status="acknowledged", acknowledged_by="Alex@Support.example",
                acknowledged_at=at(3))

    assert taker(make_snapshot(), contact_by(BOT_ID), page, BOT_EMAIL) == Taker(ALEX, at(3))


def test_else_the_person_who_made_contact_took_it_but_never_the_teams_fallback():
    snapshot = make_snapshot()

    assert taker(snapshot, contact_by(AGENT_ID), None, BOT_EMAIL) == Taker(ALEX, at(5))
    assert taker(snapshot, contact_by(BOT_ID), Page(status="triggered"), BOT_EMAIL) is None


def test_asked_for_each_rotation_the_engineer_was_on_unless_recorded_or_over():
    who = Taker(ALEX, at(5))
    on_call = {"PFRT": frozenset({ALEX}), "PSLA": frozenset({"ravi@support.example"})}

    assert decide(make_snapshot(), True, who, (FRT, HAWK), on_call) == [Ask(FRT, who)]
    assert decide(make_snapshot(done=["slack-handover:frt"]), True, who, (FRT, HAWK),
                  on_call) == []
    assert decide(make_snapshot(), False, who, (FRT, HAWK), on_call) == []
    assert decide(make_snapshot(), True, None, (FRT, HAWK), on_call) == []
