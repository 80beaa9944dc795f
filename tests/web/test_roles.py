"""Roles are enforced by the server on every route, not by hiding buttons.

The walk knows no route by name: it reads `app.url_map`, fills each path variable with
this instance's real objects (the same seed as tests/web/test_no_5xx.py) and POSTs a form
holding every field the views read (with a valid CSRF token). Each state-changing rule
must answer 403 to a viewer, and to an editor given another newsletter, and the
database must read exactly as before. A POST rule added later is walked too; one that
declares no permission (deps.requires) and is neither public nor self-service fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule

from service.config import Settings
from service.db import Base
from service.models import Editor, EditorRole, Newsletter, Subscription
from service.team import editors
from service.team.permissions import Permission
from tests import factories
from tests.web.test_no_5xx import Seeded, Walker, seed

PASSWORD = "un mot de passe pour les rôles"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
VIEWER = "lectrice@hebdo.example"
ELSEWHERE = "ailleurs@hebdo.example"  # an editor given only the other newsletter
EDITOR = "plume@hebdo.example"  # an editor of every newsletter, not an admin

# Blueprints of readers and machines (tokens, webhooks): no editor account involved.
# The API door has its own bearer tokens and scopes (tests/web/test_api.py).
PUBLIC = {"public", "archive", "reader", "webhooks", "api"}
# What every logged-in editor may do to their own account, whatever their role.
SELF_SERVICE = {
    "auth.logout",
    "auth.change_password",
    "auth.logout_everywhere",
    "team_access.totp_on",
    "team_access.totp_off",
}
# Views of a person not logged in yet: a mailed link, the reset form, the first admin's
# form, the login's second step.
PUBLIC_VIEWS = {
    "team_access.welcome",
    "team_access.reset_request",
    "team_access.reset",
    "team_access.setup",
    "team_access.login_code",
}
# Tables a refused request may still write: the login's session, its audit row and the
# failed-password counts of a wrong current password.
VOLATILE = {"editor_session", "audit_entry", "rate_window"}


@pytest.fixture
def site(
    settings: Settings, sessions: sessionmaker[Session], app: Flask
) -> tuple[Flask, Seeded, list[int]]:
    seeded = seed(sessions, settings)
    with sessions.begin() as session:
        factories.newsletter(session, "autre")
        made = [
            editors.create(session, VIEWER, PASSWORD, role=EditorRole.VIEWER),
            editors.create(
                session, ELSEWHERE, PASSWORD, role=EditorRole.EDITOR, newsletters=["autre"]
            ),
            editors.create(session, EDITOR, PASSWORD, role=EditorRole.EDITOR),
        ]
        for editor in made:
            editor.language = "en"  # the pages' words are asserted in English
        readers = sorted(set(session.scalars(select(Subscription.subscriber_id))))
    return app, seeded, readers


def log_in(app: Flask, email: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    token = _token(client, "/login")
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, f"{email} cannot log in"
    return client, _token(client, "/account/")


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def snapshot(sessions: sessionmaker[Session]) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table (but the volatile ones), as text."""
    with sessions() as session:
        return {
            table.name: sorted(
                tuple(str(value) for value in row) for row in session.execute(select(table))
            )
            for table in Base.metadata.sorted_tables
            if table.name not in VOLATILE
        }


def forms(readers: list[int]) -> Iterator[MultiDict[str, str]]:
    """Forms naming this newsletter's objects with every field the views read."""
    base = MultiDict(
        [
            ("newsletter", "lettre"),
            ("action", "delete"),
            ("confirm", "yes"),
            ("tag", "vip"),
            ("tag_name", "vip"),
            ("slot", "next"),
            ("at", "2031-01-04T08:00"),
            ("op", "save"),
            ("addresses", "test@example.org"),
            ("role", "admin"),
            ("title", "Changé"),
            ("subject", "Changé"),
            ("draft", "# Changé\n\nTexte."),
        ]
    )
    for scope in ("selected", "matching"):
        form = MultiDict(base)
        form["scope"] = scope
        for reader in readers:
            form.add("id", str(reader))
        yield form


