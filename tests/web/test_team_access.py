"""Getting into an account through the real app (CSRF on) and a real SMTP server:
invitations, password resets by mail, two-step sign-in and the first admin of a site.
"""

from __future__ import annotations

import re
import time
from email.message import EmailMessage

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from service import tokens
from service.config import Settings
from service.models import AuditEntry, Editor, EditorRole, EditorSession
from service.team import access, editors
from tests.support.smtp import RecordingSmtpServer

ADMIN = "admin@exemple.fr"
PASSWORD = "une-phrase-de-passe"
NEW_PASSWORD = "un-tout-autre-secret"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LINK = re.compile(r"http://hebdo\.test(/(?:welcome|reset)/[A-Za-z0-9_-]+)")
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


def _csrf(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path, environ_base=REMOTE).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def _post(
    client: FlaskClient, path: str, data: dict[str, str], *, form: str | None = None
) -> TestResponse:
    token = _csrf(client, form or path)
    response = client.post(path, data={**data, "csrf_token": token}, environ_base=REMOTE)
    response.get_data()  # read, then closed as a WSGI server does (a reset mails on close)
    response.close()
    return response


def _log_in(client: FlaskClient, email: str, password: str) -> int:
    response = _post(client, "/login", {"email": email, "password": password})
    return response.status_code


def _logged_in(client: FlaskClient) -> bool:
    return client.get("/account/", environ_base=REMOTE).status_code == 200


def _link(message: EmailMessage) -> str:
    text = message.get_body(("plain",))
    assert text is not None
    match = LINK.search(text.get_content())
    assert match is not None, "no link in the message"
    html = message.get_body(("html",))
    assert html is not None
    assert match.group(1) in html.get_content()
    return match.group(1)


def _actions(sessions: sessionmaker[Session], *, logins: bool = False) -> list[str]:
    """The audit log's actions, oldest first; the password logins' rows only if asked."""
    with sessions() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    return [a for a in actions if logins or not a.startswith("login")]


