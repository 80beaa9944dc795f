"""Bodies encoded once per edition, then filled per recipient, decode to the exact text."""

from __future__ import annotations

import email
import email.policy
import html
from datetime import UTC, datetime

import pytest

from service import text, tokens
from service.mail import mime
from service.mail.mime import personalise, prepare
from service.mail.render import GREETING, TOKEN

NOW = datetime(2025, 1, 25, 7, 0, tzinfo=UTC)
# Placeholders mid-line, at a line start, at the very end, next to each other, after
# a full 76-character line, after trailing spaces, and around a lone dot.
HTML = (
    f"<p>{GREETING}</p>\n<a href='https://x.test/u/{TOKEN}'>désabonnement</a>"
    + "é" * 37
    + f"{TOKEN}\n.\n{GREETING}{TOKEN}  \n"
    + "x" * 75
    + f"{TOKEN}\n"
    + "=" * 30
    + GREETING
)
TEXT = (
    f"{GREETING}\n\nSe désabonner : https://x.test/u/{TOKEN}\n"
    + "Très long. " * 40
    + TOKEN
    + "\n...\n.Point de départ\n"
    + "." * 200
    + "\n"
    + "a" * 75
    + ".suite"
)


# Every token placeholder, the legacy one of editions frozen before purposes included.
HOLES = sorted(mime._TOKEN_PURPOSES.items())


@pytest.mark.parametrize(
    "name",
    ["", "Zoé <Müller>", "A = B", "fin  ", "tab\tici", "é" * 120, "x" * 300, "=3D", "."],
)
@pytest.mark.parametrize(("hole", "purpose"), HOLES, ids=[p for _, p in HOLES])
def test_filled_parts_decode_to_the_substituted_text(name: str, hole: str, purpose: str) -> None:
    html_body, text_body = HTML.replace(TOKEN, hole), TEXT.replace(TOKEN, hole)
    prepared = prepare(
        edition_id=3, newsletter_slug="lettre", newsletter_name="Lettre", language="fr",
        sender_name="Lettre", sender_email="lettre@news.example", reply_to=None,
        subject="Sujet", html_body=html_body, text_body=text_body, secret="k",
        base_url="https://x.test",
    )  # fmt: skip
    envelope = personalise(prepared, 41, "zoe@example.org", name, NOW)

    clean = text.person_name(name)  # what the greeting holds: the name rule's one line
    greeting = f"Bonjour {clean}," if clean else "Bonjour,"
    token = tokens.sign("k", purpose, 41)
    crlf = "\r\n"
    expected_html = html_body.replace(hole, token).replace(GREETING, html.escape(greeting))
    expected_text = text_body.replace(hole, token).replace(GREETING, greeting)
    parsed = email.message_from_bytes(envelope.data, policy=email.policy.strict)
    assert not parsed.defects
    html_mime, text_mime = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert html_mime is not None
    assert text_mime is not None
    html_payload = html_mime.get_payload(decode=True)
    text_payload = text_mime.get_payload(decode=True)
    assert isinstance(html_payload, bytes)
    assert isinstance(text_payload, bytes)
    html_part = html_payload.decode()
    text_part = text_payload.decode()
    assert html_part == expected_html.replace("\n", crlf)
    assert text_part == expected_text.replace("\n", crlf)

    # RFC 2045: encoded lines of at most 76 characters, none ending in white space; and
    # none starting with a dot, which SMTP would have to double on every send.
    body = envelope.data.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        assert len(line) <= 76
        assert not line.endswith((b" ", b"\t"))
        assert not line.startswith(b".")
