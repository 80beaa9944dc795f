"""One-off migration tooling: the French of the old Python dicts into the gettext catalogue.

Before issue 10 the French of the web pages lived in the `_FR` and `_FR_COUNTED`
dicts of service/web/i18n.py, and the emails' wording in the `_WORDING` dict of
service/mail/wording.py (keyed labels, English and French). This script reads
whichever of those dicts still exist and writes their French into
service/translations/fr/LC_MESSAGES/messages.po:

1. the template service/translations/messages.pot must be fresh (`make
   messages-extract`; `make messages-from-dicts` runs it first);
2. the French .po is created from the template if missing (French Plural-Forms:
   two forms, 0 in the singular), else updated from it as `pybabel update` does
   (messages the code dropped become obsolete, new ones appear untranslated);
3. every message a dict translates gets the dict's French: the dicts win over the
   .po while they exist, being the reviewed source; a dict entry the code no
   longer uses is reported on stderr, not added;
4. the .po is written back; `make messages-compile` then builds the .mo (the make
   target does).

Idempotent: a second run writes the same file. Run it with

    make messages-from-dicts

then delete the dicts (and, once no branch adds to them any more, this script and
its make target).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.translations import CATALOGUES, DOMAIN  # noqa: E402 - after the path fix

TEMPLATE = CATALOGUES / f"{DOMAIN}.pot"
FRENCH = CATALOGUES / "fr" / "LC_MESSAGES" / f"{DOMAIN}.po"
# gettext's usual French rule: 0 and 1 take the singular. Babel's CLDR rule adds a
# third form for millions ("1 million d'abonnés"), which no message here needs.
FRENCH_PLURALS = "nplurals=2; plural=(n > 1);"

Key = str | tuple[str, str]


def _dict(module: str, name: str) -> Mapping[object, object]:
    found = getattr(importlib.import_module(module), name, None)
    return found if isinstance(found, Mapping) else {}


def french_from_dicts() -> Iterator[tuple[Key, str | tuple[str, str]]]:
    """(msgid, French) pairs: a plural msgid is (singular, plural), its French both forms."""
    for message, french in _dict("service.web.i18n", "_FR").items():
        assert isinstance(message, str)
        assert isinstance(french, str)
        yield message, french
    for pair, forms in _dict("service.web.i18n", "_FR_COUNTED").items():
        assert isinstance(pair, tuple)
        assert isinstance(forms, tuple)
        yield (pair[0], pair[1]), (forms[0], forms[1])
    wording = _dict("service.mail.wording", "_WORDING")
    english, french_words = wording.get("en", {}), wording.get("fr", {})
    assert isinstance(english, Mapping)
    assert isinstance(french_words, Mapping)
    for key, message in english.items():
        if key in french_words:
            yield str(message), str(french_words[key])


def _new_catalogue(template: Catalog) -> Catalog:
    catalogue = Catalog(
        locale="fr",
        domain=DOMAIN,
        project="Hebdo",
        version=None,
        copyright_holder="the Hebdo authors",
        msgid_bugs_address=None,
        creation_date=template.creation_date,
        revision_date=template.creation_date,
        language_team="French",
        fuzzy=False,
    )
    catalogue.update(template, no_fuzzy_matching=True)
    return catalogue


def _plural_forms(catalogue: Catalog) -> None:
    headers = dict(catalogue.mime_headers)
    headers["Plural-Forms"] = FRENCH_PLURALS
    catalogue.mime_headers = list(headers.items())


def migrate() -> int:
    """Merge the dicts' French into the French catalogue; return the number of changes."""
    with TEMPLATE.open("rb") as handle:
        template = read_po(handle)
    if FRENCH.exists():
        with FRENCH.open("rb") as handle:
            catalogue = read_po(handle, locale="fr")
        catalogue.update(template, no_fuzzy_matching=True, update_creation_date=False)
    else:
        FRENCH.parent.mkdir(parents=True, exist_ok=True)
        catalogue = _new_catalogue(template)
    _plural_forms(catalogue)
    # A msgid may sit under a msgctxt (the same English meaning two things): match any.
    by_id: dict[Key, list[Message]] = {}
    for message in catalogue:
        if message.id:
            key = (
                (message.id[0], message.id[1])
                if isinstance(message.id, tuple | list)
                else message.id
            )
            by_id.setdefault(key, []).append(message)
    changes = 0
    for msgid, french in french_from_dicts():
        found = by_id.get(msgid, [])
        if not found:
            print(f"not in the code any more, left out: {msgid!r}", file=sys.stderr)
        for message in found:
            if message.string != french or message.fuzzy:
                message.string = french
                message.flags.discard("fuzzy")
                changes += 1
    with FRENCH.open("wb") as handle:
        write_po(handle, catalogue, width=100, sort_output=False, include_previous=False)
    return changes


if __name__ == "__main__":
    print(f"{migrate()} French translations written to {FRENCH.relative_to(ROOT)}")
