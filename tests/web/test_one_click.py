"""One-click unsubscribe (RFC 8058) from the header of a message a real SMTP server received.

Editions go out through loop.send_pending over real SMTP; the URL the tests use is
the one in the received message's List-Unsubscribe header, posted the way mail
clients do: form-encoded `List-Unsubscribe=One-Click`, with no cookie at all.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.mail.transport import NextEnvelope, SmtpTransport
from service.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from service.sending import loop
from tests import factories
from tests.support.smtp import RecordingSmtpServer

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


def _start_edition(sessions: sessionmaker[Session], settings: Settings) -> int:
    with sessions.begin() as session:
        letter = session.scalars(select(Newsletter)).one()
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=100)
        return edition.id


def _send_edition(
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
    readers: int,
) -> dict[str, str]:
    """Create `readers` readers, send them an edition; their one-click paths by address."""
    with sessions.begin() as session:
        factories.readers(session, factories.newsletter(session), readers)
    edition_id = _start_edition(sessions, settings)
    report = loop.send_pending(sessions, settings, edition_id)
    assert report.sent == readers
    paths = {}
    for message in smtp_server.wait_for(readers):
        parsed = message.parsed()
        assert parsed["List-Unsubscribe-Post"] == ONE_CLICK
        https, mailto = re.findall(r"<([^>]+)>", parsed["List-Unsubscribe"])
        assert https.startswith(settings.base_url + "/u/")
        assert mailto.startswith("mailto:")
        paths[message.rcpt_tos[0]] = urlsplit(https).path
    smtp_server.clear()
    return paths


def _statuses(sessions: sessionmaker[Session]) -> dict[str, SubscriptionStatus]:
    with sessions() as session:
        query = select(Subscriber.email, Subscription.status).join(Subscription)
        return dict(session.execute(query).all())


def _count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def mail_client(app: Flask) -> FlaskClient:
    """A client that never stores a cookie, like a mail provider's unsubscribe robot."""
    return app.test_client(use_cookies=False)


def test_one_click_post_from_the_header_unsubscribes_without_cookie(
    mail_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    paths = _send_edition(sessions, settings, smtp_server, 2)

    response = mail_client.post(paths["r0@example.org"], data=ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert "Cookie" not in (response.request.headers or {})
    assert _statuses(sessions) == {
        "r0@example.org": SubscriptionStatus.UNSUBSCRIBED,
        "r1@example.org": SubscriptionStatus.CONFIRMED,
    }
    with sessions() as session:
        event = session.scalars(select(Event)).one()
        assert event.kind is EventKind.UNSUBSCRIBE
        suppression = session.scalars(select(Suppression)).one()
        assert suppression.email == "r0@example.org"
    # A second post (mail clients retry) is harmless.
    again = mail_client.post(paths["r0@example.org"], data=ONE_CLICK, content_type=FORM)
    assert again.status_code == 200
    assert _count(sessions, Event) == 1


def test_a_tampered_token_gets_4xx_and_changes_nothing(
    mail_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    paths = _send_edition(sessions, settings, smtp_server, 2)
    token = paths["r0@example.org"].removeprefix("/u/")
    other = paths["r1@example.org"].removeprefix("/u/")
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    tampered = [
        flipped,  # one character changed in the id
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character of the signature
        token[:-4],  # truncated
        other[:11] + token[11:],  # r1's id with r0's signature
        token + "AAAA",  # extended
    ]
    before = _statuses(sessions)
    for bad in tampered:
        response = mail_client.post(f"/u/{bad}", data=ONE_CLICK, content_type=FORM)
        assert 400 <= response.status_code < 500, bad
    assert _statuses(sessions) == before
    assert set(before.values()) == {SubscriptionStatus.CONFIRMED}
    assert _count(sessions, Event) == 0
    assert _count(sessions, Suppression) == 0


def test_get_shows_a_button_and_does_not_unsubscribe(
    mail_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    paths = _send_edition(sessions, settings, smtp_server, 1)

    page = mail_client.get(paths["r0@example.org"])

    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert re.search(r'<form method="post" action="/u/[^"]+"', body)
    assert '<button type="submit"' in body
    assert _statuses(sessions) == {"r0@example.org": SubscriptionStatus.CONFIRMED}
    assert _count(sessions, Event) == 0


def test_unsubscribing_cancels_the_queued_deliveries_of_an_edition_being_sent(
    mail_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    paths = _send_edition(sessions, settings, smtp_server, 3)
    edition_id = _start_edition(sessions, settings)  # the next edition: sending, 3 rows queued

    response = mail_client.post(paths["r1@example.org"], data=ONE_CLICK, content_type=FORM)
    assert response.status_code == 200

    with sessions() as session:
        rows = dict(
            session.execute(
                select(Delivery.email, Delivery.status).where(Delivery.edition_id == edition_id)
            ).all()
        )
    assert rows["r1@example.org"] is DeliveryStatus.CANCELLED
    loop.send_pending(sessions, settings, edition_id)
    received = sorted(m.rcpt_tos[0] for m in smtp_server.wait_for(2))
    assert received == ["r0@example.org", "r2@example.org"]
    assert smtp_server.messages_for("r1@example.org") == []


class _UnsubscribeAfterFirstMessage:
    """The real SMTP transport; once the first message is out, a reader unsubscribes."""

    def __init__(self, inner: SmtpTransport, client: FlaskClient, path: str) -> None:
        self.inner, self.client, self.path = inner, client, path
        self.status: int | None = None

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
        self.inner.start(mail_from, rcpt_to, data, dot_safe=dot_safe, then=then)

    def finish(self) -> None:
        self.inner.finish()
        if self.status is None:
            self.status = self.client.post(self.path, data=ONE_CLICK, content_type=FORM).status_code

    def abandon_announced(self) -> None:
        self.inner.abandon_announced()

    def close(self) -> None:
        self.inner.close()


def test_unsubscribing_while_the_edition_is_going_out_stops_it_for_that_reader(
    mail_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> None:
    # The reader sits later in the claimed batch than the first message.
    readers = 25
    target = "r22@example.org"
    paths = _send_edition(sessions, settings, smtp_server, readers)
    edition_id = _start_edition(sessions, settings)

    transport = _UnsubscribeAfterFirstMessage(
        SmtpTransport(settings.smtp_relays), mail_client, paths[target]
    )
    report = loop.send_pending(sessions, settings, edition_id, transport=transport)
    transport.close()

    assert transport.status == 200
    assert report.sent == readers - 1
    assert len(smtp_server.wait_for(readers - 1)) == readers - 1
    assert smtp_server.messages_for(target) == []
    with sessions() as session:
        status = session.scalar(
            select(Delivery.status).where(
                Delivery.edition_id == edition_id, Delivery.email == target
            )
        )
    assert status is DeliveryStatus.CANCELLED
