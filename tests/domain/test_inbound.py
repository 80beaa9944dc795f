"""Returned mail: bounce reports, complaints and mailto unsubscribes reach their delivery.

Every test sends a real edition through the SMTP test server first and takes the
VERP sender and the List-Unsubscribe mailto from the message it received, so the
tokens are the ones a relay or a reader would really send back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import tokens
from service.cli import cli
from service.config import Settings
from service.mail.mime import DELIVERY_PURPOSE
from service.models import (
    Delivery,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from service.sending import loop
from service.tracking import inbound
from tests import factories
from tests.support.smtp import RecordingSmtpServer


@dataclass(frozen=True)
class Sent:
    """What came back out of the SMTP server for one reader."""

    delivery_id: int
    email: str
    verp: str  # the envelope sender: bounces+TOKEN@domain
    mailto: str  # unsubscribe+TOKEN@domain, from List-Unsubscribe
    headers: str  # the message's header block, as a DSN quotes it


def _send(
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    readers: int = 2,
) -> dict[str, Sent]:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=50)
        edition_id = edition.id
    assert loop.send_pending(sessions, settings, edition_id).sent == readers
    with sessions() as session:
        ids = {row[0]: row[1] for row in session.execute(select(Delivery.email, Delivery.id))}
    sent = {}
    for message in smtp_server.wait_for(readers):
        address = message.rcpt_tos[0]
        (mailto,) = re.findall(r"<mailto:([^>]+)>", message.parsed()["List-Unsubscribe"])
        headers = message.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
        sent[address] = Sent(ids[address], address, message.mail_from, mailto, headers)
    return sent


def _dsn(sent: Sent, action: str, status: str, diagnostic: str) -> bytes:
    """A delivery status notification shaped like the ones Postfix returns."""
    boundary = "4YdK2x0qZ9z3Jt.1737540000/mx.hebdo.example"
    return (
        f"Return-Path: <>\r\n"
        f"Delivered-To: {sent.verp}\r\n"
        f"Date: Wed, 22 Jan 2025 11:02:13 +0100 (CET)\r\n"
        f"From: MAILER-DAEMON@mx.hebdo.example (Mail Delivery System)\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"To: {sent.verp}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"Message-Id: <20250122100213.4YdK2x0qZ9z3Jt@mx.hebdo.example>\r\n"
        f"\r\n"
        f"This is a MIME-encapsulated message.\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"Le serveur de messagerie n'a pas pu remettre votre lettre à son destinataire.\r\n"
        f"\r\n"
        f"<{sent.email}>: host mx.example.org[192.0.2.25] said: {diagnostic}\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"\r\n"
        f"Reporting-MTA: dns; mx.hebdo.example\r\n"
        f"X-Postfix-Queue-ID: 4YdK2x0qZ9z3Jt\r\n"
        f"X-Postfix-Sender: rfc822; {sent.verp}\r\n"
        f"Arrival-Date: Wed, 22 Jan 2025 11:02:11 +0100 (CET)\r\n"
        f"\r\n"
        f"Final-Recipient: rfc822; {sent.email}\r\n"
        f"Original-Recipient: rfc822;{sent.email}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; mx.example.org\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: Undelivered Message Headers\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
        f"{sent.headers}\r\n"
        f"\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _arf(sent: Sent) -> bytes:
    """A feedback-loop complaint (RFC 5965) about the message, sent to its VERP sender."""
    boundary = "part1_13d.2e68ed54_boundary"
    return (
        f"From: <fbl@courriel.example>\r\n"
        f"Date: Thu, 23 Jan 2025 08:15:00 +0000\r\n"
        f"Subject: FW: {sent.email}\r\n"
        f"To: <{sent.verp}>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type=feedback-report;\r\n"
        f'\tboundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f'Content-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"Un abonné de notre messagerie a signalé ce message comme indésirable.\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/feedback-report\r\n"
        f"\r\n"
        f"Feedback-Type: abuse\r\n"
        f"User-Agent: BoucleFBL/2.1\r\n"
        f"Version: 1\r\n"
        f"Original-Mail-From: <{sent.verp}>\r\n"
        f"Original-Rcpt-To: <{sent.email}>\r\n"
        f"Arrival-Date: Wed, 22 Jan 2025 11:02:11 +0100\r\n"
        f"Source-IP: 192.0.2.10\r\n"
        f"Reported-Domain: hebdo.example\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
        f"{sent.headers}\r\n"
        f"\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _unsubscribe_mail(sent: Sent) -> bytes:
    """What a mail client sends when the reader picks the mailto of List-Unsubscribe."""
    return (
        f"From: Lecteur <{sent.email}>\r\n"
        f"To: {sent.mailto}\r\n"
        f"Subject: unsubscribe\r\n"
        f"Date: Thu, 23 Jan 2025 09:00:00 +0100\r\n"
        f"Message-ID: <desabo.1@example.org>\r\n"
        f"\r\n"
        f"Merci de ne plus m'envoyer cette lettre.\r\n"
    ).encode()


@dataclass(frozen=True)
class State:
    """Everything an inbound message may change, for one reader."""

    subscriber: SubscriberStatus
    subscription: SubscriptionStatus
    suppressions: list[tuple[int | None, SuppressionReason]]
    events: list[tuple[EventKind, str | None, int | None]]


def _state(sessions: sessionmaker[Session], email: str) -> State:
    with sessions() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        subscription = session.scalars(
            select(Subscription.status).where(Subscription.subscriber_id == subscriber.id)
        ).one()
        suppressions = session.execute(
            select(Suppression.newsletter_id, Suppression.reason)
            .where(Suppression.email == email)
            .order_by(Suppression.id)
        )
        events = session.execute(
            select(Event.kind, Event.value, Event.delivery_id)
            .where(Event.subscriber_id == subscriber.id)
            .order_by(Event.id)
        )
        return State(
            subscriber.status,
            subscription,
            [(row[0], row[1]) for row in suppressions],
            [(row[0], row[1], row[2]) for row in events],
        )


def _process(
    sessions: sessionmaker[Session], settings: Settings, raw: bytes, *recipients: str
) -> inbound.InboundResult:
    with sessions.begin() as session:
        return inbound.process_message(session, settings.secret_key, raw, recipients)


UNKNOWN_USER = (
    "550 5.1.1 <{email}>: Recipient address rejected: User unknown in virtual mailbox table"
)


def test_hard_bounce_report_suppresses_the_address_everywhere_once(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    sent = _send(sessions, settings, smtp_server)
    reader, other = sent["r0@example.org"], sent["r1@example.org"]
    assert reader.verp.startswith("bounces+")
    assert reader.verp.endswith("@" + settings.bounce_domain)
    report = _dsn(reader, "failed", "5.1.1", UNKNOWN_USER.format(email=reader.email))

    result = _process(sessions, settings, report, reader.verp)
    again = _process(sessions, settings, report, reader.verp)

    assert result.kind == "hard_bounce"
    assert result.delivery_id == reader.delivery_id
    assert result.detail.startswith("5.1.1 smtp; 550 5.1.1 <r0@example.org>")
    assert again.kind == "hard_bounce"
    state = _state(sessions, reader.email)
    assert state.subscriber == SubscriberStatus.BOUNCED
    assert state.suppressions == [(None, SuppressionReason.HARD_BOUNCE)]
    assert state.events == [(EventKind.BOUNCE, "hard", reader.delivery_id)] * 2
    untouched = _state(sessions, other.email)
    assert untouched.subscriber == SubscriberStatus.ACTIVE
    assert untouched.suppressions == []
    assert untouched.events == []


@pytest.mark.parametrize(
    ("action", "status", "diagnostic"),
    [
        ("delayed", "4.2.2", "452 4.2.2 <{email}>: Mailbox full, try again later"),
        ("failed", "4.4.1", "connect to mx.example.org[192.0.2.25]:25: Connection timed out"),
        # Refused for good, but the mailbox exists: the SMTP path doesn't suppress it either.
        ("failed", "5.2.2", "552 5.2.2 <{email}>: Mailbox full"),
        ("failed", "5.7.1", "550 5.7.1 Message rejected as spam by content filter"),
    ],
)
def test_temporary_or_non_mailbox_failures_are_soft_bounces_only(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    action: str,
    status: str,
    diagnostic: str,
) -> None:
    reader = _send(sessions, settings, smtp_server, readers=1)["r0@example.org"]
    report = _dsn(reader, action, status, diagnostic.format(email=reader.email))

    # No envelope recipient given: the Delivered-To header names the VERP address.
    result = _process(sessions, settings, report)

    assert result.kind == "soft_bounce"
    assert result.delivery_id == reader.delivery_id
    assert result.detail.startswith(status)
    state = _state(sessions, reader.email)
    assert state.subscriber == SubscriberStatus.ACTIVE
    assert state.subscription == SubscriptionStatus.CONFIRMED
    assert state.suppressions == []
    assert state.events == [(EventKind.BOUNCE, "soft", reader.delivery_id)]


def test_feedback_loop_complaint_marks_the_reader_complained_and_suppresses_them(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    reader = _send(sessions, settings, smtp_server, readers=1)["r0@example.org"]

    result = _process(sessions, settings, _arf(reader), reader.verp)
    _process(sessions, settings, _arf(reader), reader.verp)

    assert result.kind == "complaint"
    assert result.delivery_id == reader.delivery_id
    state = _state(sessions, reader.email)
    assert state.subscriber == SubscriberStatus.COMPLAINED
    assert state.suppressions == [(None, SuppressionReason.COMPLAINT)]
    assert state.events[0] == (EventKind.COMPLAINT, "abuse", reader.delivery_id)


def test_complaint_at_a_fixed_feedback_loop_address_is_matched_by_our_message_id(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    sent = _send(sessions, settings, smtp_server, readers=2)
    reader, other = sent["r0@example.org"], sent["r1@example.org"]
    fixed = "fbl@hebdo.example"
    report = _arf(reader).replace(f"To: <{reader.verp}>".encode(), f"To: <{fixed}>".encode())
    # Someone who knows the other reader's address, but not their Message-ID, tries too.
    mid = re.search(r"Message-ID: (<[^>]+>)", other.headers, re.IGNORECASE)
    assert mid is not None
    forged = (
        _arf(other)
        .replace(f"To: <{other.verp}>".encode(), f"To: <{fixed}>".encode())
        .replace(mid[1].encode(), re.sub(r"\.[0-9a-f]{10}@", ".0123456789@", mid[1]).encode())
    )
    assert forged != _arf(other)

    result = _process(sessions, settings, report, fixed)
    refused = _process(sessions, settings, forged, fixed)

    assert (result.kind, result.delivery_id) == ("complaint", reader.delivery_id)
    assert refused.kind == "ignored"
    assert _state(sessions, reader.email).subscriber == SubscriberStatus.COMPLAINED
    untouched = _state(sessions, other.email)
    assert untouched.subscriber != SubscriberStatus.COMPLAINED
    assert untouched.suppressions == []
    assert untouched.events == []


def test_mail_to_the_list_unsubscribe_mailto_unsubscribes_the_reader(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    reader = _send(sessions, settings, smtp_server, readers=1)["r0@example.org"]
    assert reader.mailto.startswith("unsubscribe+")

    result = _process(sessions, settings, _unsubscribe_mail(reader), reader.mailto)
    again = _process(sessions, settings, _unsubscribe_mail(reader))  # read from To:

    assert (result.kind, result.delivery_id) == ("unsubscribe", reader.delivery_id)
    assert (again.kind, again.detail) == ("unsubscribe", "already unsubscribed")
    state = _state(sessions, reader.email)
    assert state.subscription == SubscriptionStatus.UNSUBSCRIBED
    assert state.subscriber == SubscriberStatus.ACTIVE
    assert state.events == [(EventKind.UNSUBSCRIBE, "mailto unsubscribe", reader.delivery_id)]
    with sessions() as session:
        reason = session.scalars(select(Subscription.unsubscribe_reason)).one()
    assert reason == "mailto unsubscribe"


def _tampered(address: str) -> str:
    local, _, domain = address.partition("@")
    prefix, _, token = local.partition("+")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    return f"{prefix}+{flipped}@{domain}"


def test_forged_tokens_and_unknown_deliveries_are_ignored_and_change_nothing(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    reader = _send(sessions, settings, smtp_server, readers=1)["r0@example.org"]
    before = _state(sessions, reader.email)
    hard = _dsn(reader, "failed", "5.1.1", UNKNOWN_USER.format(email=reader.email))
    # A token valid for links, but minted for another purpose than bounces.
    delivery_token = tokens.sign(settings.secret_key, DELIVERY_PURPOSE, reader.delivery_id)
    missing = tokens.sign(settings.secret_key, DELIVERY_PURPOSE, reader.delivery_id + 1000)

    results = [
        _process(sessions, settings, hard, _tampered(reader.verp)),
        _process(sessions, settings, _arf(reader), _tampered(reader.verp)),
        _process(sessions, settings, hard, f"bounces+{delivery_token}@{settings.bounce_domain}"),
        _process(sessions, settings, _unsubscribe_mail(reader), _tampered(reader.mailto)),
        _process(sessions, settings, _unsubscribe_mail(reader), f"unsubscribe+{missing}@x.org"),
        _process(sessions, settings, hard, "postmaster@hebdo.example"),
    ]

    assert [r.kind for r in results] == ["ignored"] * 6
    assert "bad token" in results[0].detail
    assert results[4].detail == "no such delivery"
    assert _state(sessions, reader.email) == before
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_cli_sweeps_a_maildir_and_moves_what_it_processed_to_cur(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    sent = _send(sessions, settings, smtp_server, readers=3)
    bounced, leaving, delayed = (sent[f"r{n}@example.org"] for n in range(3))
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    messages = {
        "1737540001.a.mx": _dsn(
            bounced, "failed", "5.1.1", UNKNOWN_USER.format(email=bounced.email)
        ),
        "1737540002.b.mx": _unsubscribe_mail(leaving),
        "1737540003.c.mx": _dsn(delayed, "delayed", "4.2.2", "452 4.2.2 Mailbox full"),
        "1737540004.d.mx": b"From: un@example.org\r\nTo: lettre@hebdo.example\r\n\r\nSalut\r\n",
    }
    for name, raw in messages.items():
        (maildir / "new" / name).write_bytes(raw)

    result = CliRunner().invoke(cli, ["inbound", "--maildir", str(maildir)], env=env)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"hard_bounce delivery {bounced.delivery_id}: 5.1.1 smtp; "
        + UNKNOWN_USER.format(email=bounced.email),
        f"unsubscribe delivery {leaving.delivery_id}: unsubscribed",
        f"soft_bounce delivery {delayed.delivery_id}: 4.2.2 smtp; 452 4.2.2 Mailbox full",
        "ignored: not addressed to bounces+ or unsubscribe+",
    ]
    assert list((maildir / "new").iterdir()) == []
    assert sorted(p.name for p in (maildir / "cur").iterdir()) == [
        f"{name}:2,S" for name in messages
    ]
    assert _state(sessions, bounced.email).subscriber == SubscriberStatus.BOUNCED
    assert _state(sessions, leaving.email).subscription == SubscriptionStatus.UNSUBSCRIBED
    assert _state(sessions, delayed.email).suppressions == []


def test_cli_reads_a_piped_message_with_the_envelope_recipient(
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    reader = _send(sessions, settings, smtp_server, readers=1)["r0@example.org"]
    # The MTA knows the recipient; the forwarded copy's headers name another address.
    raw = _unsubscribe_mail(reader).replace(reader.mailto.encode(), b"liste@hebdo.example")

    result = CliRunner().invoke(
        cli, ["inbound", "--recipient", reader.mailto, "-"], input=raw, env=env
    )

    assert result.exit_code == 0, result.output
    assert result.output == f"unsubscribe delivery {reader.delivery_id}: unsubscribed\n"
    assert _state(sessions, reader.email).subscription == SubscriptionStatus.UNSUBSCRIBED
