"""A real worker with beat delivers outgoing webhooks: an unsubscribe made on the command
line reaches a receiver on loopback, signed, without anyone asking for it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from service import queue
from service.audience import subscriptions
from service.cli import cli
from tests import factories
from tests.support.webhooks import Receiver
from tests.support.worker import WorkerProcess


@pytest.mark.slow
def test_beat_and_the_worker_deliver_a_signed_event(
    env: dict[str, str], session: Session, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.thread.start()
    try:
        letter = factories.newsletter(session, "lettre")
        reader = factories.readers(session, letter, 1)[0]
        session.commit()
        added = CliRunner().invoke(
            cli,
            ["webhooks", "add", "--newsletter", "lettre", "--url", receiver.url,
             "--events", "unsubscribed"],
            env=env,
        )  # fmt: skip
        secret = added.stdout.strip()
        subscriptions.unsubscribe(session, reader.subscriptions[0], reason="test")
        session.commit()
        with WorkerProcess(env, tmp_path / "worker.log", beat=True) as worker:
            deadline = time.monotonic() + 60
            while not receiver.received:
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
        headers, body = receiver.received[0]
        payload = Webhook(secret).verify(body, headers)
        assert payload["type"] == "unsubscribed"
        assert queue.DELIVER_WEBHOOKS in (tmp_path / "worker.log").read_text()
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
