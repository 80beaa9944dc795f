"""`hebdo editions …` and `hebdo send`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from service import deliveries, editions, newsletters, sending
from service.cli.context import CliContext

pass_context = click.make_pass_decorator(CliContext)


@click.group("editions")
def editions_group() -> None:
    """Load, inspect and render editions."""


@editions_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--newsletter", "slug", required=True)
@pass_context
def load_command(ctx: CliContext, path: Path, slug: str) -> None:
    """Create a draft edition from an edition JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: not valid JSON ({exc})") from exc
    with ctx.transaction() as session:
        try:
            newsletter = newsletters.get_by_slug(session, slug)
            edition = editions.create(session, newsletter, data)
        except (newsletters.UnknownNewsletter, editions.EditionError) as exc:
            raise click.ClickException(f"{path}: {exc}") from exc
        count = len(edition.items)
        click.echo(f"loaded edition {edition.number} (id {edition.id}) with {count} news items")


@editions_group.command("show")
@click.argument("edition_id", type=int)
@pass_context
def show_command(ctx: CliContext, edition_id: int) -> None:
    """Print an edition as JSON (the format `load` reads)."""
    with ctx.sessions() as session:
        try:
            edition = editions.get(session, edition_id)
        except editions.EditionError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(json.dumps(editions.to_data(edition), ensure_ascii=False, indent=2))


@editions_group.command("render")
@click.argument("edition_id", type=int)
@click.option("--text", "as_text", is_flag=True, help="Print the text part instead of HTML.")
@pass_context
def render_command(ctx: CliContext, edition_id: int, as_text: bool) -> None:
    """Print the edition's email as subscribers get it (before personalisation)."""
    settings = ctx.settings
    with ctx.sessions() as session:
        edition = editions.get(session, edition_id)
        rendered = editions.render(
            edition, base_url=settings.base_url, templates_path=settings.email_templates_path
        )
    click.echo(rendered.text if as_text else rendered.html)


@editions_group.command("parse-draft")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", type=click.Choice(["fr", "en"]), default="fr")
def parse_draft_command(path: Path, language: str) -> None:
    """Turn a pasted plain-text draft into edition JSON; problems go to stderr."""
    from service.drafts import parse_draft

    parsed = parse_draft(path.read_text(encoding="utf-8-sig"), language=language)
    click.echo(json.dumps(parsed.edition, ensure_ascii=False, indent=2))
    for problem in parsed.problems:
        click.echo(f"{path}:{problem.line}: {problem.reason}: {problem.text}", err=True)


@click.command("send")
@click.argument("edition_id", type=int)
@click.option("--wait", is_flag=True, help="Show progress until the edition has gone out.")
@click.option("--timeout", type=float, default=3600.0, help="Give up waiting after this long.")
@pass_context
def send_command(ctx: CliContext, edition_id: int, wait: bool, timeout: float) -> None:
    """Send an edition now: snapshot its recipients and hand them to the workers."""
    from worker.tasks.deliveries import enqueue_send

    settings = ctx.settings
    with ctx.transaction() as session:
        try:
            edition = editions.get(session, edition_id)
            started = sending.begin(
                session,
                edition,
                base_url=settings.base_url,
                templates_path=settings.email_templates_path,
                batch_size=settings.batch_size,
            )
        except (editions.EditionError, deliveries.SendError) as exc:
            raise click.ClickException(str(exc)) from exc
    enqueue_send(settings.broker_url, edition_id, started.batches)
    click.echo(f"sending edition {edition_id} to {started.recipients} recipients")
    if wait:
        total = wait_for_delivery(ctx, edition_id, timeout=timeout)
        click.echo(f"delivered {total} messages")


def wait_for_delivery(ctx: CliContext, edition_id: int, *, timeout: float) -> int:
    """Draw a progress bar until nothing remains to send; return the count sent."""
    deadline = time.monotonic() + timeout
    started_at = time.monotonic()
    while True:
        with ctx.sessions() as session:
            progress = deliveries.progress(session, edition_id)
            status = editions.get(session, edition_id).status.value
        done = progress.sent + progress.failed + progress.cancelled
        elapsed = time.monotonic() - started_at
        rate = progress.sent / elapsed if elapsed > 0 else 0.0
        eta = f"{progress.remaining / rate:5.0f}s left" if rate > 0 and progress.remaining else ""
        width = 30
        filled = int(width * done / progress.total) if progress.total else width
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{progress.total} "
            f"sent {progress.sent} failed {progress.failed} {status} {eta}   "
        )
        sys.stderr.flush()
        if progress.done or status in ("sent", "cancelled", "paused"):
            sys.stderr.write("\n")
            if status == "paused":
                raise click.ClickException(f"edition {edition_id} is paused")
            return progress.sent
        if time.monotonic() > deadline:
            sys.stderr.write("\n")
            raise click.ClickException(f"timed out with {progress.remaining} messages left")
        time.sleep(0.5)
