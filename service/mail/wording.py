"""Fixed wording and date labels of the emails, in French and English.

Pure functions: the templates receive `wording(lang)` as `t` and the labels
computed here; nothing in this module knows about editions or requests.
Values containing `{name}`-style fields are `str.format` patterns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from types import MappingProxyType

from babel.dates import format_date
from babel.lists import format_list

LANGUAGES = ("fr", "en")
EN_DASH = "\u2013"

# en_GB rather than en_US: day-month order and no serial comma, as the
# editors write it ("18 January 2025", "A, B and C").
_LOCALES = {"fr": "fr_FR", "en": "en_GB"}

_WORDING: dict[str, Mapping[str, str]] = {
    "fr": MappingProxyType(
        {
            "greeting": "Bonjour {name},",
            "greeting_anonymous": "Bonjour,",
            "by_authors": "Par {authors}",
            "edition_number": "N° {number}",
            "illustration_credit": "Illustration : {credit}",
            "synthesis_heading": "Synthèse",
            "news_heading": "Nouvelles",
            "read_more": "Lire plus ?",
            "feedback_question": "Avez-vous apprécié ce contenu ?",
            "feedback_hint": "Un clic suffit : vos réponses guident les prochaines éditions.",
            "feedback_yes": "Oui, beaucoup",
            "feedback_no": "Pas vraiment",
            "feedback_thanks": "Merci pour votre réponse !",
            "related_heading": "À lire également",
            "view_in_browser": "Voir la version en ligne",
            "footer_reason": (
                "Vous recevez cette lettre car vous vous êtes abonné·e à {newsletter}."
            ),
            "manage_preferences": "Gérer mes préférences",
            "unsubscribe": "Se désabonner",
        }
    ),
    "en": MappingProxyType(
        {
            "greeting": "Hello {name},",
            "greeting_anonymous": "Hello,",
            "by_authors": "By {authors}",
            "edition_number": "No. {number}",
            "illustration_credit": "Illustration: {credit}",
            "synthesis_heading": "Synthesis",
            "news_heading": "News",
            "read_more": "Read more:",
            "feedback_question": "Did you enjoy this edition?",
            "feedback_hint": "One click is enough: your answers shape the next editions.",
            "feedback_yes": "Yes, very much",
            "feedback_no": "Not really",
            "feedback_thanks": "Thank you for your answer!",
            "related_heading": "Further reading",
            "view_in_browser": "View in your browser",
            "footer_reason": "You are receiving this email because you subscribed to {newsletter}.",
            "manage_preferences": "Manage my preferences",
            "unsubscribe": "Unsubscribe",
        }
    ),
}


def _language(language: str) -> str:
    """Reduce a language tag such as "fr-FR" or "en_GB" to a supported language."""
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    if primary not in _LOCALES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return primary


def wording(language: str) -> Mapping[str, str]:
    """Return the read-only fixed wording of the emails in `language`."""
    return _WORDING[_language(language)]


def _day(d: date, lang: str) -> str:
    # French writes the first day of a month as an ordinal: "1er février".
    return "1er" if lang == "fr" and d.day == 1 else str(d.day)


def _month(d: date, lang: str) -> str:
    return format_date(d, "MMMM", locale=_LOCALES[lang])


def _day_month_year(d: date, lang: str) -> str:
    return f"{_day(d, lang)} {_month(d, lang)} {d.year}"


def date_label(d: date, language: str) -> str:
    """Return the dateline of a news item: "Le 22 janvier 2025" / "22 January 2025"."""
    lang = _language(language)
    text = _day_month_year(d, lang)
    return f"Le {text}" if lang == "fr" else text


def week_label(start: date, end: date, language: str) -> str:
    """Return the week line of an edition, naming month and year only where they change."""
    lang = _language(language)
    if end < start:
        raise ValueError(f"week ends ({end}) before it starts ({start})")
    if start == end:
        first = ""
    elif start.year != end.year:
        first = _day_month_year(start, lang)
    elif start.month != end.month:
        first = f"{_day(start, lang)} {_month(start, lang)}"
    else:
        first = _day(start, lang)
    last = _day_month_year(end, lang)
    if lang == "fr":
        return f"Semaine du {first} au {last}" if first else f"Semaine du {last}"
    if not first:
        return f"Week of {last}"
    # A bare day range takes a closed-up en dash ("18-25" with EN_DASH); ranges
    # with a month on both sides take a spaced one ("30 January - 6 February").
    separator = EN_DASH if first.isdigit() else f" {EN_DASH} "
    return f"Week of {first}{separator}{last}"


def join_names(names: Sequence[str], language: str) -> str:
    """Join names as prose: "A, B et C" / "A, B and C"; "" for no names."""
    if not names:
        return ""
    return format_list(list(names), style="standard", locale=_LOCALES[_language(language)])
