"""The public archive: sent editions at stable URLs, an index per newsletter, an Atom feed.

Nothing in the archive is personal: no greeting, no pixel, no tracked link, no token.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from service.models import Edition, EditionStatus, Newsletter
from tests import factories

ATOM = "{http://www.w3.org/2005/Atom}"
# The app's own per-delivery links (pixel, clicks, unsubscribe, preferences, feedback).
PERSONAL = re.compile(r"http://hebdo\.test/(o|c|u|p|f)/|HEBDOx")


def _edition(
    session: Session, letter: Newsletter, status: EditionStatus, day: int, subject: str
) -> Edition:
    data = factories.sample_data(letter.language) | {"subject": subject}
    edition = factories.edition(session, letter, letter.language)
    edition.subject = data["subject"]
    edition.status = status
    if status == EditionStatus.SENT:
        edition.sent_at = datetime(2025, 1, day, 8, 0, tzinfo=UTC)
    return edition


@pytest.fixture
def letter(session: Session) -> Newsletter:
    """A French newsletter with two sent editions, one being sent and one draft."""
    letter = factories.newsletter(session)
    _edition(session, letter, EditionStatus.SENT, 18, "Première semaine")
    _edition(session, letter, EditionStatus.SENT, 25, "Deuxième semaine")
    _edition(session, letter, EditionStatus.SENDING, 26, "En cours d'envoi")
    _edition(session, letter, EditionStatus.DRAFT, 27, "Brouillon secret")
    session.commit()
    return letter


def _feed(client: FlaskClient, slug: str) -> ET.Element:
    response = client.get(f"/archive/{slug}/feed.atom")
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    return ET.fromstring(response.data)  # noqa: S314 - our own feed, parsed to check it


def test_index_lists_only_sent_editions_newest_first(
    client: FlaskClient, letter: Newsletter
) -> None:
    response = client.get("/archive/lettre/")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert page.index("Deuxième semaine") < page.index("Première semaine")
    assert 'href="/archive/lettre/1"' in page
    assert 'href="/archive/lettre/2"' in page
    assert "En cours d'envoi" not in page
    assert "Brouillon secret" not in page
    assert "Semaine du 18 au 25 janvier 2025" in page
    assert '<html lang="fr">' in page
    assert "Flux Atom" in page


def test_index_of_an_english_newsletter_is_in_english(
    client: FlaskClient, session: Session
) -> None:
    letter = factories.newsletter(session, slug="weekly", language="en")
    _edition(session, letter, EditionStatus.SENT, 25, "First week")
    session.commit()
    page = html.unescape(client.get("/archive/weekly/").get_data(as_text=True))
    assert "Week of 25 January \u2013 1 February 2025" in page
    assert "Atom feed" in page
    assert '<html lang="en">' in page


def test_unknown_newsletter_has_no_archive(client: FlaskClient) -> None:
    assert client.get("/archive/nowhere/").status_code == 404
    assert client.get("/archive/nowhere/feed.atom").status_code == 404


def test_feed_is_atom_with_one_entry_per_sent_edition(
    client: FlaskClient, letter: Newsletter
) -> None:
    feed = _feed(client, "lettre")
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{name}") is not None, name
    links = {link.get("rel"): link.get("href") for link in feed.findall(f"{ATOM}link")}
    assert links["self"] == "http://hebdo.test/archive/lettre/feed.atom"
    assert links["alternate"] == "http://hebdo.test/archive/lettre/"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["Deuxième semaine", "Première semaine"]
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == 2
    assert all(i and i.startswith("tag:hebdo.test,") for i in ids)
    preheader = factories.sample_data("fr")["preheader"]
    for entry in entries:
        updated = entry.findtext(f"{ATOM}updated")
        assert updated
        assert datetime.fromisoformat(updated).tzinfo is not None
        link = entry.find(f"{ATOM}link")
        assert link is not None
        assert link.get("href", "").startswith("http://hebdo.test/archive/")
        assert entry.findtext(f"{ATOM}summary") == preheader
        content = entry.find(f"{ATOM}content")
        assert content is not None
        assert content.get("type") == "html"
        assert "<h2>" in (content.text or "")
        assert not PERSONAL.search(content.text or "")
    assert feed.findtext(f"{ATOM}updated") == "2025-01-25T08:00:00+00:00"


def test_feed_of_a_newsletter_without_sent_editions_is_valid_and_empty(
    client: FlaskClient, session: Session
) -> None:
    factories.newsletter(session, slug="vide")
    session.commit()
    feed = _feed(client, "vide")
    assert feed.findall(f"{ATOM}entry") == []
    assert feed.findtext(f"{ATOM}updated")


def test_archive_copy_carries_no_personal_tracking(client: FlaskClient, letter: Newsletter) -> None:
    response = client.get("/archive/lettre/1")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert not PERSONAL.search(page), PERSONAL.search(page)
    assert ".gif" not in page
    data = factories.sample_data("fr")
    assert all(f'href="{item["source_url"]}"' in page for item in data["items"])
    assert "Bonjour" not in page
    assert client.get("/archive/lettre/1").get_data(as_text=True) == page  # cached, same bytes


def test_drafts_are_not_in_the_archive(client: FlaskClient, letter: Newsletter) -> None:
    assert client.get("/archive/lettre/4").status_code == 404
    assert client.get("/archive/lettre/3").status_code == 200  # being sent: links already out
