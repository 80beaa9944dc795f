"""The preview shows the exact message a subscriber gets, and the form sends it as a test.

Requests go through the real app (CSRF on) against a migrated SQLite database; test
messages go to a real SMTP server on a free port.
"""

from __future__ import annotations

import email
import html
import re
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Delivery, Edition, Event
from service.team import editors
from tests import factories
from tests.support.smtp import RecordingSmtpServer

GMAIL_CLIP_BYTES = 102 * 1024


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))


@pytest.fixture
def edition(session: Session) -> Edition:
    """The French sample edition, as a draft."""
    letter = factories.newsletter(session)
    found = factories.edition(session, letter)
    session.commit()
    return found


@pytest.fixture
def editor_client(client: FlaskClient, session: Session) -> FlaskClient:
    """A client logged in as an editor."""
    editor = editors.create(session, "redaction@hebdo.example", "un mot de passe solide")
    editor.language = "en"  # English pages (else: the newsletter's language)
    token = editors.open_session(session, editor)
    session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    return client


def _message(client: FlaskClient, edition_id: int) -> EmailMessage:
    response = client.get(f"/editions/{edition_id}/preview/message.eml")
    assert response.status_code == 200
    return email.message_from_bytes(response.data, _class=EmailMessage, policy=policy.default)


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def test_preview_needs_a_logged_in_editor(client: FlaskClient, edition: Edition) -> None:
    response = client.get(f"/editions/{edition.id}/preview")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert client.get(f"/editions/{edition.id}/preview/message.html").status_code == 302


def test_preview_greets_the_sample_recipient_in_both_parts(
    editor_client: FlaskClient, edition: Edition
) -> None:
    page = editor_client.get(f"/editions/{edition.id}/preview").get_data(as_text=True)
    assert "Marie Exemple &lt;lecteur@example.org&gt;" in page
    assert "Bonjour Marie Exemple," in page  # the text part, shown on the page
    frame = editor_client.get(f"/editions/{edition.id}/preview/message.html")
    assert "Bonjour Marie Exemple," in frame.get_data(as_text=True)
    assert frame.headers["Content-Security-Policy"].startswith("sandbox")
    assert 'width="375"' in page
    assert 'width="1200"' in page


def test_preview_frames_show_the_html_part_of_the_message_as_sent(
    editor_client: FlaskClient, edition: Edition
) -> None:
    message = _message(editor_client, edition.id)
    assert message["To"] == "Marie Exemple <lecteur@example.org>"
    assert message["Subject"] == edition.subject
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    frame = editor_client.get(f"/editions/{edition.id}/preview/message.html")
    assert frame.get_data(as_text=True) == html_part.get_content()
    assert "HEBDOx" not in frame.get_data(as_text=True)


def test_html_part_is_under_gmail_clipping_limit_and_every_image_has_alt(
    editor_client: FlaskClient, edition: Edition
) -> None:
    frame = editor_client.get(f"/editions/{edition.id}/preview/message.html")
    assert len(frame.data) < GMAIL_CLIP_BYTES
    parser = _Images()
    parser.feed(frame.get_data(as_text=True))
    assert parser.images, "the sample edition has a header image"
    for image in parser.images:
        assert image.get("alt") is not None, image
        if image.get("width") != "1":  # the tracking pixel is decorative: alt=""
            assert image["alt"], image
    page = editor_client.get(f"/editions/{edition.id}/preview").get_data(as_text=True)
    kilobytes = f"{len(frame.data) / 1024:.1f} KB of 102.0 KB"
    assert kilobytes in page
    assert "Under Gmail" in page


def test_text_part_names_every_news_item_and_its_source(
    editor_client: FlaskClient, edition: Edition
) -> None:
    text_part = _message(editor_client, edition.id).get_body(preferencelist=("plain",))
    assert text_part is not None
    text = text_part.get_content()
    page = html.unescape(
        editor_client.get(f"/editions/{edition.id}/preview").get_data(as_text=True)
    )
    data = factories.sample_data("fr")
    assert len(data["items"]) >= 3
    for item in data["items"]:
        assert item["title"] in text
        assert item["source_url"] in text
        assert item["title"] in page
    for read in data["related"]:
        assert read["url"] in text


def test_preview_speaks_the_language_asked_for(
    editor_client: FlaskClient, edition: Edition
) -> None:
    french = editor_client.get(f"/editions/{edition.id}/preview?lang=fr").get_data(as_text=True)
    assert "Aperçu de l'édition n° 1" in html.unescape(french)
    assert '<html lang="fr">' in french
    again = editor_client.get(f"/editions/{edition.id}/preview").get_data(as_text=True)
    assert "Envoyer un essai" in html.unescape(again)  # the choice sticks
    english = editor_client.get(f"/editions/{edition.id}/preview?lang=en").get_data(as_text=True)
    assert "Preview of edition 1" in english
    assert '<html lang="en">' in english


def test_edition_page_links_to_the_preview(editor_client: FlaskClient, edition: Edition) -> None:
    page = editor_client.get(f"/editions/{edition.id}").get_data(as_text=True)
    assert f'href="/editions/{edition.id}/preview"' in page


def test_test_send_form_mails_the_edition_and_records_nothing(
    editor_client: FlaskClient,
    edition: Edition,
    session: Session,
    smtp_server: RecordingSmtpServer,
) -> None:
    page = editor_client.get(f"/editions/{edition.id}/preview").get_data(as_text=True)
    response = editor_client.post(
        f"/editions/{edition.id}/test-send",
        data={"csrf_token": _csrf(page), "addresses": "Relecture@Example.org, chef@example.org"},
    )
    assert response.status_code == 302
    received = smtp_server.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in received) == ["chef@example.org", "relecture@example.org"]
    assert all(m.parsed()["Subject"].startswith("[ESSAI] ") for m in received)
    shown = editor_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Essai envoyé" in html.unescape(shown) or "Test sent to" in shown
    assert session.scalar(select(func.count()).select_from(Delivery)) == 0
    assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_test_send_form_keeps_the_typed_addresses_when_one_is_invalid(
    editor_client: FlaskClient, edition: Edition, smtp_server: RecordingSmtpServer
) -> None:
    page = editor_client.get(f"/editions/{edition.id}/preview?lang=en").get_data(as_text=True)
    typed = "ok@example.org\nnot-an-address"
    response = editor_client.post(
        f"/editions/{edition.id}/test-send", data={"csrf_token": _csrf(page), "addresses": typed}
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Not a valid address: not-an-address" in body
    assert f">{typed}</textarea>" in body
    assert smtp_server.messages == []
