"""`hebdo inbound`: read returned mail (bounces, complaints, mailto unsubscribes).

An MTA pipes each message in (`hebdo inbound --recipient ${recipient} -`), or a
Maildir is swept now and then (`hebdo inbound --maildir DIR`). Messages that
name no delivery are reported and dropped, never refused: the exit status stays
0 so the MTA does not bounce them back to whoever sent them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from service.cli.context import CliContext
from service.tracking import inbound

pass_context = click.make_pass_decorator(CliContext)


@click.command("inbound")
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--recipient",
    "recipients",
    multiple=True,
    help="Envelope recipient (as Postfix passes ${recipient}); repeatable.",
)
@click.option(
    "--maildir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Process every message in DIR/new, then move it to DIR/cur.",
)
@pass_context
def inbound_command(
    ctx: CliContext, files: tuple[str, ...], recipients: tuple[str, ...], maildir: Path | None
) -> None:
    """Process returned messages from FILE... (- for stdin) and/or a Maildir."""
    if not files and maildir is None:
        raise click.UsageError("give FILE..., - for stdin, or --maildir DIR")
    for name in files:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        _process(ctx, raw, recipients)
    if maildir is not None:
        (maildir / "cur").mkdir(exist_ok=True)
        for path in sorted((maildir / "new").iterdir()):
            if path.is_file():
                _process(ctx, path.read_bytes(), recipients)
                # Moved only once its transaction committed: a crash leaves it in new/.
                path.rename(maildir / "cur" / f"{path.name}:2,S")


def _process(ctx: CliContext, raw: bytes, recipients: tuple[str, ...]) -> None:
    with ctx.transaction() as session:
        result = inbound.process_message(session, ctx.settings.secret_key, raw, recipients)
    where = f" delivery {result.delivery_id}" if result.delivery_id is not None else ""
    click.echo(f"{result.kind}{where}: {result.detail}")
