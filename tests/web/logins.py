"""Log a test client in as an editor of a given role, through the real login form."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from service.models import EditorRole
from service.team import editors

PASSWORD = "un mot de passe solide"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on the page at `path`."""
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def log_in(
    client: FlaskClient, sessions: sessionmaker[Session], role: EditorRole, language: str = ""
) -> FlaskClient:
    """Create an account of `role` and log the client in with it."""
    email = f"{role.value}@hebdo.example"
    with sessions() as session, session.begin():
        editor = editors.create(session, email, PASSWORD, role=role)
        editor.language = language
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token(client, "/login")}
    )
    assert response.status_code == 302
    return client
