"""Sending to a list that holds every poisonous kind of reader finishes, on both stacks.

200 readers, some of them rows no door accepts any more but legacy data may hold,
written straight into the tables. `hebdo send --wait` hands the edition to a real
Celery worker that sends to the real SMTP server; every other reader gets exactly
one message, each poisonous row ends failed with its reason (or delivered, if its
message is still well-formed), no header is injected, and the edition ends SENT.
"""

from __future__ import annotations

import email
import email.message
import email.policy
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus
from tests import factories
from tests.support.smtp import RecordedMessage, RecordingSmtpServer
from tests.support.worker import WorkerProcess

READERS = 200
REFUSED = "refused@example.org"
# kind → (address, name) as legacy data may hold them.
POISONS = {
    "line break in the name": ("crlf@example.org", "Eve\r\nBcc: injected@evil.example"),
    "NUL byte in the name": ("nul@example.org", "Nul\x00Byte"),
    "non-ASCII local part": ("lectrice.é@example.org", "Lectrice"),
    "100,000-character name": ("long@example.org", "N" * 100_000),
    "refused by the relay": (REFUSED, "Refusée"),
    "not an address at all": ("not an address", "Personne"),
}
# PostgreSQL keeps these out of its tables (no NUL in text; name is VARCHAR(200)).
POSTGRES_REFUSES = {"NUL byte in the name", "100,000-character name"}


@pytest.mark.slow
def test_every_other_reader_gets_the_edition_once_and_the_edition_ends_sent(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    smtp_server.recipient_responses[REFUSED] = "550 5.1.1 No such user"
    stored = {}
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        for kind, (address, name) in POISONS.items():
            try:
                with session.begin_nested():
                    factories.legacy_reader(session, letter, address, name)
            except DBAPIError:
                assert backend == "postgres", kind
                assert kind in POSTGRES_REFUSES, kind
                continue
            stored[address] = kind
        # The poisons sit among the others, not at the end of the list.
        factories.readers(session, letter, READERS - len(stored))
        edition_id = factories.edition(session, letter).id
    assert set(stored.values()) == (
        set(POISONS) - POSTGRES_REFUSES if backend == "postgres" else set(POISONS)
    )

    with WorkerProcess({**env, "HEBDO_BATCH_SIZE": "50"}, tmp_path / "worker.log"):
        result = CliRunner(env=env).invoke(
            cli, ["send", str(edition_id), "--wait", "--timeout", "120"]
        )
    assert result.exit_code == 0, result.output
    assert f"to {READERS} recipients" in result.output

    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.status == EditionStatus.SENT
        rows = {d.email: d for d in session.scalars(select(Delivery))}
    assert len(rows) == READERS
    messages = smtp_server.messages
    received = Counter(r for m in messages for r in m.rcpt_tos)

    # Every other reader: exactly one message, and the row says sent.
    others = {address: row for address, row in rows.items() if address not in stored}
    assert len(others) == READERS - len(stored)
    for address, row in others.items():
        assert received[address] == 1, address
        assert row.status == DeliveryStatus.SENT, address
    # The relay saw no recipient outside the list (no Bcc smuggled in, no mangled address).
    assert set(received) <= set(rows)

    # Each poisonous row: failed with its reason, or delivered once as a well-formed message.
    outcomes = {}
    for address, kind in stored.items():
        row = rows[address]
        if row.status == DeliveryStatus.FAILED:
            assert row.last_error, kind
            assert received[address] == 0, kind
        else:
            assert row.status == DeliveryStatus.SENT, (kind, row.status)
            assert received[address] == 1, kind
        outcomes[kind] = row.status
    assert outcomes["refused by the relay"] == DeliveryStatus.FAILED
    refused_error = rows[REFUSED].last_error
    assert refused_error is not None
    assert "550" in refused_error
    # A name with a line break never reaches a header as is.
    assert outcomes["line break in the name"] == DeliveryStatus.FAILED or not any(
        b"\nBcc:" in m.data.split(b"\r\n\r\n", 1)[0] for m in messages
    )
    # No header was injected: every message has the same header fields, each once.
    fields = {tuple(_parsed(m).keys()) for m in messages}
    assert len(fields) == 1
    (names,) = fields
    assert len(set(names)) == len(names)
    assert "Bcc" not in names
    # A cleaned name may keep its words in the display name and greeting; what matters
    # is that each To header names exactly the one recipient the relay was given.
    for message in messages:
        to = _parsed(message)["To"].addresses
        # (An SMTPUTF8 message carries raw UTF-8, which the bytes parser keeps as surrogates.)
        written = [a.addr_spec.encode("utf-8", "surrogateescape").decode() for a in to]
        assert written == list(message.rcpt_tos), to

    # The CLI said how many failed; the reasons are listed by the CLI too.
    failed = sum(1 for row in rows.values() if row.status == DeliveryStatus.FAILED)
    assert f"delivered {READERS - failed} messages" in result.output
    assert f"{failed} deliveries failed" in result.output
    listing = CliRunner(env=env).invoke(cli, ["editions", "failures", str(edition_id)])
    assert listing.exit_code == 0, listing.output
    assert f"{failed} failed deliveries" in listing.output
    assert "550 5.1.1 No such user" in listing.output


def _parsed(message: RecordedMessage) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed
