"""`hebdo editions …` and `hebdo send`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from sqlalchemy.orm import Session

from service import newsletters
from service.broker import CeleryQueue
from service.cli.context import ID, CliContext
from service.editions import store
from service.models import Edition, utcnow
from service.sending import controls, outbox, schedule
from service.team import audit
from service.tracking import classify, results

pass_context = click.make_pass_decorator(CliContext)


@click.group("editions")
def editions_group() -> None:
    """Load, inspect, render, schedule and steer the sending of editions."""


@editions_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--newsletter", "slug", required=True)
@pass_context
def load_command(ctx: CliContext, path: Path, slug: str) -> None:
    """Create a draft edition from an edition JSON file.

    A file that breaks the edition's rules exits with status 2 and one line per bad
    field on stderr ("path: items[2].title: required").
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and numbers past int's digit limit.
        raise click.ClickException(f"{path}: not valid JSON ({str(exc)[:200]})") from exc
    with ctx.transaction() as session:
        try:
            newsletter = newsletters.get_by_slug(session, slug)
            edition = store.create(session, newsletter, data)
        except store.EditionInvalid as exc:
            for where, reason in exc.problems:
                click.echo(f"{path}: {where}: {reason}" if where else f"{path}: {reason}", err=True)
            raise click.exceptions.Exit(2) from exc
        except (newsletters.UnknownNewsletter, store.EditionError) as exc:
            raise click.ClickException(f"{path}: {exc}") from exc
        count = len(edition.items)
        click.echo(f"loaded edition {edition.number} (id {edition.id}) with {count} news items")


@editions_group.command("show")
@click.argument("edition_id", type=ID)
@pass_context
def show_command(ctx: CliContext, edition_id: int) -> None:
    """Print an edition as JSON (the format `load` reads)."""
    with ctx.sessions() as session:
        try:
            edition = store.get(session, edition_id)
        except store.EditionError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(json.dumps(store.to_data(edition), ensure_ascii=False, indent=2))


@editions_group.command("render")
@click.argument("edition_id", type=ID)
@click.option("--text", "as_text", is_flag=True, help="Print the text part instead of HTML.")
@pass_context
def render_command(ctx: CliContext, edition_id: int, as_text: bool) -> None:
    """Print the edition's email as subscribers get it (before personalisation)."""
    settings = ctx.settings
    with ctx.sessions() as session:
        edition = store.get(session, edition_id)
        rendered = store.render(
            edition, base_url=settings.base_url, templates_path=settings.email_templates_path
        )
    click.echo(rendered.text if as_text else rendered.html)


@editions_group.command("parse-draft")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", type=click.Choice(["fr", "en"]), default="fr")
def parse_draft_command(path: Path, language: str) -> None:
    """Turn a pasted plain-text draft into edition JSON; problems go to stderr."""
    from service.editions.drafts import parse_draft

    parsed = parse_draft(path.read_text(encoding="utf-8-sig"), language=language)
    click.echo(json.dumps(parsed.edition, ensure_ascii=False, indent=2))
    for problem in parsed.problems:
        click.echo(f"{path}:{problem.line}: {problem.reason}: {problem.text}", err=True)


@click.command("send")
@click.argument("edition_id", type=ID)
@click.option("--wait", is_flag=True, help="Show progress until the edition has gone out.")
@click.option("--timeout", type=float, default=3600.0, help="Give up waiting after this long.")
@pass_context
def send_command(ctx: CliContext, edition_id: int, wait: bool, timeout: float) -> None:
    """Send an edition now: snapshot its recipients and hand them to the workers."""
    settings = ctx.settings
    with ctx.transaction() as session:
        try:
            edition = store.get(session, edition_id)
            started = controls.begin(
                session,
                edition,
                base_url=settings.base_url,
                templates_path=settings.email_templates_path,
                batch_size=settings.batch_size,
                who=audit.Who.cli(),
            )
        except (store.EditionError, outbox.SendError) as exc:
            raise click.ClickException(str(exc)) from exc
    CeleryQueue(settings.broker_url).send_edition(edition_id, started.batches)
    click.echo(f"sending edition {edition_id} to {started.recipients} recipients")
    if wait:
        total = wait_for_delivery(ctx, edition_id, timeout=timeout)
        click.echo(f"delivered {total} messages")


