"""The sandbox's PagerDuty: filters, paging, dedup, auth, From, faults, TLS, shapes."""

from __future__ import annotations

import json
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from automation.clock import FakeClock
from automation.sandbox import Account, Reply, Sandbox
from automation.sandbox.pagerduty import DEDUP_ERROR, PagerDutySandbox, SupportTeam
from automation.sandbox.server import DEFAULT_EMAIL

TOKEN = PagerDutySandbox(FakeClock()).token  # the sandbox's PagerDuty token
BOT = DEFAULT_EMAIL  # the seeded account's bot, named in From
# The part of PagerDuty's own OpenAPI description the sandbox serves (tests/data/README.md).
SPEC_PATH = Path(__file__).resolve().parent / "data/pagerduty-rest-openapiv3-subset.json"


class OpenApi:
    """Just enough of OpenAPI 3 to check our requests and the fake_pd's answers.

    Lenient where PagerDuty's own description is known to be (see specs/README.md): null is
    accepted anywhere (its examples use null where no field is marked nullable), readOnly is
    ignored, and ``details`` may be a string (the API takes one; the schema says object).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def operation(self, method: str, path: str) -> dict[str, Any]:
        for template, item in self.data["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, path) and method.lower() in item:
                return item[method.lower()]
        raise AssertionError(f"{method} {path} is not in PagerDuty's OpenAPI description")

    def query_names(self, method: str, path: str) -> set[str]:
        names = set()
        for param in self.operation(method, path).get("parameters", []):
            param = self.resolve(param)
            if param.get("in") == "query":
                names.add(param["name"])
        return names

    def request_errors(self, method: str, path: str, body: Any) -> list[str]:
        content = self.operation(method, path)["requestBody"]["content"]
        return self.errors(body, content["application/json"]["schema"])

    def response_errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        response = self.resolve(self.operation(method, path)["responses"][str(status)])
        return self.errors(body, response["content"]["application/json"]["schema"])

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.data
            for part in node["$ref"].removeprefix("#/").split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target[int(key)] if isinstance(target, list) else target[key]
            node = target
        return node

    def errors(self, value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
        schema = self.resolve(schema)
        found: list[str] = []
        for part in schema.get("allOf", []):
            found += self.errors(value, part, where)
        options = schema.get("oneOf") or schema.get("anyOf")
        if options and value is not None:
            attempts = [self.errors(value, option, where) for option in options]
            if all(attempts):
                found.append(f"{where}: matches none of oneOf: {attempts[0][:2]}")
        if value is None:
            return found
        kind = schema.get("type")
        checks: dict[str, type | tuple[type, ...]] = {
            "object": dict, "array": list, "string": str, "boolean": bool, "integer": int,
            "number": (int, float)}
        if where.endswith(".details") and isinstance(value, str):
            return found
        if kind in checks and (not isinstance(value, checks[kind])
                               or (kind in ("integer", "number") and isinstance(value, bool))):
            return [*found, f"{where}: expected {kind}, got {type(value).__name__}"]
        if "enum" in schema and value not in schema["enum"]:
            found.append(f"{where}: {value!r} not in {schema['enum']}")
        if schema.get("format") == "date-time" and isinstance(value, str):
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                found.append(f"{where}: {value!r} is not a date-time")
        if isinstance(value, dict):
            found += [f"{where}: missing {name}" for name in schema.get("required", [])
                      if name not in value]
            for name, sub in schema.get("properties", {}).items():
                if name in value:
                    found += self.errors(value[name], sub, f"{where}.{name}")
        if isinstance(value, list) and "items" in schema:
            for n, item in enumerate(value):
                found += self.errors(item, schema["items"], f"{where}[{n}]")
        return found


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    return OpenApi(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


def call(fake_pd: PagerDutySandbox, method: str, path: str, body: Any = None, *,
         token: str = TOKEN, sender: str | None = BOT, filters: dict[str, Any] | None = None,
         **params: str) -> Reply:
    headers = {"Authorization": f"Token token={token}",
               "Accept": "application/vnd.pagerduty+json;version=2"}
    if sender is not None:
        headers["From"] = sender
    raw = json.dumps(body).encode() if body is not None else None
    merged = {**(filters or {}), **params}
    return fake_pd.handle(method, path, {k: v if isinstance(v, list) else [v]
                                         for k, v in merged.items()}, headers, raw)


def new_incident(service_id: str, key: str | None, title: str = "Customer down",
                 **extra: Any) -> dict[str, Any]:
    incident: dict[str, Any] = {"type": "incident", "title": title,
                                "service": {"id": service_id, "type": "service_reference"},
                                "body": {"type": "incident_body", "details": "ticket 42"},
                                **extra}
    if key is not None:
        incident["incident_key"] = key
    return {"incident": incident}


def ids(reply: Reply, wrapper: str = "incidents") -> list[str]:
    return [item["id"] for item in reply.body[wrapper]]


# --- auth and From ------------------------------------------------------------------------


def test_wrong_token_gets_401_with_pagerduty_error_body(fake_pd: PagerDutySandbox) -> None:
    reply = call(fake_pd, "GET", "/incidents", token="wrong")

    assert reply.status == 401
    assert reply.body == {"error": {"message": "Unauthorized", "code": 2006}}


def test_token_must_use_the_token_scheme(fake_pd: PagerDutySandbox) -> None:
    reply = fake_pd.handle("GET", "/users", {}, {"Authorization": f"Bearer {TOKEN}"}, None)

    assert reply.status == 401


def test_post_incident_without_from_is_refused(fake_pd: PagerDutySandbox,
                                               team: SupportTeam) -> None:
    reply = call(fake_pd, "POST", "/incidents", new_incident(
        team.customer_support_service_id, "zendesk-1"), sender=None)

    assert reply.status == 400
    assert "\"From\" header" in reply.body["error"]["message"]
    assert fake_pd.incidents() == []


def test_post_incident_from_an_unknown_user_is_refused(fake_pd: PagerDutySandbox,
                                                       team: SupportTeam) -> None:
    reply = call(fake_pd, "POST", "/incidents", new_incident(
        team.customer_support_service_id, "zendesk-1"), sender="stranger@example.com")

    assert reply.status == 400
    assert reply.body["error"]["errors"] == ["Requester User Not Found"]


def test_every_write_needs_from(fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident_id = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")

    note = call(fake_pd, "POST", f"/incidents/{incident_id}/notes",
                {"note": {"content": "hi"}}, sender=None)
    put = call(fake_pd, "PUT", f"/incidents/{incident_id}",
               {"incident": {"type": "incident_reference", "status": "resolved"}}, sender=None)

    assert (note.status, put.status) == (400, 400)
    assert fake_pd.notes(incident_id) == []
    assert fake_pd.incident(incident_id)["status"] == "triggered"


# --- incidents ----------------------------------------------------------------------------


def test_post_incident_creates_it_assigned_to_the_level_one_on_call(
        fake_pd: PagerDutySandbox, team: SupportTeam, clock: FakeClock) -> None:
    reply = call(fake_pd, "POST", "/incidents",
                 new_incident(team.customer_support_service_id, "zendesk-1"))

    assert reply.status == 201
    incident = reply.body["incident"]
    assert incident["status"] == "triggered"
    assert incident["incident_key"] == "zendesk-1"
    assert incident["created_at"] == "2026-01-05T09:00:00Z"
    assert [a["assignee"]["id"] for a in incident["assignments"]] == [team.engineer_ids[0]]
    assert incident["assigned_via"] == "escalation_policy"
    assert incident["body"] == {"type": "incident_body", "details": "ticket 42"}


def test_post_incident_with_open_key_is_refused_with_pagerduty_wording(
        fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    first = call(fake_pd, "POST", "/incidents",
                 new_incident(team.customer_support_service_id, "zendesk-1"))

    again = call(fake_pd, "POST", "/incidents",
                 new_incident(team.customer_support_service_id, "zendesk-1"))

    assert first.status == 201
    assert again.status == 400
    assert again.body == {"error": {"message": "Invalid Input Provided", "code": 2001,
                                    "errors": [DEDUP_ERROR]}}
    assert "matching dedup key already exists" in DEDUP_ERROR
    assert len(fake_pd.incidents()) == 1


def test_a_resolved_key_or_another_service_does_not_dedup(fake_pd: PagerDutySandbox,
                                                          team: SupportTeam) -> None:
    first = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")
    fake_pd.resolve(first)

    reopened = call(fake_pd, "POST", "/incidents",
                    new_incident(team.customer_support_service_id, "zendesk-1"))
    elsewhere = call(fake_pd, "POST", "/incidents",
                     new_incident(team.support_managers_service_id, "zendesk-1"))

    assert (reopened.status, elsewhere.status) == (201, 201)
    assert len(fake_pd.incidents()) == 3


def test_post_incident_with_direct_assignment(fake_pd: PagerDutySandbox,
                                              team: SupportTeam) -> None:
    bo = team.engineer_ids[1]
    reply = call(fake_pd, "POST", "/incidents", new_incident(
        team.customer_support_service_id, "zendesk-9",
        assignments=[{"assignee": {"id": bo, "type": "user_reference"}}]))

    assert reply.status == 201
    assert [a["assignee"]["id"] for a in reply.body["incident"]["assignments"]] == [bo]
    assert reply.body["incident"]["assigned_via"] == "direct_assignment"


@pytest.mark.parametrize("change, message", [
    ({"service": {"id": "PS99999", "type": "service_reference"}}, "Service not found"),
    ({"title": ""}, "Title cannot be empty"),
    ({"type": "incident_reference"}, "incident.type must be 'incident'"),
    ({"urgency": "urgent"}, "Invalid urgency: urgent"),
    ({"body": {"details": "no type"}}, "body.type must be 'incident_body'"),
])
def test_post_incident_validates_its_input(fake_pd: PagerDutySandbox, team: SupportTeam,
                                           change: dict[str, Any], message: str) -> None:
    body = new_incident(team.customer_support_service_id, "zendesk-1")
    body["incident"].update(change)

    reply = call(fake_pd, "POST", "/incidents", body)

    assert reply.status == 400
    assert reply.body["error"]["errors"] == [message]


def test_list_incidents_filters(fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    cs, sm = team.customer_support_service_id, team.support_managers_service_id
    a = fake_pd.trigger(cs, "A", "zendesk-1")
    b = fake_pd.trigger(cs, "B", "zendesk-2", assignee_id=team.engineer_ids[1])
    c = fake_pd.trigger(sm, "C", "zendesk-3")
    d = fake_pd.trigger(cs, "D", "zendesk-4")
    fake_pd.acknowledge(b, team.engineer_ids[1])
    fake_pd.resolve(d)

    open_cs = call(fake_pd, "GET", "/incidents", filters={
        "service_ids[]": [cs], "statuses[]": ["triggered", "acknowledged"]})
    by_key = call(fake_pd, "GET", "/incidents", incident_key="zendesk-3")
    by_user = call(fake_pd, "GET", "/incidents", filters={"user_ids[]": [team.engineer_ids[1]]})
    resolved = call(fake_pd, "GET", "/incidents", filters={"statuses[]": ["resolved"]})

    assert ids(open_cs) == [a, b]
    assert ids(by_key) == [c]
    assert ids(by_user) == [b]
    assert ids(resolved) == [d]


def test_list_incidents_pages_like_pagerduty(fake_pd: PagerDutySandbox,
                                             team: SupportTeam) -> None:
    made = [fake_pd.trigger(team.customer_support_service_id, f"T{n}", f"k-{n}")
            for n in range(5)]

    first = call(fake_pd, "GET", "/incidents", limit="2", total="true")
    last = call(fake_pd, "GET", "/incidents", limit="2", offset="4")
    default = call(fake_pd, "GET", "/incidents")

    assert ids(first) == made[:2]
    assert (first.body["limit"], first.body["offset"], first.body["more"],
            first.body["total"]) == (2, 0, True, 5)
    assert ids(last) == made[4:]
    assert (last.body["more"], last.body["total"]) == (False, None)
    assert default.body["limit"] == 25


def test_paging_past_ten_thousand_is_refused(fake_pd: PagerDutySandbox) -> None:
    reply = call(fake_pd, "GET", "/incidents", limit="100", offset="9950")

    assert reply.status == 400
    assert reply.body["error"]["message"] == "Arguments Caused Error"


def test_incidents_older_than_a_month_need_date_range_all(
        fake_pd: PagerDutySandbox, team: SupportTeam, clock: FakeClock) -> None:
    old = fake_pd.trigger(team.customer_support_service_id, "Old", "zendesk-1")
    clock.advance(timedelta(days=40))

    default = call(fake_pd, "GET", "/incidents")
    everything = call(fake_pd, "GET", "/incidents", date_range="all")

    assert ids(default) == []
    assert ids(everything) == [old]


def test_unsupported_filters_are_refused_not_ignored(fake_pd: PagerDutySandbox) -> None:
    reply = call(fake_pd, "GET", "/incidents", filters={"team_ids[]": ["PT1"]})
    bad_status = call(fake_pd, "GET", "/incidents", filters={"statuses[]": ["open"]})

    assert reply.status == 400
    assert "team_ids[]" in reply.body["error"]["errors"][0]
    assert bad_status.status == 400


def test_get_unknown_incident_is_404(fake_pd: PagerDutySandbox) -> None:
    reply = call(fake_pd, "GET", "/incidents/PI99999")

    assert reply.status == 404
    assert reply.body == {"error": {"message": "Not Found", "code": 2100}}


def test_put_acknowledge_then_resolve(fake_pd: PagerDutySandbox, team: SupportTeam,
                                      clock: FakeClock) -> None:
    incident_id = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")
    francesca = team.engineer_ids[0]
    clock.advance(timedelta(minutes=2))

    ack = call(fake_pd, "PUT", f"/incidents/{incident_id}",
               {"incident": {"type": "incident_reference", "status": "acknowledged"}},
               sender="francesca@example.com")
    clock.advance(timedelta(minutes=3))
    resolved = call(fake_pd, "PUT", f"/incidents/{incident_id}",
                    {"incident": {"type": "incident_reference", "status": "resolved"}})
    twice = call(fake_pd, "PUT", f"/incidents/{incident_id}",
                 {"incident": {"type": "incident_reference", "status": "resolved"}})

    assert ack.status == 200
    assert ack.body["incident"]["acknowledgements"][0]["acknowledger"]["id"] == francesca
    assert ack.body["incident"]["acknowledgements"][0]["at"] == "2026-01-05T09:02:00Z"
    assert resolved.body["incident"]["status"] == "resolved"
    assert resolved.body["incident"]["assignments"] == []
    assert resolved.body["incident"]["resolved_at"] == "2026-01-05T09:05:00Z"
    assert twice.status == 200
    assert twice.body["incident"]["resolved_at"] == "2026-01-05T09:05:00Z"


def test_put_requires_the_incident_type(fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident_id = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")

    reply = call(fake_pd, "PUT", f"/incidents/{incident_id}",
                 {"incident": {"status": "resolved"}})

    assert reply.status == 400
    assert fake_pd.incident(incident_id)["status"] == "triggered"


def test_python_trigger_dedups_like_an_integration(fake_pd: PagerDutySandbox,
                                                   team: SupportTeam) -> None:
    first = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")

    second = fake_pd.trigger(team.customer_support_service_id, "Down again", "zendesk-1")

    assert second == first
    assert len(fake_pd.incidents()) == 1


# --- notes --------------------------------------------------------------------------------


def test_notes_are_added_by_the_from_user_and_listed_in_order(
        fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    incident_id = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")

    created = call(fake_pd, "POST", f"/incidents/{incident_id}/notes",
                   {"note": {"content": "Customer contacted"}})
    call(fake_pd, "POST", f"/incidents/{incident_id}/notes", {"note": {"content": "Bridge up"}})
    listed = call(fake_pd, "GET", f"/incidents/{incident_id}/notes")

    assert created.status == 200
    assert created.body["note"]["user"]["summary"] == "Emergency Automation"
    assert [n["content"] for n in listed.body["notes"]] == ["Customer contacted", "Bridge up"]


def test_empty_note_and_unknown_incident_are_refused(fake_pd: PagerDutySandbox,
                                                     team: SupportTeam) -> None:
    incident_id = fake_pd.trigger(team.customer_support_service_id, "Down", "zendesk-1")

    empty = call(fake_pd, "POST", f"/incidents/{incident_id}/notes", {"note": {"content": " "}})
    missing = call(fake_pd, "POST", "/incidents/PI99999/notes", {"note": {"content": "x"}})

    assert (empty.status, missing.status) == (400, 404)


# --- users and on-calls -------------------------------------------------------------------


def test_users_by_id_and_by_email_query(fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    francesca = team.engineer_ids[0]

    one = call(fake_pd, "GET", f"/users/{francesca}")
    found = call(fake_pd, "GET", "/users", query="FRANCESCA@example.com")
    missing = call(fake_pd, "GET", "/users/PU99999")

    assert one.body["user"]["email"] == "francesca@example.com"
    assert ids(found, "users") == [francesca]
    assert missing.status == 404


def test_oncalls_now_and_in_a_window(fake_pd: PagerDutySandbox, team: SupportTeam) -> None:
    policy = team.customer_support_policy_id

    now = call(fake_pd, "GET", "/oncalls", filters={"escalation_policy_ids[]": [policy]})
    window = call(fake_pd, "GET", "/oncalls", since="2026-01-05T09:00:00Z",
                  until="2026-01-06T09:00:00Z", filters={"escalation_policy_ids[]": [policy]})
    earliest = call(fake_pd, "GET", "/oncalls", since="2026-01-05T09:00:00Z",
                    until="2026-01-08T09:00:00Z", earliest="true",
                    filters={"escalation_policy_ids[]": [policy]})

    assert [(o["user"]["id"], o["start"], o["end"]) for o in now.body["oncalls"]] == [
        (team.engineer_ids[0], "2026-01-05T09:00:00Z", "2026-01-05T17:00:00Z")]
    # A shift starting exactly at ``until`` does not overlap the window.
    assert [o["start"] for o in window.body["oncalls"]] == [
        "2026-01-05T09:00:00Z", "2026-01-05T17:00:00Z", "2026-01-06T01:00:00Z"]
    assert [o["user"]["id"] for o in earliest.body["oncalls"]] == list(team.engineer_ids)


def test_oncalls_filter_by_schedule_and_include_users(fake_pd: PagerDutySandbox,
                                                      team: SupportTeam) -> None:
    reply = call(fake_pd, "GET", "/oncalls", filters={
        "schedule_ids[]": [team.support_managers_schedule_id], "include[]": ["users"]})

    assert [o["user"]["email"] for o in reply.body["oncalls"]] == ["alex.morgan@example.com"]
    assert reply.body["oncalls"][0]["schedule"]["id"] == team.support_managers_schedule_id


def test_oncalls_refuse_until_before_since(fake_pd: PagerDutySandbox) -> None:
    reply = call(fake_pd, "GET", "/oncalls", since="2026-01-06T00:00:00Z",
                 until="2026-01-05T00:00:00Z")

    assert reply.status == 400
    assert reply.body["error"]["code"] == 2004


def test_permanent_oncall_has_no_start_or_end(fake_pd: PagerDutySandbox) -> None:
    user = fake_pd.add_user("Pat Permanent", "pat@example.com")
    policy = fake_pd.add_escalation_policy("Always Pat")
    fake_pd.add_oncall(user, policy, None, None, None)

    reply = call(fake_pd, "GET", "/oncalls", filters={"escalation_policy_ids[]": [policy]})

    assert reply.body["oncalls"][0]["start"] is None
    assert reply.body["oncalls"][0]["schedule"] is None


def test_add_oncall_refuses_naive_times(fake_pd: PagerDutySandbox) -> None:
    user = fake_pd.add_user("Pat", "pat@example.com")
    policy = fake_pd.add_escalation_policy("P")

    with pytest.raises(ValueError, match="timezone-aware"):
        fake_pd.add_oncall(user, policy, None, datetime(2026, 1, 5), None)  # noqa: DTZ001


def test_unknown_route_is_404(fake_pd: PagerDutySandbox) -> None:
    assert call(fake_pd, "GET", "/services").status == 404


def test_a_service_and_its_escalation_policy_are_read_by_id(fake_pd: PagerDutySandbox,
                                                          team: SupportTeam) -> None:
    cs, policy_id = team.customer_support_service_id, team.customer_support_policy_id

    service = call(fake_pd, "GET", f"/services/{cs}").body["service"]
    policy = call(fake_pd, "GET", f"/escalation_policies/{policy_id}").body["escalation_policy"]

    assert (service["name"], service["escalation_policy"]["id"]) == ("Customer Support",
                                                                     policy_id)
    assert [t["id"] for t in policy["escalation_rules"][0]["targets"]] == [
        team.customer_support_schedule_id]
    assert [s["id"] for s in policy["services"]] == [cs]
    assert call(fake_pd, "GET", "/services/PS99999").status == 404
    assert call(fake_pd, "GET", f"/services/{policy_id}").status == 404  # ids have kinds
    assert call(fake_pd, "GET", f"/escalation_policies/{cs}").status == 404


# --- faults -------------------------------------------------------------------------------


def respond(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Reply | None:
    """One request through the sandbox's dispatch, where the shared faults apply."""
    headers = {"Authorization": f"Token token={TOKEN}", "From": BOT}
    raw = json.dumps(body).encode() if body is not None else None
    return sandbox.dispatch(sandbox.pagerduty, method, path, headers, raw)


