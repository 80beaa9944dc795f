"""`hebdo webhooks …`: outgoing webhooks (add, list, deliveries, deliver)."""

from __future__ import annotations

import click

from service import newsletters
from service.access import webhooks
from service.cli.context import ID, CliContext
from service.team.audit import Who

pass_context = click.make_pass_decorator(CliContext)


@click.group("webhooks")
def webhooks_group() -> None:
    """Call other programs' URLs when readers or editions change (signed, retried)."""


@webhooks_group.command("add")
@click.option("--newsletter", "slug", required=True)
@click.option("--url", required=True, help="The receiver (http:// or https://).")
@click.option(
    "--events",
    "events",
    required=True,
    multiple=True,
    help=f"Comma-separated: {', '.join(webhooks.EVENTS)}.",
)
@pass_context
def add_command(ctx: CliContext, slug: str, url: str, events: tuple[str, ...]) -> None:
    """Add an endpoint; prints its signing secret (whsec_…) for the receiver."""
    with ctx.transaction() as session:
        try:
            newsletter = newsletters.get_by_slug(session, slug)
            endpoint = webhooks.add_endpoint(session, newsletter, url, events, actor=Who.cli())
        except (newsletters.UnknownNewsletter, webhooks.BadWebhook) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(endpoint.secret)
        click.echo(f"webhook {endpoint.id}: {url} on {', '.join(endpoint.events)}", err=True)


@webhooks_group.command("list")
@pass_context
def list_command(ctx: CliContext) -> None:
    """List the endpoints."""
    with ctx.sessions() as session:
        for endpoint in webhooks.endpoints(session):
            state = "disabled" if endpoint.is_disabled else "active"
            click.echo(
                f"{endpoint.id}\t{endpoint.newsletter.slug}\t{endpoint.url}\t"
                f"{','.join(endpoint.events)}\t{state}"
            )


@webhooks_group.command("deliveries")
@click.option("--endpoint", "endpoint_id", type=ID, default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_context
def deliveries_command(ctx: CliContext, endpoint_id: int | None, limit: int) -> None:
    """The newest deliveries with their attempts, last answer and next try."""
    with ctx.sessions() as session:
        rows = webhooks.deliveries(session, endpoint_id=endpoint_id, limit=limit)
        for row in rows:
            answer = row.last_status_code if row.last_status_code is not None else "-"
            nxt = (
                row.next_attempt_at.isoformat(timespec="seconds")
                if row.status.value == ("pending")
                else ""
            )
            click.echo(
                f"{row.id}\t{row.endpoint_id}\t{row.message_id}\t{row.event_type}\t"
                f"{row.status.value}\tattempts {row.attempts}\tlast {answer} "
                f"{row.last_error[:80]}\t{nxt}".rstrip()
            )
        if not rows:
            click.echo("no webhook deliveries")


@webhooks_group.command("deliver")
@pass_context
def deliver_command(ctx: CliContext) -> None:
    """POST the due deliveries now (the workers do it every few seconds)."""
    report = webhooks.deliver_due(ctx.sessions)
    click.echo(f"delivered {report.delivered}, to retry {report.retried}, given up {report.failed}")
