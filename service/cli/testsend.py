"""`hebdo editions test-send`: mail an edition, marked as a test, to a few addresses."""

from __future__ import annotations

import click

from service.cli.context import ID, CliContext
from service.editions import store
from service.sending import testsend

pass_context = click.make_pass_decorator(CliContext)


@click.command("test-send")
@click.argument("edition_id", type=ID)
@click.argument("addresses", nargs=-1, required=True)
@pass_context
def test_send_command(ctx: CliContext, edition_id: int, addresses: tuple[str, ...]) -> None:
    """Send EDITION_ID to ADDRESS... with [TEST]/[ESSAI] in the subject; nothing is recorded."""
    settings = ctx.settings
    with ctx.sessions() as session:
        try:
            edition = store.get(session, edition_id)
            report = testsend.send_test(session, edition, addresses, settings)
        except (store.EditionError, testsend.BadTestAddresses) as exc:
            raise click.ClickException(str(exc)) from exc
    for address in report.sent:
        click.echo(f"sent to {address}")
    for address, reason in report.failed.items():
        click.echo(f"not sent to {address}: {reason}", err=True)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} of {len(addresses)} not sent")