def test_rate_limit_answers_429_with_retry_after_without_applying(
        sandbox: Sandbox, team: SupportTeam) -> None:
    sandbox.pagerduty.faults.rate_limit("POST", re.compile(r"^/incidents$"), retry_after=7)
    body = new_incident(team.customer_support_service_id, "zendesk-1")

    limited = respond(sandbox, "POST", "/incidents", body)
    after = respond(sandbox, "POST", "/incidents", body)

    assert limited is not None and limited.status == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.body == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
    assert after is not None and after.status == 201
    assert len(sandbox.pagerduty.incidents()) == 1


def test_apply_then_drop_applies_and_gives_no_answer(sandbox: Sandbox,
                                                     team: SupportTeam) -> None:
    incident_id = sandbox.pagerduty.trigger(team.customer_support_service_id, "Down",
                                            "zendesk-1")
    sandbox.pagerduty.faults.apply_then_drop("POST", re.compile(r"/notes$"))

    reply = respond(sandbox, "POST", f"/incidents/{incident_id}/notes",
                    {"note": {"content": "hello"}})

    assert reply is None
    assert [n["content"] for n in sandbox.pagerduty.notes(incident_id)] == ["hello"]


def test_faults_are_one_shot_and_ordered(sandbox: Sandbox) -> None:
    sandbox.pagerduty.faults.server_error("GET", "/users", status=502)
    sandbox.pagerduty.faults.rate_limit("GET", "/users", retry_after=3)

    answers = [respond(sandbox, "GET", "/users") for _ in range(3)]

    assert [a.status if a else None for a in answers] == [502, 429, 200]


