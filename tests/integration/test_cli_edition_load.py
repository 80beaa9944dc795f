"""`hebdo editions load` on bad edition JSON: each bad field on stderr, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.models import Edition

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hebdo(env: dict[str, str]) -> CliRunner:
    """A CLI runner on the test instance, with the newsletter `lettre`."""
    runner = CliRunner(env=env)
    created = runner.invoke(
        cli,
        ["newsletters", "create", "--slug", "lettre", "--name", "La Lettre",
         "--sender", "lettre@hebdo.example", "--postal-address", "1 place de la Gare, Lyon"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    return runner


def load(runner: CliRunner, tmp_path: Path, content: str) -> Result:
    path = tmp_path / "edition.json"
    path.write_text(content, encoding="utf-8")
    return runner.invoke(cli, ["editions", "load", str(path), "--newsletter", "lettre"])


def editions_stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Edition)) or 0)


def test_items_that_are_not_objects_are_named_on_stderr_with_exit_2(
    hebdo: CliRunner, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    data = {"title": "Semaine 4", "items": ["DeepSeek", {"title": "Stargate"}, {"body": "x"}]}
    result = load(hebdo, tmp_path, json.dumps(data))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'edition.json'}: items[0]: must be an object",
        f"{tmp_path / 'edition.json'}: items[2].title: required",
    ]
    assert result.stdout == ""
    assert editions_stored(sessions) == 0


def test_a_related_read_without_a_link_is_refused_as_in_the_composer(
    hebdo: CliRunner, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    data = json.loads((ROOT / "service/sample/edition_fr.json").read_text("utf-8"))
    data["related"][1]["url"] = ""
    result = load(hebdo, tmp_path, json.dumps(data))
    assert result.exit_code == 2, result.output
    assert "related[1].url: required" in result.stderr
    assert editions_stored(sessions) == 0


@pytest.mark.parametrize(
    "content",
    ["[1, 2]", '"edition"', "null", "{", "[" * 100_000, '{"title": ' + "9" * 5000 + "}"],
    ids=["list", "string", "null", "truncated", "deep", "huge-number"],
)
def test_any_file_gets_a_clear_refusal_never_a_traceback(
    hebdo: CliRunner, tmp_path: Path, sessions: sessionmaker[Session], content: str
) -> None:
    result = load(hebdo, tmp_path, content)
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "edition.json" in result.stderr
    assert editions_stored(sessions) == 0


def test_the_sample_still_loads(hebdo: CliRunner, tmp_path: Path) -> None:
    result = load(hebdo, tmp_path, (ROOT / "service/sample/edition_en.json").read_text("utf-8"))
    assert result.exit_code == 0, result.output
    assert "loaded edition 1" in result.stdout


@pytest.mark.parametrize("command", ["show", "render", "schedule", "pause", "cancel"])
@pytest.mark.parametrize("number", ["99999999999999999999", "2147483648", "-1", "²"])
def test_an_edition_id_past_the_column_is_a_usage_error(
    hebdo: CliRunner, command: str, number: str
) -> None:
    result = hebdo.invoke(cli, ["editions", command, "--", number])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "EDITION_ID" in result.stderr
