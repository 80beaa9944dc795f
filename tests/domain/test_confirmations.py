"""The confirmation-mail outbox, sent by calling the task's function directly.

Messages go through the real SMTP transport to the recording server; the database is
the migrated SQLite or PostgreSQL one. What a worker would do after a crash, a relay
outage or a refusal is checked from the rows and from what the server received.
"""

from __future__ import annotations

import io
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.audience import confirmations, imports, signup, subscriptions
from service.config import Settings
from service.mail import notices
from service.models import (
    ConfirmationMail,
    ConfirmationStatus,
    Subscriber,
    Subscription,
    Suppression,
    SuppressionReason,
    utcnow,
)
from tests import factories
from tests.support.smtp import RecordingSmtpServer


def _import(sessions: sessionmaker[Session], addresses: list[str]) -> tuple[int, str]:
    """Import the addresses as pending readers of a new newsletter; (its id, request id)."""
    text = "email\n" + "\n".join(addresses) + "\n"
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        report = imports.import_csv(
            session, letter, io.StringIO(text), confirmed=False, confirmed_reason=None
        )
        assert report.confirmations_queued == len(addresses)
        return letter.id, report.confirmation_request


def _subscription(session: Session, email: str) -> Subscription:
    return session.execute(
        select(Subscription).join(Subscriber).where(Subscriber.email == email)
    ).scalar_one()


def _age_slots(sessions: sessionmaker[Session], by: timedelta = timedelta(minutes=6)) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.confirmation_sent_at.is_not(None))
            .values(confirmation_sent_at=utcnow() - by)
        )


def _rows(sessions: sessionmaker[Session]) -> dict[str, ConfirmationMail]:
    with sessions() as session:
        return {
            email: row
            for row, email in session.execute(
                select(ConfirmationMail, Subscriber.email)
                .join(Subscription, Subscription.id == ConfirmationMail.subscription_id)
                .join(Subscriber)
            )
        }


