"""The status page in a real browser (Debian's Chromium, driven by Playwright): a live
emergency moves from awaiting the customer to followed up as the sandbox's clock advances,
and its timeline opens. `.ci/run` installs Chromium; locally: `apt-get install chromium`."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from automation.clock import FakeClock
from automation.sandbox import Account, Sandbox
from automation.server import Secrets, build_app
from automation.service import Service
from tests.conftest import emergency_ticket, make_worker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"  # kept for people to look at

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("EMERGENCY_BROWSER_REQUIRED"),
    reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def served(sandbox: Sandbox, clock: FakeClock, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    """The status page on a free port, the worker's loop stepped by the test (its clock)."""
    import uvicorn

    from automation.cli.serving import bind
    from automation.timeline import ticket_timeline

    worker = make_worker(sandbox, clock, tmp_path / "state.sqlite3")
    service = Service(worker, clock, poll_seconds=3600)

    def timeline(ticket_id: int):  # noqa: ANN202
        snapshot = worker.zendesk.snapshot(ticket_id)
        return snapshot.ticket, ticket_timeline(snapshot, worker.store.journal(ticket_id), [])

    listener = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(service, Secrets(), timeline),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield service, f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        worker.close()


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            yield launched
        finally:
            launched.close()


def test_the_status_page_follows_an_emergency_as_the_clock_advances(
        served: tuple[Service, str], browser, sandbox: Sandbox, account: Account,
        clock: FakeClock) -> None:
    service, url = served
    ticket_id = emergency_ticket(sandbox, account, subject="Geo <b>down</b> in prod")
    clock.advance(timedelta(seconds=3))
    service.step()  # the acknowledgement: now awaiting the customer
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone

    page.goto(url)
    card = page.locator(f"section.emergency[data-ticket='{ticket_id}']")
    assert card.locator(".subject").inner_text() == f"#{ticket_id} Geo <b>down</b> in prod"
    assert card.locator(".state").inner_text() == "awaiting-customer"
    countdown = card.locator(".countdown").inner_text()
    assert countdown.startswith("in 14 min") or countdown.startswith("in 15 min"), countdown
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "status-awaiting-customer.png"), full_page=True)

    clock.set(service.worker.store.tracked()[ticket_id].due_at)
    service.step()  # the follow-up falls due and goes out
    page.reload()
    assert card.locator(".state").inner_text() == "followed-up"
    page.set_viewport_size({"width": 1280, "height": 800})  # a laptop
    page.screenshot(path=str(SCREENSHOTS / "status-followed-up.png"), full_page=True)

    card.locator("a.timeline").click()
    page.wait_for_url(f"**/tickets/{ticket_id}")
    rows = page.locator("tr.entry.journal").all_inner_texts()
    assert any("follow-up posted" in row for row in rows), rows
    assert page.locator("h1").inner_text() == f"#{ticket_id} Geo <b>down</b> in prod"
    page.screenshot(path=str(SCREENSHOTS / "timeline.png"), full_page=True)
