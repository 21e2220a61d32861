"""The PagerDuty adapter against the sandbox over TLS: what it sends, how it waits and fails."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from automation.clock import FakeClock
from automation.errors import (
    ConfigError,
    CredentialsRejected,
    NotFound,
    Rejected,
    Unreachable,
    UpstreamError,
    WriteUncertain,
)
from automation.pagerduty import (
    MAX_RATE_LIMIT_RETRIES,
    Incident,
    OnCall,
    PagerDuty,
    PdUser,
    split_shifts,
)
from automation.sandbox import PagerDutySandbox, Sandbox, SupportTeam
from tests.test_sandbox_pagerduty import BOT, TOKEN, OpenApi, openapi  # noqa: F401

Connect = Callable[..., PagerDuty]
KEY = "zendesk-4242"
NOTES = re.compile(r"/incidents/[A-Z0-9]+/notes$")


@pytest.fixture
def connect(sandbox: Sandbox, clock: FakeClock) -> Iterator[Connect]:
    """Build adapters pointed at the sandbox's PagerDuty; all are closed after the test."""
    url, ca_path = sandbox.pagerduty_url, sandbox.pagerduty_ca
    made: list[PagerDuty] = []

    def build(token: str = TOKEN, max_retry_seconds: float = 60) -> PagerDuty:
        adapter = PagerDuty(token, BOT, clock, base_url=url, verify=ca_path,
                            max_retry_seconds=max_retry_seconds, timeout=5)
        made.append(adapter)
        return adapter

    yield build
    for adapter in made:
        adapter.close()


@pytest.fixture
def pd(connect: Connect) -> PagerDuty:
    return connect()


def trigger(pd: PagerDuty, team: SupportTeam, key: str = KEY) -> Incident:
    return pd.trigger(team.customer_support_service_id, "Emergency: site down (#4242)", key,
                      "https://example.zendesk.com/agent/tickets/4242")


# --- trigger: one incident per key ----------------------------------------------------------


def test_trigger_opens_an_incident_with_the_key(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                team: SupportTeam) -> None:
    incident = trigger(pd, team)

    assert incident.incident_key == KEY
    assert incident.status == "triggered"
    assert incident.service_id == team.customer_support_service_id
    assert incident.assignee_ids == (team.engineer_ids[0],)
    assert incident.created_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert incident.html_url.endswith(f"/incidents/{incident.id}")
    assert fake_pd.incident(incident.id)["body"]["details"].endswith("/tickets/4242")


def test_second_trigger_returns_the_same_incident(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                  team: SupportTeam) -> None:
    first = trigger(pd, team)

    second = trigger(pd, team)

    assert second.id == first.id
    assert len(fake_pd.incidents()) == 1


def test_dedup_400_is_answered_with_the_open_incident(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                      team: SupportTeam) -> None:
    # Zendesk's own integration paged first, with the same key.
    existing = fake_pd.trigger(team.customer_support_service_id, "From Zendesk", KEY)

    incident = trigger(pd, team)

    assert incident.id == existing
    assert [c.method for c in fake_pd.calls(path="/incidents")] == ["POST", "GET"]
    assert len(fake_pd.incidents()) == 1