@pytest.fixture
def admin(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        return editors.create(session, ADMIN, PASSWORD, name="Ada", role=EditorRole.ADMIN).id


def _invite(client: FlaskClient, email: str, role: str = "editor") -> int:
    response = _post(client, "/team/invite", {"email": email, "role": role, "name": "Béa"})
    return response.status_code


# --- invitations ------------------------------------------------------------------------


def test_an_invitation_arrives_its_link_sets_the_password_and_the_editor_logs_in(
    backend: str,
    client: FlaskClient,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    admin: int,
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    assert _invite(client, "bea@exemple.fr", "viewer") == 302
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ("bea@exemple.fr",)
    message = received.parsed()
    assert "Béa" in message["To"]
    path = _link(message)
    assert path.startswith("/welcome/")
    with sessions() as session:
        invited = session.scalar(select(Editor).where(Editor.email == "bea@exemple.fr"))
        assert invited is not None
        assert invited.role is EditorRole.VIEWER
        # No password opens the account before the link is used.
        assert editors.authenticate(session, "bea@exemple.fr", "") is None
        assert not editors.has_password(invited)

    invitee = client.application.test_client()
    assert _log_in(invitee, "bea@exemple.fr", PASSWORD) == 401
    page = invitee.get(path, environ_base=REMOTE)
    assert page.status_code == 200
    assert "bea@exemple.fr" in page.get_data(as_text=True)
    short = _post(invitee, path, {"new_password": "court", "confirm_password": "court"})
    assert short.status_code == 400
    done = _post(invitee, path, {"new_password": PASSWORD, "confirm_password": PASSWORD})
    assert done.status_code == 302
    assert done.headers["Location"] == "/login"
    assert _log_in(invitee, "bea@exemple.fr", PASSWORD) == 302
    assert _logged_in(invitee)

    # The link is dead once used.
    again = _post(
        invitee,
        path,
        {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        form="/login",
    )
    assert again.status_code == 404
    assert invitee.get(path, environ_base=REMOTE).status_code == 404
    assert _actions(sessions)[-2:] == ["editor.invite", "editor.welcome"]


def test_an_invitation_link_dies_after_72_hours_and_when_a_new_one_is_sent(
    client: FlaskClient,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    settings: Settings,
    admin: int,
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    assert _invite(client, "bea@exemple.fr") == 302
    first = _link(smtp_server.wait_for(1)[0].parsed())
    with sessions() as session:
        editor = session.scalar(select(Editor).where(Editor.email == "bea@exemple.fr"))
        assert editor is not None
        fingerprint = tokens.verify(
            settings.secret_key, access.INVITE_PURPOSE, first.rsplit("/", 1)[1], 3
        )[1]
    old = int(time.time()) - 72 * 3600 - 60
    stale = tokens.sign(settings.secret_key, access.INVITE_PURPOSE, editor.id, fingerprint, old)
    assert client.get(f"/welcome/{stale}", environ_base=REMOTE).status_code == 410
    recent = tokens.sign(
        settings.secret_key, access.INVITE_PURPOSE, editor.id, fingerprint, old + 120
    )
    assert client.get(f"/welcome/{recent}", environ_base=REMOTE).status_code == 200
    # A reset token never welcomes, and a forged one opens nothing.
    as_reset = tokens.sign(settings.secret_key, access.RESET_PURPOSE, editor.id, fingerprint, old)
    assert client.get(f"/welcome/{as_reset}", environ_base=REMOTE).status_code == 404
    assert client.get("/welcome/AAAA", environ_base=REMOTE).status_code == 404

    # Inviting the pending address again sends a new link; the first one dies.
    assert _invite(client, "bea@exemple.fr") == 302
    second = _link(smtp_server.wait_for(2)[1].parsed())
    assert second != first
    assert client.get(first, environ_base=REMOTE).status_code == 404
    assert client.get(second, environ_base=REMOTE).status_code == 200
    # An address whose account is in use cannot be invited.
    assert _invite(client, ADMIN) == 400
    assert len(smtp_server.messages) == 2


def test_the_invitation_speaks_the_language_of_the_admin_s_pages(
    client: FlaskClient, smtp_server: RecordingSmtpServer, admin: int
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    assert client.get("/account/?lang=fr", environ_base=REMOTE).status_code == 200
    assert _invite(client, "bea@exemple.fr") == 302
    message = smtp_server.wait_for(1)[0].parsed()
    assert message["Subject"] == "Vous êtes invité à éditer des newsletters sur Hebdo"
    text = message.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "Bonjour Béa," in body
    assert "Ada vous invite à rejoindre l'équipe" in body
    assert "(rôle : éditeur)" in body
    assert "pendant 72 heures" in body


@pytest.mark.parametrize("role", [EditorRole.EDITOR, EditorRole.VIEWER])
def test_only_an_admin_may_invite(
    client: FlaskClient,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    role: EditorRole,
) -> None:
    with sessions.begin() as session:
        editors.create(session, "ed@exemple.fr", PASSWORD, role=role)
    assert _log_in(client, "ed@exemple.fr", PASSWORD) == 302
    assert client.get("/team/invite", environ_base=REMOTE).status_code == 403
    token = _csrf(client, "/account/")
    response = client.post(
        "/team/invite",
        data={"email": "x@exemple.fr", "role": "admin", "csrf_token": token},
        environ_base=REMOTE,
    )
    assert response.status_code == 403
    with sessions() as session:
        assert session.scalar(select(Editor).where(Editor.email == "x@exemple.fr")) is None
    assert smtp_server.messages == []


# --- password reset ---------------------------------------------------------------------


def test_a_reset_link_from_the_message_sets_a_new_password_and_ends_every_session(
    backend: str,
    app_client_pair: tuple[FlaskClient, FlaskClient],
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    admin: int,
) -> None:
    elsewhere, asking = app_client_pair
    assert _log_in(elsewhere, ADMIN, PASSWORD) == 302
    login_page = asking.get("/login", environ_base=REMOTE).get_data(as_text=True)
    assert 'href="/reset"' in login_page
    answer = _post(asking, "/reset", {"email": ADMIN.upper()})
    assert answer.status_code == 200
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == (ADMIN,)
    path = _link(received.parsed())
    assert path.startswith("/reset/")
    short = _post(asking, path, {"new_password": "court", "confirm_password": "court"})
    assert short.status_code == 400
    done = _post(asking, path, {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 302
    assert not _logged_in(elsewhere)
    with sessions() as session:
        assert session.scalar(select(EditorSession)) is None
    assert _log_in(asking, ADMIN, PASSWORD) == 401
    assert _log_in(asking, ADMIN, NEW_PASSWORD) == 302
    # Single use: the link died with the password it was sent for.
    assert asking.get(path, environ_base=REMOTE).status_code == 404
    assert _actions(sessions)[-2:] == ["editor.reset.request", "editor.reset"]


@pytest.fixture
def app_client_pair(client: FlaskClient) -> tuple[FlaskClient, FlaskClient]:
    return client, client.application.test_client()


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    client: FlaskClient,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    admin: int,
) -> None:
    unknown = _post(client, "/reset", {"email": "personne@exemple.fr"})
    known = _post(client, "/reset", {"email": ADMIN})
    smtp_server.wait_for(1)
    assert unknown.status_code == known.status_code == 200
    assert unknown.get_data() == known.get_data()
    assert [m.rcpt_tos for m in smtp_server.messages] == [(ADMIN,)]
    junk = _post(client, "/reset", {"email": "pas une adresse"})
    assert junk.status_code == 200
    assert junk.get_data() == known.get_data()


def test_reset_requests_are_limited_per_address_and_per_network(
    client: FlaskClient, smtp_server: RecordingSmtpServer, admin: int
) -> None:
    statuses = [_post(client, "/reset", {"email": ADMIN}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert len(smtp_server.wait_for(3)) == 3
    # Other addresses from the same network: ten requests an hour in all.
    more = [_post(client, "/reset", {"email": f"n{i}@exemple.fr"}).status_code for i in range(8)]
    assert more.count(429) == 2
    time.sleep(0.2)
    assert len(smtp_server.messages) == 3


# --- two-step sign-in -------------------------------------------------------------------


def _turn_on(client: FlaskClient) -> tuple[str, list[str]]:
    page = client.get("/account/two-step", environ_base=REMOTE).get_data(as_text=True)
    match = re.search(r'name="secret" value="([A-Z2-7]{32})"', page)
    assert match is not None
    secret = match.group(1)
    assert f"secret={secret}" in page
    assert "otpauth://totp/" in page
    assert "<svg width=" in page  # the QR code, drawn on the server
    wrong = _post(
        client,
        "/account/two-step",
        {"secret": secret, "password": PASSWORD, "code": "000000"},
        form="/account/",
    )
    assert wrong.status_code == 400
    response = _post(
        client,
        "/account/two-step",
        {"secret": secret, "password": PASSWORD, "code": pyotp.TOTP(secret).now()},
        form="/account/",
    )
    assert response.status_code == 200
    codes = re.findall(r"<code>([0-9a-f]{5}-[0-9a-f]{5})</code>", response.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def _second_step(client: FlaskClient, code: str) -> int:
    return _post(client, "/login/code", {"code": code}).status_code


def test_two_step_sign_in_asks_a_code_after_the_password_and_takes_a_recovery_code_once(
    backend: str, client: FlaskClient, sessions: sessionmaker[Session], admin: int
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    secret, codes = _turn_on(client)
    with sessions() as session:
        editor = session.get(Editor, admin)
        assert editor is not None
        assert editor.totp_secret == secret
        stored = editor.totp_recovery.split()
        assert len(stored) == 10
        assert not any(c.replace("-", "") in stored for c in codes)
    client.post("/logout", data={"csrf_token": _csrf(client, "/account/")}, environ_base=REMOTE)
    before = len(_actions(sessions, logins=True))

    # The password alone opens no session.
    response = _post(client, "/login", {"email": ADMIN, "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/code"
    assert not _logged_in(client)
    assert _second_step(client, "123456") == 401
    assert not _logged_in(client)
    # The code of the next step (the one used to turn it on cannot be replayed).
    assert _second_step(client, pyotp.TOTP(secret).at(time.time() + 30)) == 302
    assert _logged_in(client)

    other = client.application.test_client()
    assert _log_in(other, ADMIN, PASSWORD) == 302
    assert _second_step(other, codes[0].upper()) == 302
    assert _logged_in(other)
    third = client.application.test_client()
    assert _log_in(third, ADMIN, PASSWORD) == 302
    assert _second_step(third, codes[0]) == 401
    assert not _logged_in(third)
    actions = _actions(sessions, logins=True)[before:]
    assert "editor.totp.on" in _actions(sessions)
    assert actions.count("login.recovery_code") == 1
    assert actions.count("login.failed") == 2  # the wrong code, the reused recovery code
    # One row per login, written by its second step (the password steps wrote none).
    assert actions.count("login") == 1

    # Turning it off takes the password.
    token = _csrf(client, "/account/")
    refused = client.post(
        "/account/two-step/off",
        data={"password": "pas-le-bon-mot", "csrf_token": token},
        environ_base=REMOTE,
    )
    assert refused.status_code == 302
    with sessions() as session:
        editor = session.get(Editor, admin)
        assert editor is not None
        assert editor.totp_secret == secret
    client.post(
        "/account/two-step/off",
        data={"password": PASSWORD, "csrf_token": token},
        environ_base=REMOTE,
    )
    with sessions() as session:
        editor = session.get(Editor, admin)
        assert editor is not None
        assert editor.totp_secret == ""
        assert editor.totp_recovery == ""
    assert _actions(sessions)[-1] == "editor.totp.off"
    fourth = client.application.test_client()
    assert _log_in(fourth, ADMIN, PASSWORD) == 302
    assert _logged_in(fourth)


def test_a_code_from_the_app_opens_one_session_only(
    client: FlaskClient, sessions: sessionmaker[Session], admin: int
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    secret, _ = _turn_on(client)
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: the current one is used
    first = client.application.test_client()
    assert _log_in(first, ADMIN, PASSWORD) == 302
    assert _second_step(first, code) == 302
    replay = client.application.test_client()
    assert _log_in(replay, ADMIN, PASSWORD) == 302
    assert _second_step(replay, code) == 401
    assert not _logged_in(replay)


def test_wrong_codes_count_as_failed_logins(
    client: FlaskClient, sessions: sessionmaker[Session], admin: int
) -> None:
    assert _log_in(client, ADMIN, PASSWORD) == 302
    secret, _ = _turn_on(client)  # one wrong code there already
    other = client.application.test_client()
    assert _log_in(other, ADMIN, PASSWORD) == 302
    statuses = [_second_step(other, "999999") for _ in range(4)]
    assert statuses == [401, 401, 401, 401]
    # Five failures on the account: even the right code waits now.
    response = _post(other, "/login/code", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert not _logged_in(other)


def test_the_second_step_expires_and_cannot_be_reached_without_the_password(
    client: FlaskClient, admin: int
) -> None:
    response = client.get("/login/code", environ_base=REMOTE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    with client.session_transaction() as cookie:
        cookie["pending_login"] = {"id": admin, "at": int(time.time()) - 301, "fp": "x"}
    assert client.get("/login/code", environ_base=REMOTE).status_code == 302


# --- the first admin --------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "127.8.9.10"])
def test_the_first_visit_from_loopback_creates_the_first_admin(
    client: FlaskClient, sessions: sessionmaker[Session], peer: str
) -> None:
    local = {"REMOTE_ADDR": peer}
    login = client.get("/login", environ_base=local).get_data(as_text=True)
    assert 'action="/setup"' in login
    assert 'name="password"' not in login
    page = client.get("/setup", environ_base=local).get_data(as_text=True)
    assert 'action="/setup"' in page
    token = CSRF.search(login)
    assert token is not None
    data = {
        "email": "premier@exemple.fr",
        "name": "Première",
        "new_password": PASSWORD,
        "confirm_password": PASSWORD,
        "csrf_token": token.group(1),
    }
    response = client.post("/setup", data=data, environ_base=local)
    assert response.status_code == 302
    assert client.get("/account/", environ_base=local).status_code == 200
    with sessions() as session:
        [editor] = session.scalars(select(Editor))
        assert editor.role is EditorRole.ADMIN
        assert editor.email == "premier@exemple.fr"
    assert _actions(sessions) == ["editor.create"]
    # Once any editor exists, /setup is gone, from anywhere.
    assert client.get("/setup", environ_base=local).status_code == 404
    after = client.get("/login", environ_base=local)
    assert after.status_code == 200
    fresh = CSRF.search(after.get_data(as_text=True))
    assert fresh is not None
    data["csrf_token"] = fresh.group(1)
    assert client.post("/setup", data=data, environ_base=local).status_code == 404


def test_the_first_admin_cannot_be_created_from_another_address(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    login = client.get("/login", environ_base=REMOTE)
    assert login.status_code == 200
    assert "hebdo editors create EMAIL --role admin" in login.get_data(as_text=True)
    page = client.get("/setup", environ_base=REMOTE)
    assert page.status_code == 403
    assert "hebdo editors create EMAIL --role admin" in page.get_data(as_text=True)
    token = _csrf(client, "/login")
    data = {
        "email": "intrus@exemple.fr",
        "new_password": PASSWORD,
        "confirm_password": PASSWORD,
        "csrf_token": token,
    }
    assert client.post("/setup", data=data, environ_base=REMOTE).status_code == 403
    # A forged X-Forwarded-For is not believed (no proxy is configured).
    forged = client.post(
        "/setup", data=data, environ_base=REMOTE, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert forged.status_code == 403
    with sessions() as session:
        assert session.scalar(select(Editor)) is None


def test_odd_input_to_the_first_admin_form_is_refused_calmly(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    local = {"REMOTE_ADDR": "127.0.0.1"}
    page = client.get("/setup", environ_base=local).get_data(as_text=True)
    match = CSRF.search(page)
    assert match is not None
    token = match.group(1)
    odd = {
        "email": ["", "x" * 10_000, "a@b", "é" * 300, "a\r\nb@exemple.fr", "pas une adresse"],
        "new_password": ["", "court", "x" * 10_000],
    }
    for field, values in odd.items():
        for value in values:
            data = {
                "email": "premier@exemple.fr",
                "name": "",
                "new_password": PASSWORD,
                "confirm_password": PASSWORD,
                "csrf_token": token,
            }
            data[field] = value
            if field == "new_password":
                data["confirm_password"] = value
            response = client.post("/setup", data=data, environ_base=local)
            assert response.status_code == 400, (field, value[:20])
    with sessions() as session:
        assert session.scalar(select(Editor)) is None
    # A hostile name is cleaned to one short line, as every name is.
    data = {
        "email": "premier@exemple.fr",
        "name": "Ada\r\nBcc: x@exemple.fr" + "x" * 10_000,
        "new_password": PASSWORD,
        "confirm_password": PASSWORD,
        "csrf_token": token,
    }
    assert client.post("/setup", data=data, environ_base=local).status_code == 302
    with sessions() as session:
        [editor] = session.scalars(select(Editor))
        assert editor.name.startswith("Ada Bcc: x@exemple.fr")
        assert len(editor.name) <= 200