def permission_of(app: Flask, rule: Rule) -> Permission | None:
    permission: Permission | None = getattr(
        app.view_functions[rule.endpoint], "hebdo_permission", None
    )
    return permission


def editor_rules(app: Flask, method: str) -> list[Rule]:
    """The rules of editor views for this method; self-service ones last (they log out)."""
    rules = [
        r
        for r in app.url_map.iter_rules()
        if method in (r.methods or ())
        and r.endpoint != "static"
        and r.endpoint.split(".")[0] not in PUBLIC
        and r.endpoint != "auth.login"
        and r.endpoint not in PUBLIC_VIEWS
    ]
    return sorted(rules, key=lambda r: (r.endpoint in SELF_SERVICE, "logout" in r.endpoint, r.rule))


def post_everywhere(
    app: Flask, client: FlaskClient, token: str, seeded: Seeded, readers: list[int]
) -> dict[str, set[int]]:
    """POST each form to each real path of each editor rule; the statuses per endpoint."""
    walker = Walker(app, client, seeded, logged_in=False)
    answers: dict[str, set[int]] = {}
    for rule in editor_rules(app, "POST"):
        for path in walker.real_paths(rule)[:4]:
            for form in forms(readers):
                form["csrf_token"] = token
                response = client.post(path, data=form)
                answers.setdefault(rule.endpoint, set()).add(response.status_code)
    return answers


def test_every_editor_view_declares_its_permission(app: Flask) -> None:
    undeclared = [
        rule.endpoint
        for method in ("GET", "POST")
        for rule in editor_rules(app, method)
        if rule.endpoint not in SELF_SERVICE | {"auth.account"} and permission_of(app, rule) is None
    ]
    assert undeclared == []


def test_a_viewer_posting_anywhere_gets_403_and_changes_nothing(
    backend: str, site: tuple[Flask, Seeded, list[int]], sessions: sessionmaker[Session]
) -> None:
    app, seeded, readers = site
    client, token = log_in(app, VIEWER)
    before = snapshot(sessions)

    answers = post_everywhere(app, client, token, seeded, readers)

    assert len(answers) > 15
    wrong = {
        endpoint: codes
        for endpoint, codes in answers.items()
        if endpoint not in SELF_SERVICE and codes != {403}
    }
    assert wrong == {}
    for endpoint in SELF_SERVICE:
        assert 403 not in answers[endpoint], endpoint
        assert max(answers[endpoint]) < 500
    assert snapshot(sessions) == before


def test_a_refusal_says_which_role_is_needed(
    site: tuple[Flask, Seeded, list[int]],
) -> None:
    app, seeded, _ = site
    client, token = log_in(app, VIEWER)
    edition = seeded.good("edition_id")[0]
    response = client.post(
        f"/editions/{edition}/schedule", data={"slot": "next", "csrf_token": token}
    )
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "This needs the role “editor”; your role is “viewer”." in page
    assert "Nothing was changed" in page
    # A viewer still reads every page and keeps their own account.
    assert client.get(f"/editions/{edition}").status_code == 200
    assert client.get(f"/compose/editions/{edition}").status_code == 200
    assert client.get("/subscribers/").status_code == 200
    assert client.get("/account/").status_code == 200
    changed = client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": PASSWORD + " 2",
            "confirm_password": PASSWORD + " 2",
            "csrf_token": token,
        },
    )
    assert changed.status_code == 302


def test_buttons_a_viewer_cannot_use_are_not_shown(
    site: tuple[Flask, Seeded, list[int]],
) -> None:
    app, seeded, _ = site
    edition = seeded.good("edition_id")[0]
    viewer, _ = log_in(app, VIEWER)
    editor, _ = log_in(app, EDITOR)
    for path, action in (
        (f"/editions/{edition}", f"/editions/{edition}/schedule"),
        ("/compose/", "/compose/lettre/new"),
        (f"/editions/{edition}/preview", f"/editions/{edition}/test-send"),
        ("/subscribers/", "/subscribers/bulk"),
    ):
        assert f'action="{action}"' in editor.get(path).get_data(as_text=True), path
        assert f'action="{action}"' not in viewer.get(path).get_data(as_text=True), path
    assert 'href="/team/"' not in editor.get("/").get_data(as_text=True)


