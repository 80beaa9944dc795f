"""The preference centre: what a reader may do from a signed link, without an account.

The footer of every edition carries a per-delivery preference token
(service.mail.mime.DELIVERY_PREFS_PURPOSE, or the legacy delivery token in mail
sent before purposes were split); notices carry a subscriber-scoped "prefs" token
(service.audience.signup). Each leads to one subscriber and to nobody else. Joining a
newsletter from here still goes through the double opt-in; leaving takes effect
at once, as the one-click link does.

Those links travel with forwarded mail and through link scanners, so they do not
open the reader's data: export and erasure act only from a fresh link that the
preference centre mails to the reader's own address (request_data_link), valid
for signup.DATA_LINK_MAX_AGE (open_data_link).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service import ratelimit, tokens
from service.audience import signup, subscriptions
from service.mail.mime import DELIVERY_PREFS_PURPOSE, DELIVERY_PURPOSE
from service.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    EventKind,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.text import person_name

SOURCE = "preference centre"  # the consent source of subscriptions made here
MAX_PAUSE_WEEKS = 52
DATA_LINKS_PER_HOUR = 3  # per reader: mails to their own address on request, export and erase alike


class UnknownReader(LookupError):
    """The token is invalid, or the subscriber it named no longer exists."""


class DataLinkExpired(UnknownReader):
    """A genuine data link, older than signup.DATA_LINK_MAX_AGE."""

    def __init__(self, locale: str) -> None:
        super().__init__("data link expired")
        self.locale = locale  # the reader's, for the page that says so


class TooManyDataLinks(Exception):
    """The reader asked for more data links in an hour than DATA_LINKS_PER_HOUR."""


@dataclass(frozen=True)
class Reader:
    """The subscriber behind a link, and the newsletter of the email it came from."""

    subscriber: Subscriber
    newsletter_id: int | None


@dataclass(frozen=True)
class Choice:
    """One newsletter as the preference centre shows it to a reader."""

    newsletter: Newsletter
    subscription: Subscription | None

    @property
    def status(self) -> str:
        """subscribed, pending, unsubscribed or none."""
        if self.subscription is None:
            return "none"
        return {
            SubscriptionStatus.CONFIRMED: "subscribed",
            SubscriptionStatus.PENDING: "pending",
            SubscriptionStatus.UNSUBSCRIBED: "unsubscribed",
        }[self.subscription.status]

    @property
    def wanted(self) -> bool:
        """Whether the reader currently wants it (subscribed, or waiting for confirmation)."""
        return self.status in ("subscribed", "pending")


def resolve(session: Session, secret: str, token: str) -> Reader:
    """The reader a footer preference token or a notice's prefs token names.

    UnknownReader for any other token, whatever its signature: an open, click,
    feedback or unsubscribe token never opens the preference centre.
    """
    try:
        (delivery_id,) = tokens.verify_any(
            secret, (DELIVERY_PREFS_PURPOSE, DELIVERY_PURPOSE), token, 1
        )
    except tokens.BadToken:
        pass
    else:
        row = session.execute(
            select(Delivery.subscriber_id, Edition.newsletter_id)
            .join(Edition, Edition.id == Delivery.edition_id)
            .where(Delivery.id == delivery_id)
        ).first()
        subscriber = session.get(Subscriber, row[0]) if row and row[0] is not None else None
        if subscriber is None:
            raise UnknownReader("the delivery's reader is gone")
        return Reader(subscriber, row[1] if row else None)
    try:
        subscriber_id, tag = tokens.verify(secret, signup.PREFS_PURPOSE, token, 2)
    except tokens.BadToken as exc:
        raise UnknownReader(str(exc)) from exc
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or signup.address_tag(subscriber.email) != tag:
        raise UnknownReader("the reader is gone or has another address")
    return Reader(subscriber, None)


def request_data_link(
    session: Session,
    reader: Reader,
    *,
    now: datetime | None = None,
) -> Subscription:
    """Take one of the reader's data-link slots; the subscription whose notice carries it.

    The notice (notices.Notice.DATA_EXPORT or DATA_ERASE, sent by the caller after
    commit with signup.send_notice) goes to the reader's own address only, from
    the newsletter the preference link came from, or else the latest one they
    joined. Raises TooManyDataLinks past DATA_LINKS_PER_HOUR (the refused hit
    counts: commit anyway), LookupError when the reader has no subscription at all.
    """
    subscriber = reader.subscriber
    mine = _subscriptions(session, subscriber)
    chosen = next((s for s in mine if s.newsletter_id == reader.newsletter_id), None)
    if chosen is None and mine:
        chosen = mine[-1]
    if chosen is None:
        raise LookupError("the reader has no subscription to write from")
    moment = (now or utcnow()).timestamp()
    key = f"data-link:subscriber:{subscriber.id}"
    if not ratelimit.hit(session, key, 3600, DATA_LINKS_PER_HOUR, now=moment):
        raise TooManyDataLinks(subscriber.id)
    return chosen


def open_data_link(session: Session, secret: str, purpose: str, token: str) -> Subscriber:
    """The reader a data link (signup.EXPORT_PURPOSE or ERASE_PURPOSE) was mailed to.

    UnknownReader for a forged link, one of another purpose, or one whose reader
    is gone or has another address now; DataLinkExpired once it is too old.
    """
    max_age = int(signup.DATA_LINK_MAX_AGE.total_seconds())
    try:
        subscriber_id, tag = tokens.verify_expiring(secret, purpose, token, 2, max_age)
    except tokens.ExpiredToken as exc:
        reader = session.get(Subscriber, exc.values[0])
        raise DataLinkExpired(reader.locale if reader else signup.LANGUAGES[0]) from exc
    except tokens.BadToken as exc:
        raise UnknownReader(str(exc)) from exc
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or signup.address_tag(subscriber.email) != tag:
        raise UnknownReader("the reader is gone or has another address")
    return subscriber


def _subscriptions(session: Session, subscriber: Subscriber) -> list[Subscription]:
    # Queried rather than read from the relationship, which may predate a flush.
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.subscriber_id == subscriber.id)
            .order_by(Subscription.id)
        )
    )


def choices(session: Session, subscriber: Subscriber) -> list[Choice]:
    """Every newsletter, with the reader's subscription to it if any."""
    mine = {s.newsletter_id: s for s in _subscriptions(session, subscriber)}
    letters = session.scalars(select(Newsletter).order_by(Newsletter.name))
    return [Choice(letter, mine.get(letter.id)) for letter in letters]


