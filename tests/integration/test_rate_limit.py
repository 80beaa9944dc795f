"""The relay's limits hold across worker processes, measured where the relay sees them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from tests import factories
from tests.support.queue import enqueue_send
from tests.support.smtp import RecordingSmtpServer
from tests.support.waits import wait_for_status
from tests.support.worker import WorkerProcess

READERS = 80
RATE = 10
CONNECTIONS = 2


@pytest.mark.slow
def test_ten_per_second_holds_across_two_workers_at_the_smtp_server(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, READERS)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=10)
        edition_id = edition.id

    limited = {
        **env,
        "HEBDO_RATE_PER_SECOND": str(RATE),
        "HEBDO_MAX_CONNECTIONS": str(CONNECTIONS),
        "HEBDO_BATCH_SIZE": "10",  # small batches, so that both workers get rows
    }
    with (
        WorkerProcess(limited, tmp_path / "w1.log", concurrency=2, name="w1"),
        WorkerProcess(limited, tmp_path / "w2.log", concurrency=2, name="w2"),
    ):
        enqueue_send(settings, edition_id, copies=4)
        wait_for_status(sessions, edition_id, timeout=60)

    received = smtp_server.messages
    assert sorted(r for m in received for r in m.rcpt_tos) == sorted(
        f"r{n}@example.org" for n in range(READERS)
    )
    times = sorted(m.received_at for m in received)
    busiest = max(sum(1 for t in times if start <= t < start + 1) for start in times)
    assert busiest <= RATE
    assert times[-1] - times[0] >= READERS / RATE - 1

    # Never more than the cap of connections open at once: each connection's span,
    # from its first message to its last, overlaps at most CONNECTIONS - 1 others.
    spans = [
        (min(m.received_at for m in group), max(m.received_at for m in group))
        for group in (
            list(g)
            for _, g in itertools.groupby(
                sorted(received, key=lambda m: m.peer), key=lambda m: m.peer
            )
        )
    ]
    open_at_once = max(sum(1 for s, e in spans if s <= t <= e) for t in times)
    assert open_at_once <= CONNECTIONS
    # Several senders took part: the limit is shared, not one process's own pace.
    assert len(spans) >= 2
