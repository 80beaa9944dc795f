"""`hebdo tokens …`: API tokens (create, list, revoke)."""

from __future__ import annotations

import json
from typing import Any

import click

from service import newsletters
from service.access import tokens
from service.cli.context import ID, CliContext
from service.models import ApiToken
from service.team.audit import Who

pass_context = click.make_pass_decorator(CliContext)


@click.group("tokens")
def tokens_group() -> None:
    """Create, list and revoke the tokens of the JSON API (/api/v1)."""


@tokens_group.command("create")
@click.option("--name", required=True, help="Who or what uses it (shown in the audit log).")
@click.option(
    "--scope",
    "scopes",
    required=True,
    multiple=True,
    help="read, write, send; comma-separated or repeated.",
)
@click.option("--newsletter", "slug", default=None, help="Limit the token to this newsletter.")
@pass_context
def create_command(ctx: CliContext, name: str, scopes: tuple[str, ...], slug: str | None) -> None:
    """Create a token and print it once: it cannot be shown again."""
    with ctx.transaction() as session:
        try:
            chosen = tokens.parse_scopes(scopes)
            newsletter = newsletters.get_by_slug(session, slug) if slug else None
            created = tokens.create(session, name, chosen, newsletter=newsletter, actor=Who.cli())
        except (tokens.BadTokenRequest, newsletters.UnknownNewsletter) as exc:
            raise click.ClickException(str(exc)) from exc
        summary = _line(created.token)
    click.echo(created.secret)
    click.echo(f"created {summary}; the token above is shown only once", err=True)


def _line(token: ApiToken) -> str:
    where = token.newsletter.slug if token.newsletter else "all newsletters"
    return f"token {token.id} {token.name!r} ({','.join(token.scopes)}; {where})"


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens as JSON.")
@pass_context
def list_command(ctx: CliContext, as_json: bool) -> None:
    """List the tokens with their scopes, last use and revocation."""
    with ctx.sessions() as session:
        found = tokens.list_all(session)
        rows: list[dict[str, Any]] = [
            {
                "id": token.id,
                "name": token.name,
                "scopes": token.scopes,
                "newsletter": token.newsletter.slug if token.newsletter else None,
                "created_at": token.created_at.isoformat(),
                "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
                "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
            }
            for token in found
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(
            f"{row['id']}\t{row['name']}\t{','.join(row['scopes'])}\t"
            f"{row['newsletter'] or '*'}\tlast used {row['last_used_at'] or 'never'}\t{state}"
        )
    if not rows:
        click.echo("no API tokens")


@tokens_group.command("revoke")
@click.argument("token_id", type=ID)
@pass_context
def revoke_command(ctx: CliContext, token_id: int) -> None:
    """Revoke a token for good: every call with it gets 401 from now on."""
    with ctx.transaction() as session:
        try:
            token = tokens.revoke(session, token_id, actor=Who.cli())
        except tokens.UnknownToken as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"revoked {_line(token)}")
