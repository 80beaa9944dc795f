"""Pause and cancel are exact: no new SMTP transaction after the commit, true counts.

A real Celery worker (two pool processes) sends to an SMTP server that takes
0.15 s per message, so a stop always lands while messages are in flight.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import Edition, EditionStatus
from service.sending import controls, outbox
from tests import factories
from tests.support.queue import enqueue_send
from tests.support.smtp import RecordingSmtpServer
from tests.support.waits import wait_for_status
from tests.support.worker import WorkerProcess

READERS = 60
DELAY = 0.15
PROCESSES = 2  # the worker's pool: at most one message in flight each


def _hebdo(env: dict[str, str], *args: str) -> str:
    result = CliRunner(env=env).invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _start(sessions: sessionmaker[Session], settings: Settings) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, READERS)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=20)
        return edition.id


def _progress(sessions: sessionmaker[Session], edition_id: int) -> outbox.Progress:
    with sessions() as session:
        return outbox.progress(session, edition_id)


@pytest.mark.slow
def test_after_a_pause_commits_only_the_messages_already_in_flight_arrive(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    smtp_server.data_delay = DELAY
    edition_id = _start(sessions, settings)
    worker_env = {**env, "HEBDO_BATCH_SIZE": "20"}
    with WorkerProcess(worker_env, tmp_path / "worker.log", concurrency=PROCESSES):
        enqueue_send(settings, edition_id, copies=PROCESSES)
        smtp_server.wait_for(6, timeout=60)
        with sessions() as session, session.begin():
            edition = session.get(Edition, edition_id)
            assert edition is not None
            controls.pause(session, edition)
        committed = time.time()
        settled = controls.settle(sessions, edition_id)
        time.sleep(10 * DELAY)  # time enough for many more, had any started

        late = [m for m in smtp_server.messages if m.received_at > committed]
        assert len(late) <= PROCESSES
        assert settled.in_flight == 0
        progress = _progress(sessions, edition_id)
        assert progress == settled.progress
        assert progress.sent == len(smtp_server.messages)
        assert (progress.sending, progress.queued) == (0, READERS - progress.sent)

        out = _hebdo(env, "editions", "resume", str(edition_id), "--wait", "--timeout", "120")
        assert f"{READERS - progress.sent} messages left" in out

    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == {f"r{n}@example.org": 1 for n in range(READERS)}
    assert wait_for_status(sessions, edition_id).status == EditionStatus.SENT


@pytest.mark.slow
def test_the_counts_said_at_pause_and_cancel_are_the_final_ones(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    smtp_server.data_delay = DELAY
    edition_id = _start(sessions, settings)
    ident = str(edition_id)
    worker_env = {**env, "HEBDO_BATCH_SIZE": "20"}
    with WorkerProcess(worker_env, tmp_path / "worker.log", concurrency=PROCESSES):
        enqueue_send(settings, edition_id, copies=PROCESSES)
        smtp_server.wait_for(4, timeout=60)

        out = _hebdo(env, "editions", "pause", ident)
        answered = time.time()
        match = re.search(r"with (\d+) messages left, (\d+) sent", out)
        assert match, out
        left, sent = int(match[1]), int(match[2])
        time.sleep(10 * DELAY)
        assert not [m for m in smtp_server.messages if m.received_at > answered]
        progress = _progress(sessions, edition_id)
        assert (progress.remaining, progress.sent) == (left, sent)
        assert len(smtp_server.messages) == sent

        _hebdo(env, "editions", "resume", ident)
        smtp_server.wait_for(sent + 4, timeout=60)
        out = _hebdo(env, "editions", "cancel", ident)
        answered = time.time()
        match = re.search(r"(\d+) messages will not go out, (\d+) already sent", out)
        assert match, out
        cancelled, sent = int(match[1]), int(match[2])
        time.sleep(10 * DELAY)

    assert not [m for m in smtp_server.messages if m.received_at > answered]
    progress = _progress(sessions, edition_id)
    assert (progress.cancelled, progress.sent) == (cancelled, sent)
    assert cancelled + sent == READERS
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert sum(received.values()) == len(received) == sent
    assert wait_for_status(sessions, edition_id, EditionStatus.CANCELLED)