def test_an_editor_of_another_newsletter_gets_403_on_this_ones_objects(
    backend: str, site: tuple[Flask, Seeded, list[int]], sessions: sessionmaker[Session]
) -> None:
    app, seeded, readers = site
    client, token = log_in(app, ELSEWHERE)
    before = snapshot(sessions)

    answers = post_everywhere(app, client, token, seeded, readers)

    # The Markdown preview acts on no newsletter's object and changes nothing.
    harmless = {"composer.markdown_preview"}
    wrong = {
        endpoint: codes
        for endpoint, codes in answers.items()
        if endpoint not in SELF_SERVICE | harmless and codes != {403}
    }
    assert wrong == {}
    assert snapshot(sessions) == before
    # They still read this newsletter's pages, and act on their own.
    client, token = log_in(app, ELSEWHERE)
    edition = seeded.good("edition_id")[0]
    assert client.get(f"/editions/{edition}").status_code == 200
    page = client.post(f"/compose/editions/{edition}", data={"op": "save", "csrf_token": token})
    assert page.status_code == 403
    assert "on the newsletter" in page.get_data(as_text=True)
    assert client.post("/compose/autre/new", data={"csrf_token": token}).status_code == 302
    # A query string naming their own newsletter does not vouch for the form's.
    smuggled = client.post(
        "/subscribers/import?newsletter=autre", data={"newsletter": "lettre", "csrf_token": token}
    )
    assert smuggled.status_code == 403


def test_admin_pages_refuse_an_editor(
    backend: str, site: tuple[Flask, Seeded, list[int]], sessions: sessionmaker[Session]
) -> None:
    app, seeded, _ = site
    client, token = log_in(app, EDITOR)
    before = snapshot(sessions)
    walker = Walker(app, client, seeded, logged_in=False)
    managed = [
        (method, rule)
        for method in ("GET", "POST")
        for rule in editor_rules(app, method)
        if permission_of(app, rule) is Permission.MANAGE
    ]
    assert {rule.rule for _, rule in managed} >= {"/team/", "/audit/"}
    for method, rule in managed:
        for path in walker.real_paths(rule)[:2]:
            data = {"csrf_token": token, "role": "viewer"} if method == "POST" else None
            response = client.open(path, method=method, data=data)
            assert response.status_code == 403, (method, path)
            assert "“admin”" in response.get_data(as_text=True)
    assert snapshot(sessions) == before
    with sessions() as session:
        assert (
            session.scalar(select(Editor.role).where(Editor.email == EDITOR)) is EditorRole.EDITOR
        )


def test_a_bulk_action_names_only_the_editors_own_newsletter(
    site: tuple[Flask, Seeded, list[int]], sessions: sessionmaker[Session]
) -> None:
    app, _, _ = site
    with sessions.begin() as session:
        autre = session.scalar(select(Newsletter).where(Newsletter.slug == "autre"))
        assert autre is not None
        (reader,) = factories.readers(session, autre, 1, prefix="autre")
        reader_id = reader.id
    client, token = log_in(app, ELSEWHERE)
    form = {"scope": "selected", "id": str(reader_id), "csrf_token": token}
    # Their own reader, but the confirmation mails of a newsletter not theirs: refused.
    resend = {**form, "newsletter": "lettre", "action": "resend", "confirm": "yes"}
    assert client.post("/subscribers/bulk", data=resend).status_code == 403
    tag = {**form, "newsletter": "autre", "action": "tag", "tag_name": "vip"}
    assert client.post("/subscribers/bulk", data=tag).status_code == 302
    everyone = {**form, "scope": "matching", "action": "tag", "tag_name": "vip"}
    assert client.post("/subscribers/bulk", data=everyone).status_code == 403
