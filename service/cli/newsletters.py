"""`hebdo newsletters …`"""

from __future__ import annotations

import json

import click

from service import newsletters
from service.cli.context import CliContext

pass_context = click.make_pass_decorator(CliContext)


@click.group("newsletters")
def newsletters_group() -> None:
    """Create and list newsletters."""


@newsletters_group.command("create")
@click.option("--slug", required=True, help="Short name used in URLs and commands.")
@click.option("--name", required=True)
@click.option("--sender", "sender_email", required=True, help="From address.")
@click.option("--sender-name", default=None)
@click.option("--language", type=click.Choice(["fr", "en"]), default="fr")
@click.option("--postal-address", default="", help="Shown in every email's footer.")
@click.option("--reply-to", default=None)
@pass_context
def create_command(
    ctx: CliContext,
    slug: str,
    name: str,
    sender_email: str,
    sender_name: str | None,
    language: str,
    postal_address: str,
    reply_to: str | None,
) -> None:
    """Create a newsletter."""
    with ctx.transaction() as session:
        try:
            newsletter = newsletters.create(
                session,
                slug=slug,
                name=name,
                sender_email=sender_email,
                sender_name=sender_name,
                language=language,
                postal_address=postal_address,
                reply_to=reply_to,
            )
        except newsletters.BadNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"created newsletter {newsletter.slug} (id {newsletter.id})")


@newsletters_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def list_command(ctx: CliContext, as_json: bool) -> None:
    """List newsletters."""
    with ctx.sessions() as session:
        rows = [
            {
                "id": n.id,
                "slug": n.slug,
                "name": n.name,
                "language": n.language,
                "sender": n.sender_email,
                "tracking": n.tracking,
            }
            for n in newsletters.list_all(session)
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        click.echo(f"{row['slug']:<24} {row['language']}  {row['name']}  <{row['sender']}>")


@newsletters_group.command("tracking")
@click.argument("slug")
@click.argument("state", type=click.Choice(["on", "off"]))
@pass_context
def tracking_command(ctx: CliContext, slug: str, state: str) -> None:
    """Turn the open pixel and click tracking ON or OFF for the next editions."""
    with ctx.transaction() as session:
        try:
            newsletters.set_tracking(session, slug, state == "on")
        except newsletters.UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"tracking {state} for {slug} (editions frozen from now on)")
