"""Outgoing webhooks: events become outbox rows in the same transaction, the delivery POSTs
them to a real HTTP receiver on loopback, and the receiver checks the signature with the
Standard Webhooks reference library (`standardwebhooks`); a changed body fails it.
A receiver that fails gets the delivery again later, with growing delays, for a day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook, WebhookVerificationError

from service.access import webhooks
from service.audience import subscriptions
from service.cli import cli
from service.models import Delivery, DeliveryStatus, WebhookDelivery, WebhookStatus, utcnow
from service.sending import outbox
from tests import factories
from tests.support.webhooks import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def add_hook(env: dict[str, str], url: str, events: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["webhooks", "add", "--newsletter", "lettre", "--url", url, "--events", events],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_events_are_delivered_signed_and_the_reference_library_verifies_them(
    backend: str,
    env: dict[str, str],
    session: Session,
    sessions: sessionmaker[Session],
    client: FlaskClient,
    receiver: Receiver,
) -> None:
    factories.newsletter(session, "lettre")
    session.commit()
    secret = add_hook(env, receiver.url, "subscribed,confirmed,unsubscribed")
    assert secret.startswith("whsec_")

    token = (
        CliRunner()
        .invoke(cli, ["tokens", "create", "--name", "site", "--scope", "write"], env=env)
        .stdout.splitlines()[0]
    )
    answer = client.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.org", "newsletter": "lettre"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201

    report = webhooks.deliver_due(sessions)
    assert report.delivered == 1
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    payload: Any = Webhook(secret).verify(body, headers)
    assert payload["type"] == "subscribed"
    assert payload["data"] == {
        "newsletter": "lettre",
        "subscriber": {"id": answer.json["id"], "email": "ana@example.org"},  # type: ignore[index]
    }
    forged = body.replace(b"ana@example.org", b"eve@example.org")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(forged, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, headers)

    # Nothing is delivered twice; the row says when and how it went.
    assert webhooks.deliver_due(sessions).delivered == 0
    row = session.scalars(select(WebhookDelivery)).one()
    assert (row.status, row.attempts, row.last_status_code) == (WebhookStatus.DELIVERED, 1, 204)
    session.rollback()
    listed = CliRunner().invoke(cli, ["webhooks", "deliveries"], env=env)
    assert "subscribed\tdelivered\tattempts 1\tlast 204" in listed.stdout


def test_a_failing_receiver_is_retried_with_growing_delays_then_given_up_after_a_day(
    env: dict[str, str],
    session: Session,
    sessions: sessionmaker[Session],
    receiver: Receiver,
) -> None:
    letter = factories.newsletter(session, "lettre")
    session.commit()
    add_hook(env, receiver.url, "unsubscribed")
    reader = factories.readers(session, letter, 1)[0]
    subscription = reader.subscriptions[0]
    subscriptions.unsubscribe(session, subscription)
    session.commit()

    receiver.status = 503
    now = utcnow()
    delays = []
    for _ in range(10):
        report = webhooks.deliver_due(sessions, now=now)
        with sessions() as reading:
            row = reading.scalars(select(WebhookDelivery)).one()
        if row.status is WebhookStatus.FAILED:
            break
        assert report.retried == 1
        delays.append((row.next_attempt_at - now).total_seconds())
        now = row.next_attempt_at
    assert delays[:3] == [5, 300, 1800]
    assert delays == sorted(delays)
    assert row.status is WebhookStatus.FAILED
    assert now - row.created_at >= timedelta(days=1) - timedelta(hours=10)
    assert row.last_status_code == 503
    assert len(receiver.received) == row.attempts
    # Every attempt carried the same webhook-id: receivers can drop duplicates.
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {row.message_id}


def test_edition_started_and_sent_are_emitted(
    env: dict[str, str], session: Session, settings: Any, receiver: Receiver
) -> None:
    letter = factories.newsletter(session, "lettre")
    session.commit()
    add_hook(env, receiver.url, "edition.started,edition.sent")
    factories.readers(session, letter, 2)
    edition = factories.edition(session, letter)
    factories.begin_sending(session, settings, edition)
    session.commit()
    types = session.scalars(select(WebhookDelivery.event_type)).all()
    assert types == ["edition.started"]
    # The workers mark every row sent; the edition then finishes.
    session.execute(
        update(Delivery).where(Delivery.edition_id == edition.id).values(status=DeliveryStatus.SENT)
    )
    assert outbox.finish_if_done(session, edition)
    session.commit()
    types = session.scalars(select(WebhookDelivery.event_type).order_by(WebhookDelivery.id)).all()
    assert types == ["edition.started", "edition.sent"]


def test_cli_lists_endpoints_refuses_bad_ones_and_delivers_now(
    env: dict[str, str], session: Session, receiver: Receiver
) -> None:
    letter = factories.newsletter(session, "lettre")
    session.commit()
    add_hook(env, receiver.url, "subscribed")
    bad = CliRunner().invoke(
        cli,
        ["webhooks", "add", "--newsletter", "lettre", "--url", "ftp://x", "--events", "opened"],
        env=env,
    )
    assert bad.exit_code == 1
    listed = CliRunner().invoke(cli, ["webhooks", "list"], env=env)
    assert f"lettre\t{receiver.url}\tsubscribed\tactive" in listed.stdout
    factories.readers(session, letter, 2)
    session.commit()
    done = CliRunner().invoke(cli, ["webhooks", "deliver"], env=env)
    assert done.stdout.strip() == "delivered 2, to retry 0, given up 0"
    assert len(receiver.received) == 2