def test_drop_neither_applies_nor_answers(sandbox: Sandbox, team: SupportTeam) -> None:
    sandbox.pagerduty.faults.drop("POST", "/incidents")

    reply = respond(sandbox, "POST", "/incidents",
                    new_incident(team.customer_support_service_id, "zendesk-1"))

    assert reply is None
    assert sandbox.pagerduty.incidents() == []


def test_sandbox_faults_make_pagerduty_answer_503_to_everything(
        sandbox: Sandbox, account: Account) -> None:
    sandbox.faults.server_error("*", "", service="pagerduty", times=None)
    pd_headers = {"Authorization": f"Token token={TOKEN}", "From": BOT}

    with httpx2.Client(verify=ssl.create_default_context(cafile=sandbox.pagerduty_ca)) as pd:
        answers = [pd.get(f"{sandbox.pagerduty_url}{path}", headers=pd_headers)
                   for path in ("/incidents", "/users", "/oncalls")]
    zendesk = httpx2.get(f"{sandbox.url}/api/v2/users/me.json", auth=sandbox.auth)

    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].json() == {"error": {"message": "Service Unavailable", "code": 2000}}
    assert zendesk.status_code == 200  # the other services are not touched
    assert len(sandbox.faults.pending()) == 1  # until cleared
    sandbox.faults.clear()
    assert respond(sandbox, "GET", "/users") is not None


