"""`hebdo subscribers …`: import, export and add subscribers."""

from __future__ import annotations

import re
import sys
import time
from datetime import timedelta
from pathlib import Path

import click

from service.audience import confirmations, exports, imports
from service.audience.imports import ImportAborted, ImportProgress
from service.broker import CeleryQueue
from service.cli.context import CliContext
from service.mail.wording import LANGUAGES
from service.models import SubscriptionStatus
from service.newsletters import UnknownNewsletter, get_by_slug
from service.team import audit

pass_context = click.make_pass_decorator(CliContext)
PROGRESS_EVERY = 10_000


@click.group("subscribers")
def subscribers_group() -> None:
    """Import, export and manage subscribers."""


def _check_consent(confirmed: bool, reason: str | None) -> None:
    if confirmed and not (reason or "").strip():
        raise click.UsageError("--confirmed needs --reason: where did these readers consent?")


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option(
    "--confirmed",
    is_flag=True,
    help="The readers already confirmed elsewhere: subscribe them confirmed (needs --reason).",
)
@click.option("--reason", default=None, help="Where they consented; kept on each subscription.")
@click.option("--batch-size", default=1000, show_default=True, help="Rows per transaction.")
@click.option(
    "--wait", is_flag=True, help="Show progress until the confirmation emails have gone out."
)
@click.option("--timeout", type=float, default=3600.0, help="Give up waiting after this long.")
@pass_context
def import_command(
    ctx: CliContext,
    file: Path,
    slug: str,
    confirmed: bool,
    reason: str | None,
    batch_size: int,
    wait: bool,
    timeout: float,
) -> None:
    """Import subscribers from a CSV file (FILE, or - for standard input).

    The header row must name an email column; name, locale and any other column
    are kept. Without --confirmed, new subscriptions wait for double opt-in and
    the workers mail each of them the confirmation link.
    """
    _check_consent(confirmed, reason)
    with ctx.sessions() as session:
        try:
            newsletter_id = get_by_slug(session, slug).id
        except UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc

    next_report = PROGRESS_EVERY

    def show(progress: ImportProgress) -> None:
        nonlocal next_report
        if progress.rows_read >= next_report:
            click.echo(_progress_line(progress), err=True)
            next_report = (progress.rows_read // PROGRESS_EVERY + 1) * PROGRESS_EVERY

    try:
        with click.open_file(str(file), "rb") as stream:
            report = imports.import_csv_batched(
                ctx.sessions,
                newsletter_id,
                stream,
                confirmed=confirmed,
                confirmed_reason=reason,
                progress=show,
                batch_size=batch_size,
                who=audit.Who.cli(),
            )
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from exc
    except ImportAborted as exc:
        raise click.ClickException(f"{file}: {exc}") from exc
    click.echo(f"done: {_progress_line(report.progress())}", err=True)
    for line in report.summary_lines():
        click.echo(line)
    if report.confirmations_queued:
        _enqueuer(ctx)(newsletter_id)
        if wait:
            _wait_for_confirmations(ctx, report.confirmation_request, timeout)


def _progress_line(progress: ImportProgress) -> str:
    return (
        f"{progress.rows_read} rows read, {progress.added} added, {progress.merged} merged, "
        f"{progress.skipped} skipped, {progress.rejected_count} rejected"
    )


@subscribers_group.command("export")
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriptionStatus]),
    default=None,
    help="Only subscriptions in this state (default: all).",
)
@pass_context
def export_command(ctx: CliContext, slug: str, status: str | None) -> None:
    """Write the newsletter's subscribers as CSV to standard output."""
    with ctx.sessions() as session:
        try:
            newsletter = get_by_slug(session, slug)
        except UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
        with click.open_file("-", "w") as out:
            count = exports.export_csv(
                session,
                newsletter,
                out,
                status=SubscriptionStatus(status) if status else None,
                who=audit.Who.cli(),
            )
        session.commit()  # the audit row
    click.echo(f"exported {count} subscribers", err=True)


