"""Webhook deliveries: only signed, fresh, first-time, well-formed ones name a ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation import webhooks
from automation.webhooks import Seen, check_pagerduty, check_zendesk

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECRET = "dGhlIHdlYmhvb2sgc2VjcmV0"


def zendesk_delivery(payload: object, at: datetime = NOW, secret: str = SECRET,
                     body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    raw = body if body is not None else json.dumps(payload).encode()
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return ({webhooks.ZENDESK_TIMESTAMP: stamp,
             webhooks.ZENDESK_SIGNATURE: webhooks.zendesk_signature(secret, stamp, raw)}, raw)


def pagerduty_delivery(data: dict, event_id: str = "01DEN5", at: datetime = NOW,
                       secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    raw = json.dumps({"event": {"id": event_id, "event_type": "incident.acknowledged",
                                "resource_type": "incident",
                                "occurred_at": at.isoformat().replace("+00:00", "Z"),
                                "data": data}}).encode()
    # Two signatures while a secret is rotated: the old one first.
    signature = ",".join(webhooks.pagerduty_signature(s, raw) for s in ("old", secret))
    return {webhooks.PAGERDUTY_SIGNATURE: signature}, raw


@pytest.mark.parametrize("payload", [
    {"ticket_id": "42"},  # a trigger's body: {"ticket_id": "{{ticket.id}}"}
    {"ticket": {"id": 42, "priority": "urgent"}},
    {"type": "zen:event-type:ticket.priority_changed", "detail": {"id": "42"}},
])
def test_a_signed_zendesk_delivery_names_its_ticket(payload: dict) -> None:
    headers, body = zendesk_delivery(payload)

    verdict = check_zendesk(SECRET, headers, body, NOW + timedelta(seconds=3), Seen())

    assert verdict.accepted and verdict.ticket_id == 42 and verdict.status == 202


def test_zendesk_refuses_what_is_not_signed_fresh_new_and_json() -> None:
    seen = Seen()
    headers, body = zendesk_delivery({"ticket_id": 7})
    assert check_zendesk(SECRET, headers, body, NOW, seen).accepted

    cases = {
        webhooks.REPLAYED: (headers, body),
        webhooks.BAD_SIGNATURE: zendesk_delivery({"ticket_id": 7}, secret="other"),
        webhooks.STALE: zendesk_delivery({"ticket_id": 8}, at=NOW - timedelta(minutes=6)),
        webhooks.MALFORMED: zendesk_delivery(None, body=b"{not json"),
        webhooks.TOO_LARGE: zendesk_delivery({"ticket_id": 9, "pad": "x" * 300_000}),
    }
    for outcome, (h, b) in cases.items():
        verdict = check_zendesk(SECRET, h, b, NOW, seen)
        assert (verdict.outcome, verdict.ticket_id) == (outcome, None), outcome
        assert 400 <= verdict.status < 500
    tampered = dict(headers, **{webhooks.ZENDESK_TIMESTAMP: "2026-01-05T09:00:01Z"})
    assert check_zendesk(SECRET, tampered, body, NOW, seen).outcome == webhooks.BAD_SIGNATURE


@pytest.mark.parametrize("data", [
    {"id": "PI1", "type": "incident", "incident_key": "zendesk-42", "title": "anything"},
    {"id": "PI1", "type": "incident", "incident_key": "zendesk-42-manager", "title": "x"},
    {"id": "PI1", "type": "incident", "incident_key": None,
     "title": "Zendesk ticket #42: Production down"},
    {"id": "PI1", "type": "incident", "title": "https://acme.zendesk.com/agent/tickets/42"},
])
def test_a_signed_pagerduty_event_names_the_ticket_of_its_incident(data: dict) -> None:
    headers, body = pagerduty_delivery(data)

    verdict = check_pagerduty(SECRET, headers, body, NOW, Seen())

    assert verdict.accepted and verdict.ticket_id == 42


def test_pagerduty_refuses_replays_stale_events_and_bad_signatures() -> None:
    seen = Seen()
    data = {"id": "PI1", "type": "incident", "incident_key": "zendesk-42", "title": "x"}
    headers, body = pagerduty_delivery(data)
    assert check_pagerduty(SECRET, headers, body, NOW, seen).accepted

    assert check_pagerduty(SECRET, headers, body, NOW, seen).outcome == webhooks.REPLAYED
    old = pagerduty_delivery(data, "02", at=NOW - timedelta(minutes=6))
    assert check_pagerduty(SECRET, *old, NOW, seen).outcome == webhooks.STALE
    forged = pagerduty_delivery(data, "03", secret="guess")
    assert check_pagerduty(SECRET, *forged, NOW, seen).outcome == webhooks.BAD_SIGNATURE
    other = pagerduty_delivery({"id": "PI2", "type": "incident", "title": "Disk full"}, "04")
    verdict = check_pagerduty(SECRET, *other, NOW, seen)
    assert verdict.outcome == webhooks.UNKNOWN_TICKET and verdict.ticket_id is None


def test_a_delivery_is_taken_again_once_the_window_has_passed() -> None:
    seen = Seen()
    assert seen.first_time("a", NOW)
    assert not seen.first_time("a", NOW + timedelta(minutes=4))
    assert seen.first_time("a", NOW + timedelta(minutes=6))


@given(body=st.binary(max_size=2000), signature=st.text(max_size=60),
       stamp=st.sampled_from(["2026-01-05T09:00:00Z", "", "yesterday"]))
def test_no_body_is_taken_without_the_secrets_signature(body: bytes, signature: str,
                                                        stamp: str) -> None:
    headers = {webhooks.ZENDESK_SIGNATURE: signature, webhooks.ZENDESK_TIMESTAMP: stamp}
    if signature == webhooks.zendesk_signature(SECRET, stamp, body):
        return  # (hypothesis will not find the HMAC; this keeps the property honest)
    assert check_zendesk(SECRET, headers, body, NOW, Seen()).ticket_id is None
    pd = {webhooks.PAGERDUTY_SIGNATURE: signature}
    assert check_pagerduty(SECRET, pd, body, NOW, Seen()).ticket_id is None
