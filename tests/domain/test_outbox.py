"""The outbox rows: snapshot, claims under a lease, guarded outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscriptions
from service.config import Settings
from service.db import DriverStatement
from service.editions import store
from service.models import Delivery, DeliveryStatus, Subscription, SubscriptionStatus, utcnow
from service.sending import outbox
from tests import factories


def _frozen_edition(session: Session, settings: Settings, readers: int):  # type: ignore[no-untyped-def]
    letter = factories.newsletter(session)
    people = factories.readers(session, letter, readers)
    edition = factories.edition(session, letter)
    store.freeze(
        session, edition, base_url=settings.base_url, templates_path=settings.email_templates_path
    )
    return letter, people, edition


def test_snapshot_takes_confirmed_unsuppressed_readers_once(
    backend: str, settings: Settings, session: Session
) -> None:
    letter, people, edition = _frozen_edition(session, settings, 4)
    factories.readers(session, letter, 2, confirmed=False, prefix="pending")
    session.get(
        Subscription, people[0].subscriptions[0].id
    ).status = SubscriptionStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    subscriptions.record_hard_bounce(session, people[1].email, "550 5.1.1 no such user")
    assert outbox.start(session, edition) == 2
    assert outbox.start(session, edition) == 0
    assert sorted(d.email for d in session.query(Delivery)) == ["r2@example.org", "r3@example.org"]


def test_two_claimers_never_share_a_row_and_expired_leases_come_back(
    backend: str, settings: Settings, session: Session
) -> None:
    _, _, edition = _frozen_edition(session, settings, 5)
    outbox.start(session, edition)
    first = outbox.claim(session, edition.id, "w1", limit=3, lease_seconds=60)
    second = outbox.claim(session, edition.id, "w2", limit=3, lease_seconds=60)
    assert len(first) == 3
    assert len(second) == 2
    assert not {c.id for c in first} & {c.id for c in second}
    assert outbox.claim(session, edition.id, "w3", limit=3, lease_seconds=60) == []

    # w1 dies: after its lease, w3 takes its rows over and w1 can no longer record them.
    # Rows whose worker vanished come back one per claim: if one of them is what
    # killed it, it takes no other row down with it next time.
    later = utcnow() + timedelta(seconds=61)
    taken = []
    while comeback := outbox.claim(
        session, edition.id, "w3", limit=10, lease_seconds=60, now=later
    ):
        assert len(comeback) == 1
        taken += comeback
    assert {c.id for c in taken} == {c.id for c in first} | {c.id for c in second}
    assert all(c.attempts == 2 for c in taken)
    assert not outbox.mark_sent(session, first[0].id, "w1", "<x@y>")
    assert outbox.mark_sent(session, first[0].id, "w3", "<x@y>")
    row = session.get(Delivery, first[0].id)
    assert row is not None
    assert row.status == DeliveryStatus.SENT


def test_a_row_cancelled_after_it_was_handed_to_smtp_is_recorded_as_sent(
    backend: str, settings: Settings, session: Session
) -> None:
    _, people, edition = _frozen_edition(session, settings, 1)
    outbox.start(session, edition)
    (row,) = outbox.claim(session, edition.id, "w1", limit=5, lease_seconds=60)
    # The reader unsubscribes while the worker is talking to the relay…
    subscriptions.unsubscribe(session, people[0].subscriptions[0])
    assert session.get(Delivery, row.id).status == DeliveryStatus.CANCELLED  # type: ignore[union-attr]
    # …and the relay accepts the message: the truth is that it was sent.
    assert outbox.mark_sent(session, row.id, "w1", "<m@x>")
    assert not outbox.mark_sent(session, row.id, "w2", "<m@x>")
    session.expire_all()
    assert session.get(Delivery, row.id).status == DeliveryStatus.SENT  # type: ignore[union-attr]


def test_every_door_refuses_non_http_links_in_an_edition(
    backend: str, settings: Settings, session: Session
) -> None:
    letter = factories.newsletter(session)
    data = factories.sample_data()
    data["items"][0]["source_url"] = "javascript:alert(1)"
    with pytest.raises(store.EditionError, match=r"items\[0\]\.source_url"):
        store.create(session, letter, data)
    data["items"][0]["source_url"] = "https://ok.example/a"
    data["image"] = {"url": "data:image/png;base64,AAAA", "alt": "x"}
    with pytest.raises(store.EditionError, match=r"image\.url"):
        store.create(session, letter, data)


def test_the_send_loops_mark_is_mark_sent_run_straight_on_the_driver(
    backend: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        _, _, edition = _frozen_edition(session, settings, 3)
        outbox.start(session, edition)
        rows = outbox.claim(session, edition.id, "w1", limit=5, lease_seconds=60)
        engine = session.get_bind()
    assert isinstance(engine, Engine)
    mark = DriverStatement.compile(outbox.MARK_SENT, engine.dialect)
    when = utcnow().replace(microsecond=123456)
    raw = engine.raw_connection()
    driver = raw.driver_connection
    try:
        if backend == "postgres":
            driver.autocommit = True  # type: ignore[union-attr]  # as the send loop runs it
        assert mark.run(
            driver, delivery_id=rows[0].id, worker="w1", sent_at=when, message_id="<a@x>"
        )
        # Another worker's claim is not this worker's to mark.
        assert not mark.run(
            driver, delivery_id=rows[1].id, worker="w2", sent_at=when, message_id="<b@x>"
        )
    finally:
        if backend == "postgres":
            driver.autocommit = False  # type: ignore[union-attr]
        raw.close()
    with sessions() as session, session.begin():
        assert outbox.mark_sent(session, rows[2].id, "w1", "<c@x>", now=when)
    with sessions() as session:
        first, second, third = (session.get(Delivery, row.id) for row in rows)
        assert first is not None
        assert second is not None
        assert third is not None
        assert (first.status, first.sent_at, first.message_id, first.lease_expires_at) == (
            DeliveryStatus.SENT,
            when,
            "<a@x>",
            None,
        )
        assert second.status == DeliveryStatus.SENDING
        # Stored exactly as the Session stores it (SQLite keeps timestamps as text).
        stored: dict[int, object] = dict(
            session.execute(
                text("SELECT id, sent_at FROM delivery WHERE id IN (:a, :c)"),
                {"a": rows[0].id, "c": rows[2].id},
            ).all()
        )
        assert stored[rows[0].id] == stored[rows[2].id]
        assert third.sent_at == when
