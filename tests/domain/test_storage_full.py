"""A relay (or database) whose disk is full pauses the send; it resumes and completes.

The loop runs in the test process against the real SMTP test server, answering after
the data as the embedded sink does on a full disk, and the real databases.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db import is_disk_full
from service.mail.transport import enhanced_status, system_full
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus
from service.sending import controls, loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

FULL = "452 4.3.1 Insufficient system storage (No space left on device)"


def _start(sessions: sessionmaker[Session], settings: Settings, readers: int) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        return edition.id


def _rows(sessions: sessionmaker[Session], edition_id: int) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.edition_id == edition_id)))


def _edition(sessions: sessionmaker[Session], edition_id: int) -> Edition:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition


def test_a_full_relay_pauses_the_edition_and_the_resumed_send_completes(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings, readers=12)
    smtp_server.data_response = FULL

    report = loop.send_pending(sessions, settings, edition_id)

    assert report.relay_full
    assert report.sent == 0
    paused = _edition(sessions, edition_id)
    assert paused.status == EditionStatus.PAUSED
    assert paused.resume_at is not None  # the beat probes again by itself
    assert "the SMTP relay's storage is full" in paused.status_detail
    assert "452 4.3.1 Insufficient system storage" in paused.status_detail
    rows = _rows(sessions, edition_id)
    # Nothing marked sent, nothing failed, and no reader's attempt spent on the relay's disk.
    assert {r.status for r in rows} == {DeliveryStatus.QUEUED}
    assert {r.attempts for r in rows} == {0}
    assert smtp_server.messages == []

    # Space comes back; the beat's sweep resumes the edition at its time and it completes.
    smtp_server.data_response = None
    later = paused.resume_at + timedelta(seconds=1)
    with sessions() as session, session.begin():
        assert controls.resume_due(session, batch_size=settings.batch_size, now=later)
    loop.send_pending(sessions, settings, edition_id)

    assert _edition(sessions, edition_id).status == EditionStatus.SENT
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == {r.email: 1 for r in rows}
    assert {r.status for r in _rows(sessions, edition_id)} == {DeliveryStatus.SENT}


def test_one_storage_refusal_is_tried_again_at_once_without_spending_an_attempt(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings, readers=6)
    first = _rows(sessions, edition_id)[0].email
    smtp_server.fail_next_n_rcpt(first, 2, FULL)  # fewer than RELAY_FULL_PAUSE_AFTER in a row

    report = loop.send_pending(sessions, settings, edition_id)

    assert not report.relay_full
    assert _edition(sessions, edition_id).status == EditionStatus.SENT
    rows = {r.email: r for r in _rows(sessions, edition_id)}
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    assert rows[first].attempts == 1  # the two refusals gave the row back untried
    assert Counter(r for m in smtp_server.messages for r in m.rcpt_tos) == dict.fromkeys(rows, 1)


def test_a_full_mailbox_is_that_readers_retry_not_a_pause(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings, readers=5)
    rows = _rows(sessions, edition_id)
    for row in rows[:4]:  # more than RELAY_FULL_PAUSE_AFTER in a row, each about one mailbox
        smtp_server.fail_next_n_rcpt(row.email, 1, "452 4.2.2 Mailbox full")

    report = loop.send_pending(sessions, settings, edition_id)

    assert not report.relay_full
    assert report.retried == 4
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING
    after = {r.email: r for r in _rows(sessions, edition_id)}
    for row in rows[:4]:
        assert after[row.email].status == DeliveryStatus.QUEUED
        assert after[row.email].next_attempt_at is not None  # waits its retry delay
        assert "4.2.2" in (after[row.email].last_error or "")
    assert after[rows[4].email].status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    ("reply", "full"),
    [
        ("452 4.3.1 Insufficient system storage", True),
        ("452 Insufficient system storage", True),
        ("452 4.0.0 Try later", True),
        ("451 4.3.1 Mail system full", True),
        ("452 4.2.2 Mailbox full", False),
        ("452 4.5.3 Too many recipients", False),
        ("451 4.7.1 Greylisted", False),
        ("421 4.3.2 Shutting down", False),
    ],
)
def test_which_replies_say_the_relay_is_full(reply: str, full: bool) -> None:
    code = int(reply.split()[0])
    assert system_full(enhanced_status(reply), code) is full


def test_a_real_sqlite_disk_full_error_is_recognised(tmp_path: Path) -> None:
    # max_page_count makes SQLite refuse to grow the file, as a full disk does.
    engine = create_engine(f"sqlite:///{tmp_path / 'tiny.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (b BLOB)"))
    with engine.begin() as conn:
        conn.execute(text("PRAGMA max_page_count = 3"))
        with pytest.raises(OperationalError) as raised:
            conn.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))
    assert isinstance(raised.value.orig, sqlite3.OperationalError)
    assert is_disk_full(raised.value)
    engine.dispose()
    with pytest.raises(OperationalError) as other:
        create_engine("sqlite://").connect().execute(text("SELECT * FROM missing"))
    assert not is_disk_full(other.value)
