"""`hebdo editors …`"""

from __future__ import annotations

import click

from service.cli.context import CliContext
from service.team import editors

pass_context = click.make_pass_decorator(CliContext)


@click.group("editors")
def editors_group() -> None:
    """Editor accounts."""


@editors_group.command("unlock")
@click.argument("email")
@click.option(
    "--address",
    default=None,
    help="Also lift the lock of this client IP address (too many failures from it).",
)
@pass_context
def unlock_command(ctx: CliContext, email: str, address: str | None) -> None:
    """Let EMAIL log in again after too many failed attempts."""
    try:
        with ctx.transaction() as session:
            editor = editors.unlock(session, email, address=address)
            click.echo(f"unlocked {editor.email}" + (f" and {address}" if address else ""))
    except LookupError as missing:
        raise click.ClickException(str(missing)) from missing
