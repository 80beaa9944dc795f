"""`hebdo check`: the deployment preflight (service/tools/preflight.py), one line a finding."""

from __future__ import annotations

import json
import sys

import click

from service.cli.context import CliContext
from service.tools import preflight

pass_context = click.make_pass_decorator(CliContext)


def finding_line(finding: preflight.Finding) -> str:
    """One printed line: level, code, sentence."""
    return f"{finding.level:<7}  {finding.code:<16}  {finding.message}"


@click.command("check")
@click.option("--dns", "dns_lookups", is_flag=True, help="Also look up SPF, DKIM and DMARC.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.option(
    "--timeout", type=click.FloatRange(0.1, 120), default=10.0, show_default=True,
    help="Seconds each network check (SMTP, broker, DNS) may take.",
)  # fmt: skip
@click.option(
    "--nameserver", "nameservers", multiple=True,
    help="Ask this DNS server (an IP address) instead of the system's resolver; repeatable.",
)  # fmt: skip
@click.option("--dns-port", type=click.IntRange(1, 65535), default=53, show_default=True)
@pass_context
def check_command(
    ctx: CliContext,
    dns_lookups: bool,
    as_json: bool,
    timeout: float,
    nameservers: tuple[str, ...],
    dns_port: int,
) -> None:
    """Check this deployment: URLs, secret, database, broker, SMTP relays, DKIM (and DNS).

    Exits 1 when any check finds an error.
    """
    resolver = None
    if dns_lookups:
        resolver = preflight.make_resolver(nameservers or None, dns_port, timeout)
    findings = preflight.run(
        ctx.settings, dns_lookups=dns_lookups, resolver=resolver, timeout=timeout
    )
    failed = preflight.failed(findings)
    if as_json:
        document = {"ok": not failed, "findings": [f.as_dict() for f in findings]}
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            click.echo(finding_line(finding))
    if failed:
        sys.exit(1)
