"""Date labels and name lists of the emails and pages, in French and English.

Pure functions of a language; their words come from the gettext catalogues
(service.translations) like every other message. The fixed words of the
templates are `_()` calls in the templates themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from babel.dates import format_date
from babel.lists import format_list

from service.translations import BABEL_LOCALES as _LOCALES
from service.translations import LANGUAGES, translator

__all__ = ["LANGUAGES", "date_label", "join_names", "week_label"]


def _language(language: str) -> str:
    """Reduce a language tag such as "fr-FR" or "en_GB" to a supported language."""
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    if primary not in _LOCALES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return primary


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
    # Translators: the dateline of a news item; {date} is "22 January 2025".
    return translator(lang).pgettext("dateline", "{date}", date=_day_month_year(d, lang))


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
    _ = translator(lang)
    if not first:
        # Translators: the week of an edition that spans one day; {last} is "5 March 2025".
        return _("Week of {last}", last=last)
    # English closes up the en dash of a bare day range ("18-25") and spaces the one
    # between two months ("30 January - 6 February"); the msgids hold the real dash.
    if first.isdigit():
        # Translators: the week of an edition within one month: "Week of 18-25 January 2025".
        return _("Week of {first}\u2013{last}", first=first, last=last)
    # Translators: the week of an edition over two months: "Week of 30 January - 6 February 2025".
    return _("Week of {first} \u2013 {last}", first=first, last=last)


def join_names(names: Sequence[str], language: str) -> str:
    """Join names as prose: "A, B et C" / "A, B and C"; "" for no names."""
    if not names:
        return ""
    return format_list(list(names), style="standard", locale=_LOCALES[_language(language)])
