"""The Slack side's pure parts: channel rules, regions, the thread tag on the ticket."""

from __future__ import annotations

from datetime import UTC, datetime, time

from automation.chat import (
    Thread,
    claim_from_tags,
    pick_channel,
    pick_region,
    thread_from_tags,
    thread_tag,
)
from automation.config import ChannelRule, Region, SlackConfig
from automation.model import Organization
from tests.factories import make_ticket

CONFIG = SlackConfig(
    default_channel="C0SELF",
    channels=(ChannelRule("C0SAAS", tags=("saas",)), ChannelRule("C0BRAND", brands=(7,)),
              ChannelRule("C0FORM", forms=(9,)),
              ChannelRule("C0FED", organization_tags=("us_federal",)),
              ChannelRule("C0DEDICATED", organization_fields=(("deployment", "dedicated"),))),
    regions=(Region("americas", "support-team-americas", time(15), time(23)),
             Region("apac", "support-team-apac", time(23), time(7)),
             Region("emea", "support-team-emea", time(7), time(15))),
)


def org(tags: tuple[str, ...] = (), region: str | None = None) -> Organization:
    return Organization(1, "Acme", {"region": region} if region else {}, tags)


def test_first_matching_rule_picks_the_channel_else_the_default() -> None:
    assert pick_channel(CONFIG, make_ticket(tags=("saas",)), None) == "C0SAAS"
    assert pick_channel(CONFIG, make_ticket(brand_id=7), None) == "C0BRAND"
    assert pick_channel(CONFIG, make_ticket(form_id=9), None) == "C0FORM"
    assert pick_channel(CONFIG, make_ticket(), org(("us_federal",))) == "C0FED"
    dedicated = Organization(1, "Acme", {"deployment": "dedicated"}, ())
    assert pick_channel(CONFIG, make_ticket(), dedicated) == "C0DEDICATED"
    assert pick_channel(CONFIG, make_ticket(tags=("other",)), org()) == "C0SELF"


def test_region_by_organization_field_wins_over_the_time_of_day() -> None:
    at_noon = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

    assert pick_region(CONFIG, org(region="Americas"), at_noon).group == "support-team-americas"
    assert pick_region(CONFIG, org(), at_noon).group == "support-team-emea"


def test_region_on_shift_across_midnight() -> None:
    late = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    evening = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)

    assert pick_region(CONFIG, None, late).group == "support-team-apac"
    assert pick_region(CONFIG, None, evening).group == "support-team-apac"


def test_thread_survives_zendesk_lowercasing_its_tag() -> None:
    thread = Thread("C0123ABC", "1767603600.000100")

    tag = thread_tag(thread)

    assert tag == tag.lower()
    assert thread_from_tags(("vip", tag)) == thread


def test_claim_time_is_read_back_from_its_tag() -> None:
    moment = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    assert claim_from_tags((f"emergency_slack_claim_{int(moment.timestamp())}",)) == moment
    assert claim_from_tags(("emergency_acknowledged",)) is None
