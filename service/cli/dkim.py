"""`hebdo dkim generate`: a DKIM key, the DNS record to publish, the variables to set."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli.context import CliContext
from service.mail import dkim_keys

pass_context = click.make_pass_decorator(CliContext)


@click.group("dkim")
def dkim_group() -> None:
    """DKIM signing keys."""


@dkim_group.command("generate")
@click.option("--selector", required=True, help="The DNS selector, e.g. hebdo2026.")
@click.option("--domain", required=True, help="The signing domain (d=), your sender's domain.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the private key (default: INSTANCE/dkim/SELECTOR.DOMAIN.pem).",
)
@click.option("--ed25519", "ed25519_key", is_flag=True, help="An Ed25519 key (RFC 8463).")
@pass_context
def generate_command(
    ctx: CliContext, selector: str, domain: str, out: Path | None, ed25519_key: bool
) -> None:
    """Make a key (RSA 2048 by default), write it with mode 0600, print its DNS record."""
    try:
        selector = dkim_keys.check_selector(selector)
        domain = dkim_keys.check_domain(domain)
    except dkim_keys.BadKeyRequest as bad:
        raise click.UsageError(str(bad)) from bad
    path = (out or ctx.settings.instance_path / "dkim" / f"{selector}.{domain}.pem").resolve()
    key = dkim_keys.generate(ed25519_key=ed25519_key)
    try:
        dkim_keys.write_private_key(key, path)
    except FileExistsError as exists:
        raise click.ClickException(f"{path} exists; choose another --out or selector") from exists
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from error
    record = dkim_keys.public_record(key, selector, domain)
    kind = "an Ed25519" if ed25519_key else f"a {dkim_keys.RSA_BITS}-bit RSA"
    click.echo(f"wrote {kind} private key to {path} (mode 0600)")
    click.echo("publish this DNS record:")
    click.echo(f"  {record.zone_line}")
    click.echo("then set (and restart web, worker and beat):")
    if ed25519_key:
        click.echo(f"  DKIM_ED25519_SELECTOR={selector}")
        click.echo(f"  DKIM_ED25519_PRIVATE_KEY_PATH={path}")
        click.echo(f"  (a second signature beside the RSA key: DKIM_DOMAIN={domain}, and a")
        click.echo("   DKIM_SELECTOR other than this one)")
    else:
        click.echo(f"  DKIM_SELECTOR={selector}")
        click.echo(f"  DKIM_DOMAIN={domain}")
        click.echo(f"  DKIM_PRIVATE_KEY_PATH={path}")
