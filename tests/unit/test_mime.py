"""Per-recipient messages built from an edition prepared once."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from service.mail.mime import PreparedEdition, message_id, personalise, prepare
from service.mail.render import GREETING, TOKEN

SUBJECT = "Semaine du 18 au 25 janvier 2025 : l'IA à Davos"
NOW = datetime(2025, 1, 25, 7, 0, tzinfo=UTC)
HTML = (
    f"<html><body><p>{GREETING}</p><a href='https://x.test/u/{TOKEN}'>désabonnement</a>"
    f"{'é' * 300}</body></html>"
)
TEXT = f"{GREETING}\nSe désabonner : https://x.test/u/{TOKEN}\n" + "Très long paragraphe. " * 40


def _prepared() -> PreparedEdition:
    return prepare(
        edition_id=3, newsletter_slug="lettre", newsletter_name="Intelligence & Société",
        language="fr", sender_name="Intelligence & Société",
        sender_email="lettre@news.example",
        reply_to="redaction@news.example", subject=SUBJECT,
        html_body=HTML, text_body=TEXT, secret="k", base_url="https://x.test",
    )  # fmt: skip


def test_message_is_well_formed_and_personal() -> None:
    prepared = _prepared()
    envelope = personalise(prepared, 17, "zoe@example.org", "Zoé <Müller>", NOW)
    parsed = email.message_from_bytes(envelope.data, policy=email.policy.strict)
    assert not parsed.defects
    assert parsed["To"].addresses[0].display_name == "Zoé <Müller>"
    assert parsed["Subject"] == "Semaine du 18 au 25 janvier 2025 : l'IA à Davos"
    assert parsed["From"].addresses[0].display_name == "Intelligence & Société"
    assert parsed["Date"].datetime == NOW
    assert parsed["Message-ID"] == message_id(prepared, 17) == envelope.message_id
    assert parsed["Precedence"] == "bulk"
    html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    html = html_part.get_content()
    text = text_part.get_content()
    # The greeting is escaped in HTML, raw in text; no placeholder survives.
    assert "Bonjour Zoé &lt;Müller&gt;," in html
    assert "Bonjour Zoé <Müller>," in text
    for part in (html, text, envelope.data.decode("ascii")):
        assert "HEBDOx" not in part
    # RFC 5322: CRLF line endings and no line over 78 characters in the whole message.
    raw = envelope.data
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_message_id_is_deterministic_per_delivery() -> None:
    prepared = _prepared()
    first = personalise(prepared, 5, "a@example.org", "", NOW)
    again = personalise(prepared, 5, "a@example.org", "", datetime(2026, 1, 1, tzinfo=UTC))
    other = personalise(prepared, 6, "b@example.org", "", NOW)
    assert first.message_id == again.message_id != other.message_id
    assert first.mail_from != other.mail_from  # VERP: the envelope names the delivery
    parsed = email.message_from_bytes(first.data, policy=email.policy.strict)
    text_part = parsed.get_body(("plain",))
    assert text_part is not None
    assert text_part.get_content().startswith("Bonjour,")
