"""Subscriber management for editors: search, history, tags and bulk actions.

The list and the tag actions are set-based so they stay fast at 100,000 rows:
a page is one query (plus one for its tags, and one for its subscriptions when
no newsletter is chosen); pagination is keyset on the subscriber id, newest
first. Unsubscribe and erase go row by row through the readers' own operations
(service.audience.subscriptions, service.audience.preferences), so one rule applies whoever acts.
Bulk actions take either explicit ids or the filter the editor saw; they flush
and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Select,
    and_,
    delete,
    exists,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from service.audience import preferences, subscriptions
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
    Tag,
)
from service.models.subscriber import subscriber_tag
from service.team import audit

PAGE_SIZE = 50
HISTORY_LIMIT = 200  # deliveries and events shown on a subscriber's page, newest first
TAG_MAX_LENGTH = 80
_CHUNK = 500  # subscribers handled per statement in per-row bulk actions


class InvalidTag(ValueError):
    """The tag name is empty or too long."""


@dataclass(frozen=True)
class SubscriberFilter:
    """What the editor is looking at; every field left empty matches everyone."""

    newsletter_id: int | None = None
    search: str = ""  # substring of the address or the name, any case
    subscription_status: SubscriptionStatus | None = None
    subscriber_status: SubscriberStatus | None = None
    tag: str = ""
    created_since: datetime | None = None  # subscribers added at or after this time


@dataclass(frozen=True)
class SubscriptionBadge:
    """One newsletter a listed subscriber belongs to, and in which state."""

    newsletter_id: int
    newsletter_name: str
    status: SubscriptionStatus


@dataclass(frozen=True)
class SubscriberRow:
    """A line of the subscriber list."""

    id: int
    email: str
    name: str
    locale: str
    status: SubscriberStatus
    created_at: datetime
    subscriptions: tuple[SubscriptionBadge, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """A page of the list; `older`/`newer` are cursors for the next and previous pages."""

    rows: list[SubscriberRow]
    total: int
    older: int | None
    newer: int | None


@dataclass(frozen=True)
class DeliveryLine:
    """One edition sent (or meant) to the subscriber."""

    id: int
    edition_id: int
    edition_number: int
    edition_subject: str
    newsletter_name: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class EventLine:
    """One thing the subscriber did (or that happened to their mail)."""

    kind: EventKind
    edition_id: int | None
    edition_number: int | None
    value: str | None
    link: str | None
    created_at: datetime


@dataclass(frozen=True)
class SuppressionLine:
    """An entry of the suppression list for the subscriber's address."""

    reason: SuppressionReason
    newsletter_name: str | None  # None: every newsletter
    detail: str
    created_at: datetime


@dataclass
class History:
    """Everything held about one subscriber, for their page."""

    subscriber: Subscriber
    subscriptions: list[Subscription]
    deliveries: list[DeliveryLine]
    events: list[EventLine]
    suppressions: list[SuppressionLine]
    delivery_count: int = 0
    event_count: int = 0
    tags: list[str] = field(default_factory=list)


# --- Finding subscribers ----------------------------------------------------------


def matching(filter_: SubscriberFilter) -> Select[int]:
    """The ids of the subscribers that match the filter (unordered)."""
    query = select(Subscriber.id)
    if filter_.newsletter_id is not None:
        joined = and_(
            Subscription.subscriber_id == Subscriber.id,
            Subscription.newsletter_id == filter_.newsletter_id,
        )
        query = query.join(Subscription, joined)
        if filter_.subscription_status is not None:
            query = query.where(Subscription.status == filter_.subscription_status)
    elif filter_.subscription_status is not None:
        query = query.where(
            exists().where(
                Subscription.subscriber_id == Subscriber.id,
                Subscription.status == filter_.subscription_status,
            )
        )
    text = filter_.search.strip()
    if text:
        # Addresses are stored lower-case; names are compared lower-cased too.
        query = query.where(
            Subscriber.email.contains(text.lower(), autoescape=True)
            | Subscriber.name.icontains(text, autoescape=True)
        )
    if filter_.subscriber_status is not None:
        query = query.where(Subscriber.status == filter_.subscriber_status)
    if filter_.created_since is not None:
        query = query.where(Subscriber.created_at >= filter_.created_since)
    if filter_.tag:
        query = query.where(
            exists()
            .where(subscriber_tag.c.subscriber_id == Subscriber.id)
            .where(subscriber_tag.c.tag_id == Tag.id, Tag.name == filter_.tag)
        )
    return query


