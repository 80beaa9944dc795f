"""Events behind public links: opens, clicks, feedback and unsubscribes.

Every function takes a delivery id that came out of a verified token; they only
insert an event row (and for clicks return the stored target), so the public
endpoints stay cheap and can never be turned into an open redirect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audience import subscriptions
from service.models import Delivery, Edition, Event, EventKind, Subscription, utcnow
from service.tracking import classify


class UnknownDelivery(LookupError):
    """The token was valid but its delivery no longer exists."""


@dataclass(frozen=True)
class DeliveryRef:
    """The few facts about a delivery a public page needs."""

    delivery_id: int
    edition_id: int
    newsletter_id: int
    subscriber_id: int | None
    sent_at: datetime | None = None  # when the relay accepted the message


@dataclass(frozen=True)
class Seen:
    """What the web door saw of a public request (the address is reduced to its network)."""

    method: str = "GET"
    user_agent: str = ""
    address: str | None = None


def lookup(session: Session, delivery_id: int) -> DeliveryRef:
    """Resolve a delivery id from a token."""
    row = session.execute(
        select(
            Delivery.id,
            Delivery.edition_id,
            Edition.newsletter_id,
            Delivery.subscriber_id,
            Delivery.sent_at,
        )
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


def _seen_event(
    session: Session, ref: DeliveryRef, kind: EventKind, seen: Seen, **values: object
) -> None:
    """Store a public-link event with its evidence and the verdict of the rules."""
    now = utcnow()
    network = classify.client_network(seen.address)
    after = (now - ref.sent_at).total_seconds() if ref.sent_at is not None else None
    agent = seen.user_agent[:400]
    verdict = classify.classify(classify.Facts(kind, seen.method, agent, network, after))
    _event(
        session,
        ref,
        kind,
        created_at=now,
        method=seen.method[:8],
        user_agent=agent,
        network=network,
        seconds_after=after,
        actor=verdict.actor,
        actor_rule=verdict.rule,
        **values,
    )
    if kind != EventKind.OPEN:
        classify.mark_burst(session, ref.delivery_id, now)


def record_open(session: Session, delivery_id: int, seen: Seen | None = None) -> None:
    """The tracking pixel was loaded."""
    _seen_event(session, lookup(session, delivery_id), EventKind.OPEN, seen or Seen())


def record_click(
    session: Session, delivery_id: int, link_index: int, seen: Seen | None = None
) -> str:
    """A tracked link was followed; return the target stored with the edition."""
    ref = lookup(session, delivery_id)
    links = session.scalar(select(Edition.tracked_links).where(Edition.id == ref.edition_id))
    if links is None or not 0 <= link_index < len(links):
        raise UnknownDelivery(f"no link {link_index} in edition {ref.edition_id}")
    _seen_event(session, ref, EventKind.CLICK, seen or Seen(), link_index=link_index)
    return str(links[link_index])


def record_feedback(
    session: Session, delivery_id: int, liked: bool, seen: Seen | None = None
) -> None:
    """The reader answered "did you like this?"; the last human answer counts."""
    _seen_event(
        session,
        lookup(session, delivery_id),
        EventKind.FEEDBACK,
        seen or Seen(),
        value="yes" if liked else "no",
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


def of_edition(
    session: Session,
    edition_id: int,
    *,
    before_id: int | None = None,
    kind: EventKind | None = None,
    limit: int = 100,
) -> list[Event]:
    """An edition's events, newest first; `before_id` pages further back (keyset)."""
    query = select(Event).where(Event.edition_id == edition_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if before_id is not None:
        query = query.where(Event.id < before_id)
    return list(session.scalars(query.order_by(Event.id.desc()).limit(limit)))
