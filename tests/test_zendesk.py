"""The Zendesk adapter: what it sends, how it waits, and how it fails."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from hypothesis import given
from hypothesis import strategies as st
from responses import matchers
from responses.registries import OrderedRegistry

from automation.clock import FakeClock
from automation.errors import Conflict, CredentialsRejected, Unreachable, WriteUncertain
from automation.model import Snapshot
from automation.templates import Rendered
from automation.zendesk import Zendesk, build_update

TOKEN = "s3cr3t-zendesk-token-1234"
BASE = "https://acme.zendesk.com"  # `responses` answers here: these tests pin exact HTTP

TICKET_JSON = {"id": 7, "subject": "Down", "status": "open", "priority": "urgent",
               "tags": ["vip"], "requester_id": 100, "organization_id": None,
               "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:01:00Z"}
SEARCH = re.compile(rf"{BASE}/api/v2/search\.json.*")


def audit(audit_id: int, stamp: dict | None = None, comment_id: int | None = None,
          author_id: int = 900, at: str = "2026-01-05T09:02:00Z") -> dict:
    """An audit as Zendesk answers it: a comment event, and our stamp in metadata.custom."""
    events = [] if comment_id is None else [
        {"type": "Comment", "id": comment_id, "author_id": author_id, "public": True,
         "body": "We are on it"}]
    custom = {"emergency_automation": stamp} if stamp else {}
    return {"id": audit_id, "ticket_id": 7, "created_at": at, "author_id": author_id,
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "metadata": {"system": {}, "custom": custom}, "events": events}


def audits_page(*audits: dict) -> dict:
    return {"audits": list(audits), "meta": {"has_more": False}, "links": {"next": None}}


def client(clock: FakeClock, max_retry_seconds: float = 60) -> Zendesk:
    return Zendesk(BASE, "bot@example.com", TOKEN, clock, timeout=5,
                   max_retry_seconds=max_retry_seconds)


def search_page(*tickets: dict) -> dict:
    return {"results": [dict(t, result_type="ticket") for t in tickets],
            "count": len(tickets), "next_page": None}


@responses.activate
def test_update_sends_one_safe_put_with_explicit_public_flag_and_marker_tag() -> None:
    zendesk = client(FakeClock())
    ticket = _ticket()
    stamp = {"step": "acknowledge", "episode": 4001}
    expected = {"ticket": {
        "comment": {"body": "We are on it", "public": True},
        "safe_update": True, "updated_stamp": "2026-01-05T09:01:00Z",
        "tags": ["vip", "emergency_acknowledged"],
        "metadata": {"emergency_automation": stamp},
    }}
    responses.put(f"{BASE}/api/v2/tickets/7.json",
                  match=[matchers.json_params_matcher(expected)],
                  json={"ticket": TICKET_JSON, "audit": audit(4002, stamp, comment_id=555)})

    update = zendesk.update(ticket, Rendered("acknowledgement", "We are on it", True),
                            ["emergency_acknowledged"], stamp=stamp)

    assert update.comment_id == 555
    assert [(s.step, s.episode, s.audit_id) for s in update.audit.stamps] == [
        ("acknowledge", 4001, 4002)]
    assert len(responses.calls) == 1


def test_internal_comment_is_sent_with_public_false() -> None:
    body = build_update(_ticket(), Rendered("not_emergency", "internal detail", False))

    assert body["ticket"]["comment"]["public"] is False


@responses.activate(registry=OrderedRegistry)
def test_read_waits_out_429_retry_after_on_the_injected_clock() -> None:
    clock = FakeClock()
    responses.get(SEARCH, status=429, headers={"Retry-After": "7"}, json={})
    responses.get(SEARCH, json=search_page(TICKET_JSON))

    tickets = client(clock).find_emergencies("type:ticket")

    assert [t.id for t in tickets] == [7]
    assert clock.slept == [7.0]


@responses.activate(registry=OrderedRegistry)
def test_429_pauses_every_request_not_only_the_one_that_got_it() -> None:
    clock = FakeClock()
    zendesk = client(clock)
    responses.get(SEARCH, status=429, headers={"Retry-After": "30"}, json={})
    responses.get(SEARCH, json=search_page(TICKET_JSON))
    responses.put(f"{BASE}/api/v2/tickets/7.json", json={"ticket": TICKET_JSON})
    started = clock.now()
    zendesk.find_emergencies("type:ticket")
    clock.set(started + timedelta(seconds=10))  # as if a write came 10 s after the 429

    zendesk.update(_ticket(), Rendered("acknowledgement", "x", True))

    assert clock.now() >= started + timedelta(seconds=30)


@responses.activate
def test_5xx_reads_back_off_and_give_up_within_the_bound() -> None:
    clock = FakeClock()
    responses.get(SEARCH, status=503, json={"error": "unavailable"})
    started = clock.now()

    with pytest.raises(Unreachable) as caught:
        client(clock, max_retry_seconds=30).find_emergencies("type:ticket")

    assert "HTTP 503" in str(caught.value)
    assert len(responses.calls) > 1
    assert clock.now() - started <= timedelta(seconds=30 + 20)
    assert len(set(clock.slept)) > 1  # backoff, not a fixed beat


@responses.activate
def test_writes_are_never_retried_by_the_client() -> None:
    responses.put(f"{BASE}/api/v2/tickets/7.json", status=503, json={})

    with pytest.raises(WriteUncertain):
        client(FakeClock()).update(_ticket(), Rendered("acknowledgement", "x", True))

    assert len(responses.calls) == 1


@responses.activate
def test_dropped_connection_on_write_is_uncertain_not_retried() -> None:
    responses.put(f"{BASE}/api/v2/tickets/7.json", body=requests.ConnectionError("reset"))

    with pytest.raises(WriteUncertain):
        client(FakeClock()).update(_ticket(), Rendered("acknowledgement", "x", True))

    assert len(responses.calls) == 1


@responses.activate
def test_409_is_a_conflict() -> None:
    responses.put(f"{BASE}/api/v2/tickets/7.json", status=409, json={"error": "UpdateConflict"})

    with pytest.raises(Conflict):
        client(FakeClock()).update(_ticket(), Rendered("acknowledgement", "x", True))


@responses.activate
def test_wrong_token_is_rejected_at_once_and_never_named() -> None:
    responses.get(SEARCH, status=401, json={"error": "Couldn't authenticate you"})

    with pytest.raises(CredentialsRejected) as caught:
        client(FakeClock()).find_emergencies("type:ticket")

    assert len(responses.calls) == 1
    assert TOKEN not in str(caught.value)
    assert "ZENDESK_API_TOKEN" in str(caught.value)


@responses.activate
def test_timers_use_zendesk_date_header_as_now() -> None:
    responses.get(SEARCH, json=search_page(), headers={"Date": "Mon, 05 Jan 2026 10:30:00 GMT"})
    zendesk = client(FakeClock())

    zendesk.find_emergencies("type:ticket")

    assert zendesk.server_time is not None
    assert zendesk.server_time.isoformat() == "2026-01-05T10:30:00+00:00"


def _ticket():
    from automation.zendesk import ticket_from

    return ticket_from(TICKET_JSON)


@responses.activate
def test_a_url_that_is_not_zendesk_is_one_clear_error() -> None:
    responses.get(SEARCH, status=404, body="<html>Not Found</html>",
                  content_type="text/html")

    with pytest.raises(Unreachable) as caught:
        client(FakeClock()).find_emergencies("type:ticket")

    assert "HTTP 404" in str(caught.value) and "check [zendesk] url" in str(caught.value)


@responses.activate(registry=OrderedRegistry)
def test_retry_after_as_an_http_date_is_measured_against_zendesks_date() -> None:
    clock = FakeClock()
    responses.get(SEARCH, status=429, json={}, headers={
        "Retry-After": "Mon, 05 Jan 2026 10:00:45 GMT", "Date": "Mon, 05 Jan 2026 10:00:00 GMT"})
    responses.get(SEARCH, json=search_page())

    client(clock).find_emergencies("type:ticket")

    assert clock.slept == [45.0]


@responses.activate
def test_a_write_whose_answer_is_cut_short_is_uncertain() -> None:
    responses.put(f"{BASE}/api/v2/tickets/7.json",
                  body=requests.exceptions.ChunkedEncodingError("connection broken"))

    with pytest.raises(WriteUncertain) as caught:
        client(FakeClock()).update(_ticket(), Rendered("acknowledgement", "x", True))

    assert "cut short" in str(caught.value)


@responses.activate
def test_an_html_page_answered_200_is_one_clear_error() -> None:
    responses.get(SEARCH, status=200, body="<html>Sign in</html>", content_type="text/html")

    with pytest.raises(Unreachable) as caught:
        client(FakeClock()).find_emergencies("type:ticket")

    assert "not Zendesk's JSON" in str(caught.value)


@responses.activate
def test_a_ticket_of_an_unexpected_shape_is_rejected_not_a_crash() -> None:
    from automation.errors import Rejected

    responses.get(f"{BASE}/api/v2/tickets/7.json", json={"ticket": {"id": 7}})

    with pytest.raises(Rejected) as caught:
        client(FakeClock()).snapshot(7)  # the ticket is read first: nothing more is asked

    assert "unexpected answer" in str(caught.value)


def test_a_note_that_only_looks_like_a_brief_is_not_one() -> None:
    from datetime import UTC, datetime

    from automation.model import Comment
    from automation.zendesk import brief_from

    note = Comment(1, 5, False, datetime(2026, 1, 5, tzinfo=UTC),
                   "What is planned: upgrade\nWhen: 2026-02-30 02:00 UTC")

    assert brief_from(note, _ticket(), None, {}, "https://x") is None


@responses.activate
def test_record_re_reads_after_a_conflict_and_stops_when_the_stamp_is_in_the_audits() -> None:
    stamp = {"step": "paged", "episode": 4001, "incident": "PABC"}
    created = audit(4001, at="2026-01-05T09:00:00Z")
    created["events"] = [{"type": "Create", "field_name": "priority", "value": "urgent"}]
    moved = dict(TICKET_JSON, updated_at="2026-01-05T09:02:00Z")
    responses.put(f"{BASE}/api/v2/tickets/7.json", status=409, json={"error": "UpdateConflict"})
    responses.get(f"{BASE}/api/v2/tickets/7.json", json={"ticket": moved})
    responses.get(f"{BASE}/api/v2/tickets/7/audits.json",
                  json=audits_page(created, audit(4003, stamp)))  # another worker's
    responses.get(f"{BASE}/api/v2/users/show_many.json", json={"users": []})
    zendesk = client(FakeClock())

    after = zendesk.record(Snapshot(_ticket(), (), {}), ["emergency_paged"], stamp)

    assert [c.request.method for c in responses.calls] == ["PUT", "GET", "GET", "GET"]
    assert [s.audit_id for s in after.stamps] == [4003]


@responses.activate
def test_record_says_so_when_the_ticket_keeps_changing() -> None:
    moved = dict(TICKET_JSON, updated_at="2026-01-05T09:02:00Z")
    responses.put(f"{BASE}/api/v2/tickets/7.json", status=409, json={"error": "UpdateConflict"})
    responses.get(f"{BASE}/api/v2/tickets/7.json", json={"ticket": moved})
    responses.get(f"{BASE}/api/v2/tickets/7/audits.json", json=audits_page())
    responses.get(f"{BASE}/api/v2/users/show_many.json", json={"users": []})
    zendesk = client(FakeClock())

    with pytest.raises(Conflict, match="could not record paged"):
        zendesk.record(Snapshot(_ticket(), (), {}), ["emergency_paged"],
                       {"step": "paged", "episode": 4001})

    assert [c.request.method for c in responses.calls].count("PUT") == 3


@given(skew=st.integers(min_value=-7_200_000_000, max_value=7_200_000_000),
       arrivals=st.lists(st.integers(min_value=0, max_value=3_600_000_000), min_size=1,
                         max_size=30))
def test_zendesks_time_is_never_ahead_of_it_and_less_than_a_second_behind(
        skew: int, arrivals: list[int]) -> None:
    """Dates have whole seconds: from any answers, the estimate of Zendesk's time stays
    within the second below it (timers fire on their second, never early). In microseconds."""
    from automation.zendesk import ZendeskSession

    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = FakeClock(start + timedelta(microseconds=skew))  # ours, off by `skew`
    session = ZendeskSession(clock, timeout=1, max_retry_seconds=0)
    best = 1_000_000
    for at in sorted(arrivals):  # Zendesk's time when each answer is read
        best = min(best, at % 1_000_000)  # the answer read nearest after its Date's second
        true_now = start + timedelta(microseconds=at)
        clock.set(true_now + timedelta(microseconds=skew))
        date = start + timedelta(seconds=at // 1_000_000)
        session._learn_offset(date - clock.now())
        assert session.offset is not None
        now = clock.now() + session.offset
        assert true_now - timedelta(seconds=1) < now <= true_now
        assert true_now - now == timedelta(microseconds=best)  # the tightest answer counts


@pytest.mark.parametrize("jump_seconds", [10, 3600])
def test_a_clock_set_ahead_is_followed_not_held_to_the_old_offset(jump_seconds: int) -> None:
    """Our clock set forward (or Zendesk's back): the estimate starts over from the answers
    after the jump, rather than keeping an offset that now puts Zendesk in the future."""
    from automation.zendesk import ZendeskSession

    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    clock = FakeClock(start)
    session = ZendeskSession(clock, timeout=1, max_retry_seconds=0)
    session._learn_offset(start - clock.now())  # both clocks agree
    clock.set(start + timedelta(seconds=jump_seconds, microseconds=300_000))  # ours jumps

    session._learn_offset(start + timedelta(seconds=1) - clock.now())  # a second later there

    assert clock.now() + session.offset == start + timedelta(seconds=1)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.mark.parametrize(("no_proxy", "expected"), [
    (None, {"https": "http://proxy.internal:3128"}),
    ("acme.zendesk.com", {}),
])
@responses.activate
def test_the_environments_proxy_is_honoured_and_read_once_a_host(
        monkeypatch: pytest.MonkeyPatch, no_proxy: str | None,
        expected: dict[str, str]) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    environment_reads: list[str] = []
    read_environment = requests.sessions.get_environ_proxies
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", lambda url, no_proxy=None: (
        environment_reads.append(url), read_environment(url, no_proxy=no_proxy))[1])
    responses.get(f"{BASE}/api/v2/users/me.json",
                  json={"user": {"id": 900, "name": "Bot", "email": "bot@example.com"}})
    zendesk = client(FakeClock())
    sent_through: list[dict[str, str]] = []
    send = zendesk.session.send  # this session's own: nothing outlives the test
    monkeypatch.setattr(zendesk.session, "send", lambda request, **kw: (
        sent_through.append(kw["proxies"]), send(request, **kw))[1])

    zendesk.api_user()
    zendesk.api_user()

    assert sent_through == [expected, expected]
    assert len(environment_reads) == 1
