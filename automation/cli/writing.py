"""The handlers that write on a ticket or page someone: previewed, confirmed, then sent once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from automation import config
from automation.cli import views
from automation.cli.context import Context
from automation.cli.exits import EXIT_OK
from automation.cli.parser import UsageError
from automation.errors import ConfigError
from automation.model import Step

# automation.commands reads Zendesk: imported by the handlers, not by `import automation.cli`.
if TYPE_CHECKING:
    from automation.commands import Commands, Plan, Sent


def read_text(value: str, flag: str, ctx: Context) -> str:
    """A flag's FILE, or standard input for '-'."""
    if value == "-":
        return ctx.stdin.read()
    try:
        return Path(value).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{flag} {value}: no such file (give a file, or - for stdin)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {value}: cannot read it as UTF-8 text: {exc}") from None


def build_commands(args: argparse.Namespace, ctx: Context) -> Commands:
    from automation import wiring

    cfg = config.load(config.resolve_path(args.config, ctx.environ))
    commands = wiring.build_commands(cfg, ctx.clock, ctx.environ)
    ctx.closers.append(commands.close)
    return commands


def confirmed(text: str, args: argparse.Namespace, ctx: Context) -> bool:
    """--yes, or the preview shown and 'y' typed on a terminal."""
    if args.yes:
        return True
    if not ctx.stdin.isatty():
        raise UsageError("not sending without --yes when standard input is not a terminal "
                         "(preview it with --dry-run)")
    print(text, file=ctx.out)
    print("\nSend this? [y/N] ", end="", file=ctx.out, flush=True)
    if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
        print("not sent", file=ctx.out)
        return False
    return True


def confirm_and_send(commands: Commands, plan: Plan, args: argparse.Namespace,
                     ctx: Context, send: Callable[[Plan], list[Sent]] | None = None) -> int:
    """--dry-run previews; otherwise --yes or a 'y' typed on a terminal sends (with
    `commands.send`, or `send`)."""
    text = views.preview_text(plan)
    if args.dry_run:
        print(text, file=ctx.out)
        print("\ndry run: nothing was sent", file=ctx.out)
        return EXIT_OK
    if not confirmed(text, args, ctx):
        return EXIT_OK
    views.print_sent(plan.snapshot.ticket.id, (send or commands.send)(plan), ctx.out)
    return EXIT_OK


def cmd_manual_step(step: Step) -> Callable[[argparse.Namespace, Context], int]:
    def command(args: argparse.Namespace, ctx: Context) -> int:
        commands = build_commands(args, ctx)
        plan = commands.plan_step(args.ticket, step, args.as_email, args.force)
        return confirm_and_send(commands, plan, args, ctx)
    return command


cmd_ack = cmd_manual_step(Step.ACKNOWLEDGE)
cmd_follow_up = cmd_manual_step(Step.FOLLOW_UP)
cmd_close = cmd_manual_step(Step.CLOSE)


def cmd_post_call(args: argparse.Namespace, ctx: Context) -> int:
    if args.notes == "-" and args.internal == "-":
        raise UsageError("--notes and --internal cannot both read standard input")
    notes = read_text(args.notes, "--notes", ctx)
    internal = read_text(args.internal, "--internal", ctx) if args.internal else None
    commands = build_commands(args, ctx)
    macro = commands.config.macros.get("post_call")
    plan = commands.plan_post_call(args.ticket, notes, internal, args.as_email, args.until,
                                   args.next_engineer, macro, args.force)
    return confirm_and_send(commands, plan, args, ctx)


def cmd_brief(args: argparse.Namespace, ctx: Context) -> int:
    from automation.commands import BRIEF_FIELDS, parse_brief_file

    fields: dict[str, str] = {}
    if args.file:
        fields.update(parse_brief_file(read_text(args.file, "--file", ctx), args.file))
    elif args.edit:
        fields.update(edit_brief(ctx))
    for name in BRIEF_FIELDS:
        if getattr(args, name):
            fields[name] = getattr(args, name)
    commands = build_commands(args, ctx)
    plan = commands.plan_brief(args.ticket, fields, args.as_email)
    return confirm_and_send(commands, plan, args, ctx)


def edit_brief(ctx: Context) -> dict[str, str]:
    import subprocess
    import tempfile

    from automation.commands import BRIEF_FIELDS, parse_brief_file

    editor = ctx.environ.get("VISUAL") or ctx.environ.get("EDITOR")
    if not editor:
        raise UsageError("--edit needs $EDITOR (or give --file, or the --planned ... flags)")
    skeleton = "".join(f"## {name.title()}\n\n" for name in BRIEF_FIELDS)
    with tempfile.NamedTemporaryFile("w+", suffix=".md", delete=False) as handle:
        handle.write(skeleton)
        path = handle.name
    try:
        subprocess.run([*editor.split(), path], check=True)
        return parse_brief_file(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UsageError(f"--edit: the editor {editor!r} failed: {exc}") from None
    finally:
        Path(path).unlink(missing_ok=True)


def cmd_not_emergency(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    plan = commands.plan_not_emergency(args.ticket, args.reason, args.inform, args.as_email)
    return confirm_and_send(commands, plan, args, ctx)


def cmd_escalate(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    plan = commands.plan_escalate(args.ticket, args.reason, args.as_email, args.force)
    return confirm_and_send(commands, plan, args, ctx, send=commands.escalate)


def cmd_page(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    page = commands.page(args.ticket, args.engineer, dry_run=True, force=args.force)
    if args.dry_run or page.already_paged:
        print(views.page_text(page), file=ctx.out)
        if not page.already_paged:
            print("dry run: nothing was sent", file=ctx.out)
        return EXIT_OK
    if not confirmed(views.page_text(page), args, ctx):
        return EXIT_OK
    print(views.page_text(commands.page(args.ticket, args.engineer, dry_run=False,
                                        force=args.force)), file=ctx.out)
    return EXIT_OK


def cmd_runbook_issue(args: argparse.Namespace, ctx: Context) -> int:
    commands = build_commands(args, ctx)
    preview = commands.runbook_issue(args.ticket, dry_run=True)
    if args.dry_run:
        print(preview.text(), file=ctx.out)
        if not preview.already:
            print("\ndry run: nothing was sent", file=ctx.out)
        return EXIT_OK
    if preview.already:  # recorded on the ticket now if it was not yet
        print(commands.runbook_issue(args.ticket, dry_run=False).text(), file=ctx.out)
        return EXIT_OK
    if not confirmed(preview.text(), args, ctx):
        return EXIT_OK
    print(commands.runbook_issue(args.ticket, dry_run=False).text(), file=ctx.out)
    return EXIT_OK