def test_faults_armed_for_pagerduty_are_kept_in_the_sandbox_register(sandbox: Sandbox) -> None:
    sandbox.pagerduty.faults.server_error("GET", "/users")

    assert [(f.kind, f.service) for f in sandbox.faults.pending()] == [
        ("server_error", "pagerduty")]
    reply = respond(sandbox, "GET", "/users")

    assert reply is not None and reply.status == 503
    assert sandbox.faults.pending() == []


# --- shapes -------------------------------------------------------------------------------


def test_answers_match_pagerduty_openapi(openapi: OpenApi, fake_pd: PagerDutySandbox,
                                         team: SupportTeam) -> None:
    cs = team.customer_support_service_id
    incident_id = fake_pd.trigger(cs, "Down", "zendesk-1")
    fake_pd.acknowledge(incident_id, team.engineer_ids[0])
    call(fake_pd, "POST", f"/incidents/{incident_id}/notes", {"note": {"content": "x"}})
    exchanges: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("POST", "/incidents", new_incident(cs, "zendesk-2"), {}),
        ("GET", "/incidents", None, {"statuses[]": ["acknowledged"]}),
        ("GET", f"/incidents/{incident_id}", None, {}),
        ("PUT", f"/incidents/{incident_id}",
         {"incident": {"type": "incident_reference", "status": "resolved"}}, {}),
        ("GET", f"/incidents/{incident_id}/notes", None, {}),
        ("POST", f"/incidents/{incident_id}/notes", {"note": {"content": "y"}}, {}),
        ("GET", "/users", None, {"query": "francesca"}),
        ("GET", f"/users/{team.engineer_ids[0]}", None, {}),
        ("GET", f"/services/{cs}", None, {}),
        ("GET", "/services/PS99999", None, {}),
        ("GET", f"/escalation_policies/{team.customer_support_policy_id}", None, {}),
        ("GET", "/escalation_policies/PE99999", None, {}),
        # Not checked: include[]=users, which swaps each user reference for a full user
        # (as include[] does everywhere); the description's Oncall schema does not model it.
        ("GET", "/oncalls", None, {}),
        ("GET", "/incidents/PI99999", None, {}),
        ("POST", "/incidents", new_incident(cs, "zendesk-2"), {}),
    ]
    problems = []
    for method, path, body, query in exchanges:
        reply = call(fake_pd, method, path, body, filters=query)
        problems += [f"{method} {path} {reply.status}: {e}" for e in
                     openapi.response_errors(method, path, reply.status, reply.body)]
        assert reply.status < 500
    unauthorized = call(fake_pd, "GET", "/incidents", token="nope")
    problems += openapi.response_errors("GET", "/incidents", 401, unauthorized.body)

    assert problems == []


