"""Confirmation mails owed to pending readers: queued by imports and re-sends, sent by workers.

The confirmation_mail table is the outbox. `queue_for_addresses` (an import) and
`resend` (an editor) insert rows in the caller's transaction; the door enqueues
"send this newsletter's confirmations" after its commit (the `Enqueue` callable
it is given); `send_queued`, run by a worker, claims rows, mails them through
the send loop's shared rate limits and connection cap, and records each outcome.
Progress is counted from the rows.

A reader is mailed at most once per signup.RESEND_AFTER, whoever asks (the
public form, an import, an editor): a claim takes the reader's notice slot with
the signup form's own rule. That slot is also the lease: a worker killed
between claim and send leaves the row queued, and it goes out once the slot
frees up again (a duplicate can only be the message in flight at the crash).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.policy import SMTP

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.audience import signup, suppressions
from service.audience.subscriptions import record_hard_bounce
from service.config import Settings
from service.db import affected_rows
from service.mail import notices
from service.mail.transport import (
    PermanentFailure,
    RelayUnavailable,
    SmtpTransport,
    TemporaryFailure,
    Transport,
)
from service.models import (
    ConfirmationMail,
    ConfirmationStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.sending.loop import (
    CONNECTION_PATIENCE_SECONDS,
    RATE_PATIENCE_SECONDS,
    ConnectionCap,
    RateLimiter,
)

log = logging.getLogger(__name__)

# "Send the queued confirmations of this newsletter", called by a door after its commit.
Enqueue = Callable[[int], None]

NOT_PENDING = "the reader is no longer waiting for confirmation"
SUPPRESSED = "the address is suppressed"


@dataclass(frozen=True)
class Progress:
    """Confirmation mails by state, for one request or one newsletter."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        """Every row counted."""
        return self.queued + self.sent + self.failed + self.skipped

    @property
    def done(self) -> bool:
        """Nothing left to send."""
        return self.queued == 0


@dataclass
class SendReport:
    """What one run of send_queued did."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    throttled: bool = False  # the shared limits held it back; beat hands the rest out again
    relay_down: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    mail_id: int
    subscription_id: int
    attempts: int  # including this claim
    previous_sent_at: datetime | None  # the slot's value before the claim, to give it back


def new_request_id() -> str:
    """A name for one import or one re-send, that its rows are counted by."""
    return uuid.uuid4().hex


def _not_suppressed(newsletter_id: int) -> ColumnElement[bool]:
    return ~suppressions.applies(Subscriber.email, newsletter_id)


def _already_queued() -> ColumnElement[bool]:
    return exists().where(
        ConfirmationMail.subscription_id == Subscription.id,
        ConfirmationMail.status == ConfirmationStatus.QUEUED,
    )


def _owed(
    newsletter_id: int,
    now: datetime,
    subscribers: Select[int] | None,
    older_than: timedelta | None,
) -> Select[int]:
    """Subscriptions a confirmation may be queued for now: pending, mailable, slot free."""
    query = (
        select(Subscription.id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.newsletter_id == newsletter_id,
            Subscription.status == SubscriptionStatus.PENDING,
            Subscriber.status == SubscriberStatus.ACTIVE,
            _not_suppressed(newsletter_id),
            ~_already_queued(),
            signup.notice_slot_free(now),
        )
    )
    if subscribers is not None:
        query = query.where(Subscription.subscriber_id.in_(subscribers.scalar_subquery()))
    if older_than is not None:
        # Last asked (mailed, or subscribed if never mailed) longer ago than that.
        last = func.coalesce(Subscription.confirmation_sent_at, Subscription.created_at)
        query = query.where(last <= now - older_than)
    return query


def _queue(
    session: Session,
    newsletter_id: int,
    request_id: str,
    owed: Select[int],
    now: datetime,
) -> int:
    table = ConfirmationMail.__table__
    rows = owed.with_only_columns(
        literal(newsletter_id),
        Subscription.id,
        literal(request_id),
        literal(ConfirmationStatus.QUEUED.value),
        literal(0),
        literal(now, type_=ConfirmationMail.requested_at.type),
    ).order_by(Subscription.id)
    result = session.execute(
        table.insert().from_select(  # type: ignore[attr-defined]
            [
                "newsletter_id",
                "subscription_id",
                "request_id",
                "status",
                "attempts",
                "requested_at",
            ],
            rows,
        ),
        execution_options={"preserve_rowcount": True},  # psycopg reports -1 otherwise
    )
    return affected_rows(result)


