"""`emergency serve`: webhooks hint, the worker's thread handles, timers fire on the second,
and the pages show the live emergencies, to whoever has the token."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from automation.clock import FakeClock
from automation.config import WorkflowConfig
from automation.report_html import served_page
from automation.sandbox import Account, Sandbox
from automation.server import ReportPage, Secrets, build_app
from automation.service import Service
from automation.worker import Worker
from tests.conftest import BRIDGE, emergency_ticket, fill_the_disk, make_worker, sandbox_worker
from tests.test_webhooks import SECRET, pagerduty_delivery, zendesk_delivery

POLL = 300.0  # the safety net only: webhooks and timers do the work


def public_comments_by_us(sandbox: Sandbox, account: Account, ticket_id: int) -> list[dict]:
    return [c for c in sandbox.zendesk.public_comments(ticket_id)
            if c["author_id"] != account.requester_id]


@pytest.fixture
def worker(sandbox: Sandbox, clock: FakeClock, tmp_path: Path) -> Iterator[Worker]:
    made = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    yield made
    made.close()


@pytest.fixture
def service(worker: Worker, clock: FakeClock) -> Service:
    return Service(worker, clock, POLL)


def client_for(service: Service, token: str | None = None,
               report: ReportPage | None = None, secrets: Secrets | None = None) -> TestClient:
    if secrets is None:
        secrets = Secrets(zendesk_webhook=SECRET, pagerduty_webhook=SECRET, web_token=token)

    def timeline(ticket_id: int):  # noqa: ANN202 - the page's reader, from the worker's own
        from automation.timeline import ticket_timeline

        snapshot = service.worker.zendesk.snapshot(ticket_id)
        return snapshot.ticket, ticket_timeline(snapshot, service.worker.store.journal(ticket_id),
                                                [])

    client = TestClient(build_app(service, secrets, timeline, report))
    client.__enter__()  # one event-loop thread for the client's requests, not one each
    _entered.append(client)
    return client


_entered: list[TestClient] = []


@pytest.fixture(autouse=True)
def clients_closed() -> Iterator[None]:
    """Each test's clients leave with it (their event-loop threads stopped)."""
    yield
    while _entered:
        _entered.pop().__exit__(None, None, None)


def delivered(client: TestClient, ticket_id: int, clock: FakeClock) -> int:
    headers, body = zendesk_delivery({"ticket_id": str(ticket_id)}, at=clock.now())
    return client.post("/webhooks/zendesk", content=body, headers=headers).status_code


def metric(client: TestClient, line: str) -> float:
    text = client.get("/metrics").text
    found = [row for row in text.splitlines() if row.startswith(line + " ")]
    assert found, f"/metrics has no line {line}"  # a 0 asserted must be a 0 exported
    return float(found[0].split()[-1])


def delivered_count(client: TestClient, outcome: str) -> float:
    return metric(client, "emergency_webhook_deliveries_total"
                          f'{{outcome="{outcome}",source="zendesk"}}')