def count(session: Session, filter_: SubscriberFilter) -> int:
    """How many subscribers match the filter."""
    ids = matching(filter_).subquery()
    return int(session.scalar(select(func.count()).select_from(ids)) or 0)


def search(
    session: Session,
    filter_: SubscriberFilter,
    *,
    older_than: int | None = None,
    newer_than: int | None = None,
    page_size: int = PAGE_SIZE,
) -> Page:
    """A page of matching subscribers, newest first, after or before a cursor."""
    query = matching(filter_).add_columns(
        Subscriber.email,
        Subscriber.name,
        Subscriber.locale,
        Subscriber.status,
        Subscriber.created_at,
    )
    if filter_.newsletter_id is not None:
        query = query.add_columns(Subscription.status.label("subscription_status"))
    backwards = newer_than is not None and older_than is None
    if backwards:
        query = query.where(Subscriber.id > newer_than).order_by(Subscriber.id.asc())
    else:
        if older_than is not None:
            query = query.where(Subscriber.id < older_than)
        query = query.order_by(Subscriber.id.desc())
    # One row more than a page tells whether another page follows.
    rows = list(session.execute(query.limit(page_size + 1)))
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
    ids = [row.id for row in rows]
    tags = _tags_of(session, ids)
    if filter_.newsletter_id is not None:
        name = session.scalar(select(Newsletter.name).where(Newsletter.id == filter_.newsletter_id))
        badges: dict[int, tuple[SubscriptionBadge, ...]] = {
            row.id: (SubscriptionBadge(filter_.newsletter_id, name or "", row.subscription_status),)
            for row in rows
        }
    else:
        badges = _subscriptions_of(session, ids)
    page_rows = [
        SubscriberRow(
            id=row.id,
            email=row.email,
            name=row.name,
            locale=row.locale,
            status=row.status,
            created_at=row.created_at,
            subscriptions=badges.get(row.id, ()),
            tags=tags.get(row.id, ()),
        )
        for row in rows
    ]
    has_older = more if not backwards else True
    has_newer = more if backwards else (older_than is not None or newer_than is not None)
    return Page(
        rows=page_rows,
        total=count(session, filter_),
        older=ids[-1] if ids and has_older else None,
        newer=ids[0] if ids and has_newer else None,
    )


def _tags_of(session: Session, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    if not ids:
        return {}
    found: dict[int, list[str]] = {}
    query = (
        select(subscriber_tag.c.subscriber_id, Tag.name)
        .join(Tag, Tag.id == subscriber_tag.c.tag_id)
        .where(subscriber_tag.c.subscriber_id.in_(ids))
        .order_by(Tag.name)
    )
    for subscriber_id, name in session.execute(query):
        found.setdefault(subscriber_id, []).append(name)
    return {key: tuple(names) for key, names in found.items()}


def _subscriptions_of(
    session: Session, ids: Sequence[int]
) -> dict[int, tuple[SubscriptionBadge, ...]]:
    if not ids:
        return {}
    found: dict[int, list[SubscriptionBadge]] = {}
    query = (
        select(Subscription.subscriber_id, Newsletter.id, Newsletter.name, Subscription.status)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id.in_(ids))
        .order_by(Newsletter.name)
    )
    for subscriber_id, newsletter_id, name, status in session.execute(query):
        found.setdefault(subscriber_id, []).append(SubscriptionBadge(newsletter_id, name, status))
    return {key: tuple(badges) for key, badges in found.items()}


def tags_in_use(session: Session) -> list[tuple[str, int]]:
    """Every tag with the number of subscribers wearing it, by name."""
    query = (
        select(Tag.name, func.count(subscriber_tag.c.subscriber_id))
        .outerjoin(subscriber_tag, subscriber_tag.c.tag_id == Tag.id)
        .group_by(Tag.id, Tag.name)
        .order_by(Tag.name)
    )
    return [(name, int(n)) for name, n in session.execute(query)]


# --- One subscriber ---------------------------------------------------------------


