"""`hebdo newsletters …`"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from service import newsletters
from service.cli.context import CliContext
from service.team import audit

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


_SET_OPTIONS = (
    ("name", "--name", "The newsletter's name (From: and List-Id:)."),
    ("description", "--description", "A sentence or two about it."),
    ("sender_name", "--sender-name", "From: display name (empty: the name)."),
    ("sender_email", "--sender", "From: address."),
    ("reply_to", "--reply-to", "Reply-To: address (empty: none)."),
    ("postal_address", "--postal-address", "Shown in every email's footer."),
    ("language", "--language", "fr or en."),
    ("timezone", "--timezone", "The weekly slot's time zone, e.g. Europe/Paris."),
    ("send_weekday", "--weekday", "The weekly slot's day: monday … sunday."),
    ("send_time", "--time", "The weekly slot's time, HH:MM."),
    ("tracking", "--tracking", "on or off: the open pixel and click tracking."),
    ("website_url", "--website", "The newsletter's web site, https://…"),
)


F = TypeVar("F", bound=Callable[..., Any])


def _set_options(function: F) -> F:
    for field, flag, help_text in reversed(_SET_OPTIONS):
        function = click.option(flag, field, default=None, help=help_text)(function)
    return function


@newsletters_group.command("set")
@click.argument("slug")
@_set_options
@pass_context
def set_command(ctx: CliContext, /, slug: str, **values: str | None) -> None:
    """Change a newsletter's settings; every value is checked, nothing is saved if one is bad.

    A bad value exits with status 2 and one line per field on stderr ("timezone: …").
    """
    changes = {field: value for field, value in values.items() if value is not None}
    if not changes:
        raise click.UsageError("give at least one setting to change (see --help)")
    with ctx.transaction() as session:
        try:
            newsletter = newsletters.get_by_slug(session, slug)
        except newsletters.UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
        problems = newsletters.update_settings(session, newsletter, changes, audit.Who.cli())
        if problems:  # raising rolls the transaction back: nothing is saved
            flags = {field: flag for field, flag, _ in _SET_OPTIONS}
            for field, reason in problems.items():
                click.echo(f"{flags.get(field, field)}: {reason}", err=True)
            raise click.exceptions.Exit(2)
    click.echo(f"settings of {slug} saved")


@newsletters_group.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def show_command(ctx: CliContext, slug: str, as_json: bool) -> None:
    """Print a newsletter's settings."""
    with ctx.sessions() as session:
        try:
            values = newsletters.settings_of(newsletters.get_by_slug(session, slug))
        except newsletters.UnknownNewsletter as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(values, ensure_ascii=False, indent=2))
        return
    for field, value in values.items():
        shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
        click.echo(f"{field:<15} {shown.replace(chr(10), ' / ')}")
