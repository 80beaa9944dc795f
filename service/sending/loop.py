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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.audience.subscriptions import record_hard_bounce
from service.config import Settings
from service.db import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    DriverStatement,
    is_disk_full,
    retry_while_locked,
)
from service.mail import dkim
from service.mail.mime import Envelope, PreparedEdition, personalise, prepare, verp_sender
from service.mail.transport import (
    NextEnvelope,
    PermanentFailure,
    RelayUnavailable,
    SmtpTransport,
    TemporaryFailure,
    Transport,
)
from service.models import DeliveryStatus, Edition, EditionStatus, utcnow
from service.sending import controls, outbox

log = logging.getLogger(__name__)

# Temporary failures wait about 1, 2, 4, 8 … minutes (Settings.retry_base_seconds, 60 s
# by default): greylisting relays ask for a few minutes, so an immediate retry would only
# spend an attempt.
RETRY_MAX_SECONDS = 3600.0
# Longer waits for the shared limits (an hourly quota used up, every connection slot
# taken) give the claimed rows back instead of holding them: beat hands them out again.
RATE_PATIENCE_SECONDS = 30.0
CONNECTION_PATIENCE_SECONDS = 5.0
# A relay that says its storage is full (452, 4.3.1) this many times in a row, for as
# many readers, is full for everyone: the edition pauses and probes again later, where
# retrying reader by reader would spend every reader's attempts on the relay's problem.
# One refusal alone may be a blip (a queue being flushed), so it takes a run of them.
RELAY_FULL_PAUSE_AFTER = 3


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
    relay_full: bool = False  # RELAY_FULL_PAUSE_AFTER storage refusals in a row
    database_full: bool = False  # the database could not write: its disk is full
    full_in_a_row: int = 0  # consecutive "storage full" refusals of this run
    sender_refused: bool = False  # the relay refused MAIL FROM: a configuration problem
    stopped: bool = False  # the edition was paused or cancelled while this run sent
    throttled: bool = False  # the shared limits held this run back; the rest waits for beat
    errors: list[str] = field(default_factory=list)