def queue_for_addresses(
    session: Session,
    newsletter_id: int,
    emails: Iterable[str],
    request_id: str,
    *,
    now: datetime | None = None,
) -> int:
    """Queue a confirmation for each of these (normalised) addresses still pending; flushes."""
    addresses = sorted(set(emails))
    if not addresses:
        return 0
    subscribers = select(Subscriber.id).where(Subscriber.email.in_(addresses))
    return _queue(
        session,
        newsletter_id,
        request_id,
        _owed(newsletter_id, now or utcnow(), subscribers, None),
        now or utcnow(),
    )


def resendable(
    session: Session,
    newsletter_id: int,
    *,
    subscribers: Select[int] | None = None,
    older_than: timedelta | None = None,
    sample: int = 10,
    now: datetime | None = None,
) -> tuple[int, list[str]]:
    """How many pending readers a re-send would mail now, and the first addresses."""
    owed = _owed(newsletter_id, now or utcnow(), subscribers, older_than)
    total = session.scalar(select(func.count()).select_from(owed.subquery())) or 0
    emails = list(
        session.scalars(
            owed.with_only_columns(Subscriber.email).order_by(Subscription.id).limit(sample)
        )
    )
    return total, emails


def resend(
    session: Session,
    newsletter_id: int,
    *,
    subscribers: Select[int] | None = None,
    older_than: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, int]:
    """Queue the confirmation again for pending readers (all, or among `subscribers`).

    Confirmed, unsubscribed and suppressed readers are left out, and so is anyone
    mailed within signup.RESEND_AFTER or already queued. Returns the request id
    and how many were queued; the caller commits, then enqueues.
    """
    now = now or utcnow()
    request_id = new_request_id()
    owed = _owed(newsletter_id, now, subscribers, older_than)
    return request_id, _queue(session, newsletter_id, request_id, owed, now)


def progress(
    session: Session, *, newsletter_id: int | None = None, request_id: str | None = None
) -> Progress:
    """Count confirmation mails by state, for one request or for a whole newsletter."""
    query = select(ConfirmationMail.status, func.count()).group_by(ConfirmationMail.status)
    if newsletter_id is not None:
        query = query.where(ConfirmationMail.newsletter_id == newsletter_id)
    if request_id is not None:
        query = query.where(ConfirmationMail.request_id == request_id)
    counts = dict(session.execute(query).all())
    return Progress(
        queued=counts.get(ConfirmationStatus.QUEUED, 0),
        sent=counts.get(ConfirmationStatus.SENT, 0),
        failed=counts.get(ConfirmationStatus.FAILED, 0),
        skipped=counts.get(ConfirmationStatus.SKIPPED, 0),
    )