def test_the_checker_catches_a_wrong_shape(openapi: OpenApi) -> None:
    bad = {"incident": {"id": "P1", "status": "open", "created_at": "yesterday"}}

    problems = openapi.response_errors("GET", "/incidents/P1", 200, bad)

    assert any("status" in p for p in problems)
    assert any("created_at" in p for p in problems)


# --- TLS ----------------------------------------------------------------------------------


def test_pagerduty_is_served_over_https_with_the_sandbox_ca(sandbox: Sandbox,
                                                            team: SupportTeam) -> None:
    url, ca_path = sandbox.pagerduty_url, sandbox.pagerduty_ca
    context = ssl.create_default_context(cafile=ca_path)

    with httpx2.Client(verify=context) as client:
        reply = client.get(f"{url}/users", params={"query": "alex"},
                           headers={"Authorization": f"Token token={TOKEN}"})

    assert url.startswith("https://127.0.0.1:")
    assert reply.status_code == 200
    assert [u["email"] for u in reply.json()["users"]] == ["alex.morgan@example.com"]
    assert reply.headers["Date"] == "Mon, 05 Jan 2026 09:00:00 GMT"


@pytest.mark.sockets  # the certificate is checked on the socket only
def test_pagerduty_tls_is_not_trusted_without_the_ca(sandbox: Sandbox) -> None:
    with httpx2.Client(verify=ssl.create_default_context()) as client:
        with pytest.raises(httpx2.ConnectError):
            client.get(f"{sandbox.pagerduty_url}/users")


