"""The web pages' French catalogue covers every message, and the locale is picked as documented."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from flask import Flask

from service.web import i18n

WEB = Path(__file__).resolve().parents[2] / "service" / "web"
# The pages whose `_` is service.web.i18n.gettext (the reader pages under web/reader/
# share this catalogue through i18n.translator).
PAGES = [
    "preview.py",
    "archive.py",
    "templates/web/preview.html",
    "templates/web/archive_index.html",
    "templates/web/unsubscribe.html",
    "templates/web/feedback.html",
    "reader.py",
    *sorted(str(p.relative_to(WEB)) for p in (WEB / "templates/web/reader").glob("*.html")),
]
MESSAGE = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def _messages() -> set[str]:
    found = set()
    for name in PAGES:
        for match in MESSAGE.finditer((WEB / name).read_text(encoding="utf-8")):
            found.add((match.group(1) or match.group(2)).replace("\\'", "'"))
    return found


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_of_the_pages_has_a_french_translation_with_the_same_fields() -> None:
    messages = _messages()
    assert len(messages) > 30  # the scan found the pages' messages
    french = i18n.catalogue("fr")
    missing = sorted(m for m in messages if m not in french)
    assert missing == []
    assert sorted(set(french) - messages) == []  # no translation left behind by an edit
    for message in messages:
        assert _fields(french[message]) == _fields(message), message


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
