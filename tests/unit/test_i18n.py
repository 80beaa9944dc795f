"""The web pages' French catalogue covers every message, and the locale is picked as documented."""

from __future__ import annotations

import string

import pytest
from flask import Flask

from service.web import i18n
from tests.support.messages import extract, scanned

WEB = "service/web/"
# Every message, found as `make messages-extract` finds them (babel.cfg); one catalogue
# serves the pages (the reader pages' `_` is i18n.translator) and the emails alike.
FOUND = extract()
PAGES = sorted(path.removeprefix(WEB) for path, _, _ in scanned() if path.startswith(WEB))


def _messages() -> tuple[set[str], set[tuple[str, str]]]:
    single: set[str] = set()
    counted: set[tuple[str, str]] = set()
    for found in FOUND:
        if isinstance(found.msgid, tuple):
            counted.add(found.msgid)
        else:
            single.add(found.msgid)
    return single, counted


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_scan_covers_every_view_and_template() -> None:
    for page in ("auth.py", "dashboard.py", "composer.py", "subscribers.py", "outbox.py"):
        assert page in PAGES
    for page in ("base.html", "login.html", "composer/edit.html", "subscribers/index.html"):
        assert f"templates/web/{page}" in PAGES


def test_every_message_of_the_pages_has_a_french_translation_with_the_same_fields() -> None:
    messages, _ = _messages()
    assert len(messages) > 300  # the scan found the pages' messages
    french = i18n.catalogue("fr")
    missing = sorted(m for m in messages if m not in french)
    assert missing == []
    assert sorted(set(french) - messages) == []  # no translation left behind by an edit
    for message in messages:
        assert _fields(french[message]) == _fields(message), message


def test_every_counted_message_has_both_french_forms_with_the_same_fields() -> None:
    _, counted = _messages()
    assert len(counted) > 10
    french = i18n.counted_catalogue("fr")
    assert sorted(counted - set(french)) == []
    assert sorted(set(french) - counted) == []
    for singular, plural in counted:
        fields = _fields(singular) | _fields(plural)
        one, many = french[singular, plural]
        assert _fields(one) <= fields | {"n"}, singular
        assert _fields(many) == _fields(plural), plural


@pytest.mark.parametrize(
    ("lang", "count", "expected"),
    [
        ("en", 0, "Ended 0 subscriptions."),
        ("en", 1, "Ended 1 subscription."),
        ("en", 1200, "Ended 1,200 subscriptions."),
        ("fr", 0, "0 abonnement résilié."),
        ("fr", 1, "1 abonnement résilié."),
        ("fr", 2, "2 abonnements résiliés."),
        ("fr", 1200, "1\u202f200 abonnements résiliés."),
    ],
)
def test_counted_messages_take_the_form_of_each_language(
    lang: str, count: int, expected: str
) -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context(f"/?lang={lang}"):
        text = i18n.ngettext("Ended {n} subscription.", "Ended {n} subscriptions.", count)
        assert text == expected


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        ("", "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("", "de-DE,en-GB;q=0.7", "en"),
        ("", "", "en"),
        ("?lang=fr", "en-GB", "fr"),
        ("?lang=en", "fr-FR", "en"),
        ("?lang=xx", "fr-FR", "fr"),
    ],
)
def test_editor_locale_follows_lang_switch_then_accept_language(
    query: str, header: str, expected: str
) -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context("/" + query, headers={"Accept-Language": header}):
        assert i18n.get_locale() == expected


def test_reader_pages_speak_the_newsletters_language_whatever_the_browser_says() -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context("/?lang=en", headers={"Accept-Language": "en"}):
        i18n.use_locale("fr-FR")
        assert i18n.get_locale() == "fr"
        assert i18n.gettext("Edition {number}", number=3) == "Édition n° 3"
