"""The gettext catalogues: every message a person reads has its French, and the .mo is fresh.

Messages are found as `make messages-extract` finds them (babel.cfg and Babel's
extractors, tests/support/messages.py): web pages, views, emails, notices.
"""

from __future__ import annotations

import string
from io import BytesIO

from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from service import translations
from tests.support.messages import Found, extract, non_literal_calls

# The files that implement gettext & co. themselves (their calls pass messages along).
PLUMBING = frozenset({"service/translations/__init__.py", "service/web/i18n.py"})


def _french() -> Catalog:
    with translations.catalogue_path("fr").open("rb") as handle:
        return read_po(handle, locale="fr")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _where(found: Found) -> str:
    context = f" (context {found.context!r})" if found.context else ""
    return f"{found.path}:{found.line} {found.msgid!r}{context}"


def _lookup(catalogue: Catalog, found: Found) -> Message | None:
    key = found.msgid[0] if isinstance(found.msgid, tuple) else found.msgid
    return catalogue.get(key, context=found.context)


def _untranslated(catalogue: Catalog, found: Found, message: Message | None) -> str | None:
    if message is None:
        return "not in the catalogue (run make messages)"
    if message.fuzzy:
        return "fuzzy (review it, then drop the fuzzy flag)"
    if isinstance(found.msgid, tuple):
        if not isinstance(message.id, tuple) or tuple(message.id) != found.msgid:
            return "counted in the code, not in the catalogue (run make messages)"
        assert message.string is not None  # a counted message always has its forms
        forms = list(message.string)
        if len(forms) != catalogue.num_plurals or not all(forms):
            return f"needs all {catalogue.num_plurals} French forms"
        return None
    if isinstance(message.id, tuple):
        return "counted in the catalogue, not in the code (run make messages)"
    return None if message.string else "no French"


def test_the_extraction_covers_web_pages_views_emails_and_notices() -> None:
    paths = {found.path for found in extract()}
    for path in (
        "service/web/dashboard.py",
        "service/web/templates/web/base.html",
        "service/web/templates/web/reader/subscribe.html",
        "templates/email/edition/body.html",
        "templates/email/edition/body.txt",
        "templates/email/confirm-subscription/wording.txt",
        "templates/email/already-subscribed/wording.txt",
        "service/mail/wording.py",
        "service/mail/mime.py",
    ):
        assert path in paths, path


def test_every_message_has_a_french_translation() -> None:
    catalogue = _french()
    found = extract()
    assert len(found) > 400
    missing = sorted(
        f"{_where(f)}: {problem}"
        for f in found
        if (problem := _untranslated(catalogue, f, _lookup(catalogue, f)))
    )
    assert missing == [], "\n".join(missing)


def test_every_french_translation_keeps_the_fields_of_its_english() -> None:
    catalogue = _french()
    wrong: list[str] = []
    for message in catalogue:
        if not message.id or not message.string:
            continue
        if isinstance(message.id, tuple):
            singular, plural = message.id
            assert not isinstance(message.string, str)  # a counted message has its forms
            one, *others = message.string
            # The singular may spell out its number ("Un abonné"); every other form shows it.
            if not _fields(one) <= _fields(singular) | _fields(plural) | {"n"}:
                wrong.append(f"{singular!r}: {one!r}")
            wrong.extend(
                f"{plural!r}: {form!r}" for form in others if _fields(form) != _fields(plural)
            )
        else:
            assert isinstance(message.id, str)
            assert isinstance(message.string, str)
            if _fields(message.string) != _fields(message.id):
                wrong.append(f"{message.id!r}: {message.string!r}")
    assert wrong == [], "\n".join(wrong)


def test_no_message_is_built_at_run_time() -> None:
    # Extraction skips a _() of a variable silently: its text could never be translated.
    assert non_literal_calls(skip=PLUMBING) == []


def test_the_catalogue_holds_no_message_the_code_dropped() -> None:
    wanted = {(f.context, f.msgid[0] if isinstance(f.msgid, tuple) else f.msgid) for f in extract()}
    held = {(m.context, m.id[0] if isinstance(m.id, tuple) else m.id) for m in _french() if m.id}
    assert sorted(held - wanted, key=str) == []  # make messages-update marks them obsolete


def test_french_puts_zero_in_the_singular_with_two_forms() -> None:
    catalogue = _french()
    assert catalogue.num_plurals == 2
    assert catalogue.plural_expr == "(n > 1)"


def test_the_compiled_catalogue_is_the_po_compiled() -> None:
    # The .mo files are committed (a fresh clone runs without a build step); this says
    # when one was forgotten: run make messages-compile.
    compiled = BytesIO()
    write_mo(compiled, _french(), use_fuzzy=False)
    compiled.seek(0)
    expected = Translations(compiled)
    with translations.catalogue_path("fr", "mo").open("rb") as handle:
        committed = Translations(handle)
    assert committed._catalog == expected._catalog