def test_trigger_after_a_lost_answer_returns_the_incident_it_created(
        pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    fake_pd.faults.apply_then_drop("POST", re.compile(r"^/incidents$"))

    incident = trigger(pd, team)

    assert [i["id"] for i in fake_pd.incidents()] == [incident.id]
    assert len(fake_pd.calls("POST", "/incidents")) == 1  # never re-sent by the client


def test_trigger_not_applied_raises_write_uncertain(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                    team: SupportTeam) -> None:
    fake_pd.faults.server_error("POST", re.compile(r"^/incidents$"), status=502)

    with pytest.raises(WriteUncertain) as caught:
        trigger(pd, team)

    assert caught.value.status == 502
    assert fake_pd.incidents() == []
    assert len(fake_pd.calls("POST", "/incidents")) == 1


def test_trigger_assigns_directly_when_asked(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                             team: SupportTeam) -> None:
    bo = team.engineer_ids[1]

    incident = pd.trigger(team.customer_support_service_id, "Please join the bridge", KEY,
                          "on-call unreachable on Slack", assignee_id=bo)

    assert incident.assignee_ids == (bo,)


def test_trigger_on_an_unknown_service_is_rejected(pd: PagerDuty, team: SupportTeam) -> None:
    with pytest.raises(Rejected) as caught:
        pd.trigger("PS99999", "Down", KEY, "details")

    assert caught.value.status == 400
    assert "Service not found" in str(caught.value)


# --- notes: exactly once --------------------------------------------------------------------


def test_dropped_connection_after_the_note_was_applied_leaves_one_note(
        pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident = trigger(pd, team)
    fake_pd.faults.apply_then_drop("POST", NOTES)

    pd.add_note(incident.id, "Customer contacted; bridge https://zoom.example.com/j/1")

    assert [n["content"] for n in fake_pd.notes(incident.id)] == [
        "Customer contacted; bridge https://zoom.example.com/j/1"]
    assert len(fake_pd.calls("POST", NOTES.pattern)) == 1


def test_add_note_twice_posts_once(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                   team: SupportTeam) -> None:
    incident = trigger(pd, team)

    pd.add_note(incident.id, "Customer contacted")
    pd.add_note(incident.id, "Customer contacted")

    assert [n["content"] for n in fake_pd.notes(incident.id)] == ["Customer contacted"]
    assert len(fake_pd.calls("POST", NOTES.pattern)) == 1


def test_note_lost_before_it_applied_raises_write_uncertain(
        pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident = trigger(pd, team)
    fake_pd.faults.drop("POST", NOTES)

    with pytest.raises(WriteUncertain) as caught:
        pd.add_note(incident.id, "Customer contacted")

    assert "\n" not in str(caught.value)
    assert fake_pd.notes(incident.id) == []
    assert len(fake_pd.calls("POST", NOTES.pattern)) == 1


# --- resolve --------------------------------------------------------------------------------


def test_resolve_marks_the_incident_resolved_and_twice_is_fine(
        pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident = trigger(pd, team)

    pd.resolve(incident.id)
    pd.resolve(incident.id)

    assert pd.incident(incident.id).status == "resolved"
    put = fake_pd.calls("PUT")[0]
    assert put.body == {"incident": {"type": "incident_reference", "status": "resolved"}}
    assert put.headers["From"] == BOT


def test_resolve_after_a_lost_answer_reads_the_status(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                      team: SupportTeam) -> None:
    incident = trigger(pd, team)
    fake_pd.faults.apply_then_drop("PUT", "/incidents/")

    pd.resolve(incident.id)

    assert fake_pd.incident(incident.id)["status"] == "resolved"
    assert len(fake_pd.calls("PUT")) == 1


def test_resolve_an_unknown_incident_is_not_found(pd: PagerDuty) -> None:
    with pytest.raises(NotFound):
        pd.resolve("PI99999")


# --- reads ----------------------------------------------------------------------------------


def test_open_incidents_is_one_listing_of_open_ones(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                    team: SupportTeam) -> None:
    cs = team.customer_support_service_id
    a = fake_pd.trigger(cs, "A", "zendesk-1")
    b = fake_pd.trigger(cs, "B", "zendesk-2")
    fake_pd.acknowledge(b, team.engineer_ids[0])
    fake_pd.resolve(fake_pd.trigger(cs, "C", "zendesk-3"))
    fake_pd.trigger(team.support_managers_service_id, "D", "zendesk-4")

    found = pd.open_incidents([cs])

    assert [(i.id, i.status) for i in found] == [(a, "triggered"), (b, "acknowledged")]
    assert found[1].acknowledger_ids == (team.engineer_ids[0],)
    listing = fake_pd.calls("GET", "/incidents")
    assert len(listing) == 1
    assert listing[0].query["service_ids[]"] == [cs]
    assert listing[0].query["statuses[]"] == ["triggered", "acknowledged"]


def test_open_incidents_pages_past_one_hundred(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                               team: SupportTeam) -> None:
    for n in range(101):
        fake_pd.trigger(team.customer_support_service_id, f"T{n}", f"k-{n}")

    found = pd.open_incidents([team.customer_support_service_id])

    assert len({i.id for i in found}) == 101
    assert [c.query["offset"] for c in fake_pd.calls("GET", "/incidents")] == [["0"], ["100"]]


def test_incident_by_key_prefers_the_open_one(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                              team: SupportTeam, clock: FakeClock) -> None:
    cs = team.customer_support_service_id
    old = fake_pd.trigger(cs, "Old", KEY)
    fake_pd.resolve(old)
    clock.advance(timedelta(days=45))  # past PagerDuty's default one-month window

    assert pd.incident_by_key(KEY, [cs]).id == old  # type: ignore[union-attr]
    current = fake_pd.trigger(cs, "New", KEY)
    assert pd.incident_by_key(KEY, [cs]).id == current  # type: ignore[union-attr]
    assert pd.incident_by_key("zendesk-0", [cs]) is None


def test_users_are_read_once_and_found_by_email(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                team: SupportTeam) -> None:
    ada = team.engineer_ids[0]

    first = pd.user(ada)
    again = pd.user(ada)
    by_email = pd.user_by_email("ravi.patel@example.com")

    assert first == again == PdUser(ada, "Francesca Rossi", "francesca@example.com")
    assert len(fake_pd.calls("GET", f"/users/{ada}")) == 1
    assert by_email == PdUser(team.engineer_ids[1], "Ravi Patel", "ravi.patel@example.com")
    assert pd.user_by_email("nobody@example.com") is None


def test_oncalls_now_and_next_with_shift_end(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                             team: SupportTeam, clock: FakeClock) -> None:
    clock.advance(timedelta(hours=2))
    policy = team.customer_support_policy_id

    now = pd.oncalls([policy], None, clock.now())
    current, following = pd.now_and_next(policy, clock.now())

    assert [(o.user.email, o.end) for o in now] == [
        ("francesca@example.com", datetime(2026, 1, 5, 17, 0, tzinfo=UTC))]
    assert current is not None and current.user.name == "Francesca Rossi"
    assert following is not None and following.user.email == "ravi.patel@example.com"
    assert following.start == datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
    window = fake_pd.calls("GET", "/oncalls")[-1].query
    assert window["since"] == ["2026-01-05T11:00:00Z"]
    assert window["until"] == ["2026-01-12T11:00:00Z"]
    assert window["earliest"] == ["true"]


def test_oncalls_by_schedule(pd: PagerDuty, team: SupportTeam, clock: FakeClock) -> None:
    managers = pd.oncalls(None, [team.support_managers_schedule_id], clock.now())

    assert [(m.user.email, m.schedule_id, m.escalation_level) for m in managers] == [
        ("alex.morgan@example.com", team.support_managers_schedule_id, 1)]


def test_split_shifts_skips_the_same_person_and_permanent_shifts() -> None:
    ada, bo = PdUser("PA", "Ada", "a@x"), PdUser("PB", "Bo", "b@x")
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    shifts = [OnCall(ada, at - hour, at + hour, 1, "S"), OnCall(ada, at + hour, at + 2 * hour,
                                                                1, "S"),
              OnCall(bo, at + 2 * hour, at + 3 * hour, 1, "S"), OnCall(bo, None, None, 2, None)]

    assert split_shifts(shifts, at) == (shifts[0], shifts[2])
    assert split_shifts(shifts, at, level=2) == (shifts[3], None)
    assert split_shifts([], at) == (None, None)


# --- rate limits, retries and failures ------------------------------------------------------


def test_429_retry_after_is_honoured_on_the_injected_clock(
        pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam, clock: FakeClock) -> None:
    fake_pd.faults.rate_limit("GET", re.compile(r"^/incidents$"), retry_after=7, times=2)

    found = pd.open_incidents([team.customer_support_service_id])

    assert found == []
    assert clock.slept == [7.0, 7.0]
    assert len(fake_pd.calls("GET", "/incidents")) == 3


def test_429_on_a_write_is_waited_out_and_sent_again(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                                     team: SupportTeam,
                                                     clock: FakeClock) -> None:
    fake_pd.faults.rate_limit("POST", re.compile(r"^/incidents$"), retry_after=4)

    trigger(pd, team)

    assert clock.slept == [4.0]
    assert len(fake_pd.incidents()) == 1  # a 429 is never applied, so sending again is safe


def test_429_waiting_is_bounded_by_the_retry_budget(connect: Connect,
                                                    fake_pd: PagerDutySandbox,
                                                    team: SupportTeam, clock: FakeClock) -> None:
    pd = connect(max_retry_seconds=60)
    fake_pd.faults.rate_limit("GET", "/incidents", retry_after=25, times=None)

    with pytest.raises(Unreachable) as caught:
        pd.open_incidents([team.customer_support_service_id])

    assert caught.value.status == 429
    assert clock.slept == [25.0, 25.0]
    assert len(fake_pd.calls("GET", "/incidents")) == 3


def test_429_retries_are_bounded_in_number(connect: Connect, fake_pd: PagerDutySandbox,
                                           team: SupportTeam, clock: FakeClock) -> None:
    pd = connect(max_retry_seconds=3600)
    fake_pd.faults.rate_limit("GET", "/incidents", retry_after=1, times=None)

    with pytest.raises(Unreachable) as caught:
        pd.open_incidents([team.customer_support_service_id])

    assert caught.value.status == 429
    assert len(fake_pd.calls("GET", "/incidents")) == MAX_RATE_LIMIT_RETRIES + 1


def test_a_429_pauses_the_next_request_too(connect: Connect, fake_pd: PagerDutySandbox,
                                           team: SupportTeam, clock: FakeClock) -> None:
    pd = connect(max_retry_seconds=3600)
    fake_pd.faults.rate_limit("GET", "/users", retry_after=3, times=None)
    with pytest.raises(Unreachable):
        pd.user(team.engineer_ids[0])  # gives up after its bounded retries
    fake_pd.faults.clear()
    waited = len(clock.slept)

    pd.open_incidents([team.customer_support_service_id])

    assert clock.slept[waited:] == [3.0]  # the last 429's Retry-After, on another endpoint


def test_a_pause_longer_than_the_budget_fails_fast(connect: Connect, fake_pd: PagerDutySandbox,
                                                   team: SupportTeam, clock: FakeClock) -> None:
    pd = connect(max_retry_seconds=10)
    fake_pd.faults.rate_limit("GET", "/users", retry_after=3600)

    with pytest.raises(Unreachable) as first:
        pd.user(team.engineer_ids[0])
    with pytest.raises(Unreachable) as second:
        pd.open_incidents([team.customer_support_service_id])

    assert (first.value.status, second.value.status) == (429, 429)
    assert clock.slept == []
    assert fake_pd.calls("GET", "/incidents") == []  # held back, not sent


def test_read_retries_a_5xx_then_succeeds(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                          team: SupportTeam, clock: FakeClock) -> None:
    fake_pd.faults.server_error("GET", "/incidents", status=503)

    assert pd.open_incidents([team.customer_support_service_id]) == []
    assert len(clock.slept) == 1
    assert len(fake_pd.calls("GET", "/incidents")) == 2


def test_read_gives_up_within_the_budget(pd: PagerDuty, fake_pd: PagerDutySandbox,
                                         team: SupportTeam, clock: FakeClock) -> None:
    fake_pd.faults.server_error("GET", "/incidents", status=500, times=None)

    with pytest.raises(Unreachable) as caught:
        pd.open_incidents([team.customer_support_service_id])

    assert caught.value.status == 500
    assert sum(clock.slept) <= 60
    assert 2 <= len(fake_pd.calls("GET", "/incidents")) <= 5


def test_wrong_token_is_credentials_rejected_naming_its_variable_not_its_characters(
        connect: Connect, fake_pd: PagerDutySandbox) -> None:
    secret = "u+wrongSecretToken-7Qz9"
    pd = connect(token=secret)

    with pytest.raises(CredentialsRejected) as caught:
        pd.open_incidents([])

    message = str(caught.value)
    assert caught.value.status == 401
    assert "\n" not in message
    assert secret not in message and "7Qz9" not in message
    assert "PAGERDUTY_API_TOKEN" in message
    assert message.startswith("PagerDuty GET /incidents: HTTP 401")
    assert len(fake_pd.calls()) == 1  # a 401 is never retried


def test_connection_refused_is_unreachable_even_for_a_write(clock: FakeClock,
                                                            team: SupportTeam) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pd = PagerDuty(TOKEN, BOT, clock, base_url=f"https://127.0.0.1:{port}",
                   max_retry_seconds=5)

    try:
        with pytest.raises(Unreachable) as caught:
            pd.add_note("PI00001", "hello")  # fails on its first read
        with pytest.raises(Unreachable):
            pd.resolve("PI00001")  # nothing was sent: not uncertain
    finally:
        pd.close()
    assert caught.value.status is None


def test_http_base_url_or_missing_ca_is_a_configuration_error(clock: FakeClock,
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https://"):
        PagerDuty(TOKEN, BOT, clock, base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="CA file"):
        PagerDuty(TOKEN, BOT, clock, verify=str(tmp_path / "missing.pem"))


# --- the client underneath: one send per write, From on every request -----------------------


def mock_pagerduty(clock: FakeClock, answer: Callable[[httpx2.Request], httpx2.Response],
                   token: str = TOKEN) -> PagerDuty:
    def handler(request: httpx2.Request) -> httpx2.Response:
        response = answer(request)
        response.elapsed = timedelta(0)  # python-pagerduty reads it; real transports set it
        return response

    return PagerDuty(token, BOT, clock, transport=httpx2.MockTransport(handler))


def test_client_never_resends_a_post_whose_connection_dropped(clock: FakeClock) -> None:
    seen: list[str] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.method)
        if request.method == "POST":
            raise httpx2.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx2.Response(200, json={"incidents": [], "limit": 100, "offset": 0,
                                          "more": False, "total": None})

    pd = mock_pagerduty(clock, answer)
    try:
        with pytest.raises(WriteUncertain):
            pd.trigger("PS00001", "Down", KEY, "details")
    finally:
        pd.close()

    assert seen == ["POST", "GET"]  # one send, then a look-up by key


def test_a_2xx_without_the_incident_fields_is_write_uncertain(clock: FakeClock) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            return httpx2.Response(201, json={"incident": {"id": "PI1"}})
        return httpx2.Response(200, json={"incidents": [], "more": False})

    pd = mock_pagerduty(clock, answer)
    try:
        with pytest.raises(WriteUncertain, match="unreadable answer"):
            pd.trigger("PS00001", "Down", KEY, "details")
    finally:
        pd.close()


def test_403_is_credentials_rejected_too(clock: FakeClock) -> None:
    pd = mock_pagerduty(clock, lambda request: httpx2.Response(
        403, json={"error": {"message": "Access Denied", "code": 2010}}),
        token="abcdefgh-1234")
    try:
        with pytest.raises(CredentialsRejected) as caught:
            pd.user("PU00001")
    finally:
        pd.close()

    assert caught.value.status == 403
    assert "1234" not in str(caught.value) and "abcdefgh" not in str(caught.value)
    assert "PAGERDUTY_API_TOKEN" in str(caught.value)


def test_requests_match_pagerduty_openapi_and_carry_from(
        openapi: OpenApi, pd: PagerDuty, fake_pd: PagerDutySandbox, team: SupportTeam,  # noqa: F811
        clock: FakeClock) -> None:
    incident = trigger(pd, team)
    trigger(pd, team)
    pd.add_note(incident.id, "Customer contacted")
    pd.resolve(incident.id)
    pd.open_incidents([team.customer_support_service_id])
    pd.user(team.engineer_ids[0])
    pd.user_by_email("francesca@example.com")
    pd.now_and_next(team.customer_support_policy_id, clock.now())
    pd.service_name(team.customer_support_service_id)
    pd.escalation_policy_name(team.customer_support_policy_id)

    problems = []
    for c in fake_pd.calls():
        unknown = set(c.query) - openapi.query_names(c.method, c.path)
        problems += [f"{c.method} {c.path}: undocumented parameter {p}" for p in unknown]
        if c.method in ("POST", "PUT"):
            problems += [f"{c.method} {c.path}: {e}"
                         for e in openapi.request_errors(c.method, c.path, c.body)]
    assert problems == []
    assert all(c.headers.get("From") == BOT for c in fake_pd.calls())
    assert {c.headers.get("Accept") for c in fake_pd.calls()} == {
        "application/vnd.pagerduty+json;version=2"}
    assert json.dumps(fake_pd.calls("POST", "/incidents")[0].body["incident"]["service"]) == (
        json.dumps({"id": team.customer_support_service_id, "type": "service_reference"}))


def test_token_owner_of_an_account_level_token_is_nobody(pd: PagerDuty) -> None:
    assert pd.token_owner() is None


@pytest.mark.parametrize("status", [403, 404, 503])
def test_token_owner_never_takes_a_refusal_for_nobody(pd: PagerDuty, sandbox: PagerDutySandbox,
                                                      status: int) -> None:
    sandbox.faults.server_error("GET", "/users/me", status, times=None)

    with pytest.raises(UpstreamError):
        pd.token_owner()
