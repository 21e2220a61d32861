"""`emergency serve`: the worker's loop in one thread, the HTTP server (uvicorn) in the main
one. SIGTERM or Ctrl-C stops taking requests, lets the work in hand finish, then exits."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from automation import config
from automation.cli.context import Context, load_config, read_timeline
from automation.cli.exits import EXIT_OK
from automation.errors import ConfigError, CredentialsRejected

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from automation.server import Secrets
    from automation.service import Service

log = logging.getLogger("automation")


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from automation import wiring
    from automation.server import build_app
    from automation.service import Service

    if args.sandbox:
        cfg, ctx = _on_sandbox(args, ctx)
    else:
        cfg = load_config(args, ctx)
    listen = args.listen or cfg.server
    secrets = _secrets(ctx)
    if not listen.loopback and secrets.web_token is None:
        raise ConfigError(f"serve --listen {listen.host}:{listen.port}: beyond loopback the "
                          f"status page shows customers' data; set {config.WEB_TOKEN_ENV} "
                          "(its bearer token, or basic auth's password)")
    listener = bind(listen.host, listen.port)
    worker = wiring.build_worker(cfg, ctx.clock, ctx.environ)
    ctx.closers.append(worker.close)
    service = Service(worker, ctx.clock, args.interval or cfg.workflow.poll_interval_seconds)
    app = build_app(service, secrets, partial(read_timeline, cfg, ctx),
                    lambda now: _report(cfg, ctx, now))
    _announce(listen, secrets, service.poll_seconds)
    failure = _run(service, http_server(app), listener)
    if failure is not None:
        raise failure
    log.info("stopped")
    return EXIT_OK


def http_server(app: Starlette) -> uvicorn.Server:
    """uvicorn as serve runs it: its warnings in our format, no access log, no lifespan."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", log_config=None,
        timeout_graceful_shutdown=10))


def _run(service: Service, server: uvicorn.Server,
         listener: socket.socket) -> CredentialsRejected | None:
    """Serve until a signal; the worker's loop in its own thread, stopped warm. A token
    Zendesk refuses stops both, and is returned."""
    stop, failure = threading.Event(), []

    def loop() -> None:
        try:
            service.serve_forever(stop)
        except CredentialsRejected as exc:  # nothing can go on: stop serving and say so
            failure.append(exc)
            server.should_exit = True

    def warm_stop(signum: int, _frame: object) -> None:
        # uvicorn stops taking requests on the signal, then raises it again for the handler it
        # found installed: this one, which lets the worker finish the ticket in hand.
        log.info("%s received: finishing the work in hand, then stopping",
                 signal.Signals(signum).name)
        server.should_exit = True
        stop.set()

    previous = {sig: signal.signal(sig, warm_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=loop, name="emergency-worker", daemon=True)
    thread.start()
    try:
        server.run(sockets=[listener])
    finally:
        service.stop(stop)
        thread.join()
        listener.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return failure[0] if failure else None


def _on_sandbox(args: argparse.Namespace, ctx: Context) -> tuple[config.Config, Context]:
    """The built-in sandbox, started here: its config, and the worker on its clock and tokens
    (the sandbox stops when serve does)."""
    from pathlib import Path

    from automation.cli.playground import start_sandbox
    from automation.sandbox import sandbox_environ

    sandbox, ticket_id, path = start_sandbox(args.speed, 0, Path("sandbox.toml"))
    ctx.closers.append(sandbox.stop)
    log.info("sandbox: urgent ticket #%d is waiting, its clock runs %gx; %s is written for "
             "`emergency --config %s sandbox ticket|reply|ack|advance`", ticket_id, args.speed,
             path, path)
    environ = {**ctx.environ, **sandbox_environ(sandbox)}
    return config.load(path), replace(ctx, environ=environ, clock=sandbox.clock)


def _secrets(ctx: Context) -> Secrets:
    from automation.server import Secrets

    return Secrets(
        zendesk_webhook=config.secret(config.ZENDESK_WEBHOOK_SECRET_ENV, ctx.environ),
        pagerduty_webhook=config.secret(config.PAGERDUTY_WEBHOOK_SECRET_ENV, ctx.environ),
        web_token=config.secret(config.WEB_TOKEN_ENV, ctx.environ))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a port in use is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise ConfigError(f"serve: cannot listen on {host}:{port}: {exc.strerror}") from None
    return listener


def _announce(listen: config.ServerConfig, secrets: Secrets, poll_seconds: float) -> None:
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    log.info("serving on http://%s:%d/ (status page, /healthz, /readyz, /metrics); a pass "
             "every %g s", host, listen.port, poll_seconds)
    for name, secret in ((config.ZENDESK_WEBHOOK_SECRET_ENV, secrets.zendesk_webhook),
                         (config.PAGERDUTY_WEBHOOK_SECRET_ENV, secrets.pagerduty_webhook)):
        if secret is None:
            log.warning("%s is not set: its webhook deliveries are refused (503); the poll "
                        "still finds every change", name)


def _report(cfg: config.Config, ctx: Context, now: datetime) -> str:
    """The report's page for the last 30 days: its own Zendesk client, as the timeline."""
    from automation import wiring
    from automation.report_html import served_page

    zendesk = wiring.build_zendesk(cfg, ctx.clock, ctx.environ)
    try:  # closed after, as the timeline's: the page is made again at most once a minute
        return served_page(zendesk, now, cfg.pagerduty.federal if cfg.pagerduty else None)
    finally:
        zendesk.close()