def test_a_webhook_gets_the_acknowledgement_out_without_waiting_for_the_poll(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    service.step()  # the first pass: nothing yet
    ticket_id = emergency_ticket(sandbox, account)

    assert delivered(client, ticket_id, clock) == 202
    assert public_comments_by_us(sandbox, account, ticket_id) == []  # answered before handling
    clock.advance(timedelta(seconds=3))
    service.step()  # the worker's thread wakes for the hint; no pass is due for 5 minutes

    [ack] = public_comments_by_us(sandbox, account, ticket_id)
    assert "Thank you for contacting us" in ack["body"]
    assert delivered_count(client, "accepted") == 1
    assert metric(client, 'emergency_ticket_handlings_total{reason="webhook"}') == 1
    assert metric(client, 'emergency_passes_total{outcome="ok"}') == 1


def test_bad_deliveries_are_refused_with_nothing_done_and_counted(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    ticket_id = emergency_ticket(sandbox, account)
    headers, body = zendesk_delivery({"ticket_id": ticket_id}, at=clock.now())
    stale_headers, stale_body = zendesk_delivery({"ticket_id": ticket_id},
                                                 at=clock.now() - timedelta(minutes=10))
    huge = zendesk_delivery({"ticket_id": ticket_id, "pad": "x" * 300_000}, at=clock.now())
    broken = zendesk_delivery(None, at=clock.now(), body=b'{"ticket_id": ')

    answers = {
        "bad signature": client.post("/webhooks/zendesk", content=body,
                                     headers=dict(headers, **{"x-zendesk-webhook-signature": "x"})),
        "missing signature": client.post("/webhooks/zendesk", content=body),
        "stale": client.post("/webhooks/zendesk", content=stale_body, headers=stale_headers),
        "too large": client.post("/webhooks/zendesk", content=huge[1], headers=huge[0]),
        "malformed": client.post("/webhooks/zendesk", content=broken[1], headers=broken[0]),
    }
    assert client.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202
    answers["replayed"] = client.post("/webhooks/zendesk", content=body, headers=headers)

    refused = {k: 400 <= r.status_code < 500 for k, r in answers.items()}
    assert refused == dict.fromkeys(answers, True)
    counted = {o: delivered_count(client, o)
               for o in ("bad signature", "stale", "too large", "malformed", "replayed")}
    assert counted == {"bad signature": 2, "stale": 1, "too large": 1, "malformed": 1,
                       "replayed": 1}
    assert service._hints == {ticket_id: "zendesk"}  # only the one good delivery
    service._next_poll = clock.now() + timedelta(hours=1)
    assert delivered(client, 4242, clock) == 202  # a ticket Zendesk does not have
    service.step()
    assert delivered_count(client, "unknown ticket") == 1


def test_a_webhook_without_its_secret_is_answered_503_with_nothing_handled(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service, secrets=Secrets(zendesk_webhook=None, pagerduty_webhook=None))
    service.step()  # the first pass: nothing yet
    ticket_id = emergency_ticket(sandbox, account)
    clock.advance(timedelta(seconds=3))
    # Signed with the secret the other side has: without ours, nothing can be checked.
    zendesk = zendesk_delivery({"ticket_id": str(ticket_id)}, at=clock.now())
    pagerduty = pagerduty_delivery({"id": "P1", "type": "incident",
                                    "incident_key": f"zendesk-{ticket_id}",
                                    "title": f"Emergency ticket #{ticket_id}"}, at=clock.now())

    answers = {source: client.post(f"/webhooks/{source}", content=body, headers=headers)
               for source, (headers, body) in (("zendesk", zendesk), ("pagerduty", pagerduty))}

    assert {s: a.status_code for s, a in answers.items()} == {"zendesk": 503, "pagerduty": 503}
    assert answers["zendesk"].json() == {"outcome": "not configured", "ticket_id": None,
                                         "detail": "no zendesk webhook secret is set"}
    assert "no pagerduty webhook secret is set" in answers["pagerduty"].text
    for source in ("zendesk", "pagerduty"):
        assert metric(client, "emergency_webhook_deliveries_total"
                              f'{{outcome="not configured",source="{source}"}}') == 1
    assert service._hints == {}
    service.step()  # no pass is due for 5 minutes: only a hint would handle the ticket
    assert public_comments_by_us(sandbox, account, ticket_id) == []
    assert 'handlings_total{reason="webhook"}' not in client.get("/metrics").text  # none


def test_a_thousand_deliveries_for_one_ticket_are_one_handling(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    service.step()
    ticket_id = emergency_ticket(sandbox, account)
    clock.advance(timedelta(seconds=3))
    deliveries = [zendesk_delivery({"ticket_id": ticket_id, "n": n}, at=clock.now())
                  for n in range(1000)]

    # Posted from one event loop: the test client's hand-offs to its own thread, eight a
    # request, cost more than the server's work.
    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as fast:
            return [(await fast.post("/webhooks/zendesk", content=body, headers=headers))
                    .status_code for headers, body in deliveries]

    assert asyncio.run(burst()) == [202] * 1000

    service.step()
    service.step()

    assert len(public_comments_by_us(sandbox, account, ticket_id)) == 1
    assert metric(client, 'emergency_ticket_handlings_total{reason="webhook"}') == 1


def test_healthz_answers_while_the_worker_is_busy(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(service)
    inside, release = threading.Event(), threading.Event()
    real = service.worker.handle_ticket

    def slow(ticket_id: int, settle: bool = True):  # noqa: ANN202
        inside.set()
        release.wait(30)
        return real(ticket_id, settle=settle)

    monkeypatch.setattr(service.worker, "handle_ticket", slow)
    service._next_poll = clock.now() + timedelta(hours=1)
    service.hint(emergency_ticket(sandbox, account))
    busy = threading.Thread(target=service.step)
    busy.start()
    try:
        assert inside.wait(30)
        answers = [client.get("/healthz").status_code for _ in range(20)]
        assert delivered(client, 1, clock) == 202  # and deliveries are still taken
    finally:
        release.set()
        busy.join(30)
    assert answers == [200] * 20


def test_the_follow_up_fires_at_its_due_second_with_no_pass(
        sandbox: Sandbox, account: Account, worker: Worker, clock: FakeClock) -> None:
    service = Service(worker, clock, poll_seconds=3600)
    client = client_for(service)
    ticket_id = emergency_ticket(sandbox, account)
    service.step()  # the pass acknowledges: the follow-up is due 15 minutes after
    due = service.worker.store.tracked()[ticket_id].due_at
    assert due is not None

    wait = service.seconds_to_next()
    assert abs((clock.now() + timedelta(seconds=wait)) - due) <= timedelta(seconds=1)
    clock.set(due)
    service.step()

    assert len(public_comments_by_us(sandbox, account, ticket_id)) == 2
    assert metric(client, 'emergency_passes_total{outcome="ok"}') == 1  # no second pass
    assert metric(client, 'emergency_ticket_handlings_total{reason="due"}') == 1
    assert metric(client, 'emergency_step_lateness_seconds_count{step="follow-up"}') == 1
    assert metric(client, 'emergency_step_lateness_seconds_bucket{le="1.0",step="follow-up"}') == 1


def test_a_pagerduty_acknowledgement_posts_the_acknowledgement_as_that_engineer(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    from tests.test_e2e_pagerduty import incident_for, worker_for

    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3", slack=False)
    service = Service(worker, clock, POLL)
    client = client_for(service)
    ticket_id = emergency_ticket(sandbox, account)
    clock.advance(timedelta(minutes=3))
    service.step()  # pages after its grace period
    incident = incident_for(sandbox, ticket_id)
    sandbox.pagerduty.acknowledge(incident["id"], account.pd_francesca_id)
    headers, body = pagerduty_delivery({"id": incident["id"], "type": "incident",
                                        "incident_key": incident["incident_key"],
                                        "title": incident["title"]}, at=clock.now())

    assert client.post("/webhooks/pagerduty", content=body, headers=headers).status_code == 202
    clock.advance(timedelta(seconds=2))
    service.step()
    worker.close()

    [ack] = public_comments_by_us(sandbox, account, ticket_id)
    assert ack["author_id"] == account.agent_id


def test_the_status_page_and_api_show_live_emergencies_with_customer_text_escaped(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    ticket_id = emergency_ticket(sandbox, account, subject="<script>alert(1)</script>")
    service.step()

    page = client.get("/")
    [row] = client.get("/api/emergencies").json()

    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert row["ticket_id"] == ticket_id and row["state"] == "awaiting-customer"
    assert row["next_step"] == "follow-up" and row["organization"] == "Acme Corp"
    timeline = client.get(f"/tickets/{ticket_id}")
    assert timeline.status_code == 200 and "&lt;script&gt;" in timeline.text
    assert "<script>alert" not in timeline.text
    assert client.get("/tickets/999").status_code == 404


def test_pages_require_the_token_when_one_is_set(service: Service) -> None:
    client = client_for(service, token="s3cret-web-token")
    basic = base64.b64encode(b"anyone:s3cret-web-token").decode()

    for path in ("/", "/api/emergencies", "/tickets/1"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/emergencies",
                      headers={"Authorization": "Bearer s3cret-web-token"}).status_code == 200
    assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # no customer data: no token
    assert "s3cret" not in client.get("/").text


def test_the_status_page_links_the_report_made_at_most_once_a_minute_behind_the_token(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    made = []

    def report(now: datetime) -> str:
        made.append(now)
        return served_page(service.worker.zendesk, now)

    client = client_for(service, token="s3cret-web-token", report=report)
    token = {"Authorization": "Bearer s3cret-web-token"}
    ticket_id = emergency_ticket(sandbox, account, subject="<b>Pushes</b> fail")
    service.step()  # the team's acknowledgement

    refused = client.get("/report")
    status = client.get("/", headers=token)
    page = client.get("/report", headers=token)

    assert refused.status_code == 401 and len(made) == 1  # made for the page with the token
    assert 'href="report"' in status.text
    assert page.status_code == 200
    assert "Emergencies of the last 30 days: 1 emergency" in page.text
    assert f">#{ticket_id}</a> &lt;b&gt;Pushes&lt;/b&gt; fail" in page.text
    assert page.text.count('src="data:image/png;base64,') == 2 and 'href="./"' in page.text
    clock.advance(timedelta(seconds=59))
    assert client.get("/report", headers=token).text == page.text and len(made) == 1
    clock.advance(timedelta(seconds=1))
    client.get("/report", headers=token)
    assert len(made) == 2  # a minute old: made again


def test_without_a_report_the_status_page_has_no_link(service: Service) -> None:
    client = client_for(service)

    assert 'href="report"' not in client.get("/").text
    assert client.get("/report").status_code == 404


def test_readyz_says_why_it_is_not_ready(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    assert client.get("/readyz").status_code == 503  # no pass yet

    service.step()
    assert client.get("/readyz").json() == {"status": "ready"}

    clock.advance(timedelta(seconds=2 * POLL + 1))
    late = client.get("/readyz")
    assert late.status_code == 503 and "last pass" in json.dumps(late.json())
    sandbox.stop()
    service.step()
    down = client.get("/readyz")
    assert down.status_code == 503 and "Zendesk" in json.dumps(down.json())


def test_readyz_names_the_state_file_when_it_cannot_be_written(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock,
        tmp_path: Path) -> None:
    client = client_for(service)
    service.step()
    assert client.get("/readyz").json() == {"status": "ready"}
    fill_the_disk(service.worker.store)
    ticket_id = emergency_ticket(sandbox, account)
    clock.advance(timedelta(seconds=POLL))

    service.step()  # the pass writes what it did: the state file refuses it

    assert len(public_comments_by_us(sandbox, account, ticket_id)) == 1  # customers first
    answer = client.get("/readyz")
    assert answer.status_code == 503
    [reason] = answer.json()["reasons"]  # the pass itself was on time, Zendesk answered
    assert reason.startswith(f"state file {tmp_path / 'state.sqlite3'} cannot be used")
    assert "full" in reason


def test_serve_refuses_to_listen_beyond_loopback_without_the_web_token(
        tmp_path: Path, sandbox: Sandbox) -> None:
    from tests.test_cli import emergency, write_config

    config = str(write_config(tmp_path, sandbox.url))
    sandbox.clear_requests()

    code, _, err = emergency("--config", config, "serve", "--listen", "0.0.0.0:8080")
    assert code == 2 and "EMERGENCY_WEB_TOKEN" in err and err.count("\n") == 1
    code, _, err = emergency("--config", config, "serve", "--listen", "nowhere")
    assert code == 2 and "HOST:PORT" in err
    assert sandbox.requests == []  # nothing was started


def test_serve_answers_then_stops_warm_on_sigterm(
        tmp_path: Path, sandbox: Sandbox, account: Account, clock: FakeClock) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from tests.test_cli import write_config

    emergency_ticket(sandbox, account)
    clock.advance(timedelta(seconds=3))  # the sandbox's clock: the ticket's second is past
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, sandbox.url)
    process = subprocess.Popen(
        [sys.executable, "-c", "from automation.cli import main; main()", "--config",
         str(config), "serve", "--listen", f"127.0.0.1:{port}", "--interval", "3600"],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
        env={"ZENDESK_API_TOKEN": sandbox.token, "PATH": "/usr/bin:/bin"})
    assert process.stderr is not None
    try:
        for line in process.stderr:  # wait until the first pass has acknowledged the ticket
            if "acknowledge" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/emergencies") as answer:
            [row] = json.loads(answer.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as answer:
            ready = json.loads(answer.read())
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=30)[1]
    assert row["state"] == "awaiting-customer" and ready == {"status": "ready"}
    assert process.returncode == 0 and "SIGTERM received" in rest and "stopped" in rest


def test_serve_says_it_is_alive_every_heartbeat_passes(
        sandbox: Sandbox, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    worker = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    worker.settings = replace(worker.settings, heartbeat_passes=2)
    service = Service(worker, clock, poll_seconds=60)
    caplog.set_level("INFO", logger="automation.heartbeat")

    for _ in range(4):
        service.step()
        clock.advance(timedelta(seconds=60))

    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alive:")]
    assert [b.split(",")[0] for b in beats] == ["alive: 2 passes so far",
                                                "alive: 4 passes so far"]


def test_the_page_goes_out_when_its_grace_period_ends_with_no_pass(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    from tests.test_e2e_pagerduty import worker_for

    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3", slack=False)
    service = Service(worker, clock, poll_seconds=3600)
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(seconds=3))
    service.step()  # seen at once; Zendesk's own integration gets 2 minutes to page first
    assert sandbox.pagerduty.incidents() == []

    wait = service.seconds_to_next()
    assert 110 <= wait <= 120
    clock.advance(timedelta(seconds=wait))
    service.step()
    service.step()  # and only once
    worker.close()

    [incident] = sandbox.pagerduty.incidents()
    assert incident["incident_key"] == f"zendesk-{ticket_id}"
    assert service.metrics.handlings.labels("due")._value.get() == 1


def test_serve_exits_three_when_zendesk_refuses_the_token(
        tmp_path: Path, sandbox: Sandbox) -> None:
    import socket

    from tests.test_cli import emergency, write_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = str(write_config(tmp_path, sandbox.url))
    wrong = "wrong-zendesk-token-SECRET"

    code, _, err = emergency("--config", config, "serve", "--listen", f"127.0.0.1:{port}",
                             environ={"ZENDESK_API_TOKEN": wrong})

    assert code == 3 and "HTTP 401" in err.splitlines()[-1]
    assert wrong not in err


def test_a_ticket_in_its_own_second_is_not_waited_for_in_the_loop(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    """Zendesk's one-second timestamps: a webhook sent as the ticket is created finds it
    unsettled; the loop comes back for it once the second is past, and meanwhile is free."""
    client = client_for(service)
    service.step()  # the first pass: nothing yet
    clock.slept.clear()
    ticket_id = emergency_ticket(sandbox, account)

    assert delivered(client, ticket_id, clock) == 202
    service.step()

    assert public_comments_by_us(sandbox, account, ticket_id) == []
    assert clock.slept == []  # no wait inside the handling
    assert 0 < service.seconds_to_next() <= 2
    clock.advance(timedelta(seconds=service.seconds_to_next()))
    service.step()
    assert len(public_comments_by_us(sandbox, account, ticket_id)) == 1
    assert metric(client, 'emergency_ticket_handlings_total{reason="settled"}') == 1


def test_metrics_count_contact_live_states_pending_lines_and_rate_limit_waits(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    client = client_for(service)
    emergency_ticket(sandbox, account)
    clock.advance(timedelta(minutes=4))  # seen 4 minutes after it became urgent
    sandbox.faults.rate_limit("GET", "/api/v2/search", retry_after=7, times=1)

    service.step()  # the pass: waits out the 429, then acknowledges

    assert metric(client, 'emergency_rate_limit_waits_total{service="Zendesk"}') == 1
    assert metric(client, 'emergency_rate_limit_wait_seconds_total{service="Zendesk"}') >= 7
    assert metric(client, "emergency_time_to_contact_seconds_count") == 1
    assert metric(client, 'emergency_time_to_contact_seconds_bucket{le="300.0"}') == 1
    assert metric(client, 'emergency_time_to_contact_seconds_bucket{le="120.0"}') == 0
    assert metric(client, 'emergency_live{state="awaiting-customer"}') == 1
    assert metric(client, 'emergency_lines_pending{service="slack"}') == 0
    assert metric(client, 'emergency_steps_total{outcome="posted",step="acknowledge"}') == 1


def test_metrics_count_the_slack_lines_pending_while_slack_is_down_and_none_after(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    worker = sandbox_worker(sandbox, account, clock, tmp_path / "state.sqlite3",
                            workflow=WorkflowConfig(bridge_url=BRIDGE), slack=True)
    service = Service(worker, clock, POLL)
    client = client_for(service)
    ticket_id = emergency_ticket(sandbox, account, organization_id=account.organization_id)
    clock.advance(timedelta(seconds=3))
    sandbox.faults.server_error("*", "", service="slack", times=None)

    service.step()  # the acknowledgement goes out; its thread's lines wait for Slack

    assert len(public_comments_by_us(sandbox, account, ticket_id)) == 1
    pending = worker.store.outbox(ticket_id)
    assert [q.kind for q in pending] == ["acknowledge"]  # the thread itself is not open yet
    assert metric(client, 'emergency_lines_pending{service="slack"}') == 1
    sandbox.faults.clear("slack")
    clock.advance(timedelta(seconds=POLL))
    service.step()  # Slack is back: the next pass sends them

    assert worker.store.outbox() == []
    assert sandbox.slack.messages(account.self_managed_channel)
    assert metric(client, 'emergency_lines_pending{service="slack"}') == 0
    worker.close()


def test_pages_pagerduty_refuses_stay_counted_pending_until_they_go_out(
        sandbox: Sandbox, account: Account, clock: FakeClock, tmp_path: Path) -> None:
    from tests.test_e2e_pagerduty import worker_for

    worker = worker_for(sandbox, account, clock, tmp_path / "state.sqlite3", slack=False)
    service = Service(worker, clock, POLL)
    client = client_for(service)

    def pending() -> float:
        return metric(client, 'emergency_lines_pending{service="pagerduty"}')

    emergency_ticket(sandbox, account)
    emergency_ticket(sandbox, account, subject="Also down")
    clock.advance(timedelta(minutes=3))
    sandbox.faults.server_error("POST", "/incidents", times=None, service="pagerduty")
    service.step()  # both pages are due, and refused
    assert pending() == 2

    # a third ticket, handled on its own (a webhook), says nothing of the others' pages
    third = emergency_ticket(sandbox, account, subject="Down too")
    clock.advance(timedelta(seconds=3))
    headers, body = zendesk_delivery({"ticket_id": third}, at=clock.now())
    assert client.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202
    service.step()
    assert metric(client, 'emergency_ticket_handlings_total{reason="webhook"}') == 1
    assert pending() == 2

    # PagerDuty does not answer at all: no page is tried, the two known still wait
    sandbox.faults.clear("pagerduty")
    sandbox.faults.server_error("*", "", times=None, service="pagerduty")
    clock.advance(timedelta(seconds=POLL))
    service.step()
    assert pending() == 2

    sandbox.faults.clear("pagerduty")
    clock.advance(timedelta(seconds=POLL))
    service.step()  # the next pass: the three pages go out
    worker.close()

    assert len(sandbox.pagerduty.incidents()) == 3
    assert pending() == 0


def test_the_loop_keeps_nothing_for_an_emergency_once_it_ended(
        sandbox: Sandbox, account: Account, service: Service, clock: FakeClock) -> None:
    ticket_id = emergency_ticket(sandbox, account)
    service.step()
    assert ticket_id in service._extras  # what the status page shows of it

    sandbox.zendesk.solve(ticket_id)
    clock.advance(timedelta(seconds=POLL))
    service.step()

    assert client_for(service).get("/api/emergencies").json() == []
    assert ticket_id not in service._extras and ticket_id not in service._page_checked
