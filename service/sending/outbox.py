"""Delivery state: the outbox rows of an edition and their life cycle.

start() snapshots the recipients in one set-based INSERT … SELECT; claim() hands
rows to one worker under a lease (SKIP LOCKED on PostgreSQL; SQLite serialises
writers, and our engine opens every transaction with BEGIN IMMEDIATE); the
mark_* functions record outcomes one row at a time, each guarded by the claim
so a worker whose lease was taken over cannot overwrite the new owner's result.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.access import webhooks
from service.audience import suppressions
from service.db import affected_rows
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.sending import lifecycle


class SendError(RuntimeError):
    """The edition cannot be sent in its current state."""


@dataclass(frozen=True)
class Claimed:
    """A delivery row handed to a worker."""

    id: int
    email: str
    name: str
    attempts: int


@dataclass(frozen=True)
class Progress:
    """Counts of an edition's deliveries by state."""

    queued: int
    sending: int
    sent: int
    failed: int
    cancelled: int

    @property
    def total(self) -> int:
        """Every delivery row of the edition."""
        return self.queued + self.sending + self.sent + self.failed + self.cancelled

    @property
    def remaining(self) -> int:
        """Rows that still have to go out."""
        return self.queued + self.sending

    @property
    def done(self) -> bool:
        """True when nothing is left to send."""
        return self.remaining == 0


def recipients_query(edition: Edition, now: datetime):  # type: ignore[no-untyped-def]
    """Confirmed, unpaused, unsuppressed subscribers of the edition's newsletter."""
    # The address's own entry or its whole domain's (service.audience.suppressions).
    not_suppressed = ~suppressions.applies(Subscriber.email, edition.newsletter_id)
    return (
        select(Subscriber.id, Subscriber.email, Subscriber.name)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.newsletter_id == edition.newsletter_id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            or_(Subscription.paused_until.is_(None), Subscription.paused_until <= now),
            Subscriber.status == SubscriberStatus.ACTIVE,
            not_suppressed,
        )
    )


def start(session: Session, edition: Edition, now: datetime | None = None) -> int:
    """Move an edition to sending and snapshot its recipients; return rows added.

    Safe to call again: existing rows are kept and no pair is inserted twice.
    """
    now = now or utcnow()
    if edition.status in (EditionStatus.SENT, EditionStatus.CANCELLED):
        raise SendError(f"edition {edition.number} is already {edition.status.value}")
    if edition.rendered_html is None:
        raise SendError("edition must be rendered (frozen) before it is sent")
    recipients = recipients_query(edition, now).subquery()
    already = exists().where(
        Delivery.edition_id == edition.id, Delivery.subscriber_id == recipients.c.id
    )
    insert_rows = (
        select(
            literal(edition.id),
            recipients.c.id,
            recipients.c.email,
            recipients.c.name,
            literal(DeliveryStatus.QUEUED.value),
            literal(0),
            literal(now, type_=Delivery.__table__.c.created_at.type),
        )
        .where(~already)
        .order_by(recipients.c.id)
    )
    table = Delivery.__table__
    assert isinstance(table, Table)
    result = session.execute(
        table.insert().from_select(
            ["edition_id", "subscriber_id", "email", "name", "status", "attempts", "created_at"],
            insert_rows,
        ),
        execution_options={"preserve_rowcount": True},  # psycopg reports -1 otherwise
    )
    if edition.status != EditionStatus.SENDING:
        lifecycle.move(edition, EditionStatus.SENDING, detail="")
        if edition.send_started_at is None:
            edition.send_started_at = now
            webhooks.emit(
                session,
                edition.newsletter_id,
                "edition.started",
                [webhooks.edition_item(edition.id, edition.number, edition.title)],
                now=now,
            )
    session.flush()
    return affected_rows(result)


