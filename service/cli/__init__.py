"""The `hebdo` command line: a thin door onto the domain operations."""

from __future__ import annotations

import click

from service.cli.context import CliContext
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


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Hebdo: compose a weekly edition, send it, see what happens next."""
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
    suppressions_group,
):
    cli.add_command(command)
editions_group.add_command(test_send_command)


def main() -> None:
    """Entry point of the `hebdo` console script."""
    cli()