def wait_for_delivery(ctx: CliContext, edition_id: int, *, timeout: float) -> int:
    """Draw a progress bar with an ETA until nothing remains to send; return the count sent.

    A send paused by a relay outage resumes by itself, so waiting goes on; one
    paused by an editor will not, so waiting stops there.
    """
    deadline = time.monotonic() + timeout
    width = 30
    while True:
        with ctx.sessions() as session:
            edition = store.get(session, edition_id)
            progress = outbox.progress(session, edition_id)
            estimate = controls.estimate(session, edition)
        status = edition.status.value
        done = progress.sent + progress.failed + progress.cancelled
        filled = int(width * done / progress.total) if progress.total else width
        if edition.resume_at is not None:
            # Paused by itself (relay down or full, disk full): the detail says which.
            reason = edition.status_detail.removeprefix("paused: ").split("; trying again")[0]
            note = f"({reason}) retrying at {edition.resume_at:%H:%M:%S}Z"
        elif estimate.seconds_left and progress.remaining:
            note = f"{estimate.per_second:.0f}/s, {_duration(estimate.seconds_left)} left"
        else:
            note = ""
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total} "
            f"sent {progress.sent} failed {progress.failed} {status} {note}\033[K"
        )
        sys.stderr.flush()
        if status in ("sent", "cancelled") or (status == "paused" and edition.resume_at is None):
            sys.stderr.write("\n")
            if progress.failed:
                # Said on stdout too: a failed delivery is a result, not progress noise.
                click.echo(
                    f"{progress.failed} deliveries failed; see their reasons with "
                    f"`hebdo editions failures {edition_id}` or on the edition page"
                )
            if status == "paused":
                raise click.ClickException(
                    f"edition {edition_id} is paused: {edition.status_detail}"
                )
            return progress.sent
        if time.monotonic() > deadline:
            sys.stderr.write("\n")
            raise click.ClickException(f"timed out with {progress.remaining} messages left")
        time.sleep(0.5)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )


def _edition(session: Session, edition_id: int) -> Edition:
    try:
        return store.get(session, edition_id)
    except store.EditionError as exc:
        raise click.ClickException(str(exc)) from exc


def _local(edition: Edition, moment: datetime) -> str:
    """A UTC time as the newsletter's readers see it, with the UTC time beside it."""
    local = moment.astimezone(ZoneInfo(edition.newsletter.timezone))
    return f"{local:%a %Y-%m-%d %H:%M} {edition.newsletter.timezone} ({moment:%Y-%m-%d %H:%M}Z)"


@editions_group.command("failures")
@click.argument("edition_id", type=int)
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@pass_context
def failures_command(ctx: CliContext, edition_id: int, limit: int) -> None:
    """List the deliveries of an edition that failed, with their reasons."""
    with ctx.sessions() as session:
        _edition(session, edition_id)
        count, failed = outbox.failures(session, edition_id, limit=limit)
    for failure in failed:
        address = _printable(failure.email[:200])
        click.echo(f"{failure.delivery_id}\t{address}\t{_printable(failure.reason)}")
    more = f" (showing {len(failed)})" if count > len(failed) else ""
    click.echo(f"{count} failed deliveries{more}")


