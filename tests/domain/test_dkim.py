"""DKIM signatures made with keys from the configuration, verified by dkimpy as a receiver would.

Hebdo signs through `cryptography` with its own canonicalisation (service/mail/dkim.py);
dkimpy, an independent implementation, is the judge of every signed message here.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import functools
import hashlib
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.mail import mime
from service.mail.dkim import SIGNED, DkimKey, relaxed_body, signed
from service.mail.render import CLICK_TOKEN, GREETING, UNSUBSCRIBE_TOKEN
from service.sending import loop, testsend
from tests import factories
from tests.support.smtp import RecordingSmtpServer

SELECTOR = "hebdo2025"
ED_SELECTOR = "hebdo2025e"
DOMAIN = "hebdo.example"
# What an outside checker (and Gmail, for Feedback-ID) expects the signature to cover.
MUST_SIGN = {
    "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "list-archive", "feedback-id", "precedence", "mime-version",
    "content-type",
}  # fmt: skip

DnsLookup = Callable[..., bytes | None]


@dataclasses.dataclass(frozen=True)
class Keys:
    rsa_path: Path
    ed25519_path: Path
    records: dict[bytes, bytes]  # DNS name → TXT record

    def dns(self) -> DnsLookup:
        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            return self.records.get(name)

        return lookup

    def key(self, *, ed25519_too: bool = True) -> DkimKey:
        return DkimKey.load(
            SELECTOR,
            DOMAIN,
            self.rsa_path,
            ed25519_selector=ED_SELECTOR if ed25519_too else None,
            ed25519_key_path=self.ed25519_path if ed25519_too else None,
        )


def _rsa_record(key_path: Path) -> bytes:
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(key_path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """An RSA key made by openssl, an Ed25519 one, and the DNS records publishing them."""
    folder = tmp_path_factory.mktemp("dkim")
    rsa_path = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(rsa_path), "2048"], check=True, capture_output=True
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_path = folder / "dkim-ed25519.pem"
    ed_path.write_bytes(
        ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ed_public = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Keys(
        rsa_path,
        ed_path,
        {
            f"{SELECTOR}._domainkey.{DOMAIN}.".encode(): _rsa_record(rsa_path),
            f"{ED_SELECTOR}._domainkey.{DOMAIN}.".encode(): b"v=DKIM1; k=ed25519; p="
            + base64.b64encode(ed_public),
        },
    )


def _signatures(message: bytes) -> list[dict[str, str]]:
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    found = []
    for header in parsed.get_all("DKIM-Signature") or []:
        value = re.sub(r"\s+", "", str(header))
        found.append(dict(tag.split("=", 1) for tag in value.split(";") if "=" in tag))
    return found


def assert_verifies(data: bytes, keys: Keys, *, signatures: int = 2) -> None:
    """Every DKIM-Signature of the message verifies with dkimpy and covers what it must."""
    tags = _signatures(data)
    assert len(tags) == signatures
    expected = ["ed25519-sha256", "rsa-sha256"][2 - signatures :]
    assert [t["a"] for t in tags] == expected
    for index, tag in enumerate(tags):
        assert dkim.DKIM(data).verify(idx=index, dnsfunc=keys.dns()), (index, tag["a"])
        assert (tag["d"], tag["c"]) == (DOMAIN, "relaxed/relaxed")
        names = [name.lower() for name in tag["h"].split(":")]
        assert set(names) >= MUST_SIGN
        # Over-signed: each is named once more than the message holds it.
        parsed = email.message_from_bytes(data, policy=email.policy.compat32)
        for name in MUST_SIGN:
            assert names.count(name) == len(parsed.get_all(name) or []) + 1, name


def _with_keys(settings: Settings, keys: Keys, *, ed25519_too: bool = True) -> Settings:
    return dataclasses.replace(
        settings,
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        dkim_private_key_path=keys.rsa_path,
        dkim_ed25519_selector=ED_SELECTOR if ed25519_too else None,
        dkim_ed25519_private_key_path=keys.ed25519_path if ed25519_too else None,
    )


def test_every_message_sent_is_signed_twice_and_verifies_with_the_published_keys(
    keys: Keys,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    settings = _with_keys(settings, keys)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 3)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id

    assert loop.send_pending(sessions, settings, edition_id).sent == 3

    received = smtp_server.wait_for(3)
    for message in received:
        # What the relay received, byte for byte, verifies against the DNS records.
        assert_verifies(message.data, keys)
        parsed = message.parsed()
        assert parsed["Precedence"] == "bulk"
        assert parsed["Feedback-ID"] == f"{edition_id}:lettre:hebdo"
        assert message.mail_from.startswith("bounces+")

    data = received[0].data
    rsa_index = next(i for i, t in enumerate(_signatures(data)) if t["a"] == "rsa-sha256")

    def verifies(altered: bytes, published: Keys = keys) -> bool:
        try:
            return bool(dkim.DKIM(altered).verify(idx=rsa_index, dnsfunc=published.dns()))
        except dkim.DKIMException:  # dkimpy raises for some failures, returns False for others
            return False

    # Any change to a signed header or to the body breaks the signature.
    assert not verifies(data.replace(b"Subject: ", b"Subject: RE: ", 1))
    assert not verifies(data[:-40] + b"x" * 40)
    # Over-signing: a header added on the way, even a new one, breaks it too.
    head, _, body = data.partition(b"\r\n\r\n")
    for added in (b"From: boss@hebdo.example", b"Reply-To: thief@evil.example"):
        assert not verifies(head + b"\r\n" + added + b"\r\n\r\n" + body)
    # A header nobody signs may be added (relays add Received).
    assert verifies(b"Received: from relay by mx; Wed, 2 Dec 2026 10:00:00 +0000\r\n" + data)
    # A key the domain does not publish does not verify.
    assert not verifies(data, Keys(keys.rsa_path, keys.ed25519_path, {}))


def test_hostile_and_international_names_and_long_headers_verify(
    keys: Keys,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    settings = _with_keys(settings, keys)
    hostile = [
        ("quote@example.org", 'Zoë "the; boss" <root@evil.example>, =?utf-8?q?x?='),
        ("spaces@example.org", "Jean  \t Pierre   de   la   Fontaine-Lévêque " * 3),
        ("zoë@exemple.fr", "Ζωή Παπαδοπούλου 山田太郎 🎉"),  # SMTPUTF8: UTF-8 in To
        ("plain@example.org", ""),
    ]
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        letter.name = "Une lettre au nom très long, avec « guillemets » et émojis 📰 " * 2
        letter.sender_name = 'L\'équipe "Hebdo" ; <rédaction>'
        letter.reply_to = "redaction@hebdo.example"
        for address, name in hostile:
            factories.legacy_reader(session, letter, address, name)
        edition = factories.edition(session, letter)
        edition.subject = "Édition spéciale : " + "les nouvelles de la semaine, " * 5
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id

    assert loop.send_pending(sessions, settings, edition_id).sent == len(hostile)

    received = smtp_server.wait_for(len(hostile))
    for message in received:
        assert_verifies(message.data, keys)
        head = message.data.partition(b"\r\n\r\n")[0]
        assert max(map(len, head.split(b"\r\n"))) <= 998
    to_headers = {m.rcpt_tos[0]: m.parsed()["To"] for m in received}
    assert "Ζωή" in str(to_headers["zoë@exemple.fr"])
    assert to_headers["quote@example.org"].addresses[0].addr_spec == "quote@example.org"


def test_rsa_alone_when_no_ed25519_key_is_configured(
    keys: Keys,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    settings = _with_keys(settings, keys, ed25519_too=False)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 1)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id
    assert loop.send_pending(sessions, settings, edition_id).sent == 1
    (message,) = smtp_server.wait_for(1)
    assert_verifies(message.data, keys, signatures=1)
    assert _signatures(message.data)[0]["a"] == "rsa-sha256"


def test_test_sends_are_signed_too(
    keys: Keys,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    settings = _with_keys(settings, keys)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        edition = factories.edition(session, letter)
        report = testsend.send_test(session, edition, ["editor@example.org"], settings)
    assert report.sent == ["editor@example.org"]
    (message,) = smtp_server.wait_for(1)
    assert message.parsed()["Message-ID"].startswith("<test.")
    assert_verifies(message.data, keys)


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


# Bodies with what relaxed canonicalisation rewrites: runs of spaces and tabs, trailing
# whitespace, empty lines, leading dots, and placeholders anywhere, even back to back;
# names of any character but NUL (which service.text refuses).
_body_text = st.lists(
    st.sampled_from(
        [
            *("word", " ", "  ", "\t", "\n", "\n\n", " \n", ".", "é", "=", "x" * 90),
            *(GREETING, CLICK_TOKEN, UNSUBSCRIBE_TOKEN),
        ]
    ),
    max_size=40,
).map("".join)
_names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=60)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(html_body=_body_text, text_body=_body_text, name=_names)
def test_the_per_edition_canonical_form_is_the_canonical_form_of_each_message(
    keys: Keys, html_body: str, text_body: str, name: str
) -> None:
    key = keys.key()
    prepare = functools.partial(
        mime.prepare,
        edition_id=4,
        newsletter_slug="lettre",
        newsletter_name="Lettre",
        language="fr",
        sender_name="Hebdo",
        sender_email="lettre@hebdo.example",
        reply_to=None,
        subject="Sujet",
        html_body=html_body,
        text_body=text_body,
        secret="s",
        base_url="https://hebdo.example",
    )
    now = datetime.now(UTC)
    plain, signing = prepare(), prepare(dkim=key)
    unsigned = mime.personalise(plain, 9, "r@example.org", name, now).data
    data = mime.personalise(signing, 9, "r@example.org", name, now).data
    # The fast path signs the very bytes the unsigned path builds…
    signature_end = data.index(b"\r\nTo: ") + 2
    assert data[signature_end:] == unsigned
    # …with the body hash of the whole body canonicalised in one go…
    body = unsigned.partition(b"\r\n\r\n")[2]
    expected = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
    assert {t["bh"] for t in _signatures(data)} == {expected.decode()}
    # …and the slow path, signing the whole message at once, agrees.
    assert_verifies(data, keys)
    assert_verifies(signed(key, unsigned), keys)


def test_keys_that_cannot_sign_are_refused_at_load(tmp_path: Path, keys: Keys) -> None:
    small = tmp_path / "small.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(small), "768"], check=True, capture_output=True
    )
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for refused in (small, ec_key):
        with pytest.raises(ValueError, match="RSA of 1024 bits or more"):
            DkimKey.load(SELECTOR, DOMAIN, refused)
    with pytest.raises(ValueError, match="Ed25519"):
        DkimKey.load(SELECTOR, DOMAIN, keys.rsa_path, ed25519_key_path=keys.ed25519_path)
    with pytest.raises(ValueError, match="Ed25519"):
        DkimKey.load(
            SELECTOR, DOMAIN, keys.rsa_path, ed25519_selector="e", ed25519_key_path=keys.rsa_path
        )
    assert set(SIGNED) >= {name.encode() for name in MUST_SIGN}
