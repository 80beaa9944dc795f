"""The API access page: an admin creates a token (shown once), sees its last use and
revokes it; an editor sees the list but can do neither; every step is audited."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import AuditEntry, EditorRole
from service.team import editors
from tests import factories

PASSWORD = "une-phrase-de-passe"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r"<code>(hebdo_\d+_[A-Za-z0-9_-]+)</code>")


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def _login(
    client: FlaskClient, sessions: sessionmaker[Session], email: str, role: EditorRole
) -> None:
    with sessions.begin() as session:
        editors.create(session, email, PASSWORD, role=role)
    response = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": _token(client, "/login")},
    )
    assert response.status_code == 302


def test_an_admin_creates_a_token_shown_once_then_revokes_it(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        factories.newsletter(session, "lettre")
    _login(client, sessions, "admin@exemple.fr", EditorRole.ADMIN)
    page = client.post(
        "/api-access/tokens",
        data={
            "name": "site",
            "scope": ["read", "write"],
            "newsletter": "lettre",
            "csrf_token": _token(client, "/api-access/"),
        },
    )
    assert page.status_code == 201
    match = SECRET.search(page.get_data(as_text=True))
    assert match is not None
    secret = match.group(1)
    assert (
        client.get("/api/v1/newsletters", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    listing = client.get("/api-access/").get_data(as_text=True)
    assert secret not in listing
    assert "read, write" in listing

    token_id = secret.split("_")[1]
    done = client.post(
        f"/api-access/tokens/{token_id}/revoke", data={"csrf_token": _token(client, "/api-access/")}
    )
    assert done.status_code == 302
    assert (
        client.get("/api/v1/newsletters", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    with sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(r.actor, r.action) for r in rows if r.action.startswith("token")] == [
            ("admin@exemple.fr", "token.create"),
            ("admin@exemple.fr", "token.revoke"),
        ]


def test_an_editor_sees_the_tokens_but_cannot_create_or_revoke(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    _login(client, sessions, "redaction@exemple.fr", EditorRole.EDITOR)
    page = client.get("/api-access/")
    assert page.status_code == 200
    assert "/api-access/tokens" not in page.get_data(as_text=True)
    refused = client.post(
        "/api-access/tokens",
        data={"name": "x", "scope": "read", "csrf_token": _token(client, "/api-access/")},
    )
    assert refused.status_code == 403
