"""DKIM signatures made with a key from the configuration, verified as a receiver would."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import re
import subprocess
from pathlib import Path

import dkim
import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

SELECTOR = "hebdo2025"
DOMAIN = "hebdo.example"
MUST_SIGN = {"from", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"}


def _make_key(folder: Path, name: str) -> tuple[Path, bytes]:
    """A fresh RSA key on disk and the DNS TXT record that publishes its public half."""
    key = folder / f"{name}.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """The key named by DKIM_PRIVATE_KEY_PATH, and its DNS record."""
    return _make_key(tmp_path_factory.mktemp("dkim"), "dkim")


def _dns(record: bytes) -> object:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


def _signed_header_names(message: bytes) -> set[str]:
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    signature = re.sub(r"\s+", "", str(parsed["DKIM-Signature"]))
    tags = dict(tag.split("=", 1) for tag in signature.split(";") if "=" in tag)
    assert (tags["d"], tags["s"], tags["a"]) == (DOMAIN, SELECTOR, "rsa-sha256")
    return {name.lower() for name in tags["h"].split(":")}


def test_every_message_is_signed_and_verifies_with_the_published_key(
    dkim_key: tuple[Path, bytes],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    key_path, txt_record = dkim_key
    settings = dataclasses.replace(
        settings, dkim_selector=SELECTOR, dkim_domain=DOMAIN, dkim_private_key_path=key_path
    )
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 3)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id

    assert loop.send_pending(sessions, settings, edition_id).sent == 3

    received = smtp_server.wait_for(3)
    for message in received:
        # What the relay received, byte for byte, verifies against the DNS record.
        assert dkim.verify(message.data, dnsfunc=_dns(txt_record))
        assert _signed_header_names(message.data) >= MUST_SIGN
        parsed = message.parsed()
        assert parsed["Precedence"] == "bulk"
        assert parsed["Feedback-ID"] == f"{edition_id}:lettre:hebdo"
        assert message.mail_from.startswith("bounces+")
        assert message.mail_from.endswith("@" + settings.bounce_domain)

    # Any change to a signed header or to the body breaks the signature.
    data = received[0].data
    assert not dkim.verify(
        data.replace(b"Subject: ", b"Subject: RE: ", 1), dnsfunc=_dns(txt_record)
    )
    assert not dkim.verify(data[:-40] + b"x" * 40, dnsfunc=_dns(txt_record))
    # A key the domain does not publish does not verify.
    _, other_record = _make_key(key_path.parent, "other")
    assert not dkim.verify(data, dnsfunc=_dns(other_record))


def test_without_dkim_settings_messages_go_unsigned(
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 1)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id
    assert loop.send_pending(sessions, settings, edition_id).sent == 1
    (message,) = smtp_server.wait_for(1)
    assert message.parsed()["DKIM-Signature"] is None