def claim(
    session: Session,
    edition_id: int,
    worker: str,
    *,
    limit: int,
    lease_seconds: int,
    max_comebacks: int | None = None,
    now: datetime | None = None,
) -> list[Claimed]:
    """Claim up to `limit` due rows for this worker, taking over expired leases.

    A row whose lease expired was held by a worker that vanished (or hung) while
    sending it, perhaps because of the row itself. Such rows come back one per
    claim, so a row that kills its worker takes no innocent row down with it; and
    one that has come back more than `max_comebacks` times is failed instead of
    handed out again, so the edition always finishes.
    """
    now = now or utcnow()
    expired = and_(
        Delivery.edition_id == edition_id,
        Delivery.status == DeliveryStatus.SENDING,
        Delivery.lease_expires_at < now,
    )
    if max_comebacks is not None:
        give_up(session, expired, max_comebacks)
    comeback = select(Delivery.id).where(expired).order_by(Delivery.id).limit(1)
    fresh = (
        select(Delivery.id)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.QUEUED,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        comeback = comeback.with_for_update(skip_locked=True)
        fresh = fresh.with_for_update(skip_locked=True)
    due = comeback if session.scalar(comeback) is not None else fresh
    rows = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            claimed_by=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Delivery.attempts + 1,
            claims=Delivery.claims + 1,
        )
        .returning(Delivery.id, Delivery.email, Delivery.name, Delivery.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def give_up(session: Session, expired: typing.Any, max_comebacks: int) -> int:
    """Fail the expired-lease rows that already came back `max_comebacks` times."""
    result = session.execute(
        update(Delivery)
        .where(expired, Delivery.claims > max_comebacks)
        .values(
            status=DeliveryStatus.FAILED,
            last_error="gave up after "
            + cast(Delivery.claims, String)
            + " claims: the worker sending it stopped before recording an outcome each time",
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False, preserve_rowcount=True)
    )
    return affected_rows(result)


def _owned(delivery_id: int, worker: str):  # type: ignore[no-untyped-def]
    return and_(
        Delivery.id == delivery_id,
        Delivery.status == DeliveryStatus.SENDING,
        Delivery.claimed_by == worker,
    )


def mark_sent(
    session: Session | Connection,
    delivery_id: int,
    worker: str,
    message_id: str,
    now: datetime | None = None,
) -> bool:
    """Record that the relay accepted the message.

    A row cancelled (unsubscribe, edition cancelled) while this worker held it
    and had already handed it to SMTP is still recorded as sent: it went out.
    The send loop passes a bare Connection: this runs after every message.
    """
    result = session.execute(
        MARK_SENT,
        {
            "delivery_id": delivery_id,
            "worker": worker,
            "sent_at": now or utcnow(),
            "message_id": message_id,
        },
    )
    return affected_rows(result) > 0


# Built once: this runs after every message, and building the statement (and the
# ORM's bulk-update path) cost several times more than executing it. The send loop
# runs this very statement on its own connection (db.DriverStatement).
_deliveries = typing.cast(Table, Delivery.__table__)
MARK_SENT = (
    update(_deliveries)
    .where(
        _deliveries.c.id == bindparam("delivery_id"),
        _deliveries.c.claimed_by == bindparam("worker"),
        or_(
            _deliveries.c.status == DeliveryStatus.SENDING,
            _deliveries.c.status == DeliveryStatus.CANCELLED,
        ),
    )
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("sent_at"),
        message_id=bindparam("message_id"),
        lease_expires_at=None,
        last_error=None,
    )
)


_editions = typing.cast(Table, Edition.__table__)
_gated = _deliveries.alias("gated")
# What the send loop asks right before each message (loop._Gate): the edition's status,
# and the row's status and holder (NULL columns when the row is gone).
GATE_READ = (
    select(_editions.c.status, _gated.c.status, _gated.c.claimed_by)
    .select_from(_editions.outerjoin(_gated, _gated.c.id == bindparam("gated_id")))
    .where(_editions.c.id == bindparam("edition_id"))
)
# MARK_SENT of one row and GATE_READ of the next in one statement: one round trip per
# message on PostgreSQL, where a data-modifying CTE runs whether or not the query reads
# it, commits with it, and the read sees the other row as it was. Its fourth column is
# how many rows the mark matched. (PostgreSQL only: SQLite has no UPDATE in a WITH,
# nor a round trip to save.)
_marked = MARK_SENT.returning(_deliveries.c.id).cte("marked")
MARK_SENT_THEN_GATE_READ = GATE_READ.add_columns(
    select(func.count()).select_from(_marked).scalar_subquery()
)


