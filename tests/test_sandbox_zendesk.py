"""The Zendesk sandbox behaves like the real API: shapes, statuses, conflicts and faults."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from zenpy import Zenpy
from zenpy.lib.api import BaseApi
from zenpy.lib.api_objects import Comment as ZenpyComment

from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from automation.sandbox.zendesk import FakeZendesk, routes

SEARCH_URGENT = (
    "/api/v2/search.json?query=type%3Aticket%20priority%3Aurgent%20status%3Csolved"
    "&filter%5Btype%5D=ticket"
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # 2026-01-05T09:00:00Z, a Monday


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = sandbox.auth
        yield session


def urgent_ticket(sandbox: Sandbox, account: Account, **kwargs: Any) -> int:
    fields: dict[str, Any] = {"subject": "Checkout is down", "body": "All payments fail with 500"}
    fields.update(kwargs)
    return sandbox.zendesk.create_ticket(account.requester_id, **fields)


def put_ticket(
    api: requests.Session, sandbox: Sandbox, ticket_id: int, **fields: Any
) -> requests.Response:
    return api.put(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json", json={"ticket": fields})


def stamp_of(sandbox: Sandbox, ticket_id: int) -> str:
    return str(sandbox.zendesk.ticket(ticket_id)["updated_at"])


def zenpy_for(url: str, email: str, token: str, session: requests.Session) -> Zenpy:
    """Point every zenpy API at the sandbox, including nested ones such as users.search."""
    scheme, netloc = url.split("://", 1)
    client = Zenpy(
        subdomain="sandbox",
        email=email,
        token=token,
        session=session,
        disable_cache=True,
    )
    patched: set[int] = set()

    def redirect(owner: object) -> None:
        for api in vars(owner).values():
            if isinstance(api, BaseApi) and id(api) not in patched:
                patched.add(id(api))
                api.protocol = scheme
                api.__class__ = type(
                    api.__class__.__name__,
                    (api.__class__,),
                    {"base_url": property(lambda self: netloc)},
                )
                redirect(api)

    redirect(client)
    return client


# ----- search -------------------------------------------------------------------------------


def test_search_finds_unsolved_urgent_tickets_with_the_url_zenpy_sends(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    zendesk = sandbox.zendesk
    wanted = [urgent_ticket(sandbox, account), urgent_ticket(sandbox, account)]
    zendesk.set_status(wanted[1], "pending")
    solved = urgent_ticket(sandbox, account)
    zendesk.solve(solved)
    urgent_ticket(sandbox, account, priority="high")

    response = api.get(sandbox.url + SEARCH_URGENT)

    assert response.status_code == 200
    payload = response.json()
    assert [r["id"] for r in payload["results"]] == wanted
    assert {r["result_type"] for r in payload["results"]} == {"ticket"}
    assert payload["count"] == 2
    assert payload["next_page"] is None and payload["previous_page"] is None
    assert payload["facets"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("priority>normal", {"a", "b"}),
        ("priority<high", {"c", "d"}),
        ("priority:urgent", {"a"}),
        ("status:new", {"a", "b", "c"}),
        ("status>open", {"d"}),
        ("tags:vip", {"a", "c"}),
        ("tag:vip -tags:outage", {"a"}),
        ("tags:vip tags:outage", {"a", "b", "c"}),
        ("organization:{org}", {"a", "c"}),
        ("-organization:{org}", {"b", "d"}),
        ("brand:11", {"a"}),
        ("brand_id:12", {"c"}),
        ("form:21", {"a"}),
        ("ticket_form_id:22", {"c"}),
        ("type:ticket priority>low status<solved -tags:vip", {"b"}),
    ],
)
def test_search_filters_tickets(
    sandbox: Sandbox, account: Account, api: requests.Session, query: str, expected: set[str]
) -> None:
    zendesk = sandbox.zendesk
    loner = zendesk.add_user("Sam Solo", "sam@solo.example.com")
    ids = {
        "a": urgent_ticket(sandbox, account, tags=["vip"], brand_id=11, ticket_form_id=21),
        "b": zendesk.create_ticket(loner, "Slow", "Slow", priority="high", tags=["outage"]),
        "c": urgent_ticket(
            sandbox,
            account,
            priority="normal",
            tags=["VIP", "outage"],
            brand_id=12,
            ticket_form_id=22,
        ),
        "d": zendesk.create_ticket(loner, "Typo", "Typo", priority="low"),
    }
    zendesk.set_status(ids["d"], "pending")

    response = api.get(
        f"{sandbox.url}/api/v2/search.json",
        params={"query": query.format(org=account.organization_id)},
    )

    assert response.status_code == 200, response.text
    found = {r["id"] for r in response.json()["results"]}
    assert found == {ids[key] for key in expected}


def test_search_pages_with_absolute_next_page_urls(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    created = [urgent_ticket(sandbox, account) for _ in range(5)]
    seen: list[int] = []
    url: str | None = f"{sandbox.url}{SEARCH_URGENT}&per_page=2"
    pages = []
    while url:
        payload = api.get(url).json()
        pages.append(payload)
        seen += [r["id"] for r in payload["results"]]
        url = payload["next_page"]

    assert seen == created
    assert [len(p["results"]) for p in pages] == [2, 2, 1]
    assert {p["count"] for p in pages} == {5}
    assert pages[0]["next_page"].startswith(f"{sandbox.url}/api/v2/search.json?")
    assert "page=2" in pages[0]["next_page"]
    assert pages[0]["previous_page"] is None
    assert "page=2" in pages[2]["previous_page"]


def test_search_refuses_pages_beyond_1000_results(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    for _ in range(1001):
        urgent_ticket(sandbox, account)

    tenth = api.get(f"{sandbox.url}{SEARCH_URGENT}&page=10")
    eleventh = api.get(tenth.json()["next_page"])

    assert tenth.status_code == 200 and tenth.json()["count"] == 1001
    assert eleventh.status_code == 422
    assert eleventh.json()["error"] == "invalid"
    assert "Search Response Limits" in eleventh.json()["description"]


@pytest.mark.parametrize(
    "query", ["type:ticket flavour:vanilla", "checkout", "priority:HOT", "tags>vip", "type:user"]
)
def test_search_rejects_unsupported_terms(
    sandbox: Sandbox, api: requests.Session, query: str
) -> None:
    response = api.get(f"{sandbox.url}/api/v2/search.json", params={"query": query})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert response.json()["description"].startswith("Invalid search:")


# ----- views --------------------------------------------------------------------------------


def test_view_lists_its_tickets_with_cursor_pagination(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    tickets = [urgent_ticket(sandbox, account) for _ in range(3)]
    urgent_ticket(sandbox, account, priority="low")
    view = f"{sandbox.url}/api/v2/views/{account.view_id}/tickets"

    whole = api.get(f"{view}?include=None&page%5Bsize%5D=100").json()
    first = api.get(view, params={"page[size]": 2}).json()
    second = api.get(first["links"]["next"]).json()

    assert [t["id"] for t in whole["tickets"]] == tickets
    assert whole["meta"]["has_more"] is False and whole["links"]["next"] is None
    assert [t["id"] for t in first["tickets"]] == tickets[:2]
    assert first["meta"]["has_more"] is True and first["meta"]["after_cursor"]
    assert [t["id"] for t in second["tickets"]] == tickets[2:]
    assert second["meta"]["has_more"] is False and second["links"]["next"] is None


def test_view_can_be_a_predicate_and_unknown_views_are_404(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    vip = urgent_ticket(sandbox, account, tags=["vip"])
    urgent_ticket(sandbox, account)
    sandbox.zendesk.add_view(7, lambda ticket: "vip" in ticket["tags"])

    listed = api.get(f"{sandbox.url}/api/v2/views/7/tickets.json")
    missing = api.get(f"{sandbox.url}/api/v2/views/8/tickets.json")

    assert [t["id"] for t in listed.json()["tickets"]] == [vip]
    assert missing.status_code == 404


def test_a_view_shows_its_title_and_an_unknown_view_is_404(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    shown = api.get(f"{sandbox.url}/api/v2/views/{account.view_id}.json")
    missing = api.get(f"{sandbox.url}/api/v2/views/8.json")

    assert shown.status_code == 200
    assert shown.json()["view"]["id"] == account.view_id
    assert shown.json()["view"]["title"] == "Urgent unsolved tickets"
    assert (missing.status_code, missing.json()["error"]) == (404, "RecordNotFound")


# ----- reads, errors and headers ------------------------------------------------------------


def test_unknown_records_and_endpoints_are_404(sandbox: Sandbox, api: requests.Session) -> None:
    ticket = api.get(f"{sandbox.url}/api/v2/tickets/424242.json")
    endpoint = api.get(f"{sandbox.url}/api/v2/macros.json")

    assert ticket.status_code == 404
    assert ticket.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert endpoint.status_code == 404
    assert endpoint.json()["error"] == "InvalidEndpoint"


@pytest.mark.parametrize(
    "auth",
    [
        ("automation@example.com/token", "wrong-token"),
        ("automation@example.com", "sandbox-token"),  # a password login, not a token
        ("jordan.lee@acme.example.com/token", "sandbox-token"),  # end-users get no API access
        None,
    ],
)
def test_bad_credentials_are_401(
    sandbox: Sandbox, account: Account, auth: tuple[str, str] | None
) -> None:
    response = requests.get(f"{sandbox.url}/api/v2/users/me.json", auth=auth, timeout=5)

    assert response.status_code == 401
    assert response.json() == {"error": "Couldn't authenticate you"}


def test_agents_authenticate_with_the_account_token(sandbox: Sandbox, account: Account) -> None:
    response = requests.get(
        f"{sandbox.url}/api/v2/users/me.json",
        auth=("francesca@example.com/token", sandbox.token),
        timeout=5,
    )

    assert response.status_code == 200
    assert response.json()["user"]["id"] == account.agent_id


def test_every_response_carries_date_content_type_and_rate_limit_headers(
    sandbox: Sandbox, clock: FakeClock, api: requests.Session
) -> None:
    ok = api.get(f"{sandbox.url}/api/v2/users/me.json")
    clock.advance(timedelta(minutes=15))
    missing = api.get(f"{sandbox.url}/api/v2/tickets/1.json")
    denied = requests.get(f"{sandbox.url}/api/v2/users/me.json", timeout=5)

    assert ok.headers["Date"] == "Mon, 05 Jan 2026 09:00:00 GMT"
    assert missing.headers["Date"] == "Mon, 05 Jan 2026 09:15:00 GMT"
    for response in (ok, missing, denied):
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert int(response.headers["X-Rate-Limit"]) == 700
        assert 0 <= int(response.headers["X-Rate-Limit-Remaining"]) < 700


def test_ticket_and_comment_shapes_follow_zendesk(
    sandbox: Sandbox, account: Account, clock: FakeClock, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account, cc_ids=[account.cc_id], tags=["vip"])
    clock.advance(timedelta(minutes=3))
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "Looking into it", public=False)

    ticket = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").json()["ticket"]
    comments = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}/comments.json").json()

    assert ticket["url"] == f"{sandbox.url}/api/v2/tickets/{ticket_id}.json"
    assert ticket["created_at"] == "2026-01-05T09:00:00Z"
    assert ticket["updated_at"] == "2026-01-05T09:03:00Z"
    assert ticket["status"] == "open"  # an agent commented on a new ticket
    assert ticket["requester_id"] == ticket["submitter_id"] == account.requester_id
    assert ticket["organization_id"] == account.organization_id
    assert ticket["email_cc_ids"] == ticket["collaborator_ids"] == [account.cc_id]
    assert ticket["description"] == "All payments fail with 500"
    assert {"brand_id", "ticket_form_id", "custom_fields", "via", "assignee_id"} <= set(ticket)
    first, note = comments["comments"]
    assert first["type"] == "Comment" and first["public"] is True
    assert first["author_id"] == account.requester_id
    assert first["body"] == first["plain_body"] == "All payments fail with 500"
    assert "All payments fail with 500" in first["html_body"]
    assert first["attachments"] == [] and isinstance(first["metadata"], dict)
    assert note["public"] is False and note["via"]["channel"] == "web"
    assert note["created_at"] == "2026-01-05T09:03:00Z"


def test_comments_paginate_by_cursor_oldest_first_with_users_sideloaded(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    for n in range(5):
        sandbox.zendesk.add_comment(ticket_id, account.agent_id, f"update {n}")
    url = f"{sandbox.url}/api/v2/tickets/{ticket_id}/comments.json"

    params = {"include_inline_images": "false", "page[size]": "4", "include": "users"}
    first = api.get(url, params=params).json()
    second = api.get(first["links"]["next"]).json()

    bodies = [c["body"] for c in first["comments"] + second["comments"]]
    assert bodies == ["All payments fail with 500"] + [f"update {n}" for n in range(5)]
    assert first["meta"]["has_more"] is True and len(first["comments"]) == 4
    assert second["meta"]["has_more"] is False and second["links"]["next"] is None
    assert {u["id"] for u in first["users"]} == {account.requester_id, account.agent_id}


def test_users_and_organizations_are_readable(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    base = f"{sandbox.url}/api/v2"

    many = api.get(
        f"{base}/users/show_many.json",
        params={"ids": f"{account.agent_id},{account.requester_id},999"},
    ).json()
    me = api.get(f"{base}/users/me.json").json()["user"]
    found = api.get(f"{base}/users/search.json", params={"query": "francesca@example.com"}).json()
    organization = api.get(f"{base}/organizations/{account.organization_id}.json").json()

    assert [u["name"] for u in many["users"]] == ["Francesca Rossi", "Jordan Lee"]
    assert me["id"] == account.admin_id and me["role"] == "admin"
    assert [u["id"] for u in found["users"]] == [account.agent_id]
    assert found["users"][0]["role"] == "agent"
    fields = organization["organization"]["organization_fields"]
    assert organization["organization"]["name"] == "Acme Corp"
    assert fields["account_manager"] == "marco.bianchi@example.com"
    assert fields["ase"] == "giulia.verdi@example.com"
    assert api.get(f"{base}/organizations/1.json").status_code == 404
    assert api.get(f"{base}/users/1.json").status_code == 404


def test_requests_the_server_cannot_read_are_refused_in_json_with_the_sandbox_date(
        sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.port)) as raw:
        raw.sendall(b"PUT /api/v2/tickets/1.json HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        answer = b"".join(iter(lambda: raw.recv(4096), b"")).decode()  # until it closes

    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 ")
    assert "Date: Mon, 05 Jan 2026 09:00:00 GMT" in head and "Connection: close" in head
    assert json.loads(body) == {
        "error": "BadRequest",
        "description": "chunked request bodies are not supported; send Content-Length"}


# ----- writes -------------------------------------------------------------------------------


def test_post_creates_a_new_ticket_whose_description_is_the_requesters_comment(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    body: dict[str, Any] = {
        "ticket": {
            "subject": "Database unreachable",
            "priority": "urgent",
            "requester_id": account.requester_id,
            "tags": ["db", "Sev1"],
            "comment": {"body": "Primary is gone", "public": True},
        }
    }

    response = api.post(f"{sandbox.url}/api/v2/tickets.json", json=body)

    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert response.headers["Location"] == ticket["url"]
    assert ticket["status"] == "new" and ticket["priority"] == "urgent"
    assert ticket["tags"] == ["db", "sev1"]
    assert ticket["created_at"] == ticket["updated_at"] == "2026-01-05T09:00:00Z"
    comments = sandbox.zendesk.comments(ticket["id"])
    assert [(c["author_id"], c["body"], c["public"]) for c in comments] == [
        (account.requester_id, "Primary is gone", True)
    ]
    assert response.json()["audit"]["events"][0]["type"] == "Comment"


def test_put_applies_comment_priority_and_tags_in_one_audit(
    sandbox: Sandbox, account: Account, clock: FakeClock, api: requests.Session
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account, tags=["vip"])
    stamp = stamp_of(sandbox, ticket_id)

    response = put_ticket(
        api,
        sandbox,
        ticket_id,
        safe_update=True,
        updated_stamp=stamp,
        priority="high",
        tags=["vip", "bridge_closed"],
        comment={"body": "Bridge closed.", "public": True},
    )

    assert response.status_code == 200, response.text
    ticket, audit = response.json()["ticket"], response.json()["audit"]
    assert ticket["priority"] == "high" and ticket["tags"] == ["vip", "bridge_closed"]
    assert ticket["status"] == "open"
    # The clock did not move, yet updated_at must, or the old stamp would still pass.
    assert ticket["updated_at"] == "2026-01-05T09:00:01Z"
    assert audit["ticket_id"] == ticket_id and audit["author_id"] == account.admin_id
    assert audit["created_at"] == ticket["updated_at"]
    comment, *changes = audit["events"]
    assert comment["type"] == "Comment" and comment["body"] == "Bridge closed."
    assert {
        (e["type"], e["field_name"], str(e["previous_value"]), str(e["value"])) for e in changes
    } == {
        ("Change", "priority", "urgent", "high"),
        ("Change", "tags", "['vip']", "['vip', 'bridge_closed']"),
        ("Change", "status", "new", "open"),
    }
    assert len(sandbox.zendesk.audits(ticket_id)) == 2
    assert sandbox.zendesk.public_comments(ticket_id)[-1]["author_id"] == account.admin_id

    clock.advance(timedelta(minutes=15))
    later = put_ticket(api, sandbox, ticket_id, comment={"body": "Follow-up"})
    assert later.json()["ticket"]["updated_at"] == "2026-01-05T09:15:00Z"


def test_put_with_a_stale_stamp_is_409_and_changes_nothing(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account)
    stale = stamp_of(sandbox, ticket_id)
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "Any news?")
    before = sandbox.zendesk.ticket(ticket_id)

    response = put_ticket(
        api,
        sandbox,
        ticket_id,
        safe_update=True,
        updated_stamp=stale,
        priority="high",
        comment={"body": "ack"},
    )

    assert response.status_code == 409
    assert response.json()["error"] == "UpdateConflict"
    assert response.json()["description"].startswith("Safe Update prevented the update")
    assert sandbox.zendesk.ticket(ticket_id) == before
    assert len(sandbox.zendesk.comments(ticket_id)) == 2


def test_safe_update_false_still_checks_the_stamp_but_omitting_it_does_not(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account)
    stale = stamp_of(sandbox, ticket_id)
    sandbox.zendesk.add_comment(ticket_id, account.requester_id, "Any news?")

    checked = put_ticket(
        api, sandbox, ticket_id, safe_update=False, updated_stamp=stale, comment={"body": "ack"}
    )
    forced = put_ticket(api, sandbox, ticket_id, updated_stamp=stale, comment={"body": "ack"})

    assert checked.status_code == 409  # the spec: "A value of false has the same effect as true"
    assert forced.status_code == 200


@pytest.mark.parametrize(
    ("fields", "detail_key", "description"),
    [
        ({"priority": "HIGH"}, "priority", "Priority: HIGH is not valid"),
        ({"status": "done"}, "status", "Status: done is not valid"),
        ({"comment": {"body": "  ", "public": True}}, "comment", "Comment: cannot be blank"),
        ({"comment": {"body": "ok", "public": "yes"}}, "comment", "public must be true or false"),
        ({"comment": {"body": "ok", "author_id": 42}}, "comment", "author 42 is invalid"),
        ({"tags": "vip", "remove_tags": [1]}, "tags", "must be a list of strings"),
        ({"safe_update": True, "priority": "high"}, "updated_stamp", "is required"),
    ],
)
def test_invalid_puts_are_422_and_change_nothing(
    sandbox: Sandbox,
    account: Account,
    api: requests.Session,
    fields: dict[str, Any],
    detail_key: str,
    description: str,
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    before = sandbox.zendesk.ticket(ticket_id)

    response = put_ticket(api, sandbox, ticket_id, **fields)

    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "RecordInvalid"
    assert payload["description"] == "Record validation errors"
    assert description in payload["details"][detail_key][0]["description"]
    assert sandbox.zendesk.ticket(ticket_id) == before
    assert len(sandbox.zendesk.comments(ticket_id)) == 1


def test_closed_tickets_reject_updates(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.zendesk.close(ticket_id)

    response = put_ticket(api, sandbox, ticket_id, comment={"body": "reopen?"})

    assert response.status_code == 422
    assert "closed" in response.json()["details"]["status"][0]["description"]


def test_put_adds_and_removes_tags_and_takes_author_and_html_body(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account, tags=["vip", "new_issue"])

    response = put_ticket(
        api,
        sandbox,
        ticket_id,
        additional_tags=["ack_sent"],
        remove_tags=["new_issue"],
        comment={
            "html_body": "<p>We are <b>on it</b> &amp; paging.</p>",
            "author_id": account.agent_id,
            "public": False,
        },
    )

    assert response.json()["ticket"]["tags"] == ["vip", "ack_sent"]
    comment = sandbox.zendesk.comments(ticket_id)[-1]
    assert comment["author_id"] == account.agent_id and comment["public"] is False
    assert comment["body"] == "We are on it & paging."
    assert response.json()["audit"]["author_id"] == account.agent_id


def test_concurrent_puts_with_the_same_stamp_let_exactly_one_through(
    sandbox: Sandbox, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account)
    stamp = stamp_of(sandbox, ticket_id)
    statuses: list[int] = []
    check = FakeZendesk._check_safe_update

    def slow_check(self: FakeZendesk, *args: Any) -> None:
        check(self, *args)
        time.sleep(0.02)  # widen the read-then-write window a missing lock would expose

    monkeypatch.setattr(FakeZendesk, "_check_safe_update", slow_check)

    def post_ack() -> None:
        with requests.Session() as session:
            session.auth = sandbox.auth
            statuses.append(
                put_ticket(
                    session,
                    sandbox,
                    ticket_id,
                    safe_update=True,
                    updated_stamp=stamp,
                    comment={"body": "ack"},
                ).status_code
            )

    threads = [threading.Thread(target=post_ack) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [409] * 5
    assert [c["body"] for c in sandbox.zendesk.comments(ticket_id)][1:] == ["ack"]


def test_unexpected_errors_are_json_500s(
    sandbox: Sandbox, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(FakeZendesk, "_get_ticket", explode)

    response = api.get(f"{sandbox.url}/api/v2/tickets/1.json")

    assert response.status_code == 500
    assert response.json()["error"] == "InternalServerError"
    assert "Traceback" not in response.text and "boom" not in response.text


# ----- Python API and clock -----------------------------------------------------------------


def test_python_api_changes_go_through_audits_and_bump_updated_at(
    sandbox: Sandbox, account: Account, clock: FakeClock
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    zendesk = sandbox.zendesk
    ticket_id = urgent_ticket(sandbox, account)

    first = zendesk.add_comment(ticket_id, account.agent_id, "internal", public=False)
    second = zendesk.add_comment(ticket_id, account.agent_id, "public reply")
    zendesk.set_priority(ticket_id, "high")
    sandbox.advance(timedelta(minutes=30))
    zendesk.solve(ticket_id, account.agent_id)

    ticket = zendesk.ticket(ticket_id)
    assert first < second
    assert ticket["updated_at"] == "2026-01-05T09:30:00Z"
    assert clock.now().isoformat() == "2026-01-05T09:30:00+00:00"
    assert (ticket["priority"], ticket["status"]) == ("high", "solved")
    assert [c["body"] for c in zendesk.public_comments(ticket_id)] == [
        "All payments fail with 500",
        "public reply",
    ]
    assert [a["created_at"] for a in zendesk.audits(ticket_id)] == [
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:00:01Z",
        "2026-01-05T09:00:02Z",
        "2026-01-05T09:00:03Z",
        "2026-01-05T09:30:00Z",
    ]
    with pytest.raises(KeyError):
        zendesk.ticket(999)


def test_request_log_records_method_path_and_status(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json")
    put_ticket(api, sandbox, ticket_id, priority="BAD")

    assert sandbox.requests == [
        ("GET", f"/api/v2/tickets/{ticket_id}.json", 200),
        ("PUT", f"/api/v2/tickets/{ticket_id}.json", 422),
    ]


# ----- faults -------------------------------------------------------------------------------


def test_rate_limit_answers_429_without_applying_until_used_up(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.faults.rate_limit("PUT", "/tickets/", retry_after=7, times=2)

    limited = [put_ticket(api, sandbox, ticket_id, comment={"body": "ack"}) for _ in range(2)]
    read = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json")
    applied = put_ticket(api, sandbox, ticket_id, comment={"body": "ack"})

    assert [r.status_code for r in limited] == [429, 429]
    assert limited[0].headers["Retry-After"] == "7"
    assert limited[0].json()["error"] == "TooManyRequests"
    assert read.status_code == 200  # only PUTs were armed
    assert applied.status_code == 200
    assert [c["body"] for c in sandbox.zendesk.comments(ticket_id)][1:] == ["ack"]
    assert sandbox.faults.pending() == []


def test_server_error_answers_5xx_without_applying(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.faults.server_error("PUT", re.compile(rf"/tickets/{ticket_id}\.json$"), status=502)

    failed = put_ticket(api, sandbox, ticket_id, priority="high")

    assert failed.status_code == 502
    assert failed.json()["error"] == "BadGateway"
    assert failed.headers["Content-Type"] == "application/json; charset=utf-8"
    assert sandbox.zendesk.ticket(ticket_id)["priority"] == "urgent"


def test_apply_then_fail_applies_the_write_and_answers_5xx(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account)
    stamp = stamp_of(sandbox, ticket_id)
    sandbox.faults.apply_then_fail("PUT", f"/tickets/{ticket_id}")

    failed = put_ticket(
        api, sandbox, ticket_id, safe_update=True, updated_stamp=stamp, comment={"body": "ack"}
    )
    retried = put_ticket(
        api, sandbox, ticket_id, safe_update=True, updated_stamp=stamp, comment={"body": "ack"}
    )

    assert failed.status_code == 503
    assert retried.status_code == 409  # a blind retry of the applied write is caught
    assert [c["body"] for c in sandbox.zendesk.comments(ticket_id)][1:] == ["ack"]


def test_apply_then_drop_applies_the_write_and_closes_without_answering(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.faults.apply_then_drop("PUT", "/tickets/")

    with pytest.raises(requests.ConnectionError):
        put_ticket(api, sandbox, ticket_id, comment={"body": "ack"})

    assert [c["body"] for c in sandbox.zendesk.comments(ticket_id)][1:] == ["ack"]
    assert sandbox.requests[-1] == ("PUT", f"/api/v2/tickets/{ticket_id}.json", None)
    assert api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").status_code == 200


def test_drop_closes_the_connection_without_applying(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.faults.drop("PUT", "/tickets/")

    with pytest.raises(requests.ConnectionError):
        put_ticket(api, sandbox, ticket_id, comment={"body": "ack"})

    assert len(sandbox.zendesk.comments(ticket_id)) == 1
    assert put_ticket(api, sandbox, ticket_id, comment={"body": "ack"}).status_code == 200


def test_latency_delays_only_the_matching_request(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.faults.latency("GET", "/users/me", seconds=0.2)

    started = time.monotonic()
    slow = api.get(f"{sandbox.url}/api/v2/users/me.json")
    slow_took = time.monotonic() - started
    started = time.monotonic()
    api.get(f"{sandbox.url}/api/v2/users/me.json")
    fast_took = time.monotonic() - started

    assert slow.status_code == 200
    assert slow_took >= 0.2
    assert fast_took < 0.2


def test_interleaved_comment_makes_a_safe_update_conflict(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    sandbox.zendesk.same_second_updates = False  # each update moves updated_at on
    ticket_id = urgent_ticket(sandbox, account)
    stamp = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").json()["ticket"]["updated_at"]
    sandbox.faults.interleave_comment(ticket_id, account.agent_id, "I'm on the bridge")

    conflicted = put_ticket(
        api, sandbox, ticket_id, safe_update=True, updated_stamp=stamp, comment={"body": "ack"}
    )
    fresh = stamp_of(sandbox, ticket_id)
    retried = put_ticket(
        api, sandbox, ticket_id, safe_update=True, updated_stamp=fresh, comment={"body": "ack"}
    )

    assert conflicted.status_code == 409
    assert retried.status_code == 200
    assert [(c["author_id"], c["body"]) for c in sandbox.zendesk.comments(ticket_id)][1:] == [
        (account.agent_id, "I'm on the bridge"),
        (account.admin_id, "ack"),
    ]
    assert sandbox.faults.pending() == []


def test_pending_lists_what_is_still_armed(sandbox: Sandbox, api: requests.Session) -> None:
    sandbox.faults.server_error("GET", "/search", times=2)
    sandbox.faults.interleave_comment(1, 2, "later")

    api.get(f"{sandbox.url}/api/v2/search.json", params={"query": "type:ticket"})
    pending = sandbox.faults.pending()

    assert [(getattr(f, "kind", "interleave"), getattr(f, "times", None)) for f in pending] == [
        ("server_error", 1),
        ("interleave", None),
    ]


# ----- zenpy --------------------------------------------------------------------------------


@pytest.fixture
def zenpy(sandbox: Sandbox) -> Iterator[Zenpy]:
    with requests.Session() as session:
        yield zenpy_for(sandbox.url, sandbox.email, sandbox.token, session)


def test_zenpy_reads_and_updates_the_seeded_account(
    sandbox: Sandbox, account: Account, zenpy: Zenpy
) -> None:
    ticket_id = urgent_ticket(sandbox, account, cc_ids=[account.cc_id])
    urgent_ticket(sandbox, account, priority="low")
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "Paging on-call", public=False)

    found = list(zenpy.search(type="ticket", priority="urgent", status_less_than="solved"))
    ticket = zenpy.tickets(id=ticket_id)
    comments = list(zenpy.tickets.comments(ticket=ticket_id))
    users = list(zenpy.users(ids=[account.agent_id, account.requester_id]))
    me = zenpy.users.me()
    organization = zenpy.organizations(id=account.organization_id)
    agents = list(zenpy.users.search(query="francesca@example.com"))

    assert [t.id for t in found] == [ticket_id]
    assert (ticket.subject, ticket.priority, ticket.email_cc_ids) == (
        "Checkout is down",
        "urgent",
        [account.cc_id],
    )
    assert [(c.author_id, c.public) for c in comments] == [
        (account.requester_id, True),
        (account.agent_id, False),
    ]
    assert {u.name for u in users} == {"Francesca Rossi", "Jordan Lee"}
    assert me.email == "automation@example.com"
    assert organization.organization_fields["account_manager"] == "marco.bianchi@example.com"
    assert [a.id for a in agents] == [account.agent_id]

    ticket.comment = ZenpyComment(body="Acknowledged", public=True)
    ticket.priority = "high"
    result = zenpy.tickets.update(ticket)

    assert result.ticket.priority == "high"
    assert sandbox.zendesk.public_comments(ticket_id)[-1]["body"] == "Acknowledged"


# ----- audit metadata and via ---------------------------------------------------------------

STAMP = {"emergency_automation": {"step": "acknowledge", "episode": 123}}
API_VIA = {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}
WEB_VIA = {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}


def audits_over_http(api: requests.Session, sandbox: Sandbox, ticket_id: int) -> list[Any]:
    response = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}/audits.json")
    assert response.status_code == 200
    return list(response.json()["audits"])


def test_put_metadata_is_the_audits_custom_metadata_and_never_on_the_ticket(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)

    response = put_ticket(api, sandbox, ticket_id, metadata=STAMP, additional_tags=["ack"],
                          comment={"body": "We are on it.", "public": True})

    assert response.status_code == 200, response.text
    ticket, audit = response.json()["ticket"], response.json()["audit"]
    assert audit["metadata"] == {"system": {"ip_address": "127.0.0.1"}, "custom": STAMP}
    assert audit["via"] == API_VIA
    assert "metadata" not in ticket
    assert "metadata" not in api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").json()[
        "ticket"]
    created, stamped = audits_over_http(api, sandbox, ticket_id)
    assert stamped == audit
    assert created["metadata"]["custom"] == {}  # the customer's creating audit
    comment = sandbox.zendesk.comments(ticket_id)[-1]
    assert comment["via"] == API_VIA and comment["metadata"] == audit["metadata"]


def test_metadata_rides_on_a_tags_only_update_and_a_create_but_not_on_a_no_op(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account, tags=["vip"])
    tagged = put_ticket(api, sandbox, ticket_id, additional_tags=["step_done"], metadata=STAMP)
    no_op = put_ticket(api, sandbox, ticket_id, additional_tags=["vip"], metadata={"x": 1})
    created = api.post(f"{sandbox.url}/api/v2/tickets.json", json={"ticket": {
        "subject": "Down", "comment": {"body": "Down"}, "requester_id": account.requester_id,
        "metadata": STAMP}})

    assert tagged.status_code == 200
    assert [e["field_name"] for e in tagged.json()["audit"]["events"]] == ["tags"]
    assert tagged.json()["audit"]["metadata"]["custom"] == STAMP
    assert no_op.status_code == 200 and "audit" not in no_op.json()
    assert [a["metadata"]["custom"] for a in audits_over_http(api, sandbox, ticket_id)] == [
        {}, STAMP]
    assert created.status_code == 201
    new_id = created.json()["ticket"]["id"]
    assert created.json()["audit"]["metadata"]["custom"] == STAMP
    assert audits_over_http(api, sandbox, new_id)[0]["metadata"]["custom"] == STAMP
    assert "metadata" not in created.json()["ticket"]


@pytest.mark.parametrize("metadata", [["step"], "acknowledge", 7, None, True])
def test_metadata_that_is_not_an_object_is_422_and_changes_nothing(
    sandbox: Sandbox, account: Account, api: requests.Session, metadata: Any
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    before = sandbox.zendesk.ticket(ticket_id)

    response = put_ticket(api, sandbox, ticket_id, metadata=metadata,
                          comment={"body": "Hello"})
    created = api.post(f"{sandbox.url}/api/v2/tickets.json", json={"ticket": {
        "comment": {"body": "Down"}, "metadata": metadata}})

    for refused in (response, created):
        assert refused.status_code == 422
        assert refused.json()["error"] == "RecordInvalid"
        assert "must be an object" in refused.json()["details"]["metadata"][0]["description"]
    assert sandbox.zendesk.ticket(ticket_id) == before
    assert len(sandbox.zendesk.audits(ticket_id)) == 1 and len(sandbox.zendesk.tickets()) == 1


def test_audits_and_comments_say_how_they_came_in(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)
    sandbox.zendesk.add_comment(ticket_id, account.agent_id, "From the agent UI", public=False)
    put_ticket(api, sandbox, ticket_id, comment={"body": "From the API"})

    audits = audits_over_http(api, sandbox, ticket_id)
    comments = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}/comments.json").json()

    assert [a["via"] for a in audits] == [WEB_VIA, WEB_VIA, API_VIA]
    assert [c["via"] for c in comments["comments"]] == [WEB_VIA, WEB_VIA, API_VIA]


# ----- merges -------------------------------------------------------------------------------


def merge_over_http(api: requests.Session, sandbox: Sandbox, target: int,
                    **body: Any) -> requests.Response:
    return api.post(f"{sandbox.url}/api/v2/tickets/{target}/merge.json", json=body)


def test_merge_closes_the_sources_and_notes_both_sides_privately_as_zendesk_does(
    sandbox: Sandbox, account: Account, clock: FakeClock, api: requests.Session
) -> None:
    target = urgent_ticket(sandbox, account, subject="Checkout is down", tags=["vip"])
    source = urgent_ticket(sandbox, account, subject="Payments fail", tags=["emergency_ack"])
    clock.advance(timedelta(minutes=5))

    response = merge_over_http(api, sandbox, target, ids=[source],
                               target_comment="Same outage.")

    assert response.status_code == 200, response.text
    job = response.json()["job_status"]
    assert job["status"] == "completed" and job["total"] == job["progress"] == 1
    assert job["url"] == f"{sandbox.url}/api/v2/job_statuses/{job['id']}.json"
    zendesk = sandbox.zendesk
    assert zendesk.ticket(source)["status"] == "closed"
    assert zendesk.ticket(target)["tags"] == ["vip"]  # the source's tags do not come along
    assert zendesk.ticket(target)["status"] == "new"  # a merge note is no agent reply
    into = audits_over_http(api, sandbox, target)[-1]
    away = audits_over_http(api, sandbox, source)[-1]
    assert into["via"] == {"channel": "web", "source": {
        "from": {"ticket_id": source, "subject": "Payments fail"}, "to": {}, "rel": "merge"}}
    assert away["via"]["source"] == {
        "from": {"ticket_id": source, "subject": "Payments fail"},
        "to": {"ticket_id": target}, "rel": "merge"}
    assert into["author_id"] == away["author_id"] == account.admin_id
    assert into["created_at"] == "2026-01-05T09:05:00Z"
    (note,) = into["events"]
    assert (note["body"], note["public"], note["author_id"]) == (
        f'Request #{source} "Payments fail" was closed and merged into this request.'
        "\n\nSame outage.", False, account.admin_id)
    closing, status = away["events"]
    assert closing["body"] == (
        f'This request was closed and merged into request #{target} "Checkout is down".')
    assert closing["public"] is False
    assert (status["field_name"], status["value"]) == ("status", "closed")
    assert zendesk.comments(target)[-1]["via"] == into["via"]


def test_merge_by_an_agent_in_the_ui_can_make_the_notes_public(
    sandbox: Sandbox, account: Account
) -> None:
    zendesk = sandbox.zendesk
    target = urgent_ticket(sandbox, account)
    sources = [urgent_ticket(sandbox, account, subject=f"Dup {n}") for n in (1, 2)]

    zendesk.merge(target, sources, account.agent_id, source_comment="Merged: same outage",
                  target_public=True, source_public=True)

    notes = zendesk.comments(target)[1:]
    assert [n["via"]["source"]["from"]["ticket_id"] for n in notes] == sources
    assert all(n["public"] and n["author_id"] == account.agent_id for n in notes)
    for source in sources:
        closing = zendesk.comments(source)[-1]
        assert (closing["body"], closing["public"]) == ("Merged: same outage", True)
        assert zendesk.ticket(source)["status"] == "closed"
    with pytest.raises(ValueError, match="not an agent"):
        zendesk.merge(target, [urgent_ticket(sandbox, account)], account.requester_id)


def test_merges_zendesk_refuses_change_nothing(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    target = urgent_ticket(sandbox, account)
    closed = urgent_ticket(sandbox, account)
    sandbox.zendesk.close(closed)
    open_ = urgent_ticket(sandbox, account)
    before = sandbox.zendesk.tickets()

    assert merge_over_http(api, sandbox, target, ids=[closed]).status_code == 422
    assert merge_over_http(api, sandbox, target, ids=[target]).status_code == 422
    assert merge_over_http(api, sandbox, target, ids=[]).status_code == 422
    assert merge_over_http(api, sandbox, target, ids=["x"]).status_code == 422
    assert merge_over_http(api, sandbox, target, ids=[open_],
                           source_comment_is_public="yes").status_code == 422
    assert merge_over_http(api, sandbox, closed, ids=[open_]).status_code == 422
    assert merge_over_http(api, sandbox, target, ids=[999]).status_code == 404
    assert merge_over_http(api, sandbox, 999, ids=[open_]).status_code == 404
    assert sandbox.zendesk.tickets() == before
    with pytest.raises(ValueError, match="closed"):
        sandbox.zendesk.merge(target, [closed], account.agent_id)


# ----- follow-ups and clones ----------------------------------------------------------------


def test_a_reply_to_a_closed_ticket_makes_a_follow_up_with_its_tags_and_its_own_audits(
    sandbox: Sandbox, account: Account, clock: FakeClock, api: requests.Session
) -> None:
    closed = urgent_ticket(sandbox, account, tags=["vip", "emergency_ack"], brand_id=42,
                           ticket_form_id=43)
    put_ticket(api, sandbox, closed, metadata=STAMP, comment={"body": "On it"})
    sandbox.zendesk.close(closed)
    clock.advance(timedelta(days=5))

    follow_up = sandbox.zendesk.create_follow_up(closed, "It is down again", priority="urgent")

    ticket = api.get(f"{sandbox.url}/api/v2/tickets/{follow_up}.json").json()["ticket"]
    via = {"channel": "closed_ticket", "source": {
        "from": {"ticket_id": closed, "subject": "Checkout is down"}, "to": {},
        "rel": "follow_up"}}
    assert ticket["via"] == via
    assert (ticket["requester_id"], ticket["organization_id"], ticket["tags"]) == (
        account.requester_id, account.organization_id, ["vip", "emergency_ack"])
    assert (ticket["brand_id"], ticket["ticket_form_id"]) == (42, 43)
    assert (ticket["priority"], ticket["status"], ticket["subject"]) == (
        "urgent", "new", "Checkout is down")
    (audit,) = audits_over_http(api, sandbox, follow_up)
    assert audit["via"] == via and audit["metadata"]["custom"] == {}
    assert audit["created_at"] == ticket["created_at"] == "2026-01-10T09:00:00Z"
    (comment,) = sandbox.zendesk.comments(follow_up)
    assert (comment["author_id"], comment["body"], comment["via"]) == (
        account.requester_id, "It is down again", via)
    assert sandbox.zendesk.ticket(closed)["followup_ids"] == [follow_up]
    with pytest.raises(ValueError, match="not closed"):
        sandbox.zendesk.create_follow_up(follow_up, "again?")


def test_a_clone_copies_the_ticket_but_not_its_audits(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    original = urgent_ticket(sandbox, account, tags=["vip", "emergency_ack"],
                             cc_ids=[account.cc_id], brand_id=42, ticket_form_id=43)
    put_ticket(api, sandbox, original, metadata=STAMP, comment={"body": "On it"})

    clone = sandbox.zendesk.clone(original, account.agent_id)

    ticket, source = sandbox.zendesk.ticket(clone), sandbox.zendesk.ticket(original)
    copied = ("subject", "description", "requester_id", "organization_id", "priority", "tags",
              "brand_id", "ticket_form_id", "email_cc_ids", "collaborator_ids")
    assert {k: ticket[k] for k in copied} == {k: source[k] for k in copied}
    assert ticket["via"] == WEB_VIA and ticket["submitter_id"] == account.agent_id
    assert ticket["status"] == "new" and ticket["id"] != original
    (audit,) = audits_over_http(api, sandbox, clone)
    assert audit["via"] == WEB_VIA and audit["metadata"]["custom"] == {}
    assert audit["author_id"] == account.agent_id
    (first,) = sandbox.zendesk.comments(clone)
    assert (first["body"], first["author_id"], first["public"]) == (
        "All payments fail with 500", account.agent_id, True)


# ----- agent requesters and CCs -------------------------------------------------------------


def test_an_agent_can_be_the_requester_and_reply_as_the_customer(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    zendesk = sandbox.zendesk
    partner = zendesk.add_user("Sam Partner", "sam@partner.example.com", "agent")
    ticket_id = zendesk.create_ticket(partner, "Partner outage", "Our cluster is down",
                                      cc_ids=[account.cc_id, account.agent_id])
    zendesk.set_status(ticket_id, "pending")

    comment_id = zendesk.add_comment(ticket_id, partner, "Still down, please call")

    ticket = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").json()["ticket"]
    assert ticket["requester_id"] == ticket["submitter_id"] == partner
    assert ticket["email_cc_ids"] == ticket["collaborator_ids"] == [
        account.cc_id, account.agent_id]
    assert ticket["status"] == "open"  # the requester's reply reopens, whatever their role
    last = zendesk.comments(ticket_id)[-1]
    assert (last["id"], last["author_id"], last["public"]) == (comment_id, partner, True)
    with pytest.raises(KeyError):
        zendesk.create_ticket(partner, "x", "y", cc_ids=[999])


def test_add_cc_is_an_agents_update_that_changes_email_cc_ids(
    sandbox: Sandbox, account: Account, api: requests.Session
) -> None:
    ticket_id = urgent_ticket(sandbox, account)

    sandbox.zendesk.add_cc(ticket_id, account.cc_id, author_id=account.agent_id)
    sandbox.zendesk.add_cc(ticket_id, account.cc_id)  # already there: no update

    ticket = api.get(f"{sandbox.url}/api/v2/tickets/{ticket_id}.json").json()["ticket"]
    assert ticket["email_cc_ids"] == ticket["collaborator_ids"] == [account.cc_id]
    audits = audits_over_http(api, sandbox, ticket_id)
    assert len(audits) == 2
    cc = audits[-1]
    assert cc["author_id"] == account.agent_id and cc["via"] == WEB_VIA
    assert {(e["type"], e["field_name"], str(e["previous_value"]), str(e["value"]))
            for e in cc["events"]} == {
        ("Change", "email_cc_ids", "[]", f"[{account.cc_id}]"),
        ("Change", "collaborator_ids", "[]", f"[{account.cc_id}]")}
    with pytest.raises(ValueError, match="not an agent"):
        sandbox.zendesk.add_cc(ticket_id, account.cc_id, author_id=account.requester_id)


# ----- the Date header ----------------------------------------------------------------------


def test_every_route_and_every_error_carries_the_sandbox_clocks_date(
    sandbox: Sandbox, account: Account, clock: FakeClock, api: requests.Session
) -> None:
    clock.advance(timedelta(hours=3, seconds=17))
    zendesk = sandbox.zendesk
    ticket_id, other = urgent_ticket(sandbox, account), urgent_ticket(sandbox, account)
    macro_id = zendesk.add_macro("Post-call", "Notes")
    sandbox.faults.rate_limit("GET", "/users/me")
    sandbox.faults.server_error("GET", "/users/me")
    base = f"{sandbox.url}/api/v2"
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/search.json?query=type:ticket", None),
        ("GET", f"/views/{account.view_id}/tickets.json", None),
        ("GET", f"/views/{account.view_id}.json", None),
        ("GET", f"/tickets/show_many.json?ids={ticket_id}", None),
        ("GET", f"/tickets/{ticket_id}.json", None),
        ("GET", "/macros/search.json?query=post", None),
        ("GET", f"/tickets/{ticket_id}/macros/{macro_id}/apply.json", None),
        ("GET", f"/tickets/{ticket_id}/comments.json", None),
        ("GET", f"/tickets/{ticket_id}/audits.json", None),
        ("GET", "/users/me.json", None),  # 429, then 503 (faults), then 200
        ("GET", "/users/me.json", None),
        ("GET", "/users/me.json", None),
        ("GET", f"/users/show_many.json?ids={account.agent_id}", None),
        ("GET", "/users/search.json?query=francesca", None),
        ("GET", f"/users/{account.agent_id}.json", None),
        ("GET", f"/organizations/{account.organization_id}.json", None),
        ("POST", "/tickets.json", {"ticket": {"comment": {"body": "Down"}}}),
        ("PUT", f"/tickets/{ticket_id}.json", {"ticket": {"priority": "high"}}),
        ("POST", f"/tickets/{ticket_id}/merge.json", {"ids": [other]}),
        # errors: validation, conflict, not found, malformed, unknown endpoint and method
        ("PUT", f"/tickets/{ticket_id}.json", {"ticket": {"metadata": []}}),
        ("PUT", f"/tickets/{ticket_id}.json",
         {"ticket": {"safe_update": True, "updated_stamp": "2020-01-01T00:00:00Z"}}),
        ("PUT", f"/tickets/{other}.json", {"ticket": {"priority": "low"}}),
        ("GET", "/tickets/999.json", None),
        ("PUT", f"/tickets/{ticket_id}.json", None),
        ("GET", "/search.json?query=nonsense", None),
        ("GET", "/nothing/here.json", None),
        ("DELETE", f"/tickets/{ticket_id}.json", None),
        ("OPTIONS", f"/tickets/{ticket_id}.json", None),
    ]
    statuses, answered = [], set()
    for method, path, body in calls:
        response = api.request(method, base + path, json=body)
        statuses.append(response.status_code)
        assert response.headers.get("Date") == "Mon, 05 Jan 2026 12:00:17 GMT", (method, path)
        found = routes.find(method, "/api/v2" + re.sub(r"\.json$", "", path.split("?")[0]))
        if found is not None and response.status_code < 300:
            answered.add(found[0])
    unauthenticated = requests.get(f"{base}/users/me.json")

    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["Date"] == "Mon, 05 Jan 2026 12:00:17 GMT"
    assert answered == set(routes.names())  # every route answered at least once
    assert {429, 503, 422, 409, 404, 400, 501} <= set(statuses)


def test_two_updates_in_one_second_share_updated_at_so_a_stale_stamp_passes(
        api: requests.Session, sandbox: Sandbox, account: Account) -> None:
    # Zendesk's quirk, which the worker must guard against (Snapshot.unsettled_for)
    ticket_id = sandbox.zendesk.create_ticket(account.requester_id, "Down", "Help",
                                              priority="urgent")
    stamp = stamp_of(sandbox, ticket_id)
    first = put_ticket(api, sandbox, ticket_id, safe_update=True, updated_stamp=stamp,
                       comment={"body": "First writer", "public": True})

    second = put_ticket(api, sandbox, ticket_id, safe_update=True, updated_stamp=stamp,
                        comment={"body": "Second writer, on the same read", "public": True})

    assert first.status_code == second.status_code == 200
    assert second.json()["ticket"]["updated_at"] == stamp


def test_stopping_a_sandbox_server_wakes_its_loop_however_long_it_polls() -> None:
    import threading

    from automation.sandbox.http import SandboxServer

    server = SandboxServer(lambda target: None, lambda *request: None)  # never asked
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600},
                            daemon=True)
    loop.start()
    assert server._serving.wait(timeout=30)

    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(timeout=30)  # without the wake, an hour
    loop.join(timeout=30)

    assert not stopping.is_alive() and not loop.is_alive()
