"""The same edition rendered for a French and an English newsletter.

The newsletter's language decides the email's: dates are written the way each
language writes them and the fixed wording changes; the editor's words do not.
Both renderings are checked, HTML and text parts alike.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from service.editions.store import apply_data
from service.mail.render import RenderedEdition, render_edition
from service.models import Edition, EditionStatus, Newsletter
from tests import factories

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"

FRENCH = {
    "week": "Semaine du 18 au 25 janvier 2025",
    "dateline": "Le 22 janvier 2025",
    "read_more": "Lire plus ?",
    "feedback": "Avez-vous apprécié ce contenu ?",
    "related": "À lire également",
    "by": "Par Paul Jorion et Jueun Ahn",
}
ENGLISH = {
    "week": "Week of 18\u201325 January 2025",
    "dateline": "22 January 2025",
    "read_more": "Read more:",
    "feedback": "Did you enjoy this edition?",
    "related": "Further reading",
    "by": "By Paul Jorion and Jueun Ahn",
}


def _render(language: str, *, personal: bool = True) -> RenderedEdition:
    letter = Newsletter(
        slug=f"lettre-{language}",
        name="Intelligence & Société",
        sender_name="Intelligence & Société",
        sender_email="lettre@hebdo.example",
        language=language,
        postal_address="12 rue des Lilas, 75011 Paris",
    )
    edition = Edition(newsletter=letter, number=7, status=EditionStatus.DRAFT)
    apply_data(edition, factories.sample_data("fr"))  # the same content for both
    return render_edition(
        edition, letter, base_url="https://hebdo.example", templates_path=TEMPLATES,
        personal=personal,
    )  # fmt: skip


@pytest.fixture(scope="module")
def french() -> RenderedEdition:
    """The sample edition in a French newsletter."""
    return _render("fr")


@pytest.fixture(scope="module")
def english() -> RenderedEdition:
    """The same edition in an English newsletter."""
    return _render("en")


@pytest.mark.parametrize("key", sorted(FRENCH))
def test_french_and_english_differ_in_dates_and_fixed_wording(
    french: RenderedEdition, english: RenderedEdition, key: str
) -> None:
    fr_html, en_html = html.unescape(french.html), html.unescape(english.html)
    # The text part writes section headings in capitals, hence casefold() there.
    fr_text, en_text = french.text.casefold(), english.text.casefold()
    assert FRENCH[key] in fr_html
    assert ENGLISH[key] in en_html
    assert FRENCH[key].casefold() in fr_text
    assert ENGLISH[key].casefold() in en_text
    assert ENGLISH[key] not in fr_html
    assert ENGLISH[key].casefold() not in fr_text
    assert FRENCH[key] not in en_html
    assert FRENCH[key].casefold() not in en_text


def test_the_editors_words_are_the_same_in_both(
    french: RenderedEdition, english: RenderedEdition
) -> None:
    data = factories.sample_data("fr")
    assert french.subject == english.subject == data["subject"]
    for item in data["items"]:
        assert item["title"] in french.text
        assert item["title"] in english.text
    assert '<html lang="fr"' in french.html
    assert '<html lang="en"' in english.html


def test_each_item_has_its_dateline_in_the_newsletter_language(
    french: RenderedEdition, english: RenderedEdition
) -> None:
    # The sample's items are dated 27 November 2024 and 22 to 25 January 2025.
    assert "Le 27 novembre 2024" in french.text
    assert "27 November 2024" in english.text
    for day in (22, 23, 24, 25):
        assert f"Le {day} janvier 2025" in french.text
        assert f"\n{day} January 2025\n" in english.text


def test_archive_renderings_keep_the_language_too() -> None:
    fr_archive, en_archive = _render("fr", personal=False), _render("en", personal=False)
    assert FRENCH["week"] in html.unescape(fr_archive.html)
    assert ENGLISH["week"] in html.unescape(en_archive.html)
    assert "Voir la version en ligne" in html.unescape(fr_archive.html)
    assert "View in your browser" in en_archive.html
