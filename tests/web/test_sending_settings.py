"""The sending settings page: relays shown without their password, a test message through
one relay, DKIM keys generated into the instance folder; only admins act.

Real app (CSRF on, logins through the form), real SMTP servers, the audit table read back.
"""

from __future__ import annotations

import base64
import html
import re
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import AuditEntry, EditorRole
from tests.support import free_port
from tests.support.smtp import RecordingSmtpServer
from tests.web.logins import log_in, token

PAGE = "/settings/sending/"
SECRET = "Zq9-tres-secret-pw"
CLOSED_PORT = free_port()


@pytest.fixture
def settings(env: dict[str, str], smtp_server: RecordingSmtpServer) -> Settings:
    """Two relays: the recording server, then one with credentials on a closed port."""
    urls = f"{smtp_server.url},smtp://mailer:{SECRET}@127.0.0.1:{CLOSED_PORT}"
    return Settings.from_env({**env, "SMTP_URL": urls}, testing=True)


def _audit(sessions: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with sessions() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
        return rows


def _post(client: FlaskClient, path: str, data: dict[str, str]) -> tuple[int, str]:
    response = client.post(
        path, data={**data, "csrf_token": token(client, PAGE)}, follow_redirects=True
    )
    return response.status_code, response.get_data(as_text=True)


def test_the_page_lists_the_relays_with_the_password_masked(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    response = client.get(PAGE)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"127.0.0.1</td><td>{CLOSED_PORT}" in page
    assert "mailer" in page
    assert "••••" in page
    assert SECRET not in page
    assert SECRET not in html.unescape(page)
    assert "Send a test to me" in page


def test_send_a_test_to_me_delivers_through_the_relay_to_the_admin(
    client: FlaskClient, sessions: sessionmaker[Session], smtp_server: RecordingSmtpServer
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    status, page = _post(client, "/settings/sending/relays/test", {"relay": "0"})

    assert status == 200
    received = smtp_server.messages_for("admin@hebdo.example")
    assert len(received) == 1
    assert "test" in received[0].parsed()["Subject"].lower()
    assert "accepted a test message to admin@hebdo.example" in page
    rows = _audit(sessions, "settings.relay_test")
    assert len(rows) == 1
    assert '"accepted": true' in rows[0].detail


def test_a_relay_that_does_not_answer_is_reported_without_a_5xx(
    client: FlaskClient, sessions: sessionmaker[Session], smtp_server: RecordingSmtpServer
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    status, page = _post(client, "/settings/sending/relays/test", {"relay": "1"})

    assert status == 200
    assert f"127.0.0.1:{CLOSED_PORT} refused the test message" in page
    assert SECRET not in page
    assert smtp_server.messages == []
    rows = _audit(sessions, "settings.relay_test")
    assert len(rows) == 1
    assert '"accepted": false' in rows[0].detail


def test_a_relay_that_refuses_the_sender_gives_its_smtp_reply(
    client: FlaskClient, sessions: sessionmaker[Session], smtp_server: RecordingSmtpServer
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)
    smtp_server.sender_response = "550 5.7.1 Sender not allowed here"

    status, page = _post(client, "/settings/sending/relays/test", {"relay": "0"})

    assert status == 200
    assert "Sender not allowed here" in page
    assert smtp_server.messages == []


@pytest.mark.parametrize("garbage", ["", "7", "-1", "x", "9" * 40])
def test_an_unknown_relay_is_refused_without_a_5xx(
    client: FlaskClient, sessions: sessionmaker[Session], garbage: str
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    status, page = _post(client, "/settings/sending/relays/test", {"relay": garbage})

    assert status == 200
    assert "Choose a relay from the list." in page


def _published_key(page: str) -> str:
    record = re.search(
        r'<pre class="headers wrap-pre" id="generated-record">(.*?)</pre>', page, re.S
    )
    assert record, "no TXT record on the page"
    value = "".join(re.findall(r'"([^"]*)"', html.unescape(record[1])))
    tags = dict(part.strip().split("=", 1) for part in value.split(";") if "=" in part)
    return tags["p"]


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_generating_a_key_writes_a_private_file_and_shows_its_record(
    client: FlaskClient, sessions: sessionmaker[Session], settings: Settings, algorithm: str
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)
    form = {"selector": "hebdo2026", "domain": "Hebdo.Example", "algorithm": algorithm}

    status, page = _post(client, "/settings/sending/dkim/generate", form)

    assert status == 200
    files = list((settings.instance_path / "dkim").iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(files[0].read_bytes(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raw = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    assert _published_key(page) == base64.b64encode(raw).decode("ascii")
    assert "hebdo2026._domainkey.hebdo.example" in page
    assert str(files[0]) in html.unescape(page)
    rows = _audit(sessions, "settings.dkim_generate")
    assert len(rows) == 1

    again, page = _post(client, "/settings/sending/dkim/generate", form)

    assert again == 422
    assert list((settings.instance_path / "dkim").iterdir()) == files
    assert (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        == files[0].read_bytes()
    )


def test_a_bad_selector_is_refused_and_writes_nothing(
    client: FlaskClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)
    form = {"selector": "../../etc", "domain": "hebdo.example", "algorithm": "rsa"}

    status, _ = _post(client, "/settings/sending/dkim/generate", form)

    assert status == 422
    assert not (settings.instance_path / "dkim").exists()


@pytest.mark.parametrize("role", [EditorRole.VIEWER, EditorRole.EDITOR])
def test_a_viewer_or_an_editor_reads_the_page_and_every_action_is_refused(
    client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    role: EditorRole,
) -> None:
    log_in(client, sessions, role)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "Send a test to me" not in page.get_data(as_text=True)
    csrf = token(client, PAGE)  # the logout form in the header carries one

    tested = client.post("/settings/sending/relays/test", data={"relay": "0", "csrf_token": csrf})
    generated = client.post(
        "/settings/sending/dkim/generate",
        data={"selector": "s1", "domain": "hebdo.example", "algorithm": "rsa", "csrf_token": csrf},
    )

    assert (tested.status_code, generated.status_code) == (403, 403)
    assert smtp_server.messages == []
    assert not (settings.instance_path / "dkim").exists()
    assert _audit(sessions, "settings.relay_test") == []
    assert _audit(sessions, "settings.dkim_generate") == []


def test_the_nav_links_to_the_page_for_admins_only(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    assert f'href="{PAGE}"' in client.get("/").get_data(as_text=True)
