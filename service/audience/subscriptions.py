"""Subscriptions: who receives which newsletter, and the consent behind it."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.access import webhooks
from service.addresses import normalise
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.text import person_name


def find_or_create_subscriber(
    session: Session, email: str, name: str = "", locale: str = "fr"
) -> Subscriber:
    """The subscriber with this address (normalised), created if new.

    An existing subscriber is returned as stored: whoever calls with a name
    (an anonymous form, among others) cannot change theirs. Raises
    InvalidAddress or service.text.UnusableText before writing anything.
    """
    address = normalise(email)
    clean_name = person_name(name)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        subscriber = Subscriber(email=address, name=clean_name, locale=locale)
        session.add(subscriber)
        session.flush()
    return subscriber


def subscribe(
    session: Session,
    newsletter: Newsletter,
    subscriber: Subscriber,
    *,
    confirmed: bool,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> Subscription:
    """Record consent to a newsletter: pending until confirmed, unless confirmed=True."""
    now = now or utcnow()
    subscription = session.scalar(
        select(Subscription).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.subscriber_id == subscriber.id,
        )
    )
    before = None if subscription is None else subscription.status
    if subscription is None:
        subscription = Subscription(newsletter_id=newsletter.id, subscriber_id=subscriber.id)
        session.add(subscription)
    subscription.consent_at = now
    subscription.consent_ip = ip
    subscription.consent_user_agent = (user_agent or "")[:500] or None
    subscription.consent_source = source[:200]
    if confirmed:
        subscription.status = SubscriptionStatus.CONFIRMED
        subscription.confirmed_at = now
    elif subscription.status != SubscriptionStatus.CONFIRMED:
        subscription.status = SubscriptionStatus.PENDING
    session.flush()
    item = [webhooks.subscriber_item(subscriber.id, subscriber.email)]
    if before in (None, SubscriptionStatus.UNSUBSCRIBED):
        webhooks.emit(session, newsletter.id, "subscribed", item, now=now)
    if confirmed and before != SubscriptionStatus.CONFIRMED:
        webhooks.emit(session, newsletter.id, "confirmed", item, now=now)
    return subscription


def unsubscribe(
    session: Session,
    subscription: Subscription,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Stop a subscription at once, including editions being sent right now.

    Returns False when it was already unsubscribed (the call is harmless twice).
    """
    now = now or utcnow()
    if subscription.status == SubscriptionStatus.UNSUBSCRIBED:
        return False
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    subscription.unsubscribed_at = now
    subscription.unsubscribe_reason = reason
    # Rows not yet handed to SMTP are cancelled; the sender re-reads statuses
    # just before each message, so a send in progress skips this reader too.
    edition_ids = select(Edition.id).where(Edition.newsletter_id == subscription.newsletter_id)
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == subscription.subscriber_id,
            Delivery.edition_id.in_(edition_ids),
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.CANCELLED, last_error="unsubscribed")
        .execution_options(synchronize_session=False)
    )
    email = session.scalar(
        select(Subscriber.email).where(Subscriber.id == subscription.subscriber_id)
    )
    if email is not None:
        suppress(
            session, email, SuppressionReason.UNSUBSCRIBE, newsletter_id=subscription.newsletter_id
        )
    webhooks.emit(
        session,
        subscription.newsletter_id,
        "unsubscribed",
        [webhooks.subscriber_item(subscription.subscriber_id, email or "")],
        now=now,
    )
    session.flush()
    return True


def erased_marker(email: str) -> str:
    """What the suppression list keeps of an erased address: a hash, never the address.

    An import of an old spreadsheet can then be stopped from mailing the person
    again, while nobody can read the address back out of the database.
    """
    return "erased:" + hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def suppress(
    session: Session,
    email: str,
    reason: SuppressionReason,
    *,
    newsletter_id: int | None = None,
    detail: str = "",
) -> Suppression:
    """Put an address on the suppression list (idempotent)."""
    existing = session.scalar(
        select(Suppression).where(
            Suppression.email == email,
            Suppression.newsletter_id.is_(None)
            if newsletter_id is None
            else Suppression.newsletter_id == newsletter_id,
        )
    )
    if existing is not None:
        return existing
    suppression = Suppression(
        email=email, newsletter_id=newsletter_id, reason=reason, detail=detail[:1000]
    )
    session.add(suppression)
    session.flush()
    return suppression


def record_hard_bounce(
    session: Session,
    email: str,
    detail: str,
    *,
    delivery_id: int | None = None,
    source_key: str | None = None,
) -> None:
    """A permanent SMTP refusal: suppress the address everywhere and note the bounce.

    source_key names a relay's report (webhooks), so the same report is kept once.
    """

    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
    edition_id = None
    if delivery_id is not None:
        edition_id = session.scalar(select(Delivery.edition_id).where(Delivery.id == delivery_id))
    if subscriber is not None:
        subscriber.status = SubscriberStatus.BOUNCED
    suppress(session, email, SuppressionReason.HARD_BOUNCE, detail=detail)
    session.add(
        Event(
            kind=EventKind.BOUNCE,
            delivery_id=delivery_id,
            edition_id=edition_id,
            subscriber_id=subscriber.id if subscriber else None,
            value="hard",
            detail={"reply": detail[:500]},
            source_key=source_key,
        )
    )
    session.flush()
    if subscriber is not None:
        emit_to_newsletters_of(session, subscriber, "bounced")


def emit_to_newsletters_of(session: Session, subscriber: Subscriber, event_type: str) -> None:
    """Tell each newsletter the subscriber reads (its webhooks) what happened to them."""
    newsletter_ids = session.scalars(
        select(Subscription.newsletter_id).where(Subscription.subscriber_id == subscriber.id)
    ).all()
    item = [webhooks.subscriber_item(subscriber.id, subscriber.email)]
    for newsletter_id in newsletter_ids:
        webhooks.emit(session, newsletter_id, event_type, item)
