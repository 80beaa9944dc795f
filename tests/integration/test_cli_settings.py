"""`hebdo newsletters set|show`: the settings from the command line, checked like the page."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.models import AuditEntry, Edition, Newsletter
from tests import factories


def test_set_changes_the_weekly_slot_and_show_prints_it(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session)
    runner = CliRunner(env=env)

    result = runner.invoke(
        cli,
        [
            "newsletters",
            "set",
            "lettre",
            "--weekday",
            "friday",
            "--time",
            "17:45",
            "--timezone",
            "Asia/Tokyo",
            "--sender-name",
            "La rédaction",
            "--tracking",
            "off",
        ],
    )

    assert result.exit_code == 0, result.output
    shown = runner.invoke(cli, ["newsletters", "show", "lettre", "--json"])
    values = json.loads(shown.output)
    assert (values["send_weekday"], values["send_time"], values["timezone"]) == (
        "friday",
        "17:45",
        "Asia/Tokyo",
    )
    assert values["sender_name"] == "La rédaction"
    assert values["tracking"] is False
    with sessions() as session:
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.action) == ("cli", "newsletter.settings")


def test_a_bad_value_exits_2_naming_each_option_and_changes_nothing(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session)

    result = CliRunner(env=env).invoke(
        cli, ["newsletters", "set", "lettre", "--timezone", "../../etc/passwd", "--name", "Neuve"]
    )

    assert result.exit_code == 2
    assert "--timezone: not a known time zone" in result.output
    with sessions() as session:
        letter = session.scalars(select(Newsletter)).one()
        assert (letter.name, letter.timezone) == ("Intelligence & Société", "Europe/Paris")
        assert session.scalars(select(AuditEntry)).all() == []


def test_next_issue_marks_a_draft_and_says_whether_it_is_ready(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        ident = str(factories.edition(session, factories.newsletter(session)).id)
    runner = CliRunner(env=env)

    result = runner.invoke(cli, ["editions", "next-issue", ident])

    assert result.exit_code == 0, result.output
    assert "is the next issue" in result.output
    assert "ready: beat schedules it" in result.output
    with sessions() as session:
        assert session.scalars(select(Edition.is_next_issue)).one() is True
    off = runner.invoke(cli, ["editions", "next-issue", ident, "--off"])
    assert off.exit_code == 0, off.output
    with sessions() as session:
        assert session.scalars(select(Edition.is_next_issue)).one() is False