def retry_delay(attempts: int, base: float, cap: float = RETRY_MAX_SECONDS) -> float:
    """Exponential backoff after `attempts` tries, half of it random so workers spread out."""
    step = min(cap, base * 2.0 ** max(0, attempts - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not crypto


def worker_name() -> str:
    """A name that tells which process holds a claim."""
    return f"{socket.gethostname()}:{os.getpid()}"


def prepare_edition(edition: Edition, settings: Settings) -> PreparedEdition:
    """Per-edition MIME work, from the frozen rendering."""
    if edition.rendered_html is None or edition.rendered_text is None:
        raise outbox.SendError(f"edition {edition.id} has not been rendered")
    newsletter = edition.newsletter
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
        dkim=dkim.key_from(settings),
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
        try:
            prepared = prepare_edition(edition, settings)
        except Exception as exc:  # the edition itself cannot be built: no row can go
            log.exception("edition %s: the messages cannot be prepared", edition_id)
            with session.begin():
                controls.pause(session, edition, f"paused: {_describe(exc)}")
            return report
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
                claimed = outbox.claim(
                    session,
                    edition_id,
                    worker,
                    limit=settings.batch_size,
                    lease_seconds=settings.lease_seconds,
                    max_comebacks=settings.max_attempts,
                )
            if not claimed:
                break
            _send_batch(
                factory, settings, prepared, claimed, smtp, limiter, connections, worker, report
            )
            if (
                report.relay_down
                or report.relay_full
                or report.sender_refused
                or report.stopped
                or report.throttled
            ):
                break
    except SQLAlchemyError as exc:
        if not is_disk_full(exc):
            raise
        # The rows this run holds stay claimed (nothing can be written): their leases
        # end and the sweep hands them out again once there is room. A message the
        # relay accepted but that could not be marked may go twice, same Message-ID.
        log.warning("edition %s: the database's disk is full", edition_id, exc_info=True)
        report.database_full = True
        report.errors.append(_describe(getattr(exc, "orig", None) or exc))
    finally:
        if own_transport:
            smtp.close()
        if connections is not None:
            connections.release()
    try:
        _conclude(factory, edition_id, report)
    except SQLAlchemyError as exc:
        if not is_disk_full(exc):
            raise
        # Not even the pause fits: the leases and the beat's sweep take over when it does.
        log.warning("edition %s: no room to record the pause", edition_id, exc_info=True)
    return report


def _conclude(factory: sessionmaker[Session], edition_id: int, report: BatchReport) -> None:
    """Pause the edition for what stopped the run, or mark it sent if nothing is left."""
    with factory() as session, session.begin():
        edition = session.get(Edition, edition_id)
        if edition is None:
            return
        if report.relay_down:
            controls.pause_for_relay(session, edition, report.errors[-1])
        elif report.relay_full:
            controls.pause_for_fault(
                session, edition, f"the SMTP relay's storage is full ({report.errors[-1]})"
            )
        elif report.database_full:
            controls.pause_for_fault(
                session, edition, f"the database's disk is full ({report.errors[-1]})"
            )
        elif report.sender_refused and edition.status == EditionStatus.SENDING:
            controls.pause(
                session, edition, f"paused: the relay refuses the sender ({report.errors[-1]})"
            )
        else:
            outbox.finish_if_done(session, edition)


class _Gate:
    """May this worker start one more SMTP transaction for a row? One read by primary keys.

    Its connection also records each message the relay accepted: outbox.MARK_SENT,
    one autocommitted UPDATE, so each mark is its own committed transaction. When the
    next row's read follows at once, the mark and the read go as one statement
    (outbox.MARK_SENT_THEN_GATE_READ): one round trip per message on PostgreSQL.

    Asked right before each transaction, so a pause or cancel committed before it
    stops the send there; only a message already handed to the relay can still go.
    It runs on its own DBAPI connection in autocommit, outside any transaction: it
    never holds SQLite's write lock beyond a mark nor leaves a PostgreSQL transaction
    open, and it skips SQLAlchemy's statement machinery, which would cost more than
    the read. On SQLite a mark that meets another worker's tries again within
    microseconds (db.retry_while_locked) instead of SQLite's millisecond sleeps.
    """

    GO, SKIP, STOP = "go", "skip", "stop"

    def __init__(self, engine: Engine, edition_id: int, worker: str) -> None:
        self._edition_id = edition_id
        self._worker = worker
        self._raw = engine.raw_connection()
        self._driver: Any = self._raw.driver_connection
        assert self._driver is not None  # a live connection from the pool
        self._postgres = engine.dialect.name == "postgresql"
        if self._postgres:
            self._driver.autocommit = True
            self._patiently: Callable[[Callable[[], Any]], Any] = _at_once
        else:
            # SQLite's driver connections run in autocommit too (service.db issues BEGIN).
            self._driver.execute("PRAGMA busy_timeout=0")
            self._patiently = retry_while_locked
        self._read, self._mark_sent, self._mark_then_read = _statements(engine.dialect)
        self._read_ahead: tuple[int, str] | None = None  # (row, verdict) read with a mark

    def check(self, delivery_id: int) -> str:
        """GO: send it; SKIP: this row is no longer ours; STOP: the edition stopped sending."""
        if self._read_ahead is not None:
            read_for, verdict = self._read_ahead
            self._read_ahead = None
            if read_for == delivery_id:
                return verdict
        found = self._patiently(
            lambda: self._read.first(
                self._driver, gated_id=delivery_id, edition_id=self._edition_id
            )
        )
        return self._verdict(found)

    def _verdict(self, found: tuple[Any, ...] | None) -> str:
        if found is None or found[0] != _SENDING:
            return self.STOP
        if found[1] != _SENDING or found[2] != self._worker:
            return self.SKIP  # cancelled for this reader, or taken over after a lease expired
        return self.GO

    def mark_sent(
        self, delivery_id: int, message_id: str, *, then_check: int | None = None
    ) -> bool:
        """outbox.mark_sent, committed at once; False if the row is no longer this worker's.

        With `then_check` on PostgreSQL, that row's check is read in the same statement
        and `check` answers with it: for a caller whose next step is that check, with
        nothing to wait for in between. (SQLite has no round trip to save: `check`
        reads then, as without it.)
        """
        values = {
            "delivery_id": delivery_id,
            "worker": self._worker,
            "sent_at": _now(),
            "message_id": message_id,
        }
        if then_check is None or self._mark_then_read is None:
            return bool(self._patiently(lambda: self._mark_sent.run(self._driver, **values)) > 0)
        found = self._mark_then_read.first(
            self._driver, **values, gated_id=then_check, edition_id=self._edition_id
        )
        self._read_ahead = (then_check, self._verdict(found))
        return found is not None and found[3] > 0

    def close(self) -> None:
        """Give the connection back to the pool as the pool lent it."""
        try:
            if self._postgres and not self._driver.closed:
                self._driver.autocommit = False
            elif not self._postgres:
                self._driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        except Exception:
            # Not as lent (a session on it would not wait for locks): never lend it again.
            log.warning("the send loop's connection is discarded", exc_info=True)
            self._raw.invalidate()
        finally:
            self._raw.close()


def _at_once(attempt: Callable[[], Any]) -> Any:
    return attempt()


_SENDING = EditionStatus.SENDING.value
_Statements = tuple[DriverStatement, DriverStatement, DriverStatement | None]
_compiled: dict[str, _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    """The gate's read, the mark, and both in one (where the database can), compiled once."""
    if dialect.name not in _compiled:
        _compiled[dialect.name] = (
            DriverStatement.compile(outbox.GATE_READ, dialect),
            DriverStatement.compile(outbox.MARK_SENT, dialect),
            DriverStatement.compile(outbox.MARK_SENT_THEN_GATE_READ, dialect)
            if dialect.name == "postgresql"
            else None,
        )
    return _compiled[dialect.name]


assert DeliveryStatus.SENDING.value == _SENDING  # the gate compares both with one value


class _Ahead:
    """The batch's messages, each built once, the next one while the relay reads this one.

    Building (personalising, signing) is the loop's main CPU work and the relay's
    reading of the content its main wait: done together, the worker hands over the
    next message as soon as the relay has answered. Only building moves: a message
    is still started after the gate's check and marked sent before the next starts.

    Its envelope may go earlier, written with the previous message's content
    (`announce`): the relay answers the previous message and the next envelope in one
    turn. The gate is still asked right before the content: a message it stops never
    gets content, and the transport drops its open transaction if it wrote one
    (`Transport.abandon_announced`).
    """

    def __init__(self, prepared: PreparedEdition, claimed: list[outbox.Claimed]) -> None:
        self._prepared = prepared
        self._claimed = claimed
        self._built: dict[int, Envelope | Exception] = {}
        self._senders: dict[int, str] = {}  # envelope senders of announced rows, not rebuilt

    def row_id(self, index: int) -> int | None:
        """The delivery id of claimed[index], if there is such a row."""
        return self._claimed[index].id if index < len(self._claimed) else None

    def announce(self, index: int) -> tuple[str, str] | None:
        """The envelope of claimed[index] to write ahead, if there is such a row."""
        if index >= len(self._claimed):
            return None
        row = self._claimed[index]
        sender = self._senders[index] = verp_sender(self._prepared, row.id)
        return sender, row.email

    def build(self, index: int) -> None:
        """Build the message of claimed[index] now, if there is one not yet built."""
        if index >= len(self._claimed) or index in self._built:
            return
        row = self._claimed[index]
        try:
            self._built[index] = personalise(
                self._prepared,
                row.id,
                row.email,
                row.name,
                _now(),
                mail_from=self._senders.pop(index, None),
            )
        except Exception as exc:  # one reader's data must never stop the others' send
            self._built[index] = exc

    def take(self, index: int) -> Envelope | Exception:
        """The message of claimed[index] (or why it could not be built), built if need be."""
        self.build(index)
        return self._built.pop(index)


def _send_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    prepared: PreparedEdition,
    claimed: list[outbox.Claimed],
    smtp: Transport,
    limiter: RateLimiter | None,
    connections: ConnectionCap | None,
    worker: str,
    report: BatchReport,
) -> None:
    # The gate's connection also records the batch's "sent" marks, one committed
    # transaction each.
    with factory() as session:
        engine = session.get_bind()
    assert isinstance(engine, Engine)  # our sessionmakers are bound to an engine
    gate = _Gate(engine, prepared.edition_id, worker)
    ahead = _Ahead(prepared, claimed)
    try:
        for index, row in enumerate(claimed):
            if not _send_one(
                factory, settings, ahead, index, row, smtp, limiter, connections, worker,
                report, gate,
            ):  # fmt: skip
                # Stopped: give back what this run has not tried.
                with factory() as session, session.begin():
                    outbox.release(session, [c.id for c in claimed[index:]], worker)
                return
    finally:
        gate.close()


def _send_one(
    factory: sessionmaker[Session],
    settings: Settings,
    ahead: _Ahead,
    index: int,
    row: outbox.Claimed,
    smtp: Transport,
    limiter: RateLimiter | None,
    connections: ConnectionCap | None,
    worker: str,
    report: BatchReport,
    gate: _Gate,
) -> bool:
    """Build, send and record one row; False when the run must stop (this row untried)."""
    envelope = ahead.take(index)
    if isinstance(envelope, Exception):
        smtp.abandon_announced()  # if its envelope went ahead, it gets no content
        exc = envelope
        log.warning("delivery %s: the message could not be built", row.id, exc_info=exc)
        _fail(factory, row, worker, f"the message could not be built: {_describe(exc)}", report)
        return True
    # Wait after building the message, so it reaches the relay right at its slot.
    ticket = None
    if (connections is not None and not connections.renew()) or (
        limiter is not None and (ticket := limiter.acquire(RATE_PATIENCE_SECONDS)) is None
    ):
        smtp.abandon_announced()
        report.throttled = True
        return False
    verdict = gate.check(row.id)
    if verdict != _Gate.GO:
        smtp.abandon_announced()
        if limiter is not None and ticket is not None:
            limiter.done(ticket)
        if verdict == _Gate.STOP:
            report.stopped = True  # paused or cancelled: nothing more starts
            return False
        report.skipped += 1
        with factory() as session, session.begin():
            outbox.release(session, [row.id], worker)
        return True
    try:
        _deliver(
            smtp,
            envelope,
            limiter,
            ticket,
            meanwhile=lambda: ahead.build(index + 1),
            # With a rate limit each message waits for its slot: none is announced early.
            then=None if limiter is not None else lambda: ahead.announce(index + 1),
        )
    except RelayUnavailable as exc:
        report.relay_down = True
        report.errors.append(str(exc))
        return False
    except PermanentFailure as exc:
        if exc.stage == "mail" and row.email.isascii():
            # The relay refuses our sender, not this reader: every other row would
            # fail the same way. Pause for an editor to fix the configuration. (With a
            # non-ASCII recipient the refusal may be of SMTPUTF8: that reader alone.)
            report.sender_refused = True
            report.errors.append(str(exc))
            return False
        with factory() as session, session.begin():
            if outbox.mark_failed(session, row.id, worker, str(exc)):
                if exc.hard_bounce:
                    record_hard_bounce(session, row.email, str(exc), delivery_id=row.id)
            else:
                outbox.release(session, [row.id], worker)
        report.failed += 1
        return True
    except TemporaryFailure as exc:
        if exc.relay_full:
            # The relay's storage, not this reader: the row goes back untried, its
            # attempts kept for problems of its own.
            report.full_in_a_row += 1
            if report.full_in_a_row >= RELAY_FULL_PAUSE_AFTER:
                report.relay_full = True
                report.errors.append(str(exc))
                return False
            with factory() as session, session.begin():
                outbox.release(session, [row.id], worker)
            return True
        report.full_in_a_row = 0
        report.retried += 1
        with factory() as session, session.begin():
            if not outbox.mark_retry(
                session,
                row.id,
                worker,
                str(exc),
                attempts=row.attempts,
                max_attempts=settings.max_attempts,
                delay_seconds=retry_delay(row.attempts, base=settings.retry_base_seconds),
            ):
                outbox.release(session, [row.id], worker)
        return True
    except Exception as exc:  # whatever else one message raises fails that message alone
        log.warning("delivery %s: the transport failed on it", row.id, exc_info=True)
        smtp.close()  # the session may be mid-command: start the next message afresh
        _fail(factory, row, worker, f"the relay could not take it: {_describe(exc)}", report)
        return True
    # Without a rate limit nothing is waited for before the next row's check (a slot's
    # renewal reads the clock, and asks the store only once a third of its lease has
    # passed): it is read with this mark.
    following = ahead.row_id(index + 1) if limiter is None else None
    gate.mark_sent(row.id, envelope.message_id, then_check=following)
    report.sent += 1
    report.full_in_a_row = 0
    return True


def _fail(
    factory: sessionmaker[Session],
    row: outbox.Claimed,
    worker: str,
    reason: str,
    report: BatchReport,
) -> None:
    report.failed += 1
    with factory() as session, session.begin():
        if not outbox.mark_failed(session, row.id, worker, reason):
            outbox.release(session, [row.id], worker)  # cancelled meanwhile


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\r", " ").replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _deliver(
    smtp: Transport,
    envelope: Envelope,
    limiter: RateLimiter | None,
    ticket: str | None,
    *,
    meanwhile: Callable[[], None],
    then: NextEnvelope | None,
) -> None:
    """Hand the message over, run `meanwhile` while the relay reads it, take its verdict."""
    try:
        # personalise() never starts a line with a dot (tests/unit/test_mime_encoding.py).
        smtp.start(envelope.mail_from, envelope.rcpt_to, envelope.data, dot_safe=True, then=then)
        meanwhile()
        smtp.finish()
    finally:
        if limiter is not None and ticket is not None:
            try:
                limiter.done(ticket)
            except Exception:
                # The relay's answer decides the message's fate: a limiter that cannot be
                # told (Redis down) must not turn an accepted message into a failed row.
                # Its in-flight entry expires by itself (ratelimit.IN_FLIGHT_SECONDS).
                log.warning("the rate limiter could not be told a message is done", exc_info=True)


def _now() -> datetime:
    return utcnow()