def due_newsletters(session: Session, now: datetime | None = None) -> list[int]:
    """Newsletters with a queued confirmation that may go out now (for the beat sweep)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(ConfirmationMail.newsletter_id)
            .join(Subscription, Subscription.id == ConfirmationMail.subscription_id)
            .where(ConfirmationMail.status == ConfirmationStatus.QUEUED)
            .where(signup.notice_slot_free(now))
            .distinct()
            .order_by(ConfirmationMail.newsletter_id)
        )
    )


# --- Sending ------------------------------------------------------------------------


def _skip_unowed(session: Session, newsletter_id: int) -> None:
    """Queued rows whose reader confirmed, left or got suppressed meanwhile: never send."""
    queued = and_(
        ConfirmationMail.newsletter_id == newsletter_id,
        ConfirmationMail.status == ConfirmationStatus.QUEUED,
    )
    not_pending = select(Subscription.id).where(
        Subscription.newsletter_id == newsletter_id,
        Subscription.status != SubscriptionStatus.PENDING,
    )
    suppressed = (
        select(Subscription.id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.newsletter_id == newsletter_id,
            or_(Subscriber.status != SubscriberStatus.ACTIVE, ~_not_suppressed(newsletter_id)),
        )
    )
    for reason, ids in ((NOT_PENDING, not_pending), (SUPPRESSED, suppressed)):
        session.execute(
            update(ConfirmationMail)
            .where(queued, ConfirmationMail.subscription_id.in_(ids.scalar_subquery()))
            .values(status=ConfirmationStatus.SKIPPED, detail=reason)
            .execution_options(synchronize_session=False)
        )


def claim(
    session: Session,
    newsletter_id: int,
    *,
    limit: int,
    max_attempts: int,
    now: datetime | None = None,
) -> list[_Claimed]:
    """Take the notice slot of up to `limit` readers with a queued confirmation."""
    now = now or utcnow()
    _skip_unowed(session, newsletter_id)
    due = (
        select(
            ConfirmationMail.id,
            ConfirmationMail.subscription_id,
            ConfirmationMail.attempts,
            Subscription.confirmation_sent_at,
        )
        .join(Subscription, Subscription.id == ConfirmationMail.subscription_id)
        .where(
            ConfirmationMail.newsletter_id == newsletter_id,
            ConfirmationMail.status == ConfirmationStatus.QUEUED,
            signup.notice_slot_free(now),
        )
        .order_by(ConfirmationMail.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=ConfirmationMail, skip_locked=True)
    rows = session.execute(due).all()
    if not rows:
        return []
    # The signup form's rule, re-checked by the UPDATE itself: a reader who was
    # mailed a moment ago (or is being mailed by another worker) is not taken.
    taken = set(
        session.execute(
            update(Subscription)
            .where(
                Subscription.id.in_(sorted({row[1] for row in rows})),
                signup.notice_slot_free(now),
            )
            .values(confirmation_sent_at=now)
            .returning(Subscription.id)
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    claimed: list[_Claimed] = []
    seen: set[int] = set()
    for mail_id, subscription_id, attempts, previous in rows:
        if subscription_id not in taken:
            continue
        if subscription_id in seen:  # queued twice by concurrent requests: one mail is enough
            _finish(session, mail_id, ConfirmationStatus.SKIPPED, "queued twice", attempts)
            continue
        seen.add(subscription_id)
        if attempts >= max_attempts:  # claimed that often and never finished: stop trying
            _finish(
                session,
                mail_id,
                ConfirmationStatus.FAILED,
                f"gave up after {attempts} claims",
                attempts,
            )
            continue
        claimed.append(_Claimed(mail_id, subscription_id, attempts + 1, previous))
    if claimed:
        session.execute(
            update(ConfirmationMail)
            .where(ConfirmationMail.id.in_([c.mail_id for c in claimed]))
            .values(attempts=ConfirmationMail.attempts + 1)
            .execution_options(synchronize_session=False)
        )
    return claimed


def _finish(
    session: Session,
    mail_id: int,
    status: ConfirmationStatus,
    detail: str | None,
    attempts: int,
    now: datetime | None = None,
) -> None:
    session.execute(
        update(ConfirmationMail)
        .where(ConfirmationMail.id == mail_id, ConfirmationMail.status == ConfirmationStatus.QUEUED)
        .values(
            status=status,
            detail=detail[:2000] if detail else None,
            attempts=attempts,
            sent_at=now if status == ConfirmationStatus.SENT else None,
        )
        .execution_options(synchronize_session=False)
    )


def _release(session: Session, claimed: list[_Claimed], now: datetime) -> None:
    """Give back claims that were not tried: the slot as it was, the attempt not counted."""
    for item in claimed:
        session.execute(
            update(Subscription)
            .where(
                Subscription.id == item.subscription_id,
                Subscription.confirmation_sent_at == now,
            )
            .values(confirmation_sent_at=item.previous_sent_at)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(ConfirmationMail)
            .where(ConfirmationMail.id == item.mail_id)
            .values(attempts=item.attempts - 1)
            .execution_options(synchronize_session=False)
        )


def send_queued(
    factory: sessionmaker[Session],
    settings: Settings,
    newsletter_id: int,
    *,
    transport: Transport | None = None,
    limiter: RateLimiter | None = None,
    connections: ConnectionCap | None = None,
    max_batches: int | None = None,
) -> SendReport:
    """Send the newsletter's queued confirmations, batch after batch, until none is due.

    Owns its transactions like the edition send loop: each outcome is committed
    right after the relay answered.
    """
    report = SendReport()
    if connections is not None and not connections.acquire(CONNECTION_PATIENCE_SECONDS):
        report.throttled = True
        return report
    own_transport = transport is None
    smtp: Transport = transport or SmtpTransport(settings.smtp_relays)
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            batches += 1
            now = utcnow()
            with factory() as session, session.begin():
                claimed = claim(
                    session,
                    newsletter_id,
                    limit=settings.batch_size,
                    max_attempts=settings.max_attempts,
                    now=now,
                )
            if not claimed:
                break
            _send_batch(factory, settings, claimed, now, smtp, limiter, connections, report)
            if report.throttled or report.relay_down:
                break
    finally:
        if own_transport:
            smtp.close()
        if connections is not None:
            connections.release()
    return report


def _send_batch(
    factory: sessionmaker[Session],
    settings: Settings,
    claimed: list[_Claimed],
    claimed_at: datetime,
    smtp: Transport,
    limiter: RateLimiter | None,
    connections: ConnectionCap | None,
    report: SendReport,
) -> None:
    with factory() as session:
        subscriptions = {
            s.id: s
            for s in session.scalars(
                select(Subscription)
                .where(Subscription.id.in_([c.subscription_id for c in claimed]))
                .options(
                    selectinload(Subscription.subscriber), selectinload(Subscription.newsletter)
                )
            )
        }
    for index, item in enumerate(claimed):
        subscription = subscriptions.get(item.subscription_id)
        if subscription is None:  # erased meanwhile: the row went with it
            continue
        try:
            message = signup.build_message(subscription, notices.Notice.CONFIRM, settings)
            data = message.as_bytes(policy=SMTP)
        except Exception as exc:  # one reader's data must not stop the others
            log.warning("confirmation %s cannot be built: %s", item.mail_id, exc)
            report.failed += 1
            with factory() as session, session.begin():
                _finish(
                    session,
                    item.mail_id,
                    ConfirmationStatus.FAILED,
                    f"cannot build the message: {exc}",
                    item.attempts,
                )
            continue
        ticket = None
        if (connections is not None and not connections.renew()) or (
            limiter is not None and (ticket := limiter.acquire(RATE_PATIENCE_SECONDS)) is None
        ):
            report.throttled = True
            with factory() as session, session.begin():
                _release(session, claimed[index:], claimed_at)
            return
        try:
            try:
                smtp.send(subscription.newsletter.sender_email, subscription.subscriber.email, data)
            finally:
                if limiter is not None and ticket is not None:
                    limiter.done(ticket)
        except (RelayUnavailable, PermanentFailure) as exc:
            if isinstance(exc, PermanentFailure) and exc.stage != "mail":
                report.failed += 1
                with factory() as session, session.begin():
                    _finish(
                        session, item.mail_id, ConfirmationStatus.FAILED, str(exc), item.attempts
                    )
                    if exc.hard_bounce:
                        record_hard_bounce(session, subscription.subscriber.email, str(exc))
                continue
            # No relay, or the relay refuses our sender: every other row would fail
            # the same way. Leave them queued for the beat sweep.
            report.relay_down = True
            report.errors.append(str(exc))
            with factory() as session, session.begin():
                _release(session, claimed[index:], claimed_at)
            return
        except TemporaryFailure as exc:
            report.retried += 1
            with factory() as session, session.begin():
                if item.attempts >= settings.max_attempts:
                    _finish(
                        session,
                        item.mail_id,
                        ConfirmationStatus.FAILED,
                        f"gave up after {item.attempts} attempts: {exc}",
                        item.attempts,
                    )
                else:
                    # Stays queued; the slot taken by the claim makes it wait RESEND_AFTER.
                    session.execute(
                        update(ConfirmationMail)
                        .where(ConfirmationMail.id == item.mail_id)
                        .values(detail=str(exc)[:2000])
                        .execution_options(synchronize_session=False)
                    )
            continue
        with factory() as session, session.begin():
            _finish(session, item.mail_id, ConfirmationStatus.SENT, None, item.attempts, utcnow())
        report.sent += 1
