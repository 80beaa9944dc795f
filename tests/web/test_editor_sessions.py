"""Editor login, sessions and the headers that guard them, through the real app (CSRF on).

Each finding of issue 9 item 6 has its test here: the open redirect through `next`,
the login that never slowed down, and the session cookie that outlived its logout.
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.app import create_app
from service.cli import cli
from service.config import Settings
from service.models import EditorSession
from service.team import editors

EDITOR = "redaction@exemple.fr"
OTHER = "maquette@exemple.fr"
PASSWORD = "une-phrase-de-passe"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def _post_login(
    client: FlaskClient, email: str = EDITOR, password: str = PASSWORD, query: str = ""
) -> tuple[int, str, dict[str, str]]:
    token = _token(client, "/login")
    response = client.post(
        "/login" + query, data={"email": email, "password": password, "csrf_token": token}
    )
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


def _log_in(client: FlaskClient, email: str = EDITOR, password: str = PASSWORD) -> None:
    status, _, _ = _post_login(client, email, password)
    assert status == 302, "login refused"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


def _with_cookie(app: Flask, value: str) -> FlaskClient:
    """A fresh client (another browser, or an attacker) presenting a saved cookie."""
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def _opens_subscribers(client: FlaskClient) -> bool:
    response = client.get("/subscribers/")
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


@pytest.fixture
def accounts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        editors.create(session, EDITOR, PASSWORD)
        editors.create(session, OTHER, PASSWORD)


# --- next= ------------------------------------------------------------------------------

HOSTILE_NEXT = [
    "/%09/evil.example",  # the finding: a tab the browser drops, leaving //evil.example
    "/%0A/evil.example",  # the finding's 500
    "/%0D%0A/evil.example",
    "%0D%0ALocation:%20http://evil.example",
    "//evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%5Cevil.example",
    "/%5C/evil.example",
    "%5C%5Cevil.example",
    "http://evil.example",
    "https:evil.example",
    "HTTPS://evil.example/",
    "javascript:alert(1)",
    "%20//evil.example",
    "/%E3%80%82/evil.example",  # ideographic full stop
    "%EF%BC%8F%EF%BC%8Fevil.example",  # two fullwidth solidus characters
    "/%E2%80%AE/evil.example",  # right-to-left override
    "/%00/evil.example",
    "",
    "evil.example",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_next_that_is_not_a_same_site_path_goes_home(
    client: FlaskClient, accounts: None, target: str
) -> None:
    if "%00" in target:
        # Every door refuses a NUL in the address before the login sees it.
        assert client.get(f"/login?next={target}").status_code == 400
        assert _post_login(client, query=f"?next={target}")[0] == 400
        return
    assert client.get(f"/login?next={target}").status_code == 200
    status, _, headers = _post_login(client, query=f"?next={target}")
    assert status == 302
    assert headers["Location"] == "/"


@pytest.mark.parametrize(
    "target", ["/subscribers/", "/subscribers/?q=autre.org&status=active", "/editions/3"]
)
def test_next_keeps_a_same_site_path(client: FlaskClient, accounts: None, target: str) -> None:
    status, _, headers = _post_login(client, query=f"?next={quote(target, safe='')}")
    assert status == 302
    assert headers["Location"] == target


def test_the_login_page_sent_from_an_editor_page_comes_back_to_it(
    client: FlaskClient, accounts: None
) -> None:
    login = client.get("/subscribers/?q=autre.org").headers["Location"]
    status, _, headers = _post_login(client, query=login.removeprefix("/login"))
    assert status == 302
    assert headers["Location"] == "/subscribers/?q=autre.org"


# --- throttling -------------------------------------------------------------------------


def test_wrong_passwords_lock_the_account_and_the_right_one_is_refused_too(
    backend: str, client: FlaskClient, accounts: None
) -> None:
    for _ in range(editors.FAILURES_PER_ACCOUNT):
        status, _, _ = _post_login(client, password="pas-le-bon-mot")
        assert status == 401
    status, page, headers = _post_login(client, password="pas-le-bon-mot")
    assert status == 429
    wait = int(headers["Retry-After"])
    assert 0 < wait <= editors.LOGIN_WINDOW_SECONDS
    assert "Too many failed attempts" in page
    assert re.search(r"Try again in \d+ minutes?", page)

    status, page, headers = _post_login(client)  # the right password: no oracle
    assert status == 429
    assert "Retry-After" in headers
    assert not _opens_subscribers(client)

    # Another account from another address is not held back by this one.
    elsewhere = client.application.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    _log_in(elsewhere, OTHER)


def test_an_unknown_address_is_throttled_the_same_way(client: FlaskClient) -> None:
    statuses = [
        _post_login(client, "personne@exemple.fr", "pas-le-bon-mot")[0]
        for _ in range(editors.FAILURES_PER_ACCOUNT + 1)
    ]
    assert statuses == [401] * editors.FAILURES_PER_ACCOUNT + [429]


def test_one_address_guessing_many_accounts_is_locked_out(
    backend: str, client: FlaskClient, accounts: None
) -> None:
    for n in range(editors.FAILURES_PER_ADDRESS):
        status, _, _ = _post_login(client, f"essai{n}@exemple.fr", "pas-le-bon-mot")
        assert status == 401
    status, _, headers = _post_login(client)  # a real account, the right password
    assert status == 429
    assert int(headers["Retry-After"]) > 0

    elsewhere = client.application.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.4"
    _log_in(elsewhere)


def test_the_client_address_comes_from_the_trusted_proxy(
    settings: Settings, accounts: None
) -> None:
    app = create_app(replace(settings, proxies=1))
    first = app.test_client()
    first.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.7"
    for n in range(editors.FAILURES_PER_ADDRESS):
        assert _post_login(first, f"essai{n}@exemple.fr", "pas-le-bon-mot")[0] == 401
    assert _post_login(first)[0] == 429

    # Same socket address (the proxy's), another client behind it: not locked.
    second = app.test_client()
    second.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.8"
    _log_in(second)


def test_an_admin_lifts_the_lock_from_the_command_line(
    backend: str, env: dict[str, str], client: FlaskClient, accounts: None
) -> None:
    for _ in range(editors.FAILURES_PER_ACCOUNT):
        _post_login(client, password="pas-le-bon-mot")
    assert _post_login(client)[0] == 429

    result = CliRunner(env=env).invoke(cli, ["editors", "unlock", EDITOR.upper()])
    assert result.exit_code == 0, result.output
    assert f"unlocked {EDITOR}" in result.output
    _log_in(client)

    unknown = CliRunner(env=env).invoke(cli, ["editors", "unlock", "personne@exemple.fr"])
    assert unknown.exit_code != 0
    assert "no editor" in unknown.output


def test_an_admin_lifts_an_address_lock_from_the_command_line(
    env: dict[str, str], client: FlaskClient, accounts: None
) -> None:
    for n in range(editors.FAILURES_PER_ADDRESS):
        _post_login(client, f"essai{n}@exemple.fr", "pas-le-bon-mot")
    assert _post_login(client)[0] == 429
    result = CliRunner(env=env).invoke(cli, ["editors", "unlock", EDITOR, "--address", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    _log_in(client)


# --- server-side sessions ---------------------------------------------------------------


def test_a_cookie_saved_before_logout_no_longer_opens_editor_pages(
    backend: str, app: Flask, client: FlaskClient, accounts: None
) -> None:
    _log_in(client)
    saved = _cookie(client)
    assert _opens_subscribers(_with_cookie(app, saved))

    client.post("/logout", data={"csrf_token": _token(client, "/subscribers/")})
    assert not _opens_subscribers(client)
    assert not _opens_subscribers(_with_cookie(app, saved))


def test_log_out_everywhere_ends_the_sessions_of_other_browsers(
    backend: str, app: Flask, client: FlaskClient, accounts: None
) -> None:
    _log_in(client)
    saved = _cookie(client)
    colleague = app.test_client()
    _log_in(colleague, OTHER)

    laptop = app.test_client()
    _log_in(laptop)
    response = laptop.post(
        "/account/logout-everywhere", data={"csrf_token": _token(laptop, "/account/")}
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")

    assert not _opens_subscribers(laptop)
    assert not _opens_subscribers(client)
    assert not _opens_subscribers(_with_cookie(app, saved))
    assert _opens_subscribers(colleague), "another editor's session was ended too"


def test_log_out_everywhere_needs_a_csrf_token(
    app: Flask, client: FlaskClient, accounts: None
) -> None:
    _log_in(client)
    assert client.post("/account/logout-everywhere").status_code == 400
    assert _opens_subscribers(client)


def test_a_password_change_ends_every_other_session(
    backend: str,
    app: Flask,
    client: FlaskClient,
    accounts: None,
    sessions: sessionmaker[Session],
) -> None:
    _log_in(client)
    saved = _cookie(client)
    laptop = app.test_client()
    _log_in(laptop)

    new_password = "un-tout-autre-mot-de-passe"
    response = laptop.post(
        "/account/password",
        data={
            "csrf_token": _token(laptop, "/account/"),
            "current_password": PASSWORD,
            "new_password": new_password,
            "confirm_password": new_password,
        },
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Password changed" in response.get_data(as_text=True)

    assert _opens_subscribers(laptop), "the session that changed the password stays"
    assert not _opens_subscribers(client)
    assert not _opens_subscribers(_with_cookie(app, saved))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(EditorSession)) == 1

    assert _post_login(app.test_client())[0] == 401
    _log_in(app.test_client(), EDITOR, new_password)


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("pas-le-bon-mot", "un-tout-autre-mot", "un-tout-autre-mot", "current password is wrong"),
        (PASSWORD, "court", "court", "at least 10 characters"),
        (PASSWORD, "un-tout-autre-mot", "un-autre-encore", "do not match"),
    ],
)
def test_a_refused_password_change_says_why_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    accounts: None,
    current: str,
    new: str,
    confirm: str,
    message: str,
) -> None:
    _log_in(client)
    laptop = app.test_client()
    _log_in(laptop)
    response = client.post(
        "/account/password",
        data={
            "csrf_token": _token(client, "/account/"),
            "current_password": current,
            "new_password": new,
            "confirm_password": confirm,
        },
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert _opens_subscribers(laptop)
    _log_in(app.test_client())


def test_the_account_page_lists_the_editors_sessions(
    app: Flask, client: FlaskClient, accounts: None
) -> None:
    client.environ_base["HTTP_USER_AGENT"] = "Navigateur de test/1.0"
    _log_in(client)
    page = client.get("/account/").get_data(as_text=True)
    assert "Navigateur de test/1.0" in page
    assert "127.0.0.1" in page


def test_account_pages_need_a_login(client: FlaskClient) -> None:
    assert client.get("/account/").headers["Location"].startswith("/login")


# --- CSRF -------------------------------------------------------------------------------


def test_a_login_rotates_the_csrf_token(client: FlaskClient, accounts: None) -> None:
    before = _token(client, "/login")
    _log_in(client)
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert _opens_subscribers(client)
    assert _token(client, "/subscribers/") != before


def test_a_csrf_token_from_one_session_is_refused_in_another(
    app: Flask, client: FlaskClient, accounts: None
) -> None:
    _log_in(client)
    mine = _token(client, "/account/")
    other = app.test_client()
    _log_in(other)
    refused = other.post("/account/logout-everywhere", data={"csrf_token": mine})
    assert refused.status_code == 400
    assert _opens_subscribers(other)
    assert _opens_subscribers(client)


# --- headers ----------------------------------------------------------------------------


def test_hsts_and_a_secure_cookie_when_the_site_is_https(
    settings: Settings, accounts: None
) -> None:
    app = create_app(replace(settings, base_url="https://hebdo.example"))
    client = app.test_client()
    response = client.get("/login", base_url="https://hebdo.example")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_no_hsts_and_no_secure_cookie_over_plain_http(client: FlaskClient) -> None:
    response = client.get("/login")
    assert "Strict-Transport-Security" not in response.headers
    cookie = response.headers["Set-Cookie"]
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


# --- odd input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("redaction\x00@exemple.fr", PASSWORD),
        (EDITOR, "une-phrase\x00-de-passe"),
        ("a" * 100_000 + "@exemple.fr", PASSWORD),
        (EDITOR, "x" * 100_000),
        ("rédaction@exämple.fr", "é" * 20),
        ("", ""),
    ],
)
def test_odd_credentials_are_a_plain_refusal(
    backend: str, client: FlaskClient, accounts: None, email: str, password: str
) -> None:
    # A NUL is refused by every door (400) before the login sees it; the rest is a 401.
    expected = 400 if "\x00" in email + password else 401
    assert _post_login(client, email, password)[0] == expected


def test_an_odd_user_agent_is_recorded_cleaned(
    backend: str, client: FlaskClient, accounts: None
) -> None:
    client.environ_base["HTTP_USER_AGENT"] = "Robot\x00/1.0\x1b[31m" + "z" * 1000
    _log_in(client)
    page = client.get("/account/").get_data(as_text=True)
    assert "Robot /1.0 [31mzzz" in page
