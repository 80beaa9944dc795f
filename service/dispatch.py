"""The send loop: claim rows, personalise, hand to SMTP, record each outcome.

Unlike the other operations this one owns its transactions, because its promise
depends on them: a row is committed as sent right after the relay accepted the
message, so a crash can only repeat the message that was in flight, and the
repeat carries the same Message-ID.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service import deliveries, sending
from service.config import Settings
from service.mail.mime import DkimKey, Envelope, PreparedEdition, personalise, prepare
from service.mail.transport import (
    PermanentFailure,
    RelayUnavailable,
    SmtpTransport,
    TemporaryFailure,
)
from service.models import Edition, EditionStatus, utcnow
from service.subscriptions import record_hard_bounce

log = logging.getLogger(__name__)

# Re-read row and edition states this often, so an unsubscribe or a pause lands mid-batch.
RECHECK_EVERY = 20
# Temporary failures wait about 1, 2, 4, 8 … minutes: greylisting relays ask for
# a few minutes, so an immediate retry would only spend an attempt.
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0
# Longer waits for the shared limits (an hourly quota used up, every connection slot
# taken) give the claimed rows back instead of holding them: beat hands them out again.
RATE_PATIENCE_SECONDS = 30.0
CONNECTION_PATIENCE_SECONDS = 5.0


class Transport(Protocol):
    """What the send loop needs from an SMTP transport."""

    def send(self, mail_from: str, rcpt_to: str, data: bytes) -> None: ...

    def close(self) -> None: ...


class RateLimiter(Protocol):
    """The shared per-second and per-hour limits (service.ratelimit)."""

    def acquire(self, patience: float) -> str | None:
        """Wait for the right to send one message; None if that takes over `patience` s."""
        ...

    def done(self, ticket: str) -> None:
        """The message granted under this ticket is no longer in flight."""
        ...


class ConnectionCap(Protocol):
    """The shared cap on open SMTP connections (service.ratelimit)."""

    def acquire(self, patience: float) -> bool:
        """Take a connection slot, waiting up to `patience` s; False if none frees up."""
        ...

    def renew(self) -> bool:
        """Keep the slot (cheap when recently renewed); False if it was lost."""
        ...

    def release(self) -> None:
        """Give the slot back."""
        ...


@dataclass
class BatchReport:
    """What one run of the loop did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    relay_down: bool = False
    sender_refused: bool = False  # the relay refused MAIL FROM: a configuration problem
    stopped: bool = False  # the edition was paused or cancelled while this run sent
    throttled: bool = False  # the shared limits held this run back; the rest waits for beat
    errors: list[str] = field(default_factory=list)