def test_pagerduty_tls_closes_the_connection_for_a_dropped_answer(
        sandbox: Sandbox, team: SupportTeam) -> None:
    url, ca_path = sandbox.pagerduty_url, sandbox.pagerduty_ca
    incident_id = sandbox.pagerduty.trigger(team.customer_support_service_id, "Down",
                                            "zendesk-1")
    sandbox.pagerduty.faults.apply_then_drop("POST", "/notes")

    with httpx2.Client(verify=ssl.create_default_context(cafile=ca_path)) as client:
        with pytest.raises(httpx2.RemoteProtocolError):
            client.post(f"{url}/incidents/{incident_id}/notes",
                        json={"note": {"content": "once"}},
                        headers={"Authorization": f"Token token={TOKEN}", "From": BOT})

    assert [n["content"] for n in sandbox.pagerduty.notes(incident_id)] == ["once"]


def test_seeded_team_rotates_shifts_from_the_current_hour(fake_pd: PagerDutySandbox,
                                                          clock: FakeClock) -> None:
    clock.set(datetime(2026, 1, 5, 9, 40, tzinfo=UTC))

    team = fake_pd.seed_support_team([("A", "a@example.com"), ("B", "b@example.com")],
                                     [("M", "m@example.com")], shift=timedelta(hours=12),
                                     days=1)

    shifts = call(fake_pd, "GET", "/oncalls", since="2026-01-05T09:00:00Z",
                  until="2026-01-06T09:00:00Z",
                  filters={"escalation_policy_ids[]": [team.customer_support_policy_id]})
    assert [(o["user"]["summary"], o["start"]) for o in shifts.body["oncalls"]] == [
        ("A", "2026-01-05T09:00:00Z"), ("B", "2026-01-05T21:00:00Z")]
