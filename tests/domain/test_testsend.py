"""Test sends: the edition as subscribers get it, marked as a test, recorded nowhere.

Messages go to a real SMTP server (aiosmtpd on a free port); the database is the
migrated test database, on SQLite and on PostgreSQL where it matters.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import tokens
from service.cli import cli
from service.config import Settings, SmtpRelay
from service.mail.mime import UNSUBSCRIBE_PURPOSE
from service.models import Delivery, Event
from service.sending import testsend
from service.tracking import events
from tests import factories
from tests.support import free_port
from tests.support.smtp import RecordingSmtpServer


def _rows(session: Session) -> tuple[int, int]:
    deliveries = session.scalar(select(func.count()).select_from(Delivery))
    events = session.scalar(select(func.count()).select_from(Event))
    return deliveries or 0, events or 0


def test_french_test_send_reaches_every_address_as_essai_and_records_nothing(
    backend: str, session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 3)
    edition = factories.edition(session, letter)
    session.commit()

    report = testsend.send_test(
        session, edition, ["R0@example.org", "relecture@example.org"], settings
    )

    assert report.sent == ["r0@example.org", "relecture@example.org"]
    assert report.failed == {}
    received = {m.rcpt_tos[0]: m.parsed() for m in smtp_server.wait_for(2)}
    assert set(received) == {"r0@example.org", "relecture@example.org"}
    for message in received.values():
        assert message["Subject"] == "[ESSAI] " + edition.subject
        assert message["List-Unsubscribe"]
    known = received["r0@example.org"].get_body(preferencelist=("plain",))
    unknown = received["relecture@example.org"].get_body(preferencelist=("plain",))
    assert known is not None
    assert "Bonjour Lecteur 0," in known.get_content()
    assert unknown is not None
    assert "Bonjour Marie Exemple," in unknown.get_content()
    assert not session.new
    assert not session.dirty
    session.commit()
    assert _rows(session) == (0, 0)


def test_english_test_send_subject_starts_with_test(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    letter = factories.newsletter(session, slug="weekly", language="en")
    edition = factories.edition(session, letter, language="en")
    session.commit()

    testsend.send_test(session, edition, ["editor@example.org"], settings)

    (message,) = smtp_server.wait_for(1)
    # A 70-odd character subject is folded onto its own line ("Subject:\r\n [TEST] …"),
    # which Python's parser reads with the folding space in front.
    assert message.parsed()["Subject"].strip() == "[TEST] " + edition.subject
    assert _rows(session) == (0, 0)


def test_invalid_address_is_refused_and_nothing_is_sent(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    session.commit()

    with pytest.raises(testsend.BadTestAddresses, match="invalid address: not-an-address") as info:
        testsend.send_test(session, edition, ["ok@example.org, not-an-address"], settings)

    assert info.value.invalid == ("not-an-address",)
    assert smtp_server.messages == []
    assert _rows(session) == (0, 0)


def test_more_than_ten_addresses_or_none_are_refused(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    eleven = [f"relecteur{n}@example.org" for n in range(11)]

    with pytest.raises(testsend.BadTestAddresses, match="at most 10"):
        testsend.send_test(session, edition, eleven, settings)
    with pytest.raises(testsend.BadTestAddresses, match="at least one"):
        testsend.send_test(session, edition, [" , "], settings)
    # The same address typed twice counts once.
    testsend.send_test(session, edition, ["a@example.org", "A@example.org"], settings)

    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [("a@example.org",)]


def test_every_test_message_has_its_own_message_id(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))

    testsend.send_test(session, edition, ["a@example.org"], settings)
    testsend.send_test(session, edition, ["a@example.org"], settings)

    first, second = smtp_server.wait_for(2)
    assert first.parsed()["Message-ID"] != second.parsed()["Message-ID"]


def test_links_of_a_test_message_belong_to_no_delivery(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    testsend.send_test(session, edition, ["a@example.org"], settings)

    (message,) = smtp_server.wait_for(1)
    unsubscribe = str(message.parsed()["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
    token = unsubscribe.rsplit("/u/", 1)[1]
    (delivery_id,) = tokens.verify(settings.secret_key, UNSUBSCRIBE_PURPOSE, token, 1)
    with pytest.raises(events.UnknownDelivery):
        events.lookup(session, delivery_id)


def test_a_refused_recipient_is_reported_and_the_others_still_get_the_test(
    session: Session, settings: Settings, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    smtp_server.recipient_responses["nobody@example.org"] = "550 5.1.1 No such user"

    report = testsend.send_test(
        session, edition, ["nobody@example.org", "editor@example.org"], settings
    )

    assert report.sent == ["editor@example.org"]
    assert "550" in report.failed["nobody@example.org"]
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [("editor@example.org",)]
    assert _rows(session) == (0, 0)


def test_an_unreachable_relay_fails_every_address(session: Session, settings: Settings) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    down = replace(settings, smtp_relays=(SmtpRelay("127.0.0.1", free_port(), timeout=2),))

    report = testsend.send_test(session, edition, ["a@example.org", "b@example.org"], down)

    assert report.sent == []
    assert set(report.failed) == {"a@example.org", "b@example.org"}
    assert all("no SMTP relay reachable" in reason for reason in report.failed.values())


def test_cli_test_send_mails_the_edition_and_names_bad_addresses(
    env: dict[str, str], session: Session, smtp_server: RecordingSmtpServer
) -> None:
    edition = factories.edition(session, factories.newsletter(session))
    session.commit()
    runner = CliRunner(env=env)

    sent = runner.invoke(cli, ["editions", "test-send", str(edition.id), "editor@example.org"])
    refused = runner.invoke(cli, ["editions", "test-send", str(edition.id), "not-an-address"])

    assert sent.exit_code == 0, sent.output
    assert "sent to editor@example.org" in sent.stdout
    (message,) = smtp_server.wait_for(1)
    assert message.parsed()["Subject"].startswith("[ESSAI] ")
    assert refused.exit_code == 1
    assert "invalid address: not-an-address" in refused.stderr
    assert len(smtp_server.messages) == 1
    assert _rows(session) == (0, 0)