def retry_delay(
    attempts: int, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_MAX_SECONDS
) -> float:
    """Exponential backoff after `attempts` tries, half of it random so workers spread out."""
    step = min(cap, base * 2.0 ** max(0, attempts - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not crypto


def worker_name() -> str:
    """A name that tells which process holds a claim."""
    return f"{socket.gethostname()}:{os.getpid()}"


def prepare_edition(edition: Edition, settings: Settings) -> PreparedEdition:
    """Per-edition MIME work, from the frozen rendering."""
    if edition.rendered_html is None or edition.rendered_text is None:
        raise deliveries.SendError(f"edition {edition.id} has not been rendered")
    newsletter = edition.newsletter
    dkim = None
    if settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path:
        dkim = DkimKey.load(
            settings.dkim_selector, settings.dkim_domain, settings.dkim_private_key_path
        )
    return prepare(
        edition_id=edition.id,
        newsletter_slug=newsletter.slug,
        newsletter_name=newsletter.name,
        language=newsletter.language,
        sender_name=newsletter.sender_name,
        sender_email=newsletter.sender_email,
        reply_to=newsletter.reply_to,
        subject=edition.rendered_subject or edition.subject,
        html_body=edition.rendered_html,
        text_body=edition.rendered_text,
        secret=settings.secret_key,
        base_url=settings.base_url,
        bounce_domain=settings.bounce_domain,
        dkim=dkim,
    )


def send_pending(
    factory: sessionmaker[Session],
    settings: Settings,
    edition_id: int,
    *,
    transport: Transport | None = None,
    limiter: RateLimiter | None = None,
    connections: ConnectionCap | None = None,
    worker: str | None = None,
    max_batches: int | None = None,
) -> BatchReport:
    """Send the edition's due rows, batch after batch, until none is left to claim."""
    worker = worker or worker_name()
    report = BatchReport()
    with factory() as session:
        edition = session.get(Edition, edition_id)
        if edition is None or edition.status != EditionStatus.SENDING:
            return report
        prepared = prepare_edition(edition, settings)
    if connections is not None and not connections.acquire(CONNECTION_PATIENCE_SECONDS):
        report.throttled = True  # every connection slot is busy sending: nothing claimed
        return report
    own_transport = transport is None
    smtp: Transport = transport or SmtpTransport(settings.smtp_relays)
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            batches += 1
            with factory() as session, session.begin():
                edition = session.get(Edition, edition_id)
                if edition is None or edition.status != EditionStatus.SENDING:
                    break  # paused or cancelled: leave the rest where it is
                claimed = deliveries.claim(
                    session,
                    edition_id,
                    worker,
                    limit=settings.batch_size,
                    lease_seconds=settings.lease_seconds,
                )
            if not claimed:
                break
            _send_batch(
                factory, settings, prepared, claimed, smtp, limiter, connections, worker, report
            )
            if report.relay_down or report.sender_refused or report.stopped or report.throttled:
                break
    finally:
        if own_transport:
            smtp.close()
        if connections is not None:
            connections.release()
    with factory() as session, session.begin():
        edition = session.get(Edition, edition_id)
        if edition is not None:
            if report.relay_down:
                sending.pause_for_relay(session, edition, report.errors[-1])
            elif report.sender_refused and edition.status == EditionStatus.SENDING:
                sending.pause(
                    session, edition, f"paused: the relay refuses the sender ({report.errors[-1]})"
                )
            else:
                deliveries.finish_if_done(session, edition)
    return report


def _send_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    prepared: PreparedEdition,
    claimed: list[deliveries.Claimed],
    smtp: Transport,
    limiter: RateLimiter | None,
    connections: ConnectionCap | None,
    worker: str,
    report: BatchReport,
) -> None:
    # One connection for the batch's "sent" marks, each still its own committed transaction.
    with factory() as session:
        engine = session.get_bind()
    assert isinstance(engine, Engine)  # our sessionmakers are bound to an engine
    with engine.connect() as marks:
        _send_chunks(
            factory, settings, prepared, claimed, smtp, limiter, connections, worker, report, marks
        )


def _send_chunks(
    factory: sessionmaker[Session],
    settings: Settings,
    prepared: PreparedEdition,
    claimed: list[deliveries.Claimed],
    smtp: Transport,
    limiter: RateLimiter | None,
    connections: ConnectionCap | None,
    worker: str,
    report: BatchReport,
    marks: Connection,
) -> None:
    for start in range(0, len(claimed), RECHECK_EVERY):
        chunk = claimed[start : start + RECHECK_EVERY]
        with factory() as session:
            live = deliveries.still_ours(session, [c.id for c in chunk], worker)
            status = session.scalar(select(Edition.status).where(Edition.id == prepared.edition_id))
        if status != EditionStatus.SENDING:
            # Paused or cancelled meanwhile: give back what this run has not tried.
            report.stopped = True
            with factory() as session, session.begin():
                deliveries.release(session, [c.id for c in claimed[start:]], worker)
            return
        for index, row in enumerate(chunk):
            if row.id not in live:
                report.skipped += 1
                continue
            envelope = personalise(prepared, row.id, row.email, row.name, _now())
            # Wait after building the message, so it reaches the relay right at its slot.
            ticket = None
            if (connections is not None and not connections.renew()) or (
                limiter is not None and (ticket := limiter.acquire(RATE_PATIENCE_SECONDS)) is None
            ):
                report.throttled = True
                with factory() as session, session.begin():
                    deliveries.release(session, [c.id for c in claimed[start + index :]], worker)
                return
            try:
                _deliver(smtp, envelope, limiter, ticket)
            except RelayUnavailable as exc:
                report.relay_down = True
                report.errors.append(str(exc))
                rest = [c.id for c in chunk[index:]] + [
                    c.id for c in claimed[start + RECHECK_EVERY :]
                ]
                with factory() as session, session.begin():
                    deliveries.release(session, rest, worker)
                return
            except PermanentFailure as exc:
                if exc.stage == "mail":
                    # The relay refuses our sender, not this reader: every other row would
                    # fail the same way. Pause for an editor to fix the configuration.
                    report.sender_refused = True
                    report.errors.append(str(exc))
                    rest = [c.id for c in chunk[index:]] + [
                        c.id for c in claimed[start + RECHECK_EVERY :]
                    ]
                    with factory() as session, session.begin():
                        deliveries.release(session, rest, worker)
                    return
                report.failed += 1
                with factory() as session, session.begin():
                    if (
                        deliveries.mark_failed(session, row.id, worker, str(exc))
                        and exc.hard_bounce
                    ):
                        record_hard_bounce(session, row.email, str(exc), delivery_id=row.id)
                continue
            except TemporaryFailure as exc:
                report.retried += 1
                with factory() as session, session.begin():
                    deliveries.mark_retry(
                        session,
                        row.id,
                        worker,
                        str(exc),
                        attempts=row.attempts,
                        max_attempts=settings.max_attempts,
                        delay_seconds=retry_delay(row.attempts),
                    )
                continue
            with marks.begin():
                deliveries.mark_sent(marks, row.id, worker, envelope.message_id)
            report.sent += 1


def _deliver(
    smtp: Transport, envelope: Envelope, limiter: RateLimiter | None, ticket: str | None
) -> None:
    try:
        smtp.send(envelope.mail_from, envelope.rcpt_to, envelope.data)
    finally:
        if limiter is not None and ticket is not None:
            limiter.done(ticket)


def _now() -> datetime:
    return utcnow()
