"""The admin's Team and Audit log pages, through the real app (CSRF on, logins by form)."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import AuditEntry, Editor, EditorRole
from service.sending import controls
from service.team import accounts, audit, editors
from service.web import team
from tests import factories

PASSWORD = "un mot de passe d'équipe"
ADMIN = "cheffe@hebdo.example"
PLUME = "plume@hebdo.example"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def log_in(app: Flask, email: str, password: str = PASSWORD) -> tuple[FlaskClient, int]:
    client = app.test_client()
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": _token(client, "/login")},
    )
    return client, response.status_code


@pytest.fixture
def team_site(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions.begin() as session:
        factories.newsletter(session, "lettre")
        factories.newsletter(session, "autre")
        admin = editors.create(session, ADMIN, PASSWORD, role=EditorRole.ADMIN)
        plume = editors.create(session, PLUME, PASSWORD, newsletters=["autre"])
        admin.language = plume.language = "en"  # the pages' words are asserted in English
        return {"admin": admin.id, "plume": plume.id}


def _rows(page: str) -> list[tuple[str, str]]:
    """(action, whole row text) of each row of the audit table."""
    found = re.findall(r'<tr data-action="([^"]+)">(.*?)</tr>', page, re.DOTALL)
    return [(action, unescape(re.sub(r"<[^>]+>", " ", row))) for action, row in found]


def test_team_page_lists_editors_and_changes_roles_newsletters_and_access(
    backend: str, app: Flask, team_site: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    admin, status = log_in(app, ADMIN)
    assert status == 302
    plume, status = log_in(app, PLUME)
    assert status == 302
    page = admin.get("/team/").get_data(as_text=True)
    assert ADMIN in page
    assert PLUME in page
    assert f'action="/team/{team_site["plume"]}/disable"' in page
    assert f'action="/team/{team_site["admin"]}/disable"' not in page  # not oneself
    token = _token(admin, "/team/")
    pid = team_site["plume"]

    assert (
        admin.post(f"/team/{pid}/role", data={"role": "viewer", "csrf_token": token}).status_code
        == 302
    )
    response = admin.post(
        f"/team/{pid}/newsletters",
        data={"newsletter": ["lettre", "autre"], "csrf_token": token},
    )
    assert response.status_code == 302
    with sessions() as session:
        editor = session.get(Editor, pid)
        assert editor is not None
        assert editor.role is EditorRole.VIEWER
        assert accounts.slugs_of(session, editor) == ["autre", "lettre"]

    # Disabling ends their session at once; they cannot log in again until enabled.
    assert plume.get("/subscribers/").status_code == 200
    assert admin.post(f"/team/{pid}/disable", data={"csrf_token": token}).status_code == 302
    assert plume.get("/subscribers/").status_code == 302
    assert log_in(app, PLUME)[1] == 401
    assert "Disabled" in admin.get("/team/").get_data(as_text=True)
    assert admin.post(f"/team/{pid}/enable", data={"csrf_token": token}).status_code == 302
    assert log_in(app, PLUME)[1] == 302

    # The last admin cannot demote themself; an unknown role or newsletter is refused.
    aid = team_site["admin"]
    for path, form in (
        (f"/team/{aid}/role", {"role": "viewer"}),
        (f"/team/{pid}/role", {"role": "king"}),
        (f"/team/{pid}/newsletters", {"newsletter": "nulle"}),
        (f"/team/{aid}/disable", {}),
    ):
        response = admin.post(path, data={**form, "csrf_token": token}, follow_redirects=True)
        assert response.status_code == 200
        assert 'class="sb-flash error"' in response.get_data(as_text=True), path
    assert (
        admin.post("/team/999999/role", data={"role": "viewer", "csrf_token": token}).status_code
        == 404
    )

    with sessions() as session:
        actions = [e.action for e in audit.entries(session, actor=ADMIN)]
    assert actions[:5] == [
        "editor.enable",
        "editor.disable",
        "editor.newsletters",
        "editor.role",
        "login",
    ]


def test_audit_page_shows_a_login_a_send_and_a_role_change_newest_first(
    backend: str,
    app: Flask,
    settings: Settings,
    team_site: dict[str, int],
    sessions: sessionmaker[Session],
) -> None:
    assert log_in(app, "intrus@hebdo.example", "mauvais")[1] == 401
    admin, _ = log_in(app, ADMIN)
    with sessions.begin() as session:
        letter = factories.newsletter(session, "troisieme")
        factories.readers(session, letter, 2)
        edition = factories.edition(session, letter)
        controls.begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=10,
            who=audit.Who.cli(),
        )
    token = _token(admin, "/team/")
    admin.post(f"/team/{team_site['plume']}/role", data={"role": "viewer", "csrf_token": token})

    page = admin.get("/audit/").get_data(as_text=True)
    assert 'class="table-scroll" role="region" tabindex="0" aria-label="Audit log"' in page
    rows = _rows(page)
    assert [action for action, _ in rows] == [
        "editor.role",
        "edition.send",
        "login",
        "login.failed",
    ]
    assert ADMIN in rows[0][1]
    assert "from: editor" in rows[0][1]
    assert "to: viewer" in rows[0][1]
    assert "recipients: 2" in rows[1][1]
    assert "127.0.0.1" in rows[2][1]
    assert "intrus@hebdo.example" in rows[3][1]

    only = _rows(admin.get("/audit/?action=login.failed").get_data(as_text=True))
    assert [action for action, _ in only] == ["login.failed"]
    mine = _rows(admin.get(f"/audit/?actor={ADMIN}").get_data(as_text=True))
    assert [action for action, _ in mine] == ["editor.role", "login"]
    assert _rows(admin.get("/audit/?since=2999-01-01").get_data(as_text=True)) == []
    bad = admin.get("/audit/?since=demain")
    assert bad.status_code == 200
    assert "Give the date as 2026-12-01." in bad.get_data(as_text=True)

    # The same rows from the command line, as JSON lines.
    env = {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "HEBDO_INSTANCE": str(settings.instance_path),
    }
    result = CliRunner(env=env).invoke(cli, ["audit", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["action"] for line in lines] == [action for action, _ in rows]
    assert lines[1]["object_type"] == "edition"
    assert lines[1]["object_id"] == str(edition.id)


def test_audit_page_pages_back_through_older_rows(
    app: Flask, team_site: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        for n in range(team.AUDIT_PAGE + 5):
            audit.record(session, audit.Who.cli(), "editor.role", object_id=n)
    admin, _ = log_in(app, ADMIN)
    first = admin.get("/audit/").get_data(as_text=True)
    assert len(_rows(first)) == team.AUDIT_PAGE
    older = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert older
    second = admin.get(unescape(older[1])).get_data(as_text=True)
    assert len(_rows(second)) == 6  # 5 more and the login
    assert 'rel="next"' not in second
    with sessions() as session:
        total = len(session.scalars(select(AuditEntry.id)).all())
    assert total == team.AUDIT_PAGE + 6