def _printable(text: str) -> str:
    """Control characters shown escaped: legacy rows may hold any (that may be why they failed)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@editions_group.command("schedule")
@click.argument("edition_id", type=ID)
@click.option(
    "--at",
    "at",
    metavar="ISO-TIME",
    help="When, with its UTC offset: 2025-03-29T08:00+01:00 (or …Z).",
)
@click.option("--next-slot", is_flag=True, help="The newsletter's next weekly slot (the default).")
@pass_context
def schedule_command(ctx: CliContext, edition_id: int, at: str | None, next_slot: bool) -> None:
    """Schedule (or reschedule) an edition; the beat starts it at that time."""
    if at and next_slot:
        raise click.UsageError("give --at or --next-slot, not both")
    when = None
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError as exc:
            raise click.BadParameter(f"{at!r} is not an ISO 8601 time", param_hint="--at") from exc
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            scheduled = schedule.schedule(session, edition, when, who=audit.Who.cli())
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            f"edition {edition.number} (id {edition.id}) scheduled for {_local(edition, scheduled)}"
        )


@editions_group.command("next-issue")
@click.argument("edition_id", type=ID)
@click.option("--off", is_flag=True, help="Take the mark off instead.")
@pass_context
def next_issue_command(ctx: CliContext, edition_id: int, off: bool) -> None:
    """Mark a draft as its newsletter's next issue: once ready, beat schedules it to the next slot.

    Ready: its content passes the edition's rules, with a title, a subject and a news item.
    """
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            schedule.mark_next_issue(session, edition, not off)
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
        if off:
            click.echo(f"edition {edition.number} (id {edition.id}) is no longer the next issue")
            return
        slot = _local(edition, schedule.next_slot(edition.newsletter, utcnow()))
        missing = schedule.not_ready(edition)
        click.echo(f"edition {edition.number} (id {edition.id}) is the next issue (slot {slot})")
        if missing:
            click.echo("not ready yet: " + "; ".join(missing))
        else:
            click.echo("ready: beat schedules it within a minute")


@editions_group.command("unschedule")
@click.argument("edition_id", type=ID)
@pass_context
def unschedule_command(ctx: CliContext, edition_id: int) -> None:
    """Take a scheduled edition back to draft."""
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            schedule.unschedule(session, edition, who=audit.Who.cli())
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"edition {edition.number} (id {edition.id}) is a draft again")


@editions_group.command("pause")
@click.argument("edition_id", type=ID)
@pass_context
def pause_command(ctx: CliContext, edition_id: int) -> None:
    """Pause a send; messages in flight finish, the rest waits for `resume`."""
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            controls.pause(session, edition, who=audit.Who.cli())
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
    # After the commit: the messages already handed to the relay finish, then we count.
    settled = controls.settle(ctx.sessions, edition_id)
    left = settled.progress.remaining
    click.echo(
        f"paused edition {edition.number} (id {edition_id}) with {left} messages left, "
        f"{settled.progress.sent} sent"
    )
    _still_held(settled)


@editions_group.command("resume")
@click.argument("edition_id", type=ID)
@click.option("--wait", is_flag=True, help="Show progress until the edition has gone out.")
@click.option("--timeout", type=float, default=3600.0, help="Give up waiting after this long.")
@pass_context
def resume_command(ctx: CliContext, edition_id: int, wait: bool, timeout: float) -> None:
    """Resume a paused send where it stopped."""
    settings = ctx.settings
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            started = controls.resume(
                session, edition, batch_size=settings.batch_size, who=audit.Who.cli()
            )
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
    CeleryQueue(settings.broker_url).send_edition(edition_id, started.batches)
    click.echo(
        f"resumed edition {edition.number} (id {edition_id}): {started.recipients} messages left"
    )
    if wait:
        total = wait_for_delivery(ctx, edition_id, timeout=timeout)
        click.echo(f"delivered {total} messages")


@editions_group.command("cancel")
@click.argument("edition_id", type=ID)
@pass_context
def cancel_command(ctx: CliContext, edition_id: int) -> None:
    """Cancel a send (or a schedule) for good: nothing more goes out."""
    with ctx.transaction() as session:
        edition = _edition(session, edition_id)
        try:
            controls.cancel(session, edition, who=audit.Who.cli())
        except outbox.SendError as exc:
            raise click.ClickException(str(exc)) from exc
    # After the commit: a message already handed to the relay may still be taken (it
    # then counts as sent); wait for those, so the numbers below are the final ones.
    settled = controls.settle(ctx.sessions, edition_id)
    progress = settled.progress
    failed = f", {progress.failed} failed" if progress.failed else ""
    click.echo(
        f"cancelled edition {edition.number} (id {edition_id}): {progress.cancelled} messages "
        f"will not go out, {progress.sent} already sent{failed}"
    )
    _still_held(settled)


def _still_held(settled: controls.Settled) -> None:
    if settled.in_flight:
        click.echo(
            f"{settled.in_flight} messages were still held by a worker; the counts may "
            "still move by that many",
            err=True,
        )


@editions_group.command("results")
@click.argument("edition_id", type=ID)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the per-item and per-link figures.")
@pass_context
def results_command(ctx: CliContext, edition_id: int, as_json: bool, as_csv: bool) -> None:
    """Print what happened to an edition: deliveries, human and machine opens and clicks."""
    with ctx.sessions() as session:
        _edition(session, edition_id)
        figures = results.edition_results(session, edition_id)
    if as_json:
        click.echo(json.dumps(results.as_json(figures), ensure_ascii=False, indent=2))
        return
    if as_csv:
        click.echo(results.items_csv(figures), nl=False)
        return
    data = results.as_json(figures)
    click.echo(f"edition {figures.number} (id {figures.edition}): {_printable(figures.title)}")
    click.echo(
        f"delivered {figures.delivered}, failed {figures.failed}, bounced {figures.bounced}"
        f" (hard {figures.hard_bounces}, soft {figures.soft_bounces}),"
        f" complaints {figures.complaints}, unsubscribes {figures.unsubscribes}"
    )
    if not figures.tracked:
        click.echo("tracking was off for this edition: no opens or clicks were recorded")
        return
    opens, clicks = data["opens"], data["clicks"]
    click.echo(f"opens: {opens['human_unique']} readers (machine fetches {opens['machine']})")
    click.echo(
        f"clicks: {clicks['human_unique']} readers, {clicks['human_total']} clicks"
        f" (machine {clicks['machine']})"
    )
    click.echo(f"feedback: yes {figures.feedback_yes}, no {figures.feedback_no}")


@editions_group.command("reclassify")
@click.argument("edition_ids", type=ID, nargs=-1, required=True)
@pass_context
def reclassify_command(ctx: CliContext, edition_ids: tuple[int, ...]) -> None:
    """Re-apply the human/machine rules to the stored events of these editions."""
    with ctx.transaction() as session:
        for edition_id in edition_ids:
            _edition(session, edition_id)
        changed = classify.reapply(session, edition_ids)
    click.echo(f"{changed} events changed class")
