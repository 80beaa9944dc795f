"""`hebdo suppressions …`: the list of addresses and domains nothing may mail."""

from __future__ import annotations

import json

import click

from service import newsletters
from service.audience import suppressions
from service.cli.context import ID, CliContext
from service.team import audit

pass_context = click.make_pass_decorator(CliContext)


@click.group("suppressions")
def suppressions_group() -> None:
    """List, add (an address or a whole @domain) and lift suppressions."""


@suppressions_group.command("list")
@click.option("--search", "query", default="", help="Part of an address, or @domain.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (what the page exports).")
@pass_context
def list_command(ctx: CliContext, query: str, as_json: bool, as_csv: bool) -> None:
    """List the entries (erased readers' hashed entries are not listed)."""
    with ctx.sessions() as session:
        if as_csv:
            for chunk in suppressions.export_csv(session, query):
                click.echo(chunk, nl=False)
            return
        found = suppressions.search(session, query, per_page=1_000_000)
    if as_json:
        rows = [
            {
                "id": r.id,
                "email": r.email,
                "newsletter": r.newsletter or None,
                "reason": r.reason.value,
                "detail": r.detail,
                "created_at": r.created_at.isoformat(),
            }
            for r in found.rows
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in found.rows:
        scope = r.newsletter or "*"
        click.echo(f"{r.id:>6}  {r.email:<40} {scope:<12} {r.reason.value:<12} {r.detail[:60]}")


@suppressions_group.command("add")
@click.argument("target")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--newsletter", "slug", default=None, help="Only for this newsletter.")
@pass_context
def add_command(ctx: CliContext, target: str, reason: str, slug: str | None) -> None:
    """Suppress an address, or every address of a domain given as @example.com."""
    with ctx.transaction() as session:
        try:
            newsletter_id = newsletters.get_by_slug(session, slug).id if slug else None
            entry = suppressions.add(
                session, target, reason, audit.Who.cli(), newsletter_id=newsletter_id
            )
        except (suppressions.BadSuppression, newsletters.UnknownNewsletter) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"suppressed {entry.email} (id {entry.id})")


@suppressions_group.command("lift")
@click.argument("suppression_id", type=ID)
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@pass_context
def lift_command(ctx: CliContext, suppression_id: int, reason: str) -> None:
    """Take an entry off the list."""
    with ctx.transaction() as session:
        try:
            email = suppressions.lift(session, suppression_id, reason, audit.Who.cli())
        except suppressions.BadSuppression as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"lifted {email}")
