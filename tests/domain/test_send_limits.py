"""The send loop under the shared limits: it gives rows back instead of sitting on them."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import ratelimit
from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer


def _edition(sessions: sessionmaker[Session], settings: Settings, readers: int) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=50)
        return edition.id


def _statuses(sessions: sessionmaker[Session]) -> dict[DeliveryStatus, int]:
    with sessions() as session:
        rows = session.scalars(select(Delivery.status)).all()
    return {status: rows.count(status) for status in set(rows)}


def test_a_full_hourly_quota_releases_the_batch_for_beat_to_hand_out_later(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _edition(sessions, settings, readers=8)
    limited = dataclasses.replace(settings, rate_per_hour=5)
    limiter = ratelimit.limiter_for(limited, sessions)
    assert limiter is not None

    report = loop.send_pending(sessions, limited, edition_id, limiter=limiter)

    assert report.sent == 5
    assert report.throttled
    assert len(smtp_server.messages) == 5
    # The three left are queued again, not held under a lease, and not spent attempts.
    assert _statuses(sessions) == {DeliveryStatus.SENT: 5, DeliveryStatus.QUEUED: 3}
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.status == EditionStatus.SENDING
        assert set(session.scalars(select(Delivery.attempts))) == {1, 0}


def test_a_worker_without_a_free_connection_slot_claims_nothing(
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _edition(sessions, settings, readers=3)
    capped = dataclasses.replace(settings, max_connections=1)
    holder = ratelimit.connection_cap_for(capped, sessions)
    latecomer = ratelimit.connection_cap_for(capped, sessions)
    assert holder is not None
    assert latecomer is not None
    assert holder.acquire(patience=0)
    monkeypatch.setattr(loop, "CONNECTION_PATIENCE_SECONDS", 0.2)  # not 5 s per test

    report = loop.send_pending(sessions, capped, edition_id, connections=latecomer)
    assert report.throttled
    assert report.sent == 0
    assert _statuses(sessions) == {DeliveryStatus.QUEUED: 3}

    holder.release()
    report = loop.send_pending(sessions, capped, edition_id, connections=latecomer)
    assert report.sent == 3
    assert len(smtp_server.messages) == 3
