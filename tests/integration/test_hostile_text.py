"""Hostile names and addresses through the real doors, up to the bytes the relay receives.

A reader signs up on the public form (or arrives by CSV or the CLI), confirms through the
link mailed to them, and an edition goes out through the send loop (loop.send_pending,
what the worker task runs) to the recording SMTP server. The tests read what that server
received: envelope, raw header block, parsed headers.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordedMessage, RecordingSmtpServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
INJECTED = "Jeanne\r\nBcc: x@evil.example\r\nX-Injected: yes"
IDN = "lectrice@exämple.fr"
IDN_ASCII = "lectrice@xn--exmple-cua.fr"
UTF8_LOCAL = "josé@exemple.fr"


def _page(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _sign_up(client: FlaskClient, address: str, name: str = "", slug: str = "lettre") -> Any:
    path = f"/n/{slug}/subscribe"
    match = CSRF.search(_page(client.get(path)))
    assert match is not None
    data = {"email": address, "name": name, "language": "fr", "csrf_token": match.group(1)}
    return client.post(path, data=data, environ_base={"REMOTE_ADDR": "203.0.113.9"})


def _confirm_from(client: FlaskClient, message: RecordedMessage) -> None:
    body = message.parsed().get_body(("plain",))
    assert body is not None
    (link,) = {u for u in re.findall(r"https?://\S+", body.get_content()) if "/confirm/" in u}
    path = urlsplit(link).path
    match = CSRF.search(_page(client.get(path)))
    assert match is not None
    assert client.post(path, data={"csrf_token": match.group(1)}).status_code == 200


def _header_block(message: RecordedMessage) -> bytes:
    return message.data.split(b"\r\n\r\n", 1)[0]


def _send_edition(sessions: sessionmaker[Session], settings: Settings, slug: str = "lettre") -> int:
    with sessions.begin() as session:
        letter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
        assert letter is not None
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        edition_id = edition.id
    loop.send_pending(sessions, settings, edition_id)
    return edition_id


def _rows(sessions: sessionmaker[Session], edition_id: int) -> dict[str, Delivery]:
    with sessions() as session:
        found = session.scalars(select(Delivery).where(Delivery.edition_id == edition_id))
        return {row.email: row for row in found}


def _status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status


@pytest.fixture
def letter(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        return factories.newsletter(session).id


def test_a_line_break_in_a_signup_name_never_injects_a_header(
    backend: str,
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    assert _sign_up(client, "jeanne@exemple.fr", INJECTED).status_code == 200
    (confirmation,) = smtp_server.wait_for(1)
    assert b"Bcc" not in _header_block(confirmation).replace(b"Bcc: x@evil", b"")
    _confirm_from(client, confirmation)
    with sessions() as session:
        stored = session.scalar(select(Subscriber.name))
    assert stored == "Jeanne Bcc: x@evil.example X-Injected: yes"

    smtp_server.clear()
    edition_id = _send_edition(sessions, settings)

    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == ("jeanne@exemple.fr",)
    headers = _header_block(message)
    assert not re.search(rb"^(Bcc|X-Injected):", headers, re.MULTILINE)
    parsed = email.message_from_bytes(message.data, policy=email.policy.strict)
    assert parsed["Bcc"] is None
    assert parsed["X-Injected"] is None
    assert parsed["To"].addresses[0].display_name == "Jeanne Bcc: x@evil.example X-Injected: yes"
    assert parsed["To"].addresses[0].addr_spec == "jeanne@exemple.fr"
    text_part = parsed.get_body(("plain",))
    assert text_part is not None
    text = text_part.get_content()
    assert "Bonjour Jeanne Bcc: x@evil.example X-Injected: yes," in text
    assert _status(sessions, edition_id) is EditionStatus.SENT


def test_an_idn_address_signs_up_and_is_sent_to_in_ascii_form(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    response = _sign_up(client, IDN, "Léa")
    assert response.status_code == 200
    assert "Regardez votre boîte de réception" in _page(response)
    (confirmation,) = smtp_server.wait_for(1)
    assert confirmation.rcpt_tos == (IDN_ASCII,)
    _confirm_from(client, confirmation)
    with sessions() as session:
        subscriber = session.scalar(select(Subscriber))
        assert subscriber is not None
        # Stored as typed (Unicode domain); the ASCII form is for the wire.
        assert subscriber.email == IDN

    smtp_server.clear()
    edition_id = _send_edition(sessions, settings)

    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == (IDN_ASCII,)
    assert "SMTPUTF8" not in message.mail_options
    assert message.data.isascii()
    parsed = email.message_from_bytes(message.data, policy=email.policy.strict)
    assert not parsed["To"].defects
    assert parsed["To"].addresses[0].addr_spec == IDN_ASCII
    assert parsed["To"].addresses[0].display_name == "Léa"
    assert _rows(sessions, edition_id)[IDN].status is DeliveryStatus.SENT


def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_relay_offers_it(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    assert _sign_up(client, UTF8_LOCAL, "José").status_code == 200
    (confirmation,) = smtp_server.wait_for(1)
    assert confirmation.rcpt_tos == (UTF8_LOCAL,)
    assert "SMTPUTF8" in confirmation.mail_options
    _confirm_from(client, confirmation)

    smtp_server.clear()
    edition_id = _send_edition(sessions, settings)

    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == (UTF8_LOCAL,)
    assert "SMTPUTF8" in message.mail_options
    # RFC 6532: the header is UTF-8 as is. Python's parser reads such a header from
    # text, and flags a non-ASCII local part although RFC 6532 allows it.
    assert re.search(
        rb"^To: =\?utf-8\?b\?Sm9zw6k=\?= <jos\xc3\xa9@exemple\.fr>\r$", message.data, re.MULTILINE
    )
    parsed = email.message_from_string(message.data.decode(), policy=email.policy.SMTPUTF8)
    assert {type(d).__name__ for d in parsed["To"].defects} <= {"NonASCIILocalPartDefect"}
    assert parsed["To"].addresses[0].addr_spec == UTF8_LOCAL
    assert parsed["To"].addresses[0].display_name == "José"
    assert _rows(sessions, edition_id)[UTF8_LOCAL].status is DeliveryStatus.SENT


def test_without_smtputf8_that_one_delivery_fails_with_its_reason_and_the_rest_go_out(
    backend: str,
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.refuse_connections()
    smtp_server.smtputf8 = False
    smtp_server.accept_connections()
    # The form still answers, though the confirmation cannot go out through this relay.
    response = _sign_up(client, UTF8_LOCAL, "José")
    assert response.status_code == 200
    assert smtp_server.messages == []
    with sessions.begin() as session:
        letter_row = session.get(Newsletter, letter)
        assert letter_row is not None
        factories.readers(session, letter_row, 3)
        pending = session.scalar(
            select(Subscription).where(Subscription.subscriber.has(email=UTF8_LOCAL))
        )
        assert pending is not None
        pending.status = SubscriptionStatus.CONFIRMED  # as if confirmed through another relay

    edition_id = _send_edition(sessions, settings)

    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "r0@example.org", "r1@example.org", "r2@example.org",
    ]  # fmt: skip
    rows = _rows(sessions, edition_id)
    assert rows[UTF8_LOCAL].status is DeliveryStatus.FAILED
    assert rows[UTF8_LOCAL].last_error == "the relay does not accept SMTPUTF8"
    assert _status(sessions, edition_id) is EditionStatus.SENT
    with sessions() as session:
        # Not the mailbox's fault: the address stays deliverable through another relay.
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0
        jose = session.scalar(select(Subscriber).where(Subscriber.email == UTF8_LOCAL))
        assert jose is not None
        assert jose.status is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("door", ["form", "embed"])
def test_a_nul_in_a_signup_name_is_refused_with_a_message_and_nothing_is_stored(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session], door: str
) -> None:
    if door == "form":
        response = _sign_up(client, "nul@exemple.fr", "Jea\x00nne")
    else:  # the form pasted on other sites: no CSRF token
        response = client.post(
            "/n/lettre/subscribe/embed", data={"email": "nul@exemple.fr", "name": "Jea\x00nne"}
        )
    assert response.status_code == 400
    # Every web door refuses a NUL anywhere in a request, with this message, before
    # the view (and the name rule behind it) sees the form.
    assert "A NUL character is not allowed in a web address or a form field." in _page(response)
    assert "\x00" not in response.get_data(as_text=True)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_an_anonymous_signup_never_changes_a_stored_name(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        letter_row = session.get(Newsletter, letter)
        assert letter_row is not None
        (unnamed,) = factories.readers(session, letter_row, 1, prefix="sans-nom")
        unnamed.name = ""
        factories.readers(session, letter_row, 1, prefix="nomme")

    assert _sign_up(client, "sans-nom0@example.org", "Pas Moi").status_code == 200
    assert _sign_up(client, "nomme0@example.org", "Pas Moi Non Plus").status_code == 200

    with sessions() as session:
        names = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
    assert names == {"sans-nom0@example.org": "", "nomme0@example.org": "Lecteur 0"}


def test_the_preference_centre_cleans_a_name_and_refuses_a_nul(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session], settings: Settings
) -> None:
    from service.audience import signup

    with sessions.begin() as session:
        letter_row = session.get(Newsletter, letter)
        assert letter_row is not None
        (reader,) = factories.readers(session, letter_row, 1)
        token = signup.preferences_token(settings.secret_key, reader.id, reader.email)
    path = f"/p/{token}"

    def save(name: str, status: int = 200) -> str:
        match = CSRF.search(_page(client.get(path)))
        assert match is not None
        form = {"csrf_token": match.group(1), "name": name, "language": "fr", "newsletter": letter}
        response = client.post(path, data=form, follow_redirects=True)
        assert response.status_code == status
        return _page(response)

    save("Odile\r\nBcc: x@evil.example\u2028Fin")
    with sessions() as session:
        assert session.scalar(select(Subscriber.name)) == "Odile Bcc: x@evil.example Fin"
    page = save("Odi\x00le", status=400)  # refused at the door, before the view
    assert "A NUL character is not allowed in a web address or a form field." in page
    with sessions() as session:
        assert session.scalar(select(Subscriber.name)) == "Odile Bcc: x@evil.example Fin"


def test_csv_import_keeps_good_rows_and_names_the_line_and_reason_of_bad_ones(
    env: dict[str, str],
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    readers = tmp_path / "readers.csv"
    readers.write_bytes(
        (
            "email,name\r\n"
            'ok@example.org,"Ligne\r\nCassée"\r\n'  # one record over lines 2-3
            "nul@example.org,Nu\x00l\r\n"  # line 4
            f"{IDN},Léa\r\n"
            f"{UTF8_LOCAL},José\r\n"
            "tab@example.org,Tab\tulé\u2029Nom\r\n"
            "pas une adresse,Rien\r\n"  # line 8
        ).encode()
    )
    result = CliRunner(env=env).invoke(
        cli,
        ["subscribers", "import", str(readers), "--newsletter", "lettre",
         "--confirmed", "--reason", "test"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "line 4: nul@example.org: name: contains a NUL character" in result.output
    assert re.search(r"line 8: pas une adresse: .+", result.output)
    assert "rejected: 2" in result.output
    with sessions() as session:
        names = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
    assert names == {
        "ok@example.org": "Ligne Cassée",
        IDN: "Léa",
        UTF8_LOCAL: "José",
        "tab@example.org": "Tab ulé Nom",
    }

    edition_id = _send_edition(sessions, settings)
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == sorted(
        ["ok@example.org", IDN_ASCII, UTF8_LOCAL, "tab@example.org"]
    )
    assert _status(sessions, edition_id) is EditionStatus.SENT


def test_a_newsletter_created_with_line_breaks_in_its_names_sends_clean_headers(
    env: dict[str, str],
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    runner = CliRunner(env=env)

    def hebdo(*args: str) -> Any:
        return runner.invoke(cli, list(args), catch_exceptions=False)

    created = hebdo(
        "newsletters", "create", "--slug", "piege", "--sender", "piege@hebdo.example",
        "--name", "La Lettre\r\nBcc: x@evil.example",
        "--sender-name", "Rédaction\nX-Injected: yes",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    refused = hebdo(
        "newsletters", "create", "--slug", "nul", "--sender", "nul@hebdo.example",
        "--name", "Nu\x00l",
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "name: contains a NUL character" in refused.output
    bad_slug = hebdo(
        "newsletters", "create", "--slug", "a\r\nb", "--sender", "s@hebdo.example", "--name", "S"
    )
    assert bad_slug.exit_code == 1
    assert "slug" in bad_slug.output

    with sessions.begin() as session:
        letter = session.scalar(select(Newsletter).where(Newsletter.slug == "piege"))
        assert letter is not None
        assert (letter.name, letter.sender_name) == (
            "La Lettre Bcc: x@evil.example", "Rédaction X-Injected: yes",
        )  # fmt: skip
        assert session.scalar(select(func.count()).select_from(Newsletter)) == 1
        factories.readers(session, letter, 2)
    edition_id = _send_edition(sessions, settings, slug="piege")

    messages = smtp_server.wait_for(2)
    for message in messages:
        headers = _header_block(message)
        assert not re.search(rb"^(Bcc|X-Injected):", headers, re.MULTILINE)
        (list_id,) = re.findall(rb"^List-Id:.*$", headers, re.MULTILINE)
        assert list_id == b'List-Id: "La Lettre Bcc: x@evil.example" <piege.hebdo.test>\r'
        parsed = email.message_from_bytes(message.data, policy=email.policy.strict)
        assert parsed["From"].addresses[0].display_name == "Rédaction X-Injected: yes"
        assert parsed["From"].addresses[0].addr_spec == "piege@hebdo.example"
    assert _status(sessions, edition_id) is EditionStatus.SENT


def test_an_edition_subject_with_a_line_break_is_one_line_and_a_nul_is_refused(
    env: dict[str, str],
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    import json

    data = factories.sample_data()
    data["subject"] = "Semaine 4\r\nBcc: x@evil.example"
    data["preheader"] = "Aperçu\u2028suite"
    path = tmp_path / "edition.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    runner = CliRunner(env=env)
    loaded = runner.invoke(cli, ["editions", "load", str(path), "--newsletter", "lettre"])
    assert loaded.exit_code == 0, loaded.output
    with sessions.begin() as session:
        edition = session.scalar(select(Edition))
        assert edition is not None
        assert (edition.subject, edition.preheader) == (
            "Semaine 4 Bcc: x@evil.example", "Aperçu suite",
        )  # fmt: skip

    data["subject"] = "Nu\x00l"
    path.write_text(json.dumps(data), encoding="utf-8")
    refused = runner.invoke(cli, ["editions", "load", str(path), "--newsletter", "lettre"])
    assert refused.exit_code != 0
    assert "subject:" in refused.output
    assert "NUL character" in refused.output
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 1


def test_names_stored_before_the_rule_are_cleaned_on_the_way_out(
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        letter_row = session.get(Newsletter, letter)
        assert letter_row is not None
        (reader,) = factories.readers(session, letter_row, 1)
        # Written straight to the rows, as an older version let the doors do.
        reader.name = "Ancien\r\nBcc: x@evil.example"
        letter_row.sender_name = "Rédaction\nX-Injected: yes"
        letter_row.name = "Lettre\r\nBcc: y@evil.example"

    edition_id = _send_edition(sessions, settings)

    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == ("r0@example.org",)
    assert not re.search(rb"^(Bcc|X-Injected):", _header_block(message), re.MULTILINE)
    parsed = email.message_from_bytes(message.data, policy=email.policy.strict)
    assert parsed["To"].addresses[0].display_name == "Ancien Bcc: x@evil.example"
    assert parsed["From"].addresses[0].display_name == "Rédaction X-Injected: yes"
    assert _status(sessions, edition_id) is EditionStatus.SENT