def mark_failed(session: Session, delivery_id: int, worker: str, error: str) -> bool:
    """Record a permanent failure: this row will not be tried again."""
    result = session.execute(
        update(Delivery)
        .where(_owned(delivery_id, worker))
        .values(status=DeliveryStatus.FAILED, last_error=error[:2000], lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result) > 0


def mark_retry(
    session: Session,
    delivery_id: int,
    worker: str,
    error: str,
    *,
    attempts: int,
    max_attempts: int,
    delay_seconds: float,
    now: datetime | None = None,
) -> bool:
    """Put a temporarily failed row back in the queue, or fail it when out of attempts."""
    if attempts >= max_attempts:
        return mark_failed(
            session, delivery_id, worker, f"gave up after {attempts} attempts: {error}"
        )
    delay = delay_seconds
    result = session.execute(
        update(Delivery)
        .where(_owned(delivery_id, worker))
        .values(
            status=DeliveryStatus.QUEUED,
            last_error=error[:2000],
            next_attempt_at=(now or utcnow()) + timedelta(seconds=delay),
            lease_expires_at=None,
            claimed_by=None,
            claims=0,  # an outcome was recorded: the next claim is no comeback
        )
        .execution_options(synchronize_session=False)
    )
    return affected_rows(result) > 0


def release(session: Session | Connection, delivery_ids: list[int], worker: str) -> None:
    """Give claimed rows back untried (paused, relay down, throttled, or cancelled meanwhile).

    Rows still sending go back to the queue as if never claimed; rows cancelled
    while this worker held them are let go, which tells a waiting cancel that
    nothing more of them is in flight.
    """
    if not delivery_ids:
        return
    held = and_(Delivery.id.in_(delivery_ids), Delivery.claimed_by == worker)
    session.execute(
        update(Delivery)
        .where(held, Delivery.status == DeliveryStatus.SENDING)
        .values(
            status=DeliveryStatus.QUEUED,
            claimed_by=None,
            lease_expires_at=None,
            attempts=Delivery.attempts - 1,
            claims=Delivery.claims - 1,
        )
        .execution_options(synchronize_session=False)
    )
    let_go(session, held)


def let_go(session: Session | Connection, held: typing.Any) -> None:
    """Clear the claim on cancelled rows: no worker will send them any more."""
    session.execute(
        update(Delivery)
        .where(held, Delivery.status == DeliveryStatus.CANCELLED)
        .values(claimed_by=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def in_flight(session: Session, edition_id: int, now: datetime | None = None) -> int:
    """Rows a live worker still holds: they may yet go out, or be given back."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status.in_([DeliveryStatus.SENDING, DeliveryStatus.CANCELLED]),
                Delivery.claimed_by.is_not(None),
                Delivery.lease_expires_at >= (now or utcnow()),
            )
        )
        or 0
    )


def progress(session: Session, edition_id: int) -> Progress:
    """Count the edition's deliveries by state."""
    counts = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.status)
        ).all()
    )
    return Progress(
        queued=counts.get(DeliveryStatus.QUEUED, 0),
        sending=counts.get(DeliveryStatus.SENDING, 0),
        sent=counts.get(DeliveryStatus.SENT, 0),
        failed=counts.get(DeliveryStatus.FAILED, 0),
        cancelled=counts.get(DeliveryStatus.CANCELLED, 0),
    )


@dataclass(frozen=True)
class Failure:
    """A delivery that will not go out, and why."""

    delivery_id: int
    email: str
    reason: str


def failures(session: Session, edition_id: int, limit: int = 50) -> tuple[int, list[Failure]]:
    """How many of the edition's deliveries failed, and the first `limit` of them."""
    failed = and_(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.FAILED)
    count = int(session.scalar(select(func.count()).select_from(Delivery).where(failed)) or 0)
    rows = session.execute(
        select(Delivery.id, Delivery.email, Delivery.last_error)
        .where(failed)
        .order_by(Delivery.id)
        .limit(limit)
    ).all()
    return count, [Failure(i, email, reason or "") for i, email, reason in rows]


def finish_if_done(session: Session, edition: Edition, now: datetime | None = None) -> bool:
    """Mark a sending edition as sent once none of its rows remains to send."""
    if edition.status != EditionStatus.SENDING:
        return False
    if not progress(session, edition.id).done:
        return False
    lifecycle.move(edition, EditionStatus.SENT)
    edition.sent_at = now or utcnow()
    webhooks.emit(
        session,
        edition.newsletter_id,
        "edition.sent",
        [webhooks.edition_item(edition.id, edition.number, edition.title)],
        now=edition.sent_at,
    )
    session.flush()
    return True
