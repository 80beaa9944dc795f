"""Editor-side subscriber management: search, pages, history, tags and bulk actions,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from service.audience import subscribers, subscriptions
from service.audience.subscribers import SubscriberFilter
from service.config import Settings
from service.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    Tag,
)
from service.sending.controls import begin
from service.tracking import events
from tests import factories


def _person(session: Session, email: str, name: str) -> Subscriber:
    return subscriptions.find_or_create_subscriber(session, email, name)


def _cast(session: Session) -> dict[str, Subscriber]:
    """Two newsletters and five people in various states."""
    lettre = factories.newsletter(session, "lettre")
    weekly = factories.newsletter(session, "weekly", language="en")
    people = {
        "amelie": _person(session, "amelie.roux@exemple.fr", "Amélie Roux"),
        "bastien": _person(session, "Bastien.Morel@Exemple.fr", "Bastien Morel"),
        "chloe": _person(session, "chloe@autre.org", "Chloé Petit"),
        "damien": _person(session, "damien@autre.org", "Damien Roussel"),
        "elsa": _person(session, "elsa@exemple.fr", "Elsa Garnier"),
    }
    subscriptions.subscribe(session, lettre, people["amelie"], confirmed=True, source="test")
    subscriptions.subscribe(session, lettre, people["bastien"], confirmed=False, source="test")
    subscriptions.subscribe(session, lettre, people["chloe"], confirmed=True, source="test")
    subscriptions.subscribe(session, weekly, people["chloe"], confirmed=True, source="test")
    subscriptions.subscribe(session, weekly, people["damien"], confirmed=True, source="test")
    gone = subscriptions.subscribe(session, lettre, people["elsa"], confirmed=True, source="t")
    subscriptions.unsubscribe(session, gone, reason="trop de courriels")
    people["damien"].status = SubscriberStatus.BOUNCED
    subscribers.tag(session, [people["amelie"].id, people["chloe"].id], "presse")
    session.flush()
    return people


def _emails(page: subscribers.Page) -> list[str]:
    return [row.email for row in page.rows]


def test_search_matches_address_or_name_in_any_case(backend: str, session: Session) -> None:
    people = _cast(session)

    by_address = subscribers.search(session, SubscriberFilter(search="EXEMPLE.FR"))
    by_name = subscribers.search(session, SubscriberFilter(search="rou"))
    by_accented_name = subscribers.search(session, SubscriberFilter(search="Chloé"))
    nothing = subscribers.search(session, SubscriberFilter(search="100%_"))

    assert set(_emails(by_address)) == {
        "amelie.roux@exemple.fr",
        "bastien.morel@exemple.fr",
        "elsa@exemple.fr",
    }
    assert set(_emails(by_name)) == {"amelie.roux@exemple.fr", "damien@autre.org"}
    assert _emails(by_accented_name) == [people["chloe"].email]
    assert nothing.rows == []
    assert nothing.total == 0


def test_filters_by_newsletter_status_subscriber_state_and_tag(
    backend: str, session: Session
) -> None:
    people = _cast(session)
    lettre_id = session.scalar(
        select(Subscription.newsletter_id).where(Subscription.subscriber_id == people["amelie"].id)
    )

    def emails(**kwargs: Any) -> set[str]:
        return set(_emails(subscribers.search(session, SubscriberFilter(**kwargs))))

    assert emails(newsletter_id=lettre_id) == {
        "amelie.roux@exemple.fr",
        "bastien.morel@exemple.fr",
        "chloe@autre.org",
        "elsa@exemple.fr",
    }
    assert emails(newsletter_id=lettre_id, subscription_status=SubscriptionStatus.PENDING) == {
        "bastien.morel@exemple.fr"
    }
    assert emails(subscription_status=SubscriptionStatus.UNSUBSCRIBED) == {"elsa@exemple.fr"}
    assert emails(subscriber_status=SubscriberStatus.BOUNCED) == {"damien@autre.org"}
    assert emails(tag="presse") == {"amelie.roux@exemple.fr", "chloe@autre.org"}
    assert emails(tag="presse", search="autre") == {"chloe@autre.org"}

    page = subscribers.search(session, SubscriberFilter(newsletter_id=lettre_id))
    states = {row.email: [b.status for b in row.subscriptions] for row in page.rows}
    assert states["bastien.morel@exemple.fr"] == [SubscriptionStatus.PENDING]
    everyone = subscribers.search(session, SubscriberFilter())
    chloe = next(row for row in everyone.rows if row.email == "chloe@autre.org")
    assert sorted(b.newsletter_name for b in chloe.subscriptions) == [
        "AI Weekly",
        "Intelligence & Société",
    ]
    assert chloe.tags == ("presse",)


def test_pages_walk_every_row_once_both_ways(backend: str, session: Session) -> None:
    letter = factories.newsletter(session)
    factories.readers(session, letter, 23)
    wanted = SubscriberFilter(newsletter_id=letter.id, search="example.org")

    first = subscribers.search(session, wanted, page_size=10)
    second = subscribers.search(session, wanted, older_than=first.older, page_size=10)
    third = subscribers.search(session, wanted, older_than=second.older, page_size=10)
    back = subscribers.search(session, wanted, newer_than=third.newer, page_size=10)

    assert first.total == 23
    assert (len(first.rows), len(second.rows), len(third.rows)) == (10, 10, 3)
    assert first.newer is None
    assert third.older is None
    seen = _emails(first) + _emails(second) + _emails(third)
    assert len(set(seen)) == 23
    assert [row.id for row in first.rows + second.rows + third.rows] == sorted(
        (row.id for row in first.rows + second.rows + third.rows), reverse=True
    )
    assert _emails(back) == _emails(second)
    assert (back.newer, back.older) == (second.rows[0].id, second.rows[-1].id)


def test_history_shows_consent_deliveries_events_and_suppressions(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    reader = _person(session, "gaelle@exemple.fr", "Gaëlle Lambert")
    subscriptions.subscribe(
        session,
        letter,
        reader,
        confirmed=True,
        source="formulaire du site",
        ip="203.0.113.9",
        user_agent="Firefox/130",
    )
    edition = factories.edition(session, letter)
    begin(
        session,
        edition,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
    )
    delivery = session.scalars(select(Delivery).where(Delivery.subscriber_id == reader.id)).one()
    events.record_open(session, delivery.id)
    events.record_click(session, delivery.id, 0)
    events.record_feedback(session, delivery.id, liked=True)
    subscriptions.record_hard_bounce(session, reader.email, "550 5.1.1 mailbox unknown")

    found = subscribers.history(session, reader.id)

    assert found is not None
    (subscription,) = found.subscriptions
    assert subscription.consent_ip == "203.0.113.9"
    assert subscription.consent_user_agent == "Firefox/130"
    assert subscription.consent_source == "formulaire du site"
    assert subscription.confirmed_at is not None
    (line,) = found.deliveries
    assert (line.edition_number, line.status) == (edition.number, DeliveryStatus.QUEUED)
    assert line.edition_subject
    assert [event.kind for event in found.events] == [
        EventKind.BOUNCE,
        EventKind.FEEDBACK,
        EventKind.CLICK,
        EventKind.OPEN,
    ]
    click = found.events[2]
    assert click.link is not None
    assert click.link.startswith("http")
    assert found.events[1].value == "yes"
    assert [s.reason for s in found.suppressions] == [SuppressionReason.HARD_BOUNCE]
    assert found.suppressions[0].newsletter_name is None
    assert subscribers.history(session, reader.id + 1000) is None


def test_bulk_tag_and_untag_by_ids_and_by_filter(backend: str, session: Session) -> None:
    people = _cast(session)

    added = subscribers.tag(session, [people["bastien"].id, people["amelie"].id], "presse")
    by_filter = subscribers.tag(
        session, SubscriberFilter(search="autre.org"), "  Lecteurs   fidèles "
    )

    assert added == 1  # Amélie already had it
    assert by_filter == 2
    assert {t.name for t in people["chloe"].tags} == {"presse", "Lecteurs fidèles"}
    assert {t.name for t in people["bastien"].tags} == {"presse"}
    assert subscribers.tags_in_use(session) == [("Lecteurs fidèles", 2), ("presse", 3)]

    removed = subscribers.untag(session, SubscriberFilter(tag="presse", search="exemple"), "presse")

    assert removed == 2
    assert [t.name for t in people["amelie"].tags] == []
    assert {t.name for t in people["chloe"].tags} == {"presse", "Lecteurs fidèles"}
    assert subscribers.untag(session, [people["chloe"].id], "inconnu") == 0
    assert session.scalar(select(func.count()).select_from(Tag)) == 2


def test_bulk_unsubscribe_cancels_queued_deliveries_and_suppresses(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    other = factories.newsletter(session, "autre")
    readers = factories.readers(session, letter, 4)
    subscriptions.subscribe(session, other, readers[0], confirmed=True, source="test")
    edition = factories.edition(session, letter)
    begin(
        session,
        edition,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
    )

    ended = subscribers.unsubscribe(
        session, [readers[0].id, readers[1].id], newsletter_id=letter.id
    )

    assert ended == 2
    statuses = dict(
        session.execute(
            select(Delivery.subscriber_id, Delivery.status).where(Delivery.edition_id == edition.id)
        ).all()
    )
    assert statuses[readers[0].id] == DeliveryStatus.CANCELLED
    assert statuses[readers[1].id] == DeliveryStatus.CANCELLED
    assert statuses[readers[2].id] == DeliveryStatus.QUEUED
    suppressed = set(
        session.scalars(
            select(Suppression.email).where(Suppression.reason == SuppressionReason.UNSUBSCRIBE)
        )
    )
    assert suppressed == {readers[0].email, readers[1].email}
    by_letter = {
        (s.subscriber_id, s.newsletter_id): s.status for s in session.scalars(select(Subscription))
    }
    assert by_letter[(readers[0].id, other.id)] == SubscriptionStatus.CONFIRMED
    assert by_letter[(readers[0].id, letter.id)] == SubscriptionStatus.UNSUBSCRIBED
    # Again, and through a filter over every newsletter: only what is still active ends.
    assert subscribers.unsubscribe(session, SubscriberFilter(search="r0@")) == 1
    assert subscribers.unsubscribe(session, [readers[1].id], newsletter_id=letter.id) == 0


def test_bulk_delete_erases_people_and_keeps_anonymous_statistics(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    readers = factories.readers(session, letter, 3)
    subscribers.tag(session, [r.id for r in readers], "presse")
    edition = factories.edition(session, letter)
    begin(
        session,
        edition,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=10,
    )
    delivery_id = session.scalar(select(Delivery.id).where(Delivery.subscriber_id == readers[0].id))
    assert delivery_id is not None
    events.record_open(session, delivery_id)
    gone = [readers[0].id, readers[1].id]
    gone_emails = {readers[0].email, readers[1].email}

    erased = subscribers.erase_many(session, SubscriberFilter(search="r0@"))
    erased += subscribers.erase_many(session, [readers[1].id])

    assert erased == 2
    left = set(session.scalars(select(Subscriber.email)))
    assert left == {readers[2].email}
    assert (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.subscriber_id.in_(gone))
        )
        == 0
    )
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.email, Delivery.name, Delivery.status)
    ).all()
    assert len(rows) == 3  # the send still counts three deliveries
    assert not gone_emails & {row.email for row in rows}
    anonymous = [row for row in rows if row.subscriber_id is None]
    assert [(row.email, row.name) for row in anonymous] == [("", "")] * 2
    assert {row.status for row in anonymous} == {DeliveryStatus.CANCELLED}
    (event,) = session.scalars(select(Event)).all()
    assert event.subscriber_id is None
    assert event.delivery_id == delivery_id
    assert subscribers.tags_in_use(session) == [("presse", 1)]


@pytest.mark.parametrize("bad", ["", "   ", "x" * 81])
def test_tag_names_are_checked(backend: str, session: Session, bad: str) -> None:
    letter = factories.newsletter(session)
    (reader,) = factories.readers(session, letter, 1)

    with pytest.raises(subscribers.InvalidTag):
        subscribers.tag(session, [reader.id], bad)
    assert reader.tags == []


def test_a_page_costs_the_same_few_queries_whatever_its_size(
    backend: str, session: Session
) -> None:
    letter = factories.newsletter(session)
    people = factories.readers(session, letter, 60)
    subscribers.tag(session, [p.id for p in people], "presse")
    subscribers.tag(session, [p.id for p in people[::2]], "salon")
    letter_id = letter.id
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        every = subscribers.search(session, SubscriberFilter())
        one = subscribers.search(session, SubscriberFilter(newsletter_id=letter_id))
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(every.rows) == len(one.rows) == 50
    assert all(row.tags for row in every.rows)
    assert all(row.subscriptions for row in every.rows)
    # page, tags, subscriptions (or the newsletter's name), total
    assert len(statements) == 8, "\n".join(s[:70] for s in statements)
