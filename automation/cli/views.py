"""What the commands print: tables, timelines, previews and status lines, from their results.

Views only format; they decide nothing and read nothing but what they are given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from automation.cli.check import ConfigCheck
    from automation.cli.online import OnlineCheck
    from automation.commands import Page, Plan, Sent
    from automation.config import Config, FederalConfig
    from automation.model import Ticket
    from automation.pagerduty import OnCall
    from automation.sandbox.server import Sandbox
    from automation.store import Brief, TrackedTicket
    from automation.timeline import TimelineEntry
    from automation.worker import PassReport
    from automation.workflow import Coverage


def print_pass(report: PassReport, out: TextIO) -> None:
    for result in report.posted:
        print(f"#{result.ticket_id} {result.step}: {result.outcome}: {result.detail}", file=out)
    for result in report.failed:
        where = f"#{result.ticket_id} " if result.ticket_id else ""  # 0: a whole service
        print(f"{where}{result.step}: FAILED: {result.detail}", file=out)
    if report.slack_pending:
        print(f"slack: {report.slack_pending} line(s) pending; they are retried next pass",
              file=out)
    if report.state_problem:
        print(f"state: FAILED: {report.state_problem}", file=out)
    failed = len(report.failed) + (report.rejected is not None)  # a refused token: below
    listed = f"{report.listed} emergenc{'y' if report.listed == 1 else 'ies'} listed"
    print(f"pass at {report.now:%Y-%m-%d %H:%M:%S} UTC: {listed}, "
          f"{report.read} read, {len(report.posted)} posted, {failed} failed", file=out)


def _relative(due: datetime | None, now: datetime) -> str:
    if due is None:
        return "-"
    minutes = round((due - now).total_seconds() / 60)
    if minutes <= 0:
        return "due now"
    return f"in {minutes} min"


def print_status_json(tracked: Iterable[TrackedTicket], out: TextIO) -> None:
    rows = [
        {"ticket_id": t.ticket_id, "state": t.state, "next_step": t.next_step,
         "due_at": t.due_at.isoformat() if t.due_at else None, "subject": t.subject,
         "updated_at": t.updated_at, "seen_at": t.seen_at.isoformat()}
        for t in tracked
    ]
    json.dump(rows, out, indent=2)
    print(file=out)


def print_status(tracked: Sequence[TrackedTicket], now: datetime, out: TextIO) -> None:
    if not tracked:
        print("no emergencies tracked (run `emergency tick` to look for some)", file=out)
        return
    print(f"{'TICKET':>8}  {'STATE':<18} {'NEXT STEP':<12} {'DUE':<24} SUBJECT", file=out)
    for t in tracked:
        due = f"{t.due_at:%H:%M} ({_relative(t.due_at, now)})" if t.due_at else "-"
        if not t.active:
            due = "- (no longer listed)"
        print(f"{t.ticket_id:>8}  {t.state:<18} {t.next_step or '-':<12} {due:<24} "
              f"{t.subject[:60]}", file=out)


def _timeline_text(entry: TimelineEntry) -> str:
    from automation.templates import summary_line  # jinja2 comes with it

    if entry.source == "zendesk":
        return f"{entry.what}: {summary_line(entry.text, 80)}"
    if entry.source == "journal":
        return entry.what + (f": {entry.text[:80]}" if entry.text else "")
    retries = f" [{entry.attempts} tries; last: {entry.last_error[:80]}]" \
        if entry.last_error else ""
    return f"{entry.what}: {entry.text[:80]}{retries}"


def print_timeline(ticket: Ticket, entries: Iterable[TimelineEntry], out: TextIO) -> None:
    print(f"#{ticket.id} {ticket.subject} — {ticket.status}, priority {ticket.priority}, tags "
          f"{', '.join(ticket.tags) or '-'}", file=out)
    for entry in entries:
        print(f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.source:<8} {entry.label:<8} "
              f"{_timeline_text(entry)}", file=out)


def print_init(path: Path, out: TextIO) -> None:
    print(f"wrote {path}. Next: fill in [zendesk] url and email and [workflow] bridge_url "
          "(the sections for PagerDuty and Slack are commented out until you need them), "
          "export ZENDESK_API_TOKEN, then `emergency check`.", file=out)


def print_config_source(cfg: Config, out: TextIO) -> None:
    print(f"config {cfg.source}: ok (Zendesk {cfg.zendesk.url} as {cfg.zendesk.email})",
          file=out)
    if cfg.zendesk.view_id is not None:
        print(f"emergencies: view {cfg.zendesk.view_id}", file=out)
    else:
        print(f"emergencies: search {cfg.zendesk.query!r}", file=out)


def print_config_check(check: ConfigCheck, known_templates: Iterable[str], out: TextIO,
                       err: TextIO) -> None:
    for path in check.stray_overrides:
        print(f"warning: {path} overrides no template (a typo?); known: "
              f"{', '.join(sorted(known_templates))}", file=out)
    for template in check.templates:
        if template.error is not None:
            print(f"template {template.name}: FAILED: {template.error}", file=out)
            continue
        visibility = "public" if template.public else "internal"
        print(f"template {template.name} ({visibility}): ok: {template.first_line[:70]}",
              file=out)
    cfg = check.config
    if cfg.pagerduty is not None:
        pd = cfg.pagerduty
        print(f"pagerduty: {pd.url}, service {pd.service_id}, escalation policy "
              f"{pd.escalation_policy_id}, managers "
              f"{pd.managers_service_id or '(none: no manager pages)'}; acknowledgement "
              f"fallback {pd.acknowledge_fallback_minutes:g} min", file=out)
    if cfg.slack is not None:
        print(f"slack: {cfg.slack.url}, default channel {cfg.slack.default_channel}, "
              f"{len(cfg.slack.channels)} channel rule(s), {len(cfg.slack.regions)} region(s)",
              file=out)
    for name in check.unset_tokens:
        print(f"warning: {name} is not set; tick and run will refuse to start", file=out)
    if check.failures:
        print(f"error: {check.failures} template(s) failed to render", file=err)


def print_online_check(check: OnlineCheck, out: TextIO, err: TextIO) -> None:
    for probe in check.probes:
        verdict = "ok" if probe.ok else "FAILED" if probe.checked else "not checked"
        print(f"{probe.service} {probe.item}: {verdict}: {probe.detail}", file=out)
    if check.failures:
        unchecked = f", {check.unchecked} not checked" if check.unchecked else ""
        print(f"error: {check.failures} of {len(check.probes)} online check(s) failed"
              f"{unchecked}", file=err)


def preview_text(plan: Plan) -> str:
    """Exactly what would be sent, in order."""
    ticket = plan.snapshot.ticket
    author = plan.author.name + f" <{plan.author.email}>" if plan.author else "the API user"
    lines = [f"Ticket #{ticket.id}: {ticket.subject} (priority {ticket.priority}, "
             f"{ticket.status})", f"Posting as: {author}"]
    if plan.escalation is not None:
        lines.append(f"\nfirst, in PagerDuty: the Support Manager on call is paged on service "
                     f"{plan.escalation.service_id} (key {plan.escalation.incident_key}): "
                     f"{plan.escalation.title}")
    for number, write in enumerate(plan.writes, 1):
        visibility = "PUBLIC reply (the customer sees this)" if write.rendered.public \
            else "INTERNAL note (agents only)"
        lines.append(f"\n[{number}] {write.step}: {visibility}")
        lines.extend(f"    {line}" for line in write.rendered.body.splitlines())
        changes = []
        if write.priority and write.priority != ticket.priority:
            changes.append(f"priority {ticket.priority} -> {write.priority}")
        new_tags = [t for t in write.tags_to_add if t not in ticket.tags]
        if new_tags:
            changes.append("tags + " + ", ".join(new_tags))
        lines.append("    fields: " + ("; ".join(changes) if changes else "no changes"))
    from automation.mentions import readable

    for _, text in plan.slack_lines:
        lines.append(f"\nthen, in the emergency's Slack thread: {readable(text)}")
    return "\n".join(lines)


def print_sent(ticket_id: int, sent: Iterable[Sent], out: TextIO) -> None:
    from automation.commands import NOTICE, SLACK_PENDING  # loaded: a command sent these

    for one in sent:
        if one.step in (SLACK_PENDING, NOTICE):
            print(one.note, file=out)
            continue
        if one.skipped:
            print(f"#{ticket_id} {one.step}: already on the ticket, skipped", file=out)
            continue
        visibility = "public" if one.public else "internal"
        note = f" ({one.note})" if one.note else ""
        comment = f" comment {one.comment_id}" if one.comment_id else ""
        print(f"#{ticket_id} {one.step}: posted {visibility}{comment}{note}", file=out)


def print_briefs_json(found: Iterable[Brief], out: TextIO) -> None:
    json.dump([{"ticket_id": b.ticket_id, "organization_id": b.organization_id,
                "organization": b.organization, "author": b.author, "planned": b.planned,
                "when": b.when.isoformat(), "url": b.url} for b in found], out, indent=2)
    print(file=out)


def print_briefs(found: Sequence[Brief], org: str | None, out: TextIO) -> None:
    if not found:
        print("no briefs on file" + (" for that organization" if org else ""), file=out)
    for b in found:
        print(f"{b.when:%Y-%m-%d %H:%M %Z}  {b.organization or '-'}  {b.planned}  "
              f"(by {b.author}, #{b.ticket_id} {b.url})", file=out)


def page_text(page: Page) -> str:
    """Who would be paged (nothing sent yet), or the incident that pages them."""
    incident = page.incident
    if incident is None:
        return (f"would page {page.engineer.name} <{page.engineer.email}> on service "
                f"{page.service_id}: {page.title!r} (incident key {page.incident_key})")
    already = "already paged: " if page.already_paged else ""
    return (f"#{page.ticket_id}: {already}incident {incident.id} ({incident.status}, "
            f"assigned to {page.assigned}) {incident.html_url}")


def print_federal_hours(hours: Coverage, federal: FederalConfig, out: TextIO) -> None:
    state = "open now" if hours.open_now else \
        f"closed now; opens {hours.opens_at:%Y-%m-%d %H:%M} UTC"
    print(f"US Federal coverage {hours.hours} ({state}); shifts "
          f"{', '.join(federal.shifts)} {federal.timezone}", file=out)


def _shift(entry: OnCall) -> str:
    start = f"{entry.start:%Y-%m-%d %H:%M}" if entry.start else "always"
    end = f"{entry.end:%Y-%m-%d %H:%M} UTC" if entry.end else "further notice"
    return f"{entry.user.name} <{entry.user.email}>, {start} until {end}"


def print_oncall(at: datetime, current: OnCall | None, following: OnCall | None,
                 out: TextIO) -> None:
    print(f"on call at {at:%Y-%m-%d %H:%M %Z}: {_shift(current) if current else 'nobody'}",
          file=out)
    print(f"next: {_shift(following) if following else 'nobody scheduled'}", file=out)


def print_sandbox_ready(sandbox: Sandbox, ticket_id: int, config_path: Path, out: TextIO) -> None:
    print(f"sandbox on 127.0.0.1: Zendesk {sandbox.url} (API user {sandbox.email}), "
          f"Slack {sandbox.slack_url}, PagerDuty {sandbox.pagerduty_url}, "
          f"GitLab {sandbox.gitlab_url}; "
          f"urgent ticket #{ticket_id} is waiting", file=out)
    print(f"wrote {config_path}. In another shell:\n"
          f"  export ZENDESK_API_TOKEN={sandbox.token} "
          f"PAGERDUTY_API_TOKEN={sandbox.pagerduty.token} "
          f"SLACK_BOT_TOKEN={sandbox.slack.token} GITLAB_TOKEN={sandbox.gitlab.token}\n"
          f"  emergency --config {config_path} tick\n"
          f"  emergency --config {config_path} status\n"
          f"  emergency --config {config_path} timeline {ticket_id}\n"
          f"  emergency --config {config_path} oncall\n"
          f"  emergency --config {config_path} check --online\n"
          f"Play the others' parts: `emergency --config {config_path} sandbox ticket "
          "--org Globex` (a customer files an urgent ticket), `sandbox reply 1` (the customer "
          "answers), `sandbox ack 1` (the engineer takes the page), `sandbox advance 15m`.\n"
          "Ctrl-C stops the sandbox.", file=out, flush=True)


def _clock_text(iso_time: str) -> str:
    return f"{datetime.fromisoformat(iso_time.replace('Z', '+00:00')):%Y-%m-%d %H:%M:%S} UTC"


def print_sandbox_verb(verb: str, answer: dict[str, Any], out: TextIO) -> None:
    """One line: what happened in the sandbox, and when by its clock."""
    if verb == "advance":
        print(f"sandbox clock: {_clock_text(answer['now'])}", file=out)
        return
    if verb == "ack":
        incident = answer["incident"]
        who = incident["last_status_change_by"]["summary"]
        print(f"{incident['summary']}: acknowledged by {who} at "
              f"{_clock_text(incident['last_status_change_at'])}", file=out)
        return
    ticket, requester = answer["ticket"], answer["requester"]
    if verb == "ticket":
        print(f"#{ticket['id']} urgent ticket from {requester['name']} "
              f"({answer['organization']['name']}) at {_clock_text(ticket['created_at'])}: "
              f"{ticket['subject']}", file=out)
    else:
        print(f"#{ticket['id']} {requester['name']} answered at "
              f"{_clock_text(ticket['updated_at'])}", file=out)
