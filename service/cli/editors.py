"""`hebdo editors …`: accounts from the command line (each change is in the audit log,
actor "cli"). A password is read from a hidden prompt or the first line of a file,
never from the command's arguments (they show in `ps` and the shell's history)."""

from __future__ import annotations

import json
from typing import IO

import click

from service.cli.context import CliContext
from service.models import EditorRole
from service.team import accounts, audit, editors

pass_context = click.make_pass_decorator(CliContext)
ROLES = click.Choice([r.value for r in EditorRole], case_sensitive=False)


@click.group("editors")
def editors_group() -> None:
    """Editor accounts: create, list, change roles, disable, enable, unlock."""


def _password(source: IO[str] | None) -> str:
    if source is None:
        value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        return value
    first = source.readline().rstrip("\r\n")
    if not first:
        raise click.ClickException("the password file is empty (the first line is the password)")
    return first


@editors_group.command("create")
@click.argument("email")
@click.option("--role", type=ROLES, required=True, help="admin, editor or viewer.")
@click.option("--name", default="", help="The editor's name, as shown on the pages.")
@click.option(
    "--newsletter",
    "slugs",
    multiple=True,
    metavar="SLUG",
    help="A newsletter this editor acts on (repeat; none: every newsletter).",
)
@click.option(
    "--password-file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Read the password from the first line of this file ('-': standard input). "
    "Without it the password is asked twice, hidden.",
)
@pass_context
def create_command(
    ctx: CliContext,
    email: str,
    role: str,
    name: str,
    slugs: tuple[str, ...],
    password_file: IO[str] | None,
) -> None:
    """Create the account EMAIL with a role (the first admin of a new site, too)."""
    password = _password(password_file)
    try:
        with ctx.transaction() as session:
            editor = editors.create(
                session,
                email,
                password,
                name=name,
                role=EditorRole(role.lower()),
                newsletters=slugs,
                who=audit.Who.cli(),
            )
            click.echo(f"created {editor.role.value} {editor.email} (id {editor.id})")
    except ValueError as refused:  # address, password, name, taken, unknown newsletter
        raise click.ClickException(str(refused)) from refused


@editors_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@pass_context
def list_command(ctx: CliContext, as_json: bool) -> None:
    """List every editor: role, newsletters, last login, disabled."""
    with ctx.sessions() as session:
        rows = accounts.list_all(session)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
        return
    for row in rows:
        letters = ",".join(row.newsletters) or "*"
        seen = row.last_login_at.strftime("%Y-%m-%d %H:%M") if row.last_login_at else "never"
        state = "  disabled" if row.is_disabled else ""
        click.echo(f"{row.email:<32} {row.role:<7} {letters:<20} last login {seen}{state}")


def _change(ctx: CliContext, email: str, change: str, role: str = "") -> None:
    try:
        with ctx.transaction() as session:
            editor = accounts.find(session, email)
            who = audit.Who.cli()
            if change == "role":
                accounts.set_role(session, editor, accounts.role_named(role), who=who)
                click.echo(f"{editor.email} is now {editor.role.value}")
            elif change == "disable":
                ended = accounts.disable(session, editor, who=who)
                click.echo(f"disabled {editor.email} ({ended} session(s) ended)")
            else:
                accounts.enable(session, editor, who=who)
                click.echo(f"enabled {editor.email}")
    except accounts.AccountError as refused:
        raise click.ClickException(str(refused)) from refused


@editors_group.command("set-role")
@click.argument("email")
@click.argument("role", type=ROLES)
@pass_context
def set_role_command(ctx: CliContext, email: str, role: str) -> None:
    """Give EMAIL the ROLE admin, editor or viewer."""
    _change(ctx, email, "role", role)


@editors_group.command("disable")
@click.argument("email")
@pass_context
def disable_command(ctx: CliContext, email: str) -> None:
    """Refuse EMAIL's logins and end every session of theirs now."""
    _change(ctx, email, "disable")


@editors_group.command("enable")
@click.argument("email")
@pass_context
def enable_command(ctx: CliContext, email: str) -> None:
    """Let a disabled EMAIL log in again."""
    _change(ctx, email, "enable")


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
