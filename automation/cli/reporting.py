"""`emergency report`: how the emergencies of a window went, from Zendesk's own audits; as a
table, as JSON, or as an HTML page with charts."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from automation.cli.context import Context, load_config, service_now
from automation.cli.exits import EXIT_OK
from automation.errors import InputError
from automation.report import Emergency, Figures, Report, minutes, share


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    from automation import wiring
    from automation.report import gather

    cfg = load_config(args, ctx)
    if args.html:
        from automation.report_html import require_matplotlib

        require_matplotlib()  # before reading a thing: one line says how to install it
    until = service_now(cfg, ctx)
    since = window_start(args.since, until)
    zendesk = wiring.build_zendesk(cfg, ctx.clock, ctx.environ)
    report = gather(zendesk, since, until, cfg.pagerduty.federal if cfg.pagerduty else None)
    if args.json:
        json.dump(report.as_json(), ctx.out, indent=2)
        print(file=ctx.out)
    else:
        print_report(report, ctx.out)
    if args.html:
        write_html(report, Path(args.html))
        print(f"HTML report written to {args.html}", file=ctx.err if args.json else ctx.out)
    return EXIT_OK


def window_start(since: timedelta | datetime, until: datetime) -> datetime:
    start = until - since if isinstance(since, timedelta) else since
    if start >= until:
        raise InputError(f"--since {start:%Y-%m-%d %H:%M %Z}: after Zendesk's now "
                         f"({until:%Y-%m-%d %H:%M} UTC); expected a moment in the past")
    return start


def write_html(report: Report, path: Path) -> None:
    from automation.report_html import render_html

    try:
        path.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--html {path}: cannot write: {exc.strerror}") from None


# --- the table ----------------------------------------------------------------------------

EMERGENCY_ROW = "{:<7} {:<15} {:<13} {:>9} {:<19} {:<12} {:<4} {:<4} {:<4} {:<3}"
FIGURES_ROW = "{:<24} {:>5} {:>9} {:>12} {:>12} {:>8} {:>13}"


def print_report(report: Report, out: TextIO) -> None:
    count = len(report.emergencies)
    print(f"Emergencies raised from {report.since:%Y-%m-%d %H:%M} to "
          f"{report.until:%Y-%m-%d %H:%M} UTC (Zendesk's audits): {count}", file=out)
    if report.emergencies:
        print(file=out)
        print(EMERGENCY_ROW.format("ticket", "urgent (UTC)", "organization", "contact",
                                   "by", "answered", "f-up", "HIGH", "mgr", "off"), file=out)
        for emergency in report.emergencies:
            print(_emergency_row(emergency), file=out)
    print(file=out)
    print(FIGURES_ROW.format("", "count", "contacted", "contact p50", "p90", "HIGH",
                             "answered<=15"), file=out)
    print(_figures_row(report.overall), file=out)
    for title, rows in (("by week", report.by_week), ("by organization", report.by_organization),
                        ("by engineer who made contact", report.by_engineer)):
        print(title, file=out)
        for figures in rows:
            print(_figures_row(figures, indent="  "), file=out)
    print("HIGH: stepped down to high by the bridge-closed step. answered<=15: the share of "
          "the\ncontacted whose customer answered within 15 min of contact.", file=out)


def _emergency_row(e: Emergency) -> str:
    answered = "—"
    if e.answered_at is not None and e.contact_at is not None:
        answered = "within 15" if e.answered_within else \
            f"{minutes(e.answered_at - e.contact_at)}"
    return EMERGENCY_ROW.format(
        f"#{e.ticket_id}", f"{e.urgent_at:%a %m-%d %H:%M}", _cut(e.organization, 13),
        minutes(e.time_to_contact), _cut(e.contact_by or "nobody yet", 19), answered,
        *("yes" if flag else "—" for flag in (e.followed_up, e.stepped_down,
                                             e.manager_paged)),
        "yes" if e.off_hours else "—")


def _figures_row(f: Figures, indent: str = "") -> str:
    return FIGURES_ROW.format(_cut(indent + f.label, 24), f.emergencies, f.contacted,
                              minutes(f.p50), minutes(f.p90), share(f.stepped_down),
                              share(f.answered_within))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
