"""One reader's data never stops a send; a row that keeps killing its worker is given up.

The loop runs in the test process (loop.send_pending) against the real SMTP server
and the real databases; the poisonous rows are written straight into the tables.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, utcnow
from service.sending import loop, outbox
from tests import factories
from tests.support.smtp import RecordingSmtpServer

# Names are cleaned on the way out (service.text), so the poison is in the address:
# one that cannot be written into a To header without injecting another.
EVE = "eve@example.org\r\nBcc: injected@evil.example"


def _start(sessions: sessionmaker[Session], settings: Settings, readers: int) -> int:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        factories.legacy_reader(session, letter, EVE, "Eve")
        factories.readers(session, letter, 3, prefix="after")  # queued behind the bad row
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        return edition.id


def _rows(sessions: sessionmaker[Session], edition_id: int) -> dict[str, Delivery]:
    with sessions() as session:
        return {
            d.email: d
            for d in session.scalars(select(Delivery).where(Delivery.edition_id == edition_id))
        }


def _status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    with sessions() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status


def test_a_reader_whose_message_cannot_be_built_fails_alone_and_the_batch_goes_on(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    edition_id = _start(sessions, settings, readers=5)

    report = loop.send_pending(sessions, settings, edition_id)

    rows = _rows(sessions, edition_id)
    eve = rows.pop(EVE)
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    # Everyone else, before and after the bad row in the same batch, got it once.
    assert received == dict.fromkeys(rows, 1)
    assert {d.status for d in rows.values()} == {DeliveryStatus.SENT}
    # The bad row failed by itself, with the reason kept on the row.
    assert eve.status == DeliveryStatus.FAILED
    assert eve.last_error is not None
    assert eve.last_error.startswith("the message could not be built: ")
    assert "\r" not in eve.last_error
    assert "\n" not in eve.last_error
    assert (report.sent, report.failed) == (8, 1)
    assert _status(sessions, edition_id) == EditionStatus.SENT
    # Nothing reached any header: no message names the injected address.
    assert not any(b"injected@evil.example" in m.data for m in smtp_server.messages)

    with sessions() as session:
        count, listed = outbox.failures(session, edition_id)
    assert count == 1
    assert [(f.email, f.reason) for f in listed] == [(EVE, eve.last_error)]


def test_a_row_that_keeps_coming_back_through_lease_expiry_is_given_up(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    limit = 2  # HEBDO_MAX_ATTEMPTS
    settings = replace(settings, max_attempts=limit)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 5)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        edition_id = edition.id
    lease = settings.lease_seconds
    start = utcnow() - timedelta(seconds=(limit + 2) * (lease + 1))

    def claim_and_die(round_: int, batch: int) -> list[int]:
        # A worker claims, then vanishes without recording anything (kill -9, OOM…).
        with sessions() as session, session.begin():
            claimed = outbox.claim(
                session,
                edition_id,
                f"doomed-{round_}",
                limit=batch,
                lease_seconds=lease,
                max_comebacks=limit,
                now=start + timedelta(seconds=round_ * (lease + 1)),
            )
        return [c.id for c in claimed]

    first = claim_and_die(0, batch=5)
    assert len(first) == 5
    culprit = first[0]
    # The dead worker's rows come back one per claim, so the row it died on comes
    # back alone and takes no other row down with it. It may come back `limit` times.
    for round_ in range(1, limit + 1):
        assert claim_and_die(round_, batch=5) == [culprit]

    # Its lease has now expired limit + 1 times: the next claim fails it instead.
    report = loop.send_pending(sessions, settings, edition_id)

    rows = {d.id: d for d in _rows(sessions, edition_id).values()}
    given_up = rows.pop(culprit)
    assert given_up.status == DeliveryStatus.FAILED
    assert given_up.last_error is not None
    assert given_up.last_error.startswith(f"gave up after {limit + 1} claims")
    assert {d.status for d in rows.values()} == {DeliveryStatus.SENT}
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == {d.email: 1 for d in rows.values()}
    assert given_up.email not in received
    assert report.sent == 4
    assert _status(sessions, edition_id) == EditionStatus.SENT


def test_a_row_is_handed_out_again_while_under_the_limit(
    backend: str, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 1)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition)
        edition_id = edition.id
    lease = settings.lease_seconds
    start = utcnow() - timedelta(days=1)
    for round_ in range(4):
        with sessions() as session, session.begin():
            claimed = outbox.claim(
                session,
                edition_id,
                "w",
                limit=10,
                lease_seconds=lease,
                max_comebacks=3,
                now=start + timedelta(seconds=round_ * (lease + 1)),
            )
        assert len(claimed) == 1, round_
        # A recorded outcome (a temporary failure) is no comeback: the count starts again.
        if round_ == 1:
            with sessions() as session, session.begin():
                assert outbox.mark_retry(
                    session, claimed[0].id, "w", "451 later",
                    attempts=1, max_attempts=10, delay_seconds=0,
                    now=start + timedelta(seconds=round_ * (lease + 1)),
                )  # fmt: skip
    with sessions() as session:
        row = session.scalars(select(Delivery)).one()
    assert (row.status, row.claims) == (DeliveryStatus.SENDING, 2)
