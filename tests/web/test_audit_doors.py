"""Each audited action leaves its row when done through a door: the editor pages (actor:
the editor, with their client network) and the command line (actor: cli)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.sending import controls
from service.team import audit, editors
from tests import factories

PASSWORD = "un mot de passe de porte"
EDITOR = "porte@hebdo.example"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def _rows(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    with sessions() as session:
        return [audit.as_dict(e) for e in reversed(audit.entries(session))]


def test_the_editor_pages_record_schedule_unschedule_export_import_and_erase(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        editors.create(session, EDITOR, PASSWORD)
        letter = factories.newsletter(session, "lettre")
        people = factories.readers(session, letter, 2)
        edition_id = factories.edition(session, letter).id
        erased_id, erased_email = people[0].id, people[0].email
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "2001:db8:1:2:3:4:5:6"
    token = _token(client, "/login")
    client.post("/login", data={"email": EDITOR, "password": PASSWORD, "csrf_token": token})
    token = _token(client, "/subscribers/")

    post = client.post
    post(f"/editions/{edition_id}/schedule", data={"slot": "next", "csrf_token": token})
    post(f"/editions/{edition_id}/unschedule", data={"csrf_token": token})
    assert client.get("/subscribers/export.csv?newsletter=lettre").status_code == 200
    response = post(
        "/subscribers/import",
        data={
            "csrf_token": token,
            "newsletter": "lettre",
            "consent": "confirmed",
            "reason": "salon du livre",
            "file": (io.BytesIO(b"email\nnoe@exemple.fr\npas-une-adresse\n"), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    response.get_data()  # the import ends with its stream
    bulk = {"scope": "selected", "id": str(erased_id), "action": "delete", "confirm": "yes"}
    post("/subscribers/bulk", data={**bulk, "csrf_token": token})

    rows = _rows(sessions)
    assert [r["action"] for r in rows] == [
        "login",
        "edition.schedule",
        "edition.unschedule",
        "subscribers.export",
        "subscribers.import",
        "subscriber.erase",
    ]
    assert {r["actor"] for r in rows} == {EDITOR}
    assert {r["client_network"] for r in rows} == {"2001:db8:1:2::/64"}
    assert rows[1]["object_id"] == str(edition_id)
    assert rows[3]["detail"] == {"rows": 2, "status": "all"}
    detail = rows[4]["detail"]
    assert isinstance(detail, dict)
    assert (detail["added"], detail["rejected"], detail["reason"]) == (1, 1, "salon du livre")
    assert rows[5]["detail"] == {"count": 1, "ids": [erased_id]}
    assert erased_email not in str(rows[5])  # an erased reader's address is not kept here


def test_the_command_line_records_its_actions_as_cli(
    env: dict[str, str], sessions: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session, "lettre")
        factories.readers(session, letter, 2)
        edition_id = factories.edition(session, letter).id
    runner = CliRunner(env=env)
    csv = tmp_path / "readers.csv"
    csv.write_text("email\nada@exemple.fr\n", encoding="utf-8")
    for args in (
        ["editions", "schedule", str(edition_id), "--next-slot"],
        ["editions", "unschedule", str(edition_id)],
        ["subscribers", "import", str(csv), "--newsletter", "lettre"],
        ["subscribers", "export", "--newsletter", "lettre"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    rows = _rows(sessions)
    assert [r["action"] for r in rows] == [
        "edition.schedule",
        "edition.unschedule",
        "subscribers.import",
        "subscribers.export",
    ]
    assert {r["actor"] for r in rows} == {"cli"}


def test_pause_resume_and_cancel_record_who_did_them(
    backend: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    who = audit.Who(None, "ada@exemple.fr", "192.0.2.7")
    with sessions.begin() as session:
        letter = factories.newsletter(session, "lettre")
        factories.readers(session, letter, 3)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        controls.pause(session, edition, who=who)
        controls.resume(session, edition, batch_size=10, who=who)
        controls.cancel(session, edition, who=who)

        edition_id, letter_id = edition.id, letter.id
    rows = _rows(sessions)
    assert [(r["action"], r["actor"], r["object_id"]) for r in rows] == [
        ("edition.pause", "ada@exemple.fr", str(edition_id)),
        ("edition.resume", "ada@exemple.fr", str(edition_id)),
        ("edition.cancel", "ada@exemple.fr", str(edition_id)),
    ]
    assert rows[2]["detail"] == {"newsletter_id": letter_id, "number": 1, "cancelled": 3}