def test_readers_who_confirmed_left_or_were_suppressed_meanwhile_get_nothing(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    people = ["confirme@exemple.fr", "parti@exemple.fr", "rebond@exemple.fr", "reste@exemple.fr"]
    newsletter_id, request_id = _import(sessions, people)
    with sessions.begin() as session:
        signup.confirm(session, _subscription(session, "confirme@exemple.fr"))
        subscriptions.unsubscribe(session, _subscription(session, "parti@exemple.fr"))
        subscriptions.suppress(session, "rebond@exemple.fr", SuppressionReason.HARD_BOUNCE)

    report = confirmations.send_queued(sessions, settings, newsletter_id)

    assert report.sent == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [("reste@exemple.fr",)]
    with sessions() as session:
        progress = confirmations.progress(session, request_id=request_id)
    assert (progress.queued, progress.sent, progress.skipped) == (0, 1, 3)


def test_running_the_task_again_sends_nothing_twice(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    newsletter_id, _ = _import(sessions, ["a@exemple.fr", "b@exemple.fr"])

    first = confirmations.send_queued(sessions, settings, newsletter_id)
    second = confirmations.send_queued(sessions, settings, newsletter_id)

    assert (first.sent, second.sent) == (2, 0)
    assert len(smtp_server.messages) == 2
    with sessions() as session:
        assert confirmations.due_newsletters(session) == []


def test_an_import_does_not_queue_a_reader_the_signup_form_mailed_a_moment_ago(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        asked = signup.request(session, letter, email="forme@exemple.fr", source="form")
        assert asked.notice is notices.Notice.CONFIRM  # the form took the notice slot
        report = imports.import_csv(
            session,
            letter,
            io.StringIO("email\nforme@exemple.fr\nautre@exemple.fr\n"),
            confirmed=False,
            confirmed_reason=None,
        )
    assert report.confirmations_queued == 1
    assert set(_rows(sessions)) == {"autre@exemple.fr"}


def test_a_claim_left_by_a_killed_worker_goes_out_once_the_slot_frees(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    newsletter_id, _ = _import(sessions, ["a@exemple.fr"])
    with sessions.begin() as session:  # a worker claims, then dies before sending
        claimed = confirmations.claim(session, newsletter_id, limit=10, max_attempts=5)
    assert len(claimed) == 1

    assert confirmations.send_queued(sessions, settings, newsletter_id).sent == 0
    _age_slots(sessions)
    assert confirmations.send_queued(sessions, settings, newsletter_id).sent == 1
    assert len(smtp_server.messages) == 1
    assert _rows(sessions)["a@exemple.fr"].attempts == 2


def test_a_temporary_refusal_is_retried_after_the_cool_down_not_before(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    newsletter_id, _ = _import(sessions, ["grise@exemple.fr", "ok@exemple.fr"])
    smtp_server.fail_next_n_rcpt("grise@exemple.fr", 1)

    report = confirmations.send_queued(sessions, settings, newsletter_id)
    assert (report.sent, report.retried) == (1, 1)
    row = _rows(sessions)["grise@exemple.fr"]
    assert row.status is ConfirmationStatus.QUEUED
    assert row.detail is not None
    assert "451" in row.detail

    assert confirmations.send_queued(sessions, settings, newsletter_id).sent == 0
    _age_slots(sessions)
    assert confirmations.send_queued(sessions, settings, newsletter_id).sent == 1
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "grise@exemple.fr",
        "ok@exemple.fr",
    ]


def test_a_mailbox_that_does_not_exist_fails_its_row_and_is_suppressed(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    newsletter_id, _ = _import(sessions, ["absent@exemple.fr", "ok@exemple.fr"])
    smtp_server.recipient_responses["absent@exemple.fr"] = "550 5.1.1 No such user"

    report = confirmations.send_queued(sessions, settings, newsletter_id)

    assert (report.sent, report.failed) == (1, 1)
    assert _rows(sessions)["absent@exemple.fr"].status is ConfirmationStatus.FAILED
    with sessions() as session:
        reasons = session.scalars(
            select(Suppression.reason).where(Suppression.email == "absent@exemple.fr")
        ).all()
    assert list(reasons) == [SuppressionReason.HARD_BOUNCE]


def test_a_relay_outage_gives_the_claims_back_untouched(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    newsletter_id, _ = _import(sessions, ["a@exemple.fr", "b@exemple.fr"])
    smtp_server.refuse_connections()

    report = confirmations.send_queued(sessions, settings, newsletter_id)

    assert report.relay_down
    with sessions() as session:
        assert confirmations.due_newsletters(session) == [newsletter_id]  # slots given back
        assert _subscription(session, "a@exemple.fr").confirmation_sent_at is None
    assert {row.attempts for row in _rows(sessions).values()} == {0}
    smtp_server.accept_connections()
    assert confirmations.send_queued(sessions, settings, newsletter_id).sent == 2


def test_a_reader_whose_message_cannot_be_built_does_not_hold_back_the_others(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        newsletter_id = letter.id
        for email, name in [
            ("avant@exemple.fr", "Avant"),
            ("piege@exemple.fr", "Piège\r\nBcc: tous@exemple.fr"),  # stored before any cleaning
            ("apres@exemple.fr", "Après"),
        ]:
            reader = subscriptions.find_or_create_subscriber(session, email, "")
            reader.name = name
            subscriptions.subscribe(session, letter, reader, confirmed=False, source="test")
        _request, queued = confirmations.resend(session, newsletter_id)
    assert queued == 3

    confirmations.send_queued(sessions, settings, newsletter_id)

    received = sorted(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert {"avant@exemple.fr", "apres@exemple.fr"} <= set(received)
    assert len(received) == len(set(received))
    for message in smtp_server.messages:
        headers = message.data.split(b"\r\n\r\n")[0].split(b"\r\n")
        assert not any(line.lower().startswith(b"bcc:") for line in headers), headers
    # Sent with a clean header, or failed with its reason: never left in the queue.
    row = _rows(sessions)["piege@exemple.fr"]
    assert row.status in (ConfirmationStatus.SENT, ConfirmationStatus.FAILED)
    assert row.status is ConfirmationStatus.SENT or row.detail


def test_an_address_added_by_an_editor_without_consent_proof_is_queued_too(
    backend: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        pending = imports.add_address(
            session, letter, "une@exemple.fr", confirmed=False, confirmed_reason=None
        )
        known = imports.add_address(
            session, letter, "deux@exemple.fr", confirmed=True, confirmed_reason="salon"
        )
    assert (pending.confirmations_queued, known.confirmations_queued) == (1, 0)
    assert set(_rows(sessions)) == {"une@exemple.fr"}