def update_profile(session: Session, subscriber: Subscriber, *, name: str, locale: str) -> None:
    """Change the reader's name and the language of the pages and notices they get.

    Raises service.text.UnusableText (a NUL in the name) before changing anything.
    """
    if locale not in signup.LANGUAGES:
        raise ValueError(f"unsupported language {locale!r}")
    subscriber.name = person_name(name)
    subscriber.locale = locale
    session.flush()


def _subscription(session: Session, subscriber: Subscriber, newsletter_id: int) -> Subscription:
    found = session.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id,
            Subscription.newsletter_id == newsletter_id,
        )
    )
    if found is None:
        raise LookupError(f"no subscription to newsletter {newsletter_id}")
    return found


def join(
    session: Session,
    subscriber: Subscriber,
    newsletter: Newsletter,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> signup.SignupResult:
    """Ask for a newsletter (or come back to one): pending until the emailed link is used."""
    return signup.request(
        session,
        newsletter,
        email=subscriber.email,
        source=SOURCE,
        ip=ip,
        user_agent=user_agent,
        now=now,
    )


def leave(
    session: Session,
    subscriber: Subscriber,
    newsletter_id: int,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Unsubscribe from one newsletter at once (queued deliveries included)."""
    subscription = _subscription(session, subscriber, newsletter_id)
    reason = (reason or "").strip()[:1000] or None
    if not subscriptions.unsubscribe(session, subscription, reason=reason, now=now):
        return False
    session.add(
        Event(
            kind=EventKind.UNSUBSCRIBE,
            newsletter_id=newsletter_id,
            subscriber_id=subscriber.id,
            value=(reason or "")[:200] or None,
            detail={"via": SOURCE},
        )
    )
    session.flush()
    return True


def leave_all(
    session: Session,
    subscriber: Subscriber,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> int:
    """Unsubscribe from every newsletter; return how many subscriptions ended."""
    ids = [s.newsletter_id for s in _subscriptions(session, subscriber)]
    return sum(leave(session, subscriber, n, reason=reason, now=now) for n in ids)


def choose(
    session: Session,
    subscriber: Subscriber,
    wanted: set[int],
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> list[signup.SignupResult]:
    """Make the reader's newsletters match `wanted`; return the notices to send after commit."""
    results = []
    for choice in choices(session, subscriber):
        letter_id = choice.newsletter.id
        if letter_id in wanted and not choice.wanted:
            results.append(
                join(session, subscriber, choice.newsletter, ip=ip, user_agent=user_agent, now=now)
            )
        elif letter_id not in wanted and choice.wanted:
            leave(session, subscriber, letter_id, now=now)
    return results


def pause(
    session: Session, subscriber: Subscriber, weeks: int, *, now: datetime | None = None
) -> datetime:
    """Receive nothing for `weeks` weeks, then resume by itself; return the resume time."""
    if not 1 <= weeks <= MAX_PAUSE_WEEKS:
        raise ValueError(f"a pause lasts 1 to {MAX_PAUSE_WEEKS} weeks")
    until = (now or utcnow()) + timedelta(weeks=weeks)
    for subscription in _subscriptions(session, subscriber):
        if subscription.status != SubscriptionStatus.UNSUBSCRIBED:
            subscription.paused_until = until
    session.flush()
    return until


def resume(session: Session, subscriber: Subscriber) -> None:
    """End a pause now."""
    for subscription in _subscriptions(session, subscriber):
        subscription.paused_until = None
    session.flush()


def paused_until(
    session: Session, subscriber: Subscriber, now: datetime | None = None
) -> datetime | None:
    """When the reader's current pause ends, or None when they are not paused."""
    now = now or utcnow()
    ends = [
        s.paused_until
        for s in _subscriptions(session, subscriber)
        if s.paused_until and s.paused_until > now
    ]
    return max(ends) if ends else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export(
    session: Session, subscriber: Subscriber, *, now: datetime | None = None
) -> dict[str, Any]:
    """Everything held about the reader, as JSON-ready data."""
    letters = {n.id: n.slug for n in session.scalars(select(Newsletter))}
    deliveries = session.execute(
        select(Delivery, Edition)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    ).all()
    events = session.execute(
        select(Event, Edition)
        .outerjoin(Edition, Edition.id == Event.edition_id)
        .where(Event.subscriber_id == subscriber.id)
        .order_by(Event.id)
    ).all()
    suppressions = session.scalars(
        select(Suppression).where(Suppression.email == subscriber.email).order_by(Suppression.id)
    )
    return {
        "exported_at": _iso(now or utcnow()),
        "subscriber": {
            "email": subscriber.email,
            "name": subscriber.name,
            "language": subscriber.locale,
            "status": subscriber.status.value,
            "attributes": subscriber.attributes,
            "tags": sorted(tag.name for tag in subscriber.tags),
            "created_at": _iso(subscriber.created_at),
            "updated_at": _iso(subscriber.updated_at),
        },
        "subscriptions": [
            {
                "newsletter": letters.get(s.newsletter_id),
                "status": s.status.value,
                "consent": {
                    "at": _iso(s.consent_at),
                    "ip": s.consent_ip,
                    "user_agent": s.consent_user_agent,
                    "source": s.consent_source,
                },
                "confirmation_sent_at": _iso(s.confirmation_sent_at),
                "confirmed_at": _iso(s.confirmed_at),
                "unsubscribed_at": _iso(s.unsubscribed_at),
                "unsubscribe_reason": s.unsubscribe_reason,
                "paused_until": _iso(s.paused_until),
                "created_at": _iso(s.created_at),
            }
            for s in _subscriptions(session, subscriber)
        ],
        "deliveries": [
            {
                "newsletter": letters.get(edition.newsletter_id),
                "edition": {"number": edition.number, "title": edition.title},
                "status": delivery.status.value,
                "sent_at": _iso(delivery.sent_at),
            }
            for delivery, edition in deliveries
        ],
        "events": [_event(event, edition, letters) for event, edition in events],
        "suppressions": [
            {
                "newsletter": letters.get(s.newsletter_id) if s.newsletter_id else None,
                "reason": s.reason.value,
                "created_at": _iso(s.created_at),
            }
            for s in suppressions
        ],
    }


def _event(event: Event, edition: Edition | None, letters: dict[int, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": event.kind.value,
        "at": _iso(event.created_at),
        "newsletter": letters.get(event.newsletter_id) if event.newsletter_id else None,
        "edition": edition.number if edition is not None else None,
        "value": event.value,
    }
    if event.kind == EventKind.CLICK and edition is not None and event.link_index is not None:
        links = edition.tracked_links or []
        if 0 <= event.link_index < len(links):
            data["link"] = links[event.link_index]
    if event.detail:
        data["detail"] = event.detail
    return data


def erase(session: Session, subscriber: Subscriber) -> None:
    """Delete the reader and their personal data; delivery and event counts stay, anonymous.

    Deliveries and events keep their rows (statistics) with the person blanked
    out; subscriptions with their consent records, tags and the address's
    suppressions go with the subscriber.
    """
    person = subscriber.id
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == person,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    # Set to NULL here rather than by ON DELETE SET NULL alone, so the blanking
    # of the address and the unlinking happen in one statement on every backend.
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == person)
        .values(subscriber_id=None, email="", name="", last_error=None)
        .execution_options(synchronize_session=False)
    )
    # An unsubscribe reason is the reader's own words: it goes; yes/no answers stay.
    session.execute(
        update(Event)
        .where(Event.subscriber_id == person, Event.kind == EventKind.UNSUBSCRIBE)
        .values(value=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Event)
        .where(Event.subscriber_id == person)
        .values(subscriber_id=None, detail={})
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Suppression)
        .where(Suppression.email == subscriber.email)
        .execution_options(synchronize_session=False)
    )
    subscriptions.suppress(
        session, subscriptions.erased_marker(subscriber.email), SuppressionReason.ERASED
    )
    session.delete(subscriber)
    session.flush()
