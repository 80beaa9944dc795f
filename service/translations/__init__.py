"""Every word a person reads, in every language: the gettext catalogues and their lookup.

Messages are written in English in the code and the templates (`_()`, `ngettext()`,
`pgettext()`); `pybabel extract` gathers them into `messages.pot` in this folder and
each language's translations live in `<lang>/LC_MESSAGES/messages.po`, compiled to
the `.mo` read here (see README, "Translations"). One domain, `messages`, serves the
web pages, the editions and the notices alike.

Fields are `str.format` ones (`{name}`), marked python-brace-format in the
catalogue; a message is filled only when values are given, so a pattern can be
fetched whole and filled later (the per-recipient greeting). Plural forms come
from each catalogue's Plural-Forms header (French puts 0 in the singular).

Pure: no Flask, no request. The web picks the language of a request
(service.web.i18n); the mail code passes the language it writes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

CATALOGUES = Path(__file__).resolve().parent
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"  # the language of the msgids: it needs no catalogue
LANGUAGES = ("fr", "en")
# en_GB rather than en_US: day-month order and no serial comma, as the editors write it.
BABEL_LOCALES = {"fr": "fr_FR", "en": "en_GB"}


def language_of(tag: str | None) -> str | None:
    """Reduce a tag such as "fr-FR" or "en_GB" to a supported language; None if none."""
    if not tag:
        return None
    primary = tag.replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else None


@lru_cache(maxsize=len(LANGUAGES) + 1)
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of `language` (the msgids themselves for English)."""
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(CATALOGUES), [language], DOMAIN)


def catalogue_path(language: str, extension: str = "po") -> Path:
    """Where the catalogue of `language` lives (`po` source or `mo` compiled)."""
    return CATALOGUES / language / "LC_MESSAGES" / f"{DOMAIN}.{extension}"


@dataclass(frozen=True)
class Translated:
    """The translated messages of one language, as its .po says (fuzzy ones are not)."""

    single: Mapping[str, str]
    counted: Mapping[tuple[str, str], tuple[str, ...]]  # (singular, plural): every form


@lru_cache(maxsize=len(LANGUAGES) + 1)
def messages(language: str) -> Translated:
    """What the catalogue of `language` translates; nothing for English or no catalogue."""
    single: dict[str, str] = {}
    counted: dict[tuple[str, str], tuple[str, ...]] = {}
    path = catalogue_path(language)
    if path.exists():
        with path.open("rb") as handle:
            catalogue = read_po(handle, locale=language)
        for message in catalogue:
            if not message.id or message.fuzzy:
                continue
            if isinstance(message.id, tuple) and isinstance(message.string, tuple | list):
                if all(message.string):
                    counted[message.id[0], message.id[1]] = tuple(message.string)
            elif isinstance(message.id, str) and isinstance(message.string, str) and message.string:
                single[message.id] = message.string
    return Translated(MappingProxyType(single), MappingProxyType(counted))


def _fill(text: str, values: dict[str, object]) -> str:
    return text.format(**values) if values else text


def gettext(language: str, message: str, **values: object) -> str:
    """`message` in `language`, with its `{name}` fields filled from `values` if any."""
    return _fill(translations(language).gettext(message), values)


def pgettext(language: str, context: str, message: str, **values: object) -> str:
    """`message` as meant in `context` (same English, other translations), filled."""
    return _fill(str(translations(language).pgettext(context, message)), values)


def format_number(n: int, language: str) -> str:
    """`n` with the thousands separator of `language` (1,234 or 1 234)."""
    return format_decimal(n, locale=BABEL_LOCALES[language])


def ngettext(language: str, singular: str, plural: str, n: int, **values: object) -> str:
    """The form of a counted message that `n` takes, with `{n}` filled in (formatted)."""
    text = translations(language).ngettext(singular, plural, n)
    return text.format(n=format_number(n, language), **values)


class Translator:
    """The messages of one language: `t(message, **values)`, `t.ngettext`, `t.pgettext`…

    Handed to templates as `_` (and `ngettext`); extraction finds the calls by name.
    """

    def __init__(self, language: str) -> None:
        self.language = language_of(language) or SOURCE_LANGUAGE

    def __call__(self, message: str, **values: object) -> str:
        return gettext(self.language, message, **values)

    def ngettext(self, singular: str, plural: str, n: int, **values: object) -> str:
        """The form of a counted message that `n` takes, `{n}` filled in."""
        return ngettext(self.language, singular, plural, n, **values)

    def pgettext(self, context: str, message: str, **values: object) -> str:
        """`message` as meant in `context`, filled."""
        return pgettext(self.language, context, message, **values)

    def npgettext(self, context: str, singular: str, plural: str, n: int, **values: object) -> str:
        """A counted message as meant in `context`."""
        return npgettext(self.language, context, singular, plural, n, **values)


def npgettext(
    language: str, context: str, singular: str, plural: str, n: int, **values: object
) -> str:
    """A counted message as meant in `context` (a word that is also counted elsewhere)."""
    text = str(translations(language).npgettext(context, singular, plural, n))
    return text.format(n=format_number(n, language), **values)


def translator(language: str) -> Translator:
    """The messages of `language` (unknown languages get the English source)."""
    return Translator(language)
