"""SQLite's write lock, shared by the workers: a mark that meets another writer waits
microseconds and tries again, never fails, and the connection goes back as it was lent.

The embedded default (one SQLite file) is what these tests run on; the send goes to the
real SMTP server.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db import SQLITE_BUSY_TIMEOUT_SECONDS, retry_while_locked
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer


def _locked_by_another(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    holder.execute("INSERT INTO t VALUES (0)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _impatient(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=0)
    connection.execute("PRAGMA busy_timeout=0")
    return connection


def test_a_statement_refused_by_the_lock_runs_once_the_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "locks.sqlite"
    holder = _locked_by_another(path)
    writer = _impatient(path)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        writer.execute("UPDATE t SET n = 1")  # no busy timeout: refused at once
    releaser = threading.Timer(0.05, holder.execute, args=("COMMIT",))
    releaser.start()
    tries = 0

    def update() -> int:
        nonlocal tries
        tries += 1
        return writer.execute("UPDATE t SET n = 1").rowcount

    assert retry_while_locked(update) == 1
    releaser.join()
    assert tries > 1
    assert holder.execute("SELECT n FROM t").fetchone() == (1,)


def test_a_lock_held_past_the_timeout_is_reported_as_locked(tmp_path: Path) -> None:
    path = tmp_path / "locks.sqlite"
    holder = _locked_by_another(path)
    writer = _impatient(path)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_while_locked(lambda: writer.execute("UPDATE t SET n = 1"), timeout=0.2)
    assert time.monotonic() - started >= 0.2
    holder.execute("ROLLBACK")
    assert writer.execute("SELECT n FROM t").fetchone() == (0,)  # nothing written


def test_other_database_errors_are_not_tried_again(tmp_path: Path) -> None:
    writer = _impatient(tmp_path / "locks.sqlite")
    tries = 0

    def broken() -> None:
        nonlocal tries
        tries += 1
        writer.execute("UPDATE no_such_table SET n = 1")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_while_locked(broken)
    assert tries == 1


def _writes_in_bursts(database: Path, stop: threading.Event, bursts: list[int]) -> None:
    # Another process's writes (a claim, the web app) as SQLite sees them: the write
    # lock held a few milliseconds at a time, over and over.
    other = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        while not stop.is_set():
            other.execute("BEGIN IMMEDIATE")
            time.sleep(0.003)
            other.execute("COMMIT")
            bursts[0] += 1
            time.sleep(0.001)
    finally:
        other.close()


def test_a_send_completes_while_another_writer_keeps_taking_the_lock(
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 40)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        edition_id = edition.id
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    stop, bursts = threading.Event(), [0]
    writer = threading.Thread(target=_writes_in_bursts, args=(database, stop, bursts))
    writer.start()
    try:
        report = loop.send_pending(sessions, settings, edition_id)
    finally:
        stop.set()
        writer.join()

    assert bursts[0] > 10  # the lock was taken again and again during the send
    assert (report.sent, report.failed, report.retried) == (40, 0, 0)
    with sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.edition_id == edition_id)).all()
        assert {row.status for row in rows} == {DeliveryStatus.SENT}
        edition_row = session.get(Edition, edition_id)
        assert edition_row is not None
        assert edition_row.status == EditionStatus.SENT
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert sorted(received.values()) == [1] * 40

    # Every pooled connection waits for locks again, the send loop's included.
    engine = sessions.kw["bind"]
    assert isinstance(engine, Engine)
    pooled = [engine.raw_connection() for _ in range(engine.pool.checkedin())]  # type: ignore[attr-defined]
    try:
        for raw in pooled:
            cursor = raw.cursor()
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone() == (SQLITE_BUSY_TIMEOUT_SECONDS * 1000,)
    finally:
        for raw in pooled:
            raw.close()