def history(session: Session, subscriber_id: int, *, limit: int = HISTORY_LIMIT) -> History | None:
    """A subscriber's profile, subscriptions, deliveries, events and suppressions."""
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(
            selectinload(Subscriber.subscriptions).selectinload(Subscription.newsletter),
            selectinload(Subscriber.tags),
        )
    )
    if subscriber is None:
        return None
    delivery_rows = session.execute(
        select(
            Delivery.id,
            Delivery.edition_id,
            Edition.number,
            func.coalesce(
                Edition.rendered_subject, func.nullif(Edition.subject, ""), Edition.title
            ).label("subject"),
            Newsletter.name,
            Delivery.status,
            Delivery.attempts,
            Delivery.last_error,
            Delivery.sent_at,
            Delivery.created_at,
        )
        .join(Edition, Edition.id == Delivery.edition_id)
        .join(Newsletter, Newsletter.id == Edition.newsletter_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    event_rows = session.execute(
        select(
            Event.kind,
            Event.edition_id,
            Edition.number,
            Event.value,
            Event.link_index,
            Event.created_at,
        )
        .outerjoin(Edition, Edition.id == Event.edition_id)
        .where(Event.subscriber_id == subscriber_id)
        .order_by(Event.id.desc())
        .limit(limit)
    ).all()
    links = _tracked_links(
        session, {row.edition_id for row in event_rows if row.link_index is not None}
    )
    suppression_rows = session.execute(
        select(Suppression.reason, Newsletter.name, Suppression.detail, Suppression.created_at)
        .outerjoin(Newsletter, Newsletter.id == Suppression.newsletter_id)
        .where(Suppression.email == subscriber.email)
        .order_by(Suppression.created_at.desc())
    ).all()
    return History(
        subscriber=subscriber,
        subscriptions=sorted(subscriber.subscriptions, key=lambda s: s.newsletter.name),
        deliveries=[
            DeliveryLine(
                id=row.id,
                edition_id=row.edition_id,
                edition_number=row.number,
                edition_subject=row.subject,
                newsletter_name=row.name,
                status=row.status,
                attempts=row.attempts,
                last_error=row.last_error,
                sent_at=row.sent_at,
                created_at=row.created_at,
            )
            for row in delivery_rows
        ],
        events=[
            EventLine(
                kind=row.kind,
                edition_id=row.edition_id,
                edition_number=row.number,
                value=row.value,
                link=_link(links, row.edition_id, row.link_index),
                created_at=row.created_at,
            )
            for row in event_rows
        ],
        suppressions=[SuppressionLine(*row) for row in suppression_rows],
        delivery_count=_count(
            session, select(func.count(Delivery.id)).where(Delivery.subscriber_id == subscriber_id)
        ),
        event_count=_count(
            session, select(func.count(Event.id)).where(Event.subscriber_id == subscriber_id)
        ),
        tags=sorted(tag.name for tag in subscriber.tags),
    )


def _count(session: Session, query: Select[int]) -> int:
    return int(session.scalar(query) or 0)


def _tracked_links(session: Session, edition_ids: set[int | None]) -> dict[int, list[str]]:
    wanted = [edition_id for edition_id in edition_ids if edition_id is not None]
    if not wanted:
        return {}
    query = select(Edition.id, Edition.tracked_links).where(Edition.id.in_(wanted))
    return {edition_id: list(links or []) for edition_id, links in session.execute(query)}


def _link(links: dict[int, list[str]], edition_id: int | None, index: int | None) -> str | None:
    if edition_id is None or index is None:
        return None
    targets = links.get(edition_id, [])
    return targets[index] if 0 <= index < len(targets) else None


# --- Tags -------------------------------------------------------------------------


def clean_tag(name: str) -> str:
    """The tag name as stored (spaces collapsed), or InvalidTag."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidTag("a tag needs a name")
    if len(cleaned) > TAG_MAX_LENGTH:
        raise InvalidTag(f"a tag name has at most {TAG_MAX_LENGTH} characters")
    return cleaned


def find_or_create_tag(session: Session, name: str) -> Tag:
    """The tag with this name, created if new."""
    cleaned = clean_tag(name)
    tag = session.scalar(select(Tag).where(Tag.name == cleaned))
    if tag is None:
        tag = Tag(name=cleaned)
        session.add(tag)
        session.flush()
    return tag


Target = SubscriberFilter | Iterable[int]


def _target_ids(target: Target) -> Select[int]:
    if isinstance(target, SubscriberFilter):
        return matching(target)
    return select(Subscriber.id).where(Subscriber.id.in_(sorted(set(target))))


def target_ids(target: Target) -> Select[int]:
    """The ids of the subscribers a bulk target names, as a query."""
    return _target_ids(target)


def sample(session: Session, target: Target, limit: int = 10) -> tuple[int, list[str]]:
    """How many subscribers a target names, and the newest few addresses (for a confirmation)."""
    ids = _target_ids(target).subquery()
    total = int(session.scalar(select(func.count()).select_from(ids)) or 0)
    emails = session.scalars(
        select(Subscriber.email)
        .where(Subscriber.id.in_(select(ids.c.id)))
        .order_by(Subscriber.id.desc())
        .limit(limit)
    )
    return total, list(emails)


def tag(session: Session, target: Target, name: str) -> int:
    """Give a tag to the subscribers (ids, or all matching a filter); return how many gained it."""
    found = find_or_create_tag(session, name)
    ids = _target_ids(target).subquery()
    # ON CONFLICT rather than NOT EXISTS: an anti-join on the table being filled
    # lets PostgreSQL pick a plan that rescans it per row (minutes at 100k).
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(subscriber_tag)
        # SQLite's upsert needs a WHERE in the SELECT to parse unambiguously.
        .from_select(["subscriber_id", "tag_id"], select(ids.c.id, literal(found.id)).where(true()))
        .on_conflict_do_nothing()
        # Drivers report INSERT … SELECT row counts only when asked (psycopg says -1).
        .execution_options(preserve_rowcount=True)
    )
    result = _execute(session, statement)
    # The statement bypasses the identity map: loaded subscribers re-read their tags.
    session.expire_all()
    return int(result.rowcount or 0)


def untag(session: Session, target: Target, name: str) -> int:
    """Take a tag off the subscribers; return how many lost it."""
    found = session.scalar(select(Tag).where(Tag.name == clean_tag(name)))
    if found is None:
        return 0
    result = _execute(
        session,
        delete(subscriber_tag)
        .where(subscriber_tag.c.tag_id == found.id)
        .where(subscriber_tag.c.subscriber_id.in_(_target_ids(target).scalar_subquery()))
        .execution_options(synchronize_session=False),
    )
    session.expire_all()
    return int(result.rowcount or 0)


def _execute(session: Session, statement: Any) -> CursorResult[Any]:
    return cast("CursorResult[Any]", session.execute(statement))


# --- Unsubscribe and erase ----------------------------------------------------------


def unsubscribe(
    session: Session,
    target: Target,
    *,
    newsletter_id: int | None = None,
    reason: str = "unsubscribed by an editor",
) -> int:
    """Unsubscribe the subscribers (from one newsletter, or from all); return subscriptions ended.

    Goes through service.audience.subscriptions.unsubscribe for each subscription, so queued
    deliveries are cancelled and the suppression is recorded as for a reader.
    """
    ids = list(session.scalars(_target_ids(target)))
    ended = 0
    for start in range(0, len(ids), _CHUNK):
        query = select(Subscription).where(
            Subscription.subscriber_id.in_(ids[start : start + _CHUNK]),
            Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
        )
        if newsletter_id is not None:
            query = query.where(Subscription.newsletter_id == newsletter_id)
        for subscription in session.scalars(query.order_by(Subscription.id)).all():
            if subscriptions.unsubscribe(session, subscription, reason=reason):
                ended += 1
    return ended


_AUDITED_IDS = 500  # ids listed in an erase's audit row; the count is always whole


def erase_many(session: Session, target: Target, *, who: audit.Who | None = None) -> int:
    """Erase every subscriber of the target as the reader's own erasure does; return how many.

    With `who`, one audit row names the erased ids (never their addresses: they are gone)."""
    ids = list(session.scalars(_target_ids(target)))
    erased = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = session.scalars(
            select(Subscriber).where(Subscriber.id.in_(ids[start : start + _CHUNK]))
        ).all()
        for subscriber in chunk:
            # The reader's own erasure is the one rule for what goes and what stays.
            preferences.erase(session, subscriber)
            erased += 1
    if who is not None and ids:
        audit.record(
            session,
            who,
            "subscriber.erase",
            object_type="subscriber",
            object_id=ids[0] if len(ids) == 1 else "",
            detail={"count": erased, "ids": ids[:_AUDITED_IDS]},
        )
    return erased
