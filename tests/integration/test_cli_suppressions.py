"""`hebdo suppressions list|add|lift` from the command line, audited as "cli"."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.models import AuditEntry


def test_add_list_and_lift_a_domain(env: dict[str, str], sessions: sessionmaker[Session]) -> None:
    runner = CliRunner(env=env)

    added = runner.invoke(cli, ["suppressions", "add", "@Bloque.Example", "--reason", "abuse"])
    assert added.exit_code == 0, added.output
    listed = json.loads(runner.invoke(cli, ["suppressions", "list", "--json"]).output)
    assert [(r["email"], r["reason"], r["detail"]) for r in listed] == [
        ("@bloque.example", "manual", "abuse")
    ]
    csv_out = runner.invoke(cli, ["suppressions", "list", "--csv"]).output
    assert csv_out.splitlines()[1].startswith("@bloque.example,*,manual,abuse,")

    bad = runner.invoke(cli, ["suppressions", "add", "nope", "--reason", "x"])
    assert bad.exit_code == 1
    assert "neither an address nor @domain" in bad.output

    lifted = runner.invoke(
        cli, ["suppressions", "lift", str(listed[0]["id"]), "--reason", "settled"]
    )
    assert lifted.exit_code == 0, lifted.output
    assert json.loads(runner.invoke(cli, ["suppressions", "list", "--json"]).output) == []
    with sessions() as session:
        actions = [(a.actor, a.action) for a in session.scalars(select(AuditEntry))]
    assert actions == [("cli", "suppression.add"), ("cli", "suppression.lift")]
