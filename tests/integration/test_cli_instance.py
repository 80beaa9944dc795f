"""The command line finds its instance: `--instance`, the instance's env file, and one
sentence (never a traceback) when the database has no Hebdo schema or an old one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from service.cli import cli
from service.config import write_instance_env
from service.tools.migrate import upgrade
from tests.support.smtp import RecordingSmtpServer

ROOT = Path(__file__).resolve().parents[2]
# What a shell may have set that would point the command elsewhere (None unsets it).
CLEAN = dict.fromkeys(
    ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SMTP_URL", "BASE_URL", "HEBDO_MAILDIR")
)


def hebdo(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner(env={**CLEAN, **env}).invoke(cli, list(args))


@pytest.mark.parametrize(
    "command",
    [
        ("newsletters", "list"),
        ("newsletters", "create", "--slug", "x", "--name", "X", "--sender", "x@example.org"),
        ("editions", "render", "1"),
        ("editors", "unlock", "ada@example.org"),
        ("web", "--port", "1"),
    ],
)
def test_a_command_on_an_empty_instance_says_run_init_and_exits_1(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    instance = tmp_path / "empty"
    result = hebdo({"HEBDO_INSTANCE": str(instance), "SECRET_KEY": "s"}, *command)
    assert result.exit_code == 1, result.output
    database = instance / "hebdo.sqlite"
    assert result.output.strip() == (
        f"Error: the database at sqlite:///{database} has no Hebdo schema: run `hebdo init`"
    )
    assert "Traceback" not in result.output
    assert not database.exists(), "the check must not leave an empty database file behind"


def test_an_empty_database_file_and_an_old_schema_say_run_init(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "hebdo.sqlite").touch()
    env: dict[str, str | None] = {"HEBDO_INSTANCE": str(instance), "SECRET_KEY": "s"}
    empty = hebdo(env, "newsletters", "list")
    assert empty.exit_code == 1
    assert "has no Hebdo schema: run `hebdo init`" in empty.output
    assert "Traceback" not in empty.output

    upgrade(f"sqlite:///{instance / 'hebdo.sqlite'}", "0006")
    old = hebdo(env, "newsletters", "list")
    assert old.exit_code == 1
    assert "has an outdated Hebdo schema (0006, expected " in old.output
    assert "run `hebdo init`" in old.output

    assert hebdo(env, "init").exit_code == 0
    fixed = hebdo(env, "newsletters", "list")
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output == ""


def test_an_unreachable_postgres_is_one_sentence_too(tmp_path: Path) -> None:
    from tests.support import free_port

    url = f"postgresql://hebdo:secret-pw@127.0.0.1:{free_port()}/hebdo"
    result = hebdo(
        {"HEBDO_INSTANCE": str(tmp_path), "SECRET_KEY": "s", "DATABASE_URL": url},
        "newsletters", "list",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: the database at postgresql+psycopg://hebdo:***@")
    assert "does not answer" in result.output
    assert "secret-pw" not in result.output
    assert "Traceback" not in result.output


def test_instance_option_points_every_command_at_that_folder(tmp_path: Path) -> None:
    default = tmp_path / "default"
    demo = tmp_path / "demo"
    env: dict[str, str | None] = {"HEBDO_INSTANCE": str(default), "SECRET_KEY": "s"}
    assert hebdo(env, "--instance", str(demo), "init").exit_code == 0
    created = hebdo(
        env, "--instance", str(demo),
        "newsletters", "create", "--slug", "lettre", "--name", "La Lettre",
        "--sender", "lettre@example.org",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    listed = hebdo(env, "--instance", str(demo), "newsletters", "list")
    assert listed.exit_code == 0, listed.output
    assert "lettre" in listed.output
    assert (demo / "hebdo.sqlite").exists()
    assert not (default / "hebdo.sqlite").exists()
    # Without the option the command acts on HEBDO_INSTANCE, which has no schema.
    assert "has no Hebdo schema" in hebdo(env, "newsletters", "list").output


def test_the_instance_env_file_gives_test_send_the_relay(
    tmp_path: Path, smtp_server: RecordingSmtpServer
) -> None:
    instance = tmp_path / "demo"
    env: dict[str, str | None] = {"HEBDO_INSTANCE": str(tmp_path / "elsewhere"), "SECRET_KEY": "s"}
    assert hebdo(env, "--instance", str(instance), "init").exit_code == 0
    write_instance_env(instance, {"SMTP_URL": smtp_server.url, "BASE_URL": "http://demo.test"})
    for args in (
        ("newsletters", "create", "--slug", "lettre", "--name", "La Lettre",
         "--sender", "lettre@example.org"),
        ("editions", "load", str(ROOT / "service/sample/edition_fr.json"),
         "--newsletter", "lettre"),
        ("editions", "test-send", "1", "me@example.org"),
    ):  # fmt: skip
        result = hebdo(env, "--instance", str(instance), *args)
        assert result.exit_code == 0, result.output
    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == ("me@example.org",)
    assert b"http://demo.test/" in message.data


def test_an_unreadable_setting_is_one_sentence(tmp_path: Path) -> None:
    result = hebdo(
        {"HEBDO_INSTANCE": str(tmp_path), "SECRET_KEY": "s", "SMTP_URL": "http://relay"},
        "check",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith("Error: the configuration cannot be read: SMTP_URL must")
    assert "Traceback" not in result.output
