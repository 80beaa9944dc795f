"""The promise under a crash: kill -9 a worker mid-send, and nobody is lost or doubled.

Two workers send a 2,000-reader edition to the SMTP sink (a separate process that
writes one Maildir file per delivered message). Once about a third has gone out,
one worker and its pool children are killed with SIGKILL; a third worker starts,
and beat (in the surviving worker) hands out the rows whose leases ran out.
"""

from __future__ import annotations

import re
import socket
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.tools.sink import maildir_files
from tests import factories
from tests.support.queue import enqueue_send
from tests.support.smtp import SinkProcess
from tests.support.worker import WorkerProcess

READERS = 2000
BATCH = 50
LEASE_SECONDS = 5

_HEADER = re.compile(rb"^(Delivered-To|Message-ID): *(.+?)\r?$", re.MULTILINE | re.IGNORECASE)


def _bulk_readers(session: Session, letter: Newsletter, count: int) -> None:
    """`count` confirmed readers in two statements (the domain path takes minutes for this)."""
    now = utcnow()
    ids = session.scalars(
        insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
        [{"email": f"r{n}@example.org", "name": f"Lecteur {n}"} for n in range(count)],
    ).all()
    session.execute(
        insert(Subscription),
        [
            {
                "newsletter_id": letter.id,
                "subscriber_id": subscriber_id,
                "status": SubscriptionStatus.CONFIRMED,
                "consent_at": now,
                "consent_source": "test",
                "confirmed_at": now,
            }
            for subscriber_id in ids
        ],
    )


def _count(sessions: sessionmaker[Session], edition_id: int, status: DeliveryStatus) -> int:
    with sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.edition_id == edition_id, Delivery.status == status)
            )
            or 0
        )


def _received(maildir: Path) -> dict[str, list[str]]:
    """Recipient → the Message-IDs of every copy the sink stored for them."""
    copies: dict[str, list[str]] = defaultdict(list)
    for path in maildir_files(maildir):
        head = path.read_bytes().split(b"\n\n", 1)[0]
        fields = {name.lower(): value.strip() for name, value in _HEADER.findall(head)}
        copies[fields[b"delivered-to"].decode()].append(fields[b"message-id"].decode())
    return copies


@pytest.mark.slow
def test_kill_9_mid_send_loses_nobody_and_repeats_only_in_flight_messages(
    backend: str,
    env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        _bulk_readers(session, letter, READERS)
        edition = factories.edition(session, letter)
        started = factories.begin_sending(session, settings, edition, batch_size=BATCH)
        edition_id = edition.id
    assert started.recipients == READERS

    with SinkProcess(tmp_path / "maildir") as sink:
        crash_env = {
            **env,
            "SMTP_URL": sink.url,
            "HEBDO_LEASE_SECONDS": str(LEASE_SECONDS),
            "HEBDO_BATCH_SIZE": str(BATCH),
        }
        doomed = WorkerProcess(crash_env, tmp_path / "w1.log", concurrency=2, name="w1")
        survivor = WorkerProcess(
            crash_env, tmp_path / "w2.log", concurrency=2, beat=True, name="w2"
        )
        late = WorkerProcess(crash_env, tmp_path / "w3.log", concurrency=2, name="w3")
        try:
            doomed.start()
            survivor.start()
            enqueue_send(settings, edition_id, copies=4)

            # Kill once about 30 % went out, while the doomed worker holds claimed rows.
            doomed_names = {f"{socket.gethostname()}:{pid}" for pid in doomed.child_pids()}
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, "the send never reached 30 %"
                sent = _count(sessions, edition_id, DeliveryStatus.SENT)
                held = _held_by(sessions, edition_id, doomed_names)
                if sent >= READERS * 0.3 and held:
                    break
                time.sleep(0.05)
            doomed.kill()
            in_flight = _held_by(sessions, edition_id, doomed_names)
            assert 0 < len(in_flight) <= 2 * BATCH

            late.start()
            deadline = time.monotonic() + 80
            while _status(sessions, edition_id) != EditionStatus.SENT:
                assert time.monotonic() < deadline, (
                    f"edition not sent: {_count(sessions, edition_id, DeliveryStatus.SENT)} sent"
                    f"\n{survivor.log()}"
                )
                time.sleep(0.2)
        finally:
            doomed.kill()
            survivor.stop()
            late.stop()
        copies = _received(sink.maildir)

    with sessions() as session:
        rows = {d.email: d for d in session.scalars(select(Delivery))}
    assert len(rows) == READERS
    assert {d.status for d in rows.values()} == {DeliveryStatus.SENT}

    # Every reader got the edition, every copy carries the row's Message-ID, and a
    # reader who got two copies was one of the killed worker's messages in flight.
    assert set(copies) == set(rows)
    for email, message_ids in copies.items():
        assert set(message_ids) == {rows[email].message_id}
    doubled = {email for email, message_ids in copies.items() if len(message_ids) > 1}
    assert max(len(message_ids) for message_ids in copies.values()) <= 2
    assert {rows[email].id for email in doubled} <= in_flight
    # One message in flight per pool process at most: the killed worker had two.
    assert len(doubled) <= 2


def _held_by(sessions: sessionmaker[Session], edition_id: int, workers: set[str]) -> set[int]:
    with sessions() as session:
        return set(
            session.scalars(
                select(Delivery.id).where(
                    Delivery.edition_id == edition_id,
                    Delivery.status == DeliveryStatus.SENDING,
                    Delivery.claimed_by.in_(workers),
                )
            )
        )


def _status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status
