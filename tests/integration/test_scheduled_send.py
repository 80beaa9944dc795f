"""Schedules and outages resolved by the beat of a real worker, with nobody clicking."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import Edition, EditionStatus, utcnow
from service.sending import controls
from tests import factories
from tests.support.queue import enqueue_send
from tests.support.smtp import RecordingSmtpServer
from tests.support.waits import wait_for_status
from tests.support.worker import WorkerProcess

READERS = 8


def _status(sessions: sessionmaker[Session], edition_id: int) -> Edition:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition


def _readers_edition(sessions: sessionmaker[Session]) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, READERS)
        return factories.edition(session, letter).id


@pytest.mark.slow
def test_an_edition_scheduled_a_moment_ago_is_sent_by_the_beat_within_a_minute(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    edition_id = _readers_edition(sessions)
    at = (utcnow() - timedelta(seconds=2)).isoformat(timespec="seconds")
    result = CliRunner(env=env).invoke(cli, ["editions", "schedule", str(edition_id), "--at", at])
    assert result.exit_code == 0, result.output
    assert "scheduled for" in result.output
    assert _status(sessions, edition_id).status == EditionStatus.SCHEDULED

    # No task is enqueued by anyone: only the beat, reading the database, can start it.
    with WorkerProcess(env, tmp_path / "worker.log", beat=True) as worker:
        started = time.monotonic()
        try:
            smtp_server.wait_for(READERS, timeout=60)
        except TimeoutError as exc:
            raise AssertionError(worker.log()) from exc
        assert time.monotonic() - started < 60
        edition = wait_for_status(sessions, edition_id, EditionStatus.SENT, timeout=20)

    assert edition.send_started_at is not None
    assert edition.scheduled_at is not None
    assert edition.send_started_at - edition.scheduled_at < timedelta(seconds=60)
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == {f"r{n}@example.org": 1 for n in range(READERS)}


@pytest.mark.slow
def test_a_send_paused_by_a_relay_outage_finishes_by_itself_once_the_relay_is_back(
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    edition_id = _readers_edition(sessions)
    with sessions() as session, session.begin():
        edition = session.get(Edition, edition_id)
        assert edition is not None
        factories.begin_sending(session, settings, edition)
    smtp_server.refuse_connections()

    with WorkerProcess(env, tmp_path / "worker.log", beat=True) as worker:
        enqueue_send(settings, edition_id)
        paused = wait_for_status(sessions, edition_id, EditionStatus.PAUSED, timeout=30)
        assert paused.status_detail.startswith("paused: SMTP relay unavailable")
        assert paused.resume_at is not None
        smtp_server.accept_connections()
        # The first wait is the shortest one; the beat ticks every 15 s after it.
        budget = controls.RELAY_RETRY_MIN_SECONDS + 45
        try:
            smtp_server.wait_for(READERS, timeout=budget)
        except TimeoutError as exc:
            raise AssertionError(worker.log()) from exc
        wait_for_status(sessions, edition_id, EditionStatus.SENT, timeout=20)

    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == {f"r{n}@example.org": 1 for n in range(READERS)}
