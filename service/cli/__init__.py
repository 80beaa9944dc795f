"""The `hebdo` command line: a thin door onto the domain operations."""

from __future__ import annotations

import os
from pathlib import Path

import click

from service.cli.audit import audit_command
from service.cli.check import check_command
from service.cli.context import CliContext
from service.cli.dkim import dkim_group
from service.cli.editions import editions_group, send_command
from service.cli.editors import editors_group
from service.cli.inbound import inbound_command
from service.cli.newsletters import newsletters_group
from service.cli.processes import (
    beat_command,
    demo_command,
    init_command,
    sink_command,
    web_command,
    worker_command,
)
from service.cli.subscribers import subscribers_group
from service.cli.suppressions import suppressions_group
from service.cli.testsend import test_send_command
from service.cli.tokens import tokens_group
from service.cli.webhooks import webhooks_group


@click.group()
@click.option(
    "--instance",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Instance folder to act on (sets HEBDO_INSTANCE for this run), e.g. instance/demo.",
)
@click.pass_context
def cli(ctx: click.Context, instance: Path | None) -> None:
    """Hebdo: compose a weekly edition, send it, see what happens next."""
    if instance is not None:
        # Set in the environment, not only in this process's settings: `hebdo worker`
        # and `hebdo demo` hand it to the processes they start.
        os.environ["HEBDO_INSTANCE"] = str(instance.resolve())
    ctx.obj = CliContext()


for command in (
    init_command,
    newsletters_group,
    subscribers_group,
    editions_group,
    send_command,
    worker_command,
    beat_command,
    web_command,
    sink_command,
    demo_command,
    inbound_command,
    editors_group,
    dkim_group,
    check_command,
    audit_command,
    tokens_group,
    webhooks_group,
    suppressions_group,
):
    cli.add_command(command)
editions_group.add_command(test_send_command)


def main() -> None:
    """Entry point of the `hebdo` console script."""
    cli()
