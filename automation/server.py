"""`emergency serve`'s HTTP side: signed webhooks, health, metrics and the status page.

A small Starlette app. Webhooks are checked (automation/webhooks.py) and only add a ticket to
the service's set: the answer goes out at once, the handling follows in the worker's thread.
The pages and their JSON show customer data: beyond loopback they require the web token.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from automation import webhooks
from automation.errors import AutomationError, NotFound
from automation.model import Ticket
from automation.service import Service
from automation.timeline import TimelineEntry

log = logging.getLogger(__name__)

Timeline = Callable[[int], tuple[Ticket, list[TimelineEntry]]]
ReportPage = Callable[[datetime], str]  # Zendesk's now -> the report's HTML
PAGE_REFRESH_SECONDS = 15
REPORT_CACHE = timedelta(minutes=1)


@dataclass(frozen=True)
class Secrets:
    """From the environment: each webhook's signing secret, and the pages' token."""

    zendesk_webhook: str | None = None
    pagerduty_webhook: str | None = None
    web_token: str | None = None  # None: the pages are open (loopback only)


def build_app(service: Service, secrets: Secrets, timeline: Timeline,
              report: ReportPage | None = None) -> Starlette:
    return Starlette(routes=_service_routes(service, secrets)
                     + _page_routes(service, secrets, timeline, report))


def _service_routes(service: Service, secrets: Secrets) -> list[Route]:
    """Health, metrics and the webhooks: no customer data, no web token."""
    seen = webhooks.Seen()

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    def readyz(request: Request) -> Response:
        problems = _not_ready(service)
        if problems:
            return JSONResponse({"status": "not ready", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    async def zendesk(request: Request) -> Response:
        return await _delivery(request, "zendesk", secrets.zendesk_webhook,
                               webhooks.check_zendesk, service, seen)

    async def pagerduty(request: Request) -> Response:
        return await _delivery(request, "pagerduty", secrets.pagerduty_webhook,
                               webhooks.check_pagerduty, service, seen)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
            Route("/webhooks/zendesk", zendesk, methods=["POST"]),
            Route("/webhooks/pagerduty", pagerduty, methods=["POST"])]


def _page_routes(service: Service, secrets: Secrets, timeline: Timeline,
                 report: ReportPage | None = None) -> list[Route]:
    """The status page, its JSON, a ticket's timeline and the report: customer data, behind
    the token."""
    pages = jinja2.Environment(loader=jinja2.PackageLoader("automation", "web"),
                               autoescape=True, undefined=jinja2.StrictUndefined)

    def status_page(request: Request) -> Response:
        if not _allowed(request, secrets.web_token):
            return _ask_for_token()
        return HTMLResponse(pages.get_template("index.html").render(
            emergencies=service.emergencies, now=service.service_now(),
            refresh=PAGE_REFRESH_SECONDS, ready=not _not_ready(service),
            report=report is not None))

    def api(request: Request) -> Response:
        if not _allowed(request, secrets.web_token):
            return _ask_for_token()
        return JSONResponse([e.as_json() for e in service.emergencies])

    async def ticket_page(request: Request) -> Response:
        if not _allowed(request, secrets.web_token):
            return _ask_for_token()
        ticket_id = int(request.path_params["ticket_id"])
        try:
            ticket, entries = await run_in_threadpool(timeline, ticket_id)
        except NotFound:
            return HTMLResponse(pages.get_template("missing.html").render(ticket_id=ticket_id),
                                status_code=404)
        except AutomationError as exc:
            return PlainTextResponse(f"Zendesk could not be read: {exc}", status_code=502)
        return HTMLResponse(pages.get_template("ticket.html").render(
            ticket=ticket, entries=entries, url=service.worker.zendesk.agent_url(ticket_id)))

    routes = [Route("/", status_page), Route("/api/emergencies", api),
              Route("/tickets/{ticket_id:int}", ticket_page)]
    if report is not None:
        cached = CachedReport(report, service)

        async def report_page(request: Request) -> Response:
            if not _allowed(request, secrets.web_token):
                return _ask_for_token()
            try:
                return HTMLResponse(await run_in_threadpool(cached.page))
            except AutomationError as exc:
                return PlainTextResponse(f"Zendesk could not be read: {exc}", status_code=502)

        routes.append(Route("/report", report_page))
    return routes


class CachedReport:
    """The report's page, computed in a worker thread (it reads every emergency of 30 days
    from Zendesk) at most once a minute; requests meanwhile get the same page."""

    def __init__(self, report: ReportPage, service: Service) -> None:
        self.report, self.service = report, service
        self.lock = threading.Lock()
        self.html: str | None = None
        self.made_at: datetime | None = None

    def page(self) -> str:
        with self.lock:  # one computation at a time; the others wait for its result
            now = self.service.clock.now()
            if self.html is None or self.made_at is None or now - self.made_at >= REPORT_CACHE:
                self.html = self.report(self.service.service_now())
                self.made_at = now
            return self.html


async def _delivery(request: Request, source: str, secret: str | None,
                    check: Callable[..., webhooks.Verdict], service: Service,
                    seen: webhooks.Seen) -> Response:
    """Check one delivery and answer at once; the ticket is handled after, in the worker."""
    if not secret:
        verdict = webhooks.Verdict(webhooks.NOT_CONFIGURED, 503,
                                   detail=f"no {source} webhook secret is set")
    else:
        body = await _body(request)
        verdict = webhooks.Verdict(webhooks.TOO_LARGE, 413) if body is None else check(
            secret, request.headers, body, service.service_now(), seen)
    service.metrics.webhooks.labels(source, verdict.outcome).inc()
    if verdict.ticket_id is not None:
        service.hint(verdict.ticket_id, source)
    elif not verdict.accepted:
        log.warning("%s webhook refused: %s%s", source, verdict.outcome,
                    f" ({verdict.detail})" if verdict.detail else "")
    return JSONResponse({"outcome": verdict.outcome, "ticket_id": verdict.ticket_id,
                         "detail": verdict.detail}, status_code=verdict.status)


async def _body(request: Request) -> bytes | None:
    """The raw body, or None past the size limit (read no further than that)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > webhooks.MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > webhooks.MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _not_ready(service: Service) -> list[str]:
    """Why the service is not ready: its last pass too old, Zendesk not answering, or the
    state file not writable."""
    health, reasons = service.health, []
    limit = timedelta(seconds=2 * service.poll_seconds)
    if health.last_pass_at is None:
        reasons.append("no pass has finished yet")
    elif service.clock.now() - health.last_pass_at > limit:
        reasons.append(f"the last pass finished more than {2 * service.poll_seconds:g} s ago")
    if health.zendesk_error is not None:
        reasons.append(f"Zendesk: {health.zendesk_error}")
    problem = service.worker.store.problem
    if problem is not None:
        reasons.append(problem)
    return reasons


def _allowed(request: Request, token: str | None) -> bool:
    """No token set (loopback only), or the request carries it: bearer, or basic's password."""
    if token is None:
        return True
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    offered = ""
    if scheme.lower() == "bearer":
        offered = value.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(value.strip()).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            offered = ""
    return hmac.compare_digest(offered.encode(), token.encode())


def _ask_for_token() -> Response:
    return PlainTextResponse("the web token is required (EMERGENCY_WEB_TOKEN: bearer, or the "
                             "password of basic auth)", status_code=401,
                             headers={"WWW-Authenticate": 'Basic realm="emergency"'})
