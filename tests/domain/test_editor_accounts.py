"""`hebdo editors …` and `hebdo audit`, through the real command line on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.models import AuditEntry, Editor, EditorRole, EditorSession
from service.team import accounts, editors
from tests import factories

PASSWORD = "une phrase de passe assez longue"


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def _editor(sessions: sessionmaker[Session], email: str) -> Editor:
    with sessions() as session:
        found = session.scalar(select(Editor).where(Editor.email == email))
        assert found is not None
        session.expunge(found)
        return found


def test_create_reads_the_password_from_a_hidden_prompt_twice(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    code, output = _run(
        env,
        "editors",
        "create",
        "Chef@Exemple.fr",
        "--role",
        "admin",
        "--name",
        "Cheffe",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0, output
    assert PASSWORD not in output  # hidden
    assert "created admin chef@exemple.fr" in output
    found = _editor(sessions, "chef@exemple.fr")
    assert found.role is EditorRole.ADMIN
    assert found.name == "Cheffe"
    with sessions() as session:
        assert editors.authenticate(session, "chef@exemple.fr", PASSWORD) is not None
        row = session.scalar(select(AuditEntry).where(AuditEntry.action == "editor.create"))
        assert row is not None
        assert (row.actor, row.object_id) == ("cli", str(found.id))


def test_create_takes_the_first_line_of_a_password_file_and_newsletters(
    env: dict[str, str], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions.begin() as session:
        factories.newsletter(session, "lettre")
        factories.newsletter(session, "autre")
    secret = tmp_path / "password"
    secret.write_text(f"{PASSWORD}\nsecond line ignored\n", encoding="utf-8")
    code, output = _run(
        env,
        "editors",
        "create",
        "plume@exemple.fr",
        "--role",
        "editor",
        "--newsletter",
        "lettre",
        "--password-file",
        str(secret),
    )
    assert code == 0, output
    code, output = _run(env, "editors", "list", "--json")
    assert code == 0, output
    listed = {row["email"]: row for row in json.loads(output)}
    assert listed["plume@exemple.fr"]["role"] == "editor"
    assert listed["plume@exemple.fr"]["newsletters"] == ["lettre"]
    assert listed["plume@exemple.fr"]["disabled"] is False
    with sessions() as session:
        assert editors.authenticate(session, "plume@exemple.fr", PASSWORD) is not None

    # From standard input too ("-"), e.g. a secret piped by a deployment tool.
    code, output = _run(
        env,
        "editors",
        "create",
        "lecteur@exemple.fr",
        "--role",
        "viewer",
        "--password-file",
        "-",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, output
    assert _editor(sessions, "lecteur@exemple.fr").role is EditorRole.VIEWER


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["bad address", "--role", "admin"], f"{PASSWORD}\n{PASSWORD}\n", "address"),
        (["a@exemple.fr", "--role", "king"], "", "king"),
        (["a@exemple.fr", "--role", "admin"], "court\ncourt\n", "at least 10"),
        (
            ["a@exemple.fr", "--role", "editor", "--newsletter", "nulle"],
            f"{PASSWORD}\n{PASSWORD}\n",
            "no newsletter",
        ),
        (["a@exemple.fr", "--role", "admin", "--password-file", "-"], "\n", "empty"),
    ],
)
def test_create_refuses_with_one_clear_line(
    env: dict[str, str],
    sessions: sessionmaker[Session],
    args: list[str],
    stdin: str,
    message: str,
) -> None:
    code, output = _run(env, "editors", "create", *args, stdin=stdin)
    assert code != 0
    assert message in output
    assert "Traceback" not in output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Editor)) == 0


def test_the_password_is_never_an_argument(env: dict[str, str]) -> None:
    code, output = _run(
        env, "editors", "create", "a@exemple.fr", "--role", "admin", "--password", PASSWORD
    )
    assert code != 0
    assert "No such option" in output


def test_an_address_already_taken_is_refused(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        editors.create(session, "pris@exemple.fr", PASSWORD)
    code, output = _run(
        env,
        "editors",
        "create",
        "PRIS@exemple.fr",
        "--role",
        "viewer",
        "--password-file",
        "-",
        stdin=PASSWORD,
    )
    assert code == 1
    assert "already exists" in output


def test_set_role_disable_and_enable_change_the_row_and_end_sessions(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        editors.create(session, "admin@exemple.fr", PASSWORD, role=EditorRole.ADMIN)
        plume = editors.create(session, "plume@exemple.fr", PASSWORD)
        editors.open_session(session, plume, address="192.0.2.1")
        editors.open_session(session, plume, address="192.0.2.2")

    code, output = _run(env, "editors", "set-role", "plume@exemple.fr", "viewer")
    assert code == 0, output
    assert _editor(sessions, "plume@exemple.fr").role is EditorRole.VIEWER

    code, output = _run(env, "editors", "disable", "plume@exemple.fr")
    assert code == 0, output
    assert "2 session(s) ended" in output
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(EditorSession)) == 0
        assert editors.authenticate(session, "plume@exemple.fr", PASSWORD) is None
        result = editors.log_in(session, "plume@exemple.fr", PASSWORD, address="192.0.2.3")
        assert result.token == ""

    code, output = _run(env, "editors", "enable", "plume@exemple.fr")
    assert code == 0, output
    with sessions.begin() as session:
        assert editors.authenticate(session, "plume@exemple.fr", PASSWORD) is not None

    code, output = _run(env, "editors", "set-role", "personne@exemple.fr", "admin")
    assert code == 1
    assert "no editor" in output
    code, output = _run(env, "editors", "set-role", "plume@exemple.fr", "king")
    assert code == 2

    # The last active admin keeps their role and account.
    for args in (["set-role", "admin@exemple.fr", "editor"], ["disable", "admin@exemple.fr"]):
        code, output = _run(env, "editors", *args)
        assert code == 1
        assert "last active admin" in output
    assert _editor(sessions, "admin@exemple.fr").role is EditorRole.ADMIN

    code, output = _run(env, "audit", "--json")
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines()]
    assert [r["action"] for r in rows] == ["editor.enable", "editor.disable", "editor.role"]
    assert rows[2]["detail"] == {"email": "plume@exemple.fr", "from": "editor", "to": "viewer"}
    assert {r["actor"] for r in rows} == {"cli"}
    assert rows[1]["detail"]["sessions_ended"] == 2


def test_audit_filters_by_actor_action_and_since(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        editors.create(session, "admin@exemple.fr", PASSWORD, role=EditorRole.ADMIN)
        plume = editors.create(session, "plume@exemple.fr", PASSWORD)
        chef = accounts.find(session, "admin@exemple.fr")
        from service.team import audit

        accounts.set_role(
            session, plume, EditorRole.VIEWER, who=audit.Who.editor(chef, "192.0.2.9")
        )
        accounts.disable(session, plume, who=audit.Who.cli())

    code, output = _run(env, "audit", "--json", "--actor", "admin@exemple.fr")
    rows = [json.loads(line) for line in output.splitlines()]
    assert [(r["action"], r["client_network"]) for r in rows] == [("editor.role", "192.0.2.9")]
    code, output = _run(env, "audit", "--json", "--action", "editor.disable")
    assert [json.loads(line)["actor"] for line in output.splitlines()] == ["cli"]
    code, output = _run(env, "audit", "--json", "--since", "7d")
    assert len(output.splitlines()) == 2
    code, output = _run(env, "audit", "--json", "--since", "2999-01-01")
    assert code == 0
    assert output == ""
    code, output = _run(env, "audit", "--since", "last tuesday")
    assert code == 2
    assert "give a date" in output
    code, output = _run(env, "audit")
    assert code == 0
    assert "editor.disable" in output.splitlines()[0]
