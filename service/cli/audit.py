"""`hebdo audit`: the audit log, newest first, as a table or as JSON lines."""

from __future__ import annotations

import json
from datetime import datetime

import click

from service.cli.context import CliContext
from service.team import audit

pass_context = click.make_pass_decorator(CliContext)


class _Since(click.ParamType[datetime]):
    name = "WHEN"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return audit.parse_since(str(value))
        except (ValueError, OverflowError):
            self.fail(f"{value!r}: give a date (2026-12-01) or an age (7d, 12h)", param, ctx)


@click.command("audit")
@click.option("--since", type=_Since(), default=None, help="2026-12-01, or 7d / 12h ago.")
@click.option("--actor", default=None, help="Only this actor (an address, or 'cli').")
@click.option(
    "--action", "actions", multiple=True, help="Only this action, e.g. edition.send (repeat)."
)
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON lines).")
@pass_context
def audit_command(
    ctx: CliContext,
    since: datetime | None,
    actor: str | None,
    actions: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """Who did what, to which object, when and from where: newest first."""
    if any("\x00" in value for value in (actor or "", *actions)):
        raise click.BadParameter("a NUL character matches nothing", param_hint="--actor/--action")
    with ctx.sessions() as session:
        rows = audit.entries(session, since=since, actor=actor, actions=actions, limit=limit)
        data = [audit.as_dict(row) for row in rows]
    for item in data:
        if as_json:
            click.echo(json.dumps(item, ensure_ascii=False, sort_keys=True))
            continue
        target = f"{item['object_type']} {item['object_id']}".strip()
        click.echo(
            f"{item['at'][:19]}  {item['actor']:<28} {item['action']:<20} {target:<16} "
            f"{item['client_network']}"
        )
