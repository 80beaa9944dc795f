"""Events behind public links: opens, clicks, feedback and unsubscribes.

Every function takes a delivery id that came out of a verified token; they only
insert an event row (and for clicks return the stored target), so the public
endpoints stay cheap and can never be turned into an open redirect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audience import subscriptions
from service.models import Delivery, Edition, Event, EventKind, Subscription


class UnknownDelivery(LookupError):
    """The token was valid but its delivery no longer exists."""


@dataclass(frozen=True)
class DeliveryRef:
    """The few facts about a delivery a public page needs."""

    delivery_id: int
    edition_id: int
    newsletter_id: int
    subscriber_id: int | None


def lookup(session: Session, delivery_id: int) -> DeliveryRef:
    """Resolve a delivery id from a token."""
    row = session.execute(
        select(Delivery.id, Delivery.edition_id, Edition.newsletter_id, Delivery.subscriber_id)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        raise UnknownDelivery(delivery_id)
    return DeliveryRef(*row)


def _event(session: Session, ref: DeliveryRef, kind: EventKind, **values: object) -> None:
    session.add(
        Event(
            kind=kind,
            delivery_id=ref.delivery_id,
            edition_id=ref.edition_id,
            newsletter_id=ref.newsletter_id,
            subscriber_id=ref.subscriber_id,
            **values,
        )
    )
    session.flush()


def record_open(session: Session, delivery_id: int) -> None:
    """The tracking pixel was loaded."""
    _event(session, lookup(session, delivery_id), EventKind.OPEN)


def record_click(session: Session, delivery_id: int, link_index: int) -> str:
    """A tracked link was followed; return the target stored with the edition."""
    ref = lookup(session, delivery_id)
    links = session.scalar(select(Edition.tracked_links).where(Edition.id == ref.edition_id))
    if links is None or not 0 <= link_index < len(links):
        raise UnknownDelivery(f"no link {link_index} in edition {ref.edition_id}")
    _event(session, ref, EventKind.CLICK, link_index=link_index)
    return str(links[link_index])


def record_feedback(session: Session, delivery_id: int, liked: bool) -> None:
    """The reader answered "did you like this?"; the last answer counts."""
    _event(
        session, lookup(session, delivery_id), EventKind.FEEDBACK, value="yes" if liked else "no"
    )


def unsubscribe(session: Session, delivery_id: int, reason: str | None = None) -> bool:
    """Unsubscribe the delivery's reader from its newsletter (harmless twice)."""
    ref = lookup(session, delivery_id)
    if ref.subscriber_id is None:
        return False  # the reader erased themselves already
    subscription = session.scalar(
        select(Subscription).where(
            Subscription.newsletter_id == ref.newsletter_id,
            Subscription.subscriber_id == ref.subscriber_id,
        )
    )
    if subscription is None:
        return False
    changed = subscriptions.unsubscribe(session, subscription, reason=reason)
    if changed:
        _event(session, ref, EventKind.UNSUBSCRIBE, value=(reason or "")[:200] or None)
    return changed
