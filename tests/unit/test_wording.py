"""Week and date labels, name lists and fixed wording in French and English.

The fixed wording is the gettext catalogue's (service.translations), asked for by its English.
"""

from __future__ import annotations

import string
from datetime import date

import pytest

from service import translations
from service.mail.wording import date_label, join_names, week_label
from service.translations import translator


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2025, 1, 18), date(2025, 1, 25), "Semaine du 18 au 25 janvier 2025"),
        (date(2025, 1, 30), date(2025, 2, 6), "Semaine du 30 janvier au 6 février 2025"),
        (date(2024, 12, 28), date(2025, 1, 4), "Semaine du 28 décembre 2024 au 4 janvier 2025"),
        (date(2025, 2, 1), date(2025, 2, 8), "Semaine du 1er au 8 février 2025"),
        (date(2025, 1, 25), date(2025, 2, 1), "Semaine du 25 janvier au 1er février 2025"),
        (date(2025, 8, 11), date(2025, 8, 18), "Semaine du 11 au 18 août 2025"),
        (date(2025, 3, 5), date(2025, 3, 5), "Semaine du 5 mars 2025"),
    ],
)
def test_french_week_label_names_month_and_year_only_where_they_change(
    start: date, end: date, expected: str
) -> None:
    assert week_label(start, end, "fr") == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2025, 1, 18), date(2025, 1, 25), "Week of 18\u201325 January 2025"),
        (date(2025, 1, 30), date(2025, 2, 6), "Week of 30 January \u2013 6 February 2025"),
        (date(2024, 12, 28), date(2025, 1, 4), "Week of 28 December 2024 \u2013 4 January 2025"),
        (date(2025, 2, 1), date(2025, 2, 8), "Week of 1\u20138 February 2025"),
        (date(2025, 3, 5), date(2025, 3, 5), "Week of 5 March 2025"),
    ],
)
def test_english_week_label_uses_en_dashes(start: date, end: date, expected: str) -> None:
    assert week_label(start, end, "en") == expected


def test_week_label_refuses_a_week_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        week_label(date(2025, 1, 25), date(2025, 1, 18), "fr")


@pytest.mark.parametrize(
    ("day", "language", "expected"),
    [
        (date(2025, 1, 22), "fr", "Le 22 janvier 2025"),
        (date(2025, 2, 1), "fr", "Le 1er février 2025"),
        (date(2024, 12, 31), "fr", "Le 31 décembre 2024"),
        (date(2025, 1, 22), "en", "22 January 2025"),
        (date(2025, 2, 1), "en", "1 February 2025"),
    ],
)
def test_date_label(day: date, language: str, expected: str) -> None:
    assert date_label(day, language) == expected


@pytest.mark.parametrize(
    ("names", "language", "expected"),
    [
        ([], "fr", ""),
        (["Paul Jorion"], "fr", "Paul Jorion"),
        (["Paul Jorion", "Jueun Ahn"], "fr", "Paul Jorion et Jueun Ahn"),
        (["A", "B", "C"], "fr", "A, B et C"),
        (["Paul Jorion", "Jueun Ahn"], "en", "Paul Jorion and Jueun Ahn"),
        (["A", "B", "C"], "en", "A, B and C"),
    ],
)
def test_join_names_reads_as_prose(names: list[str], language: str, expected: str) -> None:
    assert join_names(names, language) == expected


def test_region_tags_fall_back_to_their_language() -> None:
    assert date_label(date(2025, 1, 22), "fr-CA") == "Le 22 janvier 2025"
    assert translator("en_US")("Unsubscribe") == "Unsubscribe"
    assert translator("fr-CA")("Unsubscribe") == "Se désabonner"


def test_unsupported_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        week_label(date(2025, 1, 18), date(2025, 1, 25), "de")


# The email templates' fixed words, by their English (the msgid).
EMAIL_WORDS = (
    "Hello {name},",
    "Hello,",
    "By {authors}",
    "No. {number}",
    "Synthesis",
    "News",
    "Read more:",
    "Did you enjoy this edition?",
    "One click is enough: your answers shape the next editions.",
    "Yes, very much",
    "Not really",
    "Further reading",
    "View in your browser",
    "You are receiving this email because you subscribed to {newsletter}.",
    "Manage my preferences",
    "Unsubscribe",
)


def test_both_languages_have_the_same_keys_and_fields() -> None:
    french = translations.messages("fr").single
    for message in EMAIL_WORDS:
        assert message in french, message
        assert _fields(french[message]) == _fields(message), message


def test_wording_formats_its_fields() -> None:
    fr, en = translator("fr"), translator("en")
    assert fr("Did you enjoy this edition?") == "Avez-vous apprécié ce contenu ?"
    assert en("Did you enjoy this edition?") == "Did you enjoy this edition?"
    assert fr("Hello {name},", name="Marie") == "Bonjour Marie,"
    assert en("By {authors}", authors="A and B") == "By A and B"
    assert fr(
        "You are receiving this email because you subscribed to {newsletter}.", newsletter="Hebdo"
    ) == ("Vous recevez cette lettre car vous vous êtes abonné·e à Hebdo.")
    assert fr("Further reading") == "À lire également"
    assert fr("Read more:") == "Lire plus ?"


def test_wording_cannot_be_modified() -> None:
    with pytest.raises(TypeError):
        translations.messages("fr").single["Unsubscribe"] = "x"  # type: ignore[index]


def _fields(pattern: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(pattern) if name}