@subscribers_group.command("add")
@click.argument("email")
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option("--name", default="")
@click.option(
    "--locale",
    type=click.Choice(LANGUAGES),
    default=None,
    help="Language of the notices (default: the newsletter's).",
)
@click.option("--confirmed", is_flag=True, help="Already confirmed elsewhere (needs --reason).")
@click.option("--reason", default=None, help="Where they consented; kept on the subscription.")
@pass_context
def add_command(
    ctx: CliContext,
    email: str,
    slug: str,
    name: str,
    locale: str | None,
    confirmed: bool,
    reason: str | None,
) -> None:
    """Subscribe one address (suppressed or unsubscribed addresses are refused)."""
    _check_consent(confirmed, reason)
    with ctx.transaction() as session:
        try:
            newsletter = get_by_slug(session, slug)
        except UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
        newsletter_id = newsletter.id
        report = imports.add_address(
            session,
            newsletter,
            email,
            name=name,
            locale=locale,
            confirmed=confirmed,
            confirmed_reason=reason,
        )
    if report.rejected:
        raise click.ClickException(f"{email}: {report.rejected[0].reason}")
    if report.skipped_rows:
        raise click.ClickException(
            f"{report.skipped_rows[0].email} is {report.skipped_rows[0].reason}: "
            "only the reader can subscribe again, through the signup form"
        )
    if report.confirmations_queued:
        _enqueuer(ctx)(newsletter_id)
    state = "confirmed" if confirmed else "pending confirmation"
    if report.subscribed:
        click.echo(f"subscribed {email} to {slug} ({state})")
    elif report.confirmed:
        click.echo(f"confirmed the pending subscription of {email} to {slug}")
    else:
        click.echo(f"{email} was already subscribed to {slug}")
    if report.confirmations_queued:
        click.echo("confirmation email queued for the workers", err=True)


# --- Confirmation emails --------------------------------------------------------------


def _enqueuer(ctx: CliContext) -> confirmations.Enqueue:
    """Hand a newsletter's queued confirmations to the workers (after the commit)."""
    broker_url = ctx.settings.broker_url

    def enqueue(newsletter_id: int) -> None:
        try:
            CeleryQueue(broker_url).send_confirmations(newsletter_id)
        except Exception as exc:  # the rows are committed: beat's sweep hands them out later
            click.echo(
                f"warning: could not reach the broker ({exc}); the workers' "
                "periodic sweep will send the confirmation emails",
                err=True,
            )

    return enqueue


def _wait_for_confirmations(ctx: CliContext, request_id: str, timeout: float) -> None:
    """Draw the progress of one request's confirmation emails until none is left queued."""
    deadline = time.monotonic() + timeout
    width = 30
    while True:
        with ctx.sessions() as session:
            progress = confirmations.progress(session, request_id=request_id)
        done = progress.total - progress.queued
        filled = int(width * done / progress.total) if progress.total else width
        sys.stderr.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{progress.total} "
            f"({progress.sent} sent, {progress.failed} failed, {progress.skipped} skipped)"
        )
        sys.stderr.flush()
        if progress.done:
            sys.stderr.write("\n")
            break
        if time.monotonic() > deadline:
            sys.stderr.write("\n")
            raise click.ClickException(
                f"gave up waiting: {progress.queued} confirmation emails still queued "
                "(the workers go on sending them)"
            )
        time.sleep(0.5)
    click.echo(
        f"sent {progress.sent} confirmation emails "
        f"({progress.failed} failed, {progress.skipped} skipped)"
    )


_DURATION = re.compile(r"\s*(\d{1,6})\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Duration(click.ParamType[timedelta]):
    """A duration such as 90s, 30m, 12h, 1d or 2w."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.fullmatch(str(value).lower())
        if match is None:
            self.fail(f"{value!r} is not a duration such as 30m, 12h, 1d or 2w", param, ctx)
        return timedelta(**{_UNITS[match[2]]: int(match[1])})


@subscribers_group.command("resend-confirmations")
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option(
    "--older-than",
    type=Duration(),
    default=None,
    help="Only readers last asked (mailed, or subscribed) longer ago than this, e.g. 1d.",
)
@click.option("--wait", is_flag=True, help="Show progress until they have gone out.")
@click.option("--timeout", type=float, default=3600.0, help="Give up waiting after this long.")
@pass_context
def resend_confirmations_command(
    ctx: CliContext, slug: str, older_than: timedelta | None, wait: bool, timeout: float
) -> None:
    """Mail the confirmation link again to readers who have not confirmed yet.

    Confirmed, unsubscribed and suppressed readers get nothing, and nobody is
    mailed twice within five minutes.
    """
    with ctx.transaction() as session:
        try:
            newsletter_id = get_by_slug(session, slug).id
        except UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
        request_id, queued = confirmations.resend(session, newsletter_id, older_than=older_than)
    click.echo(f"confirmation emails queued: {queued}")
    if not queued:
        return
    _enqueuer(ctx)(newsletter_id)
    if wait:
        _wait_for_confirmations(ctx, request_id, timeout)
