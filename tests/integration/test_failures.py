"""The send loop against a real SMTP server that misbehaves: outages, 4xx, 5xx, hang-ups.

The loop runs in this process (loop.send_pending, what the worker task calls), and
time moves by rewriting the database's clocks (resume_at, next_attempt_at) and passing
`now` to the beat sweep, never by sleeping.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscriptions
from service.config import Settings
from service.mail.transport import NextEnvelope, RelayUnavailable, SmtpTransport
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.sending import controls, loop, outbox, schedule
from tests import factories
from tests.support.smtp import RecordingSmtpServer

READERS = 12


def _start(sessions: sessionmaker[Session], settings: Settings, readers: int = READERS) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        return edition.id


def _edition(sessions: sessionmaker[Session], edition_id: int) -> Edition:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition


def _rows(sessions: sessionmaker[Session], edition_id: int) -> dict[str, Delivery]:
    with sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.edition_id == edition_id))
        return {row.email: row for row in rows}


def _sweep(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> list[int]:
    """What the beat task does at `now`; returns the editions it would hand to workers."""
    with sessions() as session, session.begin():
        work = schedule.sweep(
            session,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=settings.batch_size,
            now=now,
        )
    return [s.edition_id for s in (*work.started, *work.resumed)] + work.pending


def _retries_due_now(sessions: sessionmaker[Session], edition_id: int) -> None:
    """Move the clock past every pending retry of the edition."""
    with sessions() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.QUEUED)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def _received(server: RecordingSmtpServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.rcpt_tos)


def _everyone() -> set[str]:
    return {f"r{n}@example.org" for n in range(READERS)}


def test_relay_down_pauses_the_send_then_it_completes_by_itself_once_the_relay_is_back(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings)
    smtp_server.refuse_connections()

    before = utcnow()
    report = loop.send_pending(sessions, settings, edition_id)

    assert report.relay_down
    assert report.sent == report.retried == report.failed == 0
    edition = _edition(sessions, edition_id)
    assert edition.status == EditionStatus.PAUSED
    assert edition.status_detail.startswith("paused: SMTP relay unavailable (")
    assert f"127.0.0.1:{smtp_server.port}" in edition.status_detail
    assert edition.resume_at is not None
    assert before + timedelta(seconds=30) <= edition.resume_at <= utcnow() + timedelta(seconds=30)
    rows = _rows(sessions, edition_id)
    # The rows were given back untried: no attempt spent, no error, nothing in flight.
    assert {(r.status, r.attempts, r.last_error) for r in rows.values()} == {
        (DeliveryStatus.QUEUED, 0, None)
    }
    # The beat leaves it alone until resume_at …
    assert _sweep(sessions, settings, now=edition.resume_at - timedelta(seconds=1)) == []
    assert _edition(sessions, edition_id).status == EditionStatus.PAUSED

    # … then resumes it; the relay is still down, so it pauses again.
    assert _sweep(sessions, settings, now=edition.resume_at) == [edition_id]
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING
    assert loop.send_pending(sessions, settings, edition_id).relay_down
    paused_again = _edition(sessions, edition_id)
    assert paused_again.status == EditionStatus.PAUSED
    assert paused_again.resume_at is not None

    smtp_server.accept_connections()
    assert _sweep(sessions, settings, now=paused_again.resume_at) == [edition_id]
    report = loop.send_pending(sessions, settings, edition_id)

    assert report.sent == READERS
    assert _edition(sessions, edition_id).status == EditionStatus.SENT
    assert _received(smtp_server) == dict.fromkeys(_everyone(), 1)
    assert {(r.status, r.attempts) for r in _rows(sessions, edition_id).values()} == {
        (DeliveryStatus.SENT, 1)
    }


def test_451_recipients_are_retried_with_backoff_and_finally_sent(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings)
    greylisted = {"r2@example.org", "r7@example.org"}
    for address in greylisted:
        smtp_server.fail_next_n_rcpt(address, 2, "451 4.7.1 Greylisted, come back later")

    report = loop.send_pending(sessions, settings, edition_id)

    assert (report.sent, report.retried, report.failed) == (READERS - 2, 2, 0)
    rows = _rows(sessions, edition_id)
    for address in greylisted:
        row = rows[address]
        assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
        assert row.last_error == "451 4.7.1 Greylisted, come back later"
        assert row.next_attempt_at is not None
        # About a minute for the first retry: half fixed, half jitter.
        delay = (row.next_attempt_at - utcnow()).total_seconds()
        assert 25 < delay <= 60
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING
    # Not due yet: neither the beat nor another worker touches them.
    assert _sweep(sessions, settings, now=utcnow()) == []
    assert loop.send_pending(sessions, settings, edition_id).sent == 0

    _retries_due_now(sessions, edition_id)
    assert _sweep(sessions, settings, now=utcnow()) == [edition_id]
    report = loop.send_pending(sessions, settings, edition_id)
    assert (report.sent, report.retried) == (0, 2)
    rows = _rows(sessions, edition_id)
    for address in greylisted:
        row = rows[address]
        assert row.attempts == 2
        assert row.next_attempt_at is not None
        # The second wait is about twice the first.
        assert 55 < (row.next_attempt_at - utcnow()).total_seconds() <= 120

    _retries_due_now(sessions, edition_id)
    report = loop.send_pending(sessions, settings, edition_id)

    assert report.sent == 2
    assert _edition(sessions, edition_id).status == EditionStatus.SENT
    assert _received(smtp_server) == dict.fromkeys(_everyone(), 1)
    rows = _rows(sessions, edition_id)
    assert {a: rows[a].attempts for a in greylisted} == dict.fromkeys(greylisted, 3)
    assert all(rows[a].last_error is None for a in greylisted)
    with sessions() as session:
        assert session.scalars(select(Suppression)).all() == []


def test_temporary_failures_give_up_after_max_attempts_without_suppressing(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    settings = dataclasses.replace(settings, max_attempts=3)
    edition_id = _start(sessions, settings, readers=3)
    smtp_server.fail_next_n_rcpt("r1@example.org", 10, "452 4.2.2 Mailbox over quota")

    for _ in range(3):
        loop.send_pending(sessions, settings, edition_id)
        _retries_due_now(sessions, edition_id)

    row = _rows(sessions, edition_id)["r1@example.org"]
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 3)
    assert row.last_error == "gave up after 3 attempts: 452 4.2.2 Mailbox over quota"
    edition = _edition(sessions, edition_id)
    assert edition.status == EditionStatus.SENT
    with sessions() as session:
        progress = outbox.progress(session, edition_id)
        assert (progress.sent, progress.failed) == (2, 1)
        assert session.scalars(select(Suppression)).all() == []


def test_permanent_refusals_fail_at_once_and_only_mailbox_errors_suppress(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.recipient_responses.update(
        {
            "r1@example.org": "550 5.1.1 <r1@example.org>: Recipient address rejected",
            "r4@example.org": "550",  # a bare code, as some relays answer
            "r5@example.org": "553 mailbox name not allowed",
            "r8@example.org": "554 5.7.1 Message refused: looks like spam",
            "r9@example.org": "552 5.2.2 Mailbox full",
            "r10@example.org": "550 5.7.1 Sender blocked by policy",
        }
    )
    hard = {"r1@example.org", "r4@example.org", "r5@example.org"}
    soft = {"r8@example.org", "r9@example.org", "r10@example.org"}
    edition_id = _start(sessions, settings)

    report = loop.send_pending(sessions, settings, edition_id)

    assert (report.sent, report.retried, report.failed) == (READERS - 6, 0, 6)
    edition = _edition(sessions, edition_id)
    assert edition.status == EditionStatus.SENT
    rows = _rows(sessions, edition_id)
    for address in hard | soft:
        row = rows[address]
        assert (row.status, row.attempts, row.next_attempt_at) == (DeliveryStatus.FAILED, 1, None)
        reply = smtp_server.recipient_responses[address]
        assert row.last_error == ("550 5.0.0 Rejected" if reply == "550" else reply)
    with sessions() as session:
        suppressed = {
            s.email: s.reason
            for s in session.scalars(select(Suppression).where(Suppression.newsletter_id.is_(None)))
        }
        assert suppressed == dict.fromkeys(hard, SuppressionReason.HARD_BOUNCE)
        statuses = {s.email: s.status for s in session.scalars(select(Subscriber))}
        assert {a for a, s in statuses.items() if s == SubscriberStatus.BOUNCED} == hard
        bounces = session.scalars(select(Event).where(Event.kind == EventKind.BOUNCE)).all()
        assert {b.delivery_id for b in bounces} == {rows[a].id for a in hard}
        assert {b.edition_id for b in bounces} == {edition_id}
        progress = outbox.progress(session, edition_id)
        assert (progress.sent, progress.failed, progress.remaining) == (READERS - 6, 6, 0)
    assert set(_received(smtp_server)) == _everyone() - hard - soft

    # Never retried: nothing is due, even much later.
    assert _sweep(sessions, settings, now=utcnow() + timedelta(days=2)) == []
    # The next edition is not even offered to the hard-bounced addresses.
    with sessions() as session, session.begin():
        sent = session.get(Edition, edition_id)
        assert sent is not None
        next_edition = factories.edition(session, sent.newsletter)
        started = factories.begin_sending(session, settings, next_edition)
    assert started.recipients == READERS - len(hard)


@pytest.mark.parametrize("relay_kept_it", [False, True], ids=["lost", "queued-but-unanswered"])
def test_a_hang_up_after_data_is_retried_with_the_same_message_id(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    relay_kept_it: bool,
) -> None:
    edition_id = _start(sessions, settings, readers=4)
    smtp_server.hang_up_after_data(1, keep_message=relay_kept_it)

    report = loop.send_pending(sessions, settings, edition_id)

    assert (report.sent, report.retried) == (3, 1)
    first = _rows(sessions, edition_id)["r0@example.org"]
    assert (first.status, first.attempts) == (DeliveryStatus.QUEUED, 1)
    assert first.last_error is not None
    assert first.last_error.startswith("connection lost")

    _retries_due_now(sessions, edition_id)
    assert loop.send_pending(sessions, settings, edition_id).sent == 1

    first = _rows(sessions, edition_id)["r0@example.org"]
    assert (first.status, first.attempts) == (DeliveryStatus.SENT, 2)
    copies = smtp_server.messages_for("r0@example.org")
    assert len(copies) == (2 if relay_kept_it else 1)
    ids = {
        email.message_from_bytes(c.data, policy=email.policy.default)["Message-ID"] for c in copies
    }
    assert ids == {first.message_id}
    assert _edition(sessions, edition_id).status == EditionStatus.SENT


def test_the_second_relay_takes_over_when_the_first_refuses_connections(
    backend: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with RecordingSmtpServer() as first:
        first.refuse_connections()
        settings = Settings.from_env({**env, "SMTP_URL": f"{first.url}, {smtp_server.url}"})
        assert [r.port for r in settings.smtp_relays] == [first.port, smtp_server.port]
        edition_id = _start(sessions, settings)

        report = loop.send_pending(sessions, settings, edition_id)

        assert report.sent == READERS
        assert first.messages == []
        assert _received(smtp_server) == dict.fromkeys(_everyone(), 1)
        # Every message went over one connection to the second relay.
        assert len({m.peer for m in smtp_server.messages}) == 1

        # Once the first relay is back it is preferred again; with both down, a clear error.
        first.accept_connections()
        with SmtpTransport(settings.smtp_relays) as transport:
            transport.send("bounces@hebdo.example", "a@example.org", b"Subject: un\r\n\r\nx\r\n")
            assert transport.relay is not None
            assert transport.relay.port == first.port
        first.refuse_connections()
        smtp_server.refuse_connections()
        with (
            SmtpTransport(settings.smtp_relays) as transport,
            pytest.raises(RelayUnavailable) as err,
        ):
            transport.send("bounces@hebdo.example", "a@example.org", b"Subject: deux\r\n\r\nx\r\n")
        assert f"127.0.0.1:{first.port}" in str(err.value)
        assert f"127.0.0.1:{smtp_server.port}" in str(err.value)
        assert len(first.messages) == 1


class _ClickWhileSending:
    """The real SMTP transport, with an editor clicking just before message `at` goes out.

    The transport is the loop's one hook per message, so the click commits while a
    message is being handed to the relay: the worst moment for an exact stop.
    """

    def __init__(self, settings: Settings, at: int, click: Callable[[], None]) -> None:
        self.smtp = SmtpTransport(settings.smtp_relays)
        self.at = at
        self.click = click
        self.calls = 0

    def send(self, mail_from: str, rcpt_to: str, data: bytes) -> None:
        self.start(mail_from, rcpt_to, data)
        self.finish()

    def start(
        self,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        *,
        dot_safe: bool = False,
        then: NextEnvelope | None = None,
    ) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.click()
        self.smtp.start(mail_from, rcpt_to, data, dot_safe=dot_safe, then=then)

    def finish(self) -> None:
        self.smtp.finish()

    def abandon_announced(self) -> None:
        self.smtp.abandon_announced()

    def close(self) -> None:
        self.smtp.close()


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_and_cancel_stop_the_loop_at_the_next_message(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    action: str,
) -> None:
    readers = 100
    edition_id = _start(sessions, settings, readers=readers)
    clicked_before = 25  # the click commits while the 25th message is being handed over

    def click() -> None:
        with sessions() as session, session.begin():
            edition = session.get(Edition, edition_id)
            assert edition is not None
            if action == "pause":
                controls.pause(session, edition)
            else:
                controls.cancel(session, edition)

    transport = _ClickWhileSending(settings, clicked_before, click)
    try:
        report = loop.send_pending(sessions, settings, edition_id, transport=transport)
    finally:
        transport.close()

    # The message in flight when the click committed goes; no later one starts.
    sent = clicked_before
    assert report.stopped
    assert len(smtp_server.messages) == report.sent == sent
    with sessions() as session:
        progress = outbox.progress(session, edition_id)
    assert progress.sending == 0
    edition = _edition(sessions, edition_id)
    if action == "cancel":
        assert edition.status == EditionStatus.CANCELLED
        assert progress.queued == 0
        assert progress.sent + progress.cancelled == readers
        return
    assert (edition.status, edition.resume_at) == (EditionStatus.PAUSED, None)
    assert (progress.sent, progress.queued) == (sent, readers - sent)
    rows = _rows(sessions, edition_id)
    # Rows handed back untried keep their attempts.
    assert {r.attempts for r in rows.values() if r.status == DeliveryStatus.QUEUED} == {0}
    # An editor's pause outlasts any number of beat ticks.
    assert _sweep(sessions, settings, now=utcnow() + timedelta(days=1)) == []

    with sessions() as session, session.begin():
        current = session.get(Edition, edition_id)
        assert current is not None
        assert controls.resume(session, current, batch_size=500).recipients == readers - sent
    report = loop.send_pending(sessions, settings, edition_id)

    assert report.sent == readers - sent
    assert _received(smtp_server) == {f"r{n}@example.org": 1 for n in range(readers)}
    assert _edition(sessions, edition_id).status == EditionStatus.SENT


def test_a_reader_who_leaves_while_the_message_before_theirs_goes_out_gets_nothing(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    """The next row's status is read with the previous row's mark: the leave is seen there.

    Message 5 (r4) is being handed over when r5 unsubscribes; r5's envelope may already
    be written ahead with r4's content, and is dropped unfinished.
    """
    edition_id = _start(sessions, settings)

    def unsubscribe_r5() -> None:
        with sessions() as session, session.begin():
            subscription = session.scalars(
                select(Subscription)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscriber.email == "r5@example.org")
            ).one()
            assert subscriptions.unsubscribe(session, subscription, reason="test")

    transport = _ClickWhileSending(settings, 5, unsubscribe_r5)
    try:
        report = loop.send_pending(sessions, settings, edition_id, transport=transport)
    finally:
        transport.close()

    assert (report.sent, report.skipped, report.failed) == (READERS - 1, 1, 0)
    assert _received(smtp_server) == dict.fromkeys(_everyone() - {"r5@example.org"}, 1)
    rows = _rows(sessions, edition_id)
    assert rows["r5@example.org"].status == DeliveryStatus.CANCELLED
    assert rows["r5@example.org"].sent_at is None
    assert {r.status for e, r in rows.items() if e != "r5@example.org"} == {DeliveryStatus.SENT}
    assert _edition(sessions, edition_id).status == EditionStatus.SENT


def test_a_reader_whose_envelope_could_not_go_ahead_leaves_and_the_connection_stays(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    """An envelope with a non-ASCII address is not written ahead: nothing is open for it.

    Zoë leaves while the message before hers is handed over. Her envelope never went
    with that content (the transport announces plain ASCII addresses only), so there
    is no transaction to drop: the send goes on over the same connection.
    """
    zoe = "zoë@example.org"
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 3, prefix="a")
        subscriptions.subscribe(
            session,
            letter,
            subscriptions.find_or_create_subscriber(session, zoe, "Zoë"),
            confirmed=True,
            source="test",
        )
        factories.readers(session, letter, 3, prefix="b")
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        edition_id = edition.id

    def unsubscribe_zoe() -> None:
        with sessions() as session, session.begin():
            subscription = session.scalars(
                select(Subscription)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(Subscriber.email == zoe)
            ).one()
            assert subscriptions.unsubscribe(session, subscription, reason="test")

    transport = _ClickWhileSending(settings, 3, unsubscribe_zoe)  # while a2's goes out
    try:
        report = loop.send_pending(sessions, settings, edition_id, transport=transport)
    finally:
        transport.close()

    everyone_else = {f"{p}{n}@example.org" for p in "ab" for n in range(3)}
    assert (report.sent, report.skipped, report.failed) == (6, 1, 0)
    assert _received(smtp_server) == dict.fromkeys(everyone_else, 1)
    assert _rows(sessions, edition_id)[zoe].status == DeliveryStatus.CANCELLED
    # One connection for all six messages: Zoë's leave did not cost a reconnect.
    assert len({m.peer for m in smtp_server.messages}) == 1


def test_a_relay_refusing_our_sender_pauses_the_send_instead_of_failing_everyone(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    smtp_server.sender_response = "550 5.7.1 Sender domain not allowed for this account"
    edition_id = _start(sessions, settings)

    report = loop.send_pending(sessions, settings, edition_id)

    assert (report.sent, report.failed) == (0, 0)
    edition = _edition(sessions, edition_id)
    assert edition.status == EditionStatus.PAUSED
    assert "refuses the sender" in edition.status_detail
    assert edition.resume_at is None  # an editor fixes the configuration, then resumes
    rows = _rows(sessions, edition_id)
    assert {row.status for row in rows.values()} == {DeliveryStatus.QUEUED}
    assert {row.attempts for row in rows.values()} == {0}
    with sessions() as session:
        assert session.scalar(select(Suppression).limit(1)) is None

    smtp_server.sender_response = None
    with sessions() as session, session.begin():
        current = session.get(Edition, edition_id)
        assert current is not None
        controls.resume(session, current, batch_size=500)
    loop.send_pending(sessions, settings, edition_id)
    assert _edition(sessions, edition_id).status == EditionStatus.SENT
    assert len(smtp_server.messages) == READERS
