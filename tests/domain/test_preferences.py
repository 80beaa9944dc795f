"""The preference centre's operations, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import tokens
from service.audience import preferences, signup, subscriptions
from service.config import Settings
from service.mail import notices
from service.mail.mime import DELIVERY_PURPOSE
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
    utcnow,
)
from service.sending import outbox
from service.tracking import events
from tests import factories


def _sending(session: Session, settings: Settings, letter: Newsletter) -> Edition:
    edition = factories.edition(session, letter)
    factories.begin_sending(session, settings, edition, batch_size=50)
    return edition


def _delivery(session: Session, edition: Edition, reader: Subscriber) -> Delivery:
    found = session.scalar(
        select(Delivery).where(
            Delivery.edition_id == edition.id, Delivery.subscriber_id == reader.id
        )
    )
    assert found is not None
    return found


def _status(session: Session, reader: Subscriber, letter: Newsletter) -> SubscriptionStatus:
    status = session.scalar(
        select(Subscription.status).where(
            Subscription.subscriber_id == reader.id, Subscription.newsletter_id == letter.id
        )
    )
    assert status is not None
    return status


def test_a_delivery_token_and_a_prefs_token_lead_to_their_reader_only(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    first, second = factories.readers(session, letter, 2)
    edition = _sending(session, settings, letter)
    session.commit()
    secret = settings.secret_key

    delivery_token = tokens.sign(secret, DELIVERY_PURPOSE, _delivery(session, edition, first).id)
    reader = preferences.resolve(session, secret, delivery_token)
    assert (reader.subscriber.id, reader.newsletter_id) == (first.id, letter.id)

    prefs_token = signup.preferences_token(secret, second.id, second.email)
    reader = preferences.resolve(session, secret, prefs_token)
    assert (reader.subscriber.id, reader.newsletter_id) == (second.id, None)

    for bad in (
        delivery_token[:-1] + ("A" if delivery_token[-1] != "A" else "B"),
        tokens.sign(secret, signup.CONFIRM_PURPOSE, first.id),  # right id, wrong purpose
        tokens.sign(secret, DELIVERY_PURPOSE, 999_999),  # a delivery that does not exist
        tokens.sign(secret, signup.PREFS_PURPOSE, second.id),  # the old form, no address bound
        signup.preferences_token(secret, second.id, first.email),  # another address
        "not-a-token",
    ):
        with pytest.raises(preferences.UnknownReader):
            preferences.resolve(session, secret, bad)


def test_a_notice_prefs_link_dies_with_its_address_and_never_opens_a_later_reader_of_its_id(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    (reader,) = factories.readers(session, letter, 1)
    session.commit()
    secret = settings.secret_key
    token = signup.preferences_token(secret, reader.id, reader.email)
    assert preferences.resolve(session, secret, token).subscriber.id == reader.id

    reader.email = "nouvelle-adresse@example.org"  # the reader moved: the old link is dead
    session.commit()
    with pytest.raises(preferences.UnknownReader):
        preferences.resolve(session, secret, token)
    # Someone else under the same id (SQLite reuses the id of an erased last row): refused.
    reader.email = "quelqu-un-d-autre@example.org"
    session.commit()
    with pytest.raises(preferences.UnknownReader):
        preferences.resolve(session, secret, token)


def test_profile_and_newsletter_choices(backend: str, session: Session, settings: Settings) -> None:
    letter = factories.newsletter(session)
    other = factories.newsletter(session, slug="weekly", language="en")
    (reader,) = factories.readers(session, letter, 1)

    preferences.update_profile(session, reader, name="  Zoé   Martin ", locale="en")
    assert (reader.name, reader.locale) == ("Zoé Martin", "en")
    with pytest.raises(ValueError, match="language"):
        preferences.update_profile(session, reader, name="Zoé", locale="de")

    # Adding a newsletter only asks for it: pending until the emailed link is used.
    results = preferences.choose(session, reader, {letter.id, other.id}, ip="192.0.2.4")
    assert [(r.notice, r.subscription_id) for r in results] == [
        (notices.Notice.CONFIRM, results[0].subscription_id)
    ]
    joined = session.get(Subscription, results[0].subscription_id)
    assert joined is not None
    assert (joined.newsletter_id, joined.status) == (other.id, SubscriptionStatus.PENDING)
    assert joined.consent_source == preferences.SOURCE
    assert joined.consent_ip == "192.0.2.4"
    by_letter = {c.newsletter.slug: c.status for c in preferences.choices(session, reader)}
    assert by_letter == {"lettre": "subscribed", "weekly": "pending"}

    # Removing one unsubscribes at once, with a suppression and an event.
    assert preferences.choose(session, reader, {other.id}) == []
    session.commit()
    assert _status(session, reader, letter) is SubscriptionStatus.UNSUBSCRIBED
    assert session.scalar(select(Suppression.newsletter_id)) == letter.id
    event = session.scalar(select(Event))
    assert event is not None
    assert (event.kind, event.subscriber_id, event.newsletter_id) == (
        EventKind.UNSUBSCRIBE, reader.id, letter.id,
    )  # fmt: skip


def test_pause_skips_editions_until_it_ends(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    paused, other = factories.readers(session, letter, 2)
    now = utcnow()
    until = preferences.pause(session, paused, 3, now=now)
    assert until == now + timedelta(weeks=3)
    assert preferences.paused_until(session, paused, now) == until
    with pytest.raises(ValueError, match="weeks"):
        preferences.pause(session, paused, 0)
    edition = factories.edition(session, letter)

    def recipients(at: datetime) -> list[str]:
        return [r.email for r in session.execute(outbox.recipients_query(edition, at))]

    assert recipients(now + timedelta(days=1)) == [other.email]
    assert sorted(recipients(until + timedelta(seconds=1))) == sorted([paused.email, other.email])
    preferences.resume(session, paused)
    assert preferences.paused_until(session, paused, now) is None
    assert sorted(recipients(now)) == sorted([paused.email, other.email])


def test_leaving_everything_cancels_queued_deliveries_and_keeps_the_reason(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    other = factories.newsletter(session, slug="weekly", language="en")
    reader, neighbour = factories.readers(session, letter, 2)
    factories.readers(session, other, 1, prefix="r")  # the same r0@ joins the second letter
    edition = _sending(session, settings, letter)
    session.commit()

    assert preferences.leave_all(session, reader, reason="Je pars en voyage") == 2
    assert preferences.leave_all(session, reader) == 0  # harmless twice
    session.commit()
    assert _delivery(session, edition, reader).status is DeliveryStatus.CANCELLED
    assert _delivery(session, edition, neighbour).status is DeliveryStatus.QUEUED
    assert {s.status for s in reader.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}
    assert {s.unsubscribe_reason for s in reader.subscriptions} == {"Je pars en voyage"}


def test_export_holds_everything_about_the_reader_and_nobody_else(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    reader, _neighbour = factories.readers(session, letter, 2)
    reader.attributes = {"ville": "Lyon"}
    edition = _sending(session, settings, letter)
    delivery = _delivery(session, edition, reader)
    events.record_open(session, delivery.id)
    events.record_feedback(session, delivery.id, liked=True)
    session.commit()

    data = preferences.export(session, reader)
    json.dumps(data)  # JSON-ready as it is
    assert data["subscriber"]["email"] == reader.email
    assert data["subscriber"]["attributes"] == {"ville": "Lyon"}
    (subscription,) = data["subscriptions"]
    assert subscription["newsletter"] == "lettre"
    assert subscription["status"] == "confirmed"
    assert subscription["consent"]["source"] == "test"
    assert set(subscription["consent"]) == {"at", "ip", "user_agent", "source"}
    assert data["deliveries"] == [
        {"newsletter": "lettre", "edition": {"number": edition.number, "title": edition.title},
         "status": "queued", "sent_at": None}
    ]  # fmt: skip
    assert [(e["kind"], e["edition"], e["value"]) for e in data["events"]] == [
        ("open", edition.number, None), ("feedback", edition.number, "yes"),
    ]  # fmt: skip
    assert "r1@example.org" not in json.dumps(data)


def test_erase_removes_the_person_and_keeps_anonymous_statistics(
    backend: str, session: Session, settings: Settings
) -> None:
    letter = factories.newsletter(session)
    reader, neighbour = factories.readers(session, letter, 2)
    edition = _sending(session, settings, letter)
    delivery = _delivery(session, edition, reader)
    events.record_feedback(session, delivery.id, liked=False)
    events.unsubscribe(session, delivery.id, reason="Trop long à lire")
    session.commit()
    person, address = reader.id, reader.email

    preferences.erase(session, reader)
    session.commit()
    session.expire_all()

    assert session.get(Subscriber, person) is None
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1  # the neighbour's
    assert session.scalar(select(Suppression.id).where(Suppression.email == address)) is None
    row = session.get(Delivery, delivery.id)
    assert row is not None
    assert (row.subscriber_id, row.email, row.name) == (None, "", "")
    assert row.status is DeliveryStatus.CANCELLED
    recorded = session.execute(select(Event.kind, Event.value, Event.subscriber_id)).all()
    assert sorted((k.value, v, s) for k, v, s in recorded) == [
        ("feedback", "no", None), ("unsubscribe", None, None),
    ]  # fmt: skip
    assert _delivery(session, edition, neighbour).email == neighbour.email
    with pytest.raises(preferences.UnknownReader):
        preferences.resolve(
            session, settings.secret_key, tokens.sign(settings.secret_key, DELIVERY_PURPOSE, row.id)
        )


def test_an_erased_address_is_kept_only_as_a_hash_that_stops_old_imports(
    backend: str, session: Session, settings: Settings
) -> None:
    from service.audience import imports

    letter = factories.newsletter(session)
    (reader,) = factories.readers(session, letter, 1)
    address = reader.email
    preferences.erase(session, reader)
    session.flush()

    stored = session.scalars(select(Suppression.email)).all()
    assert address not in stored
    assert all(address.split("@")[0] not in value for value in stored)
    assert stored == [subscriptions.erased_marker(address)]

    # An old spreadsheet brings the address back: the import skips it.
    report = imports.import_csv(
        session, letter, io.StringIO(f"email\n{address.upper()}\nnew@example.org\n"),
        confirmed=True, confirmed_reason="old list",
    )  # fmt: skip
    assert (report.added, report.skipped) == (1, 1)
    assert session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is None

    # Opting in anew through the double opt-in is the one way back, and lifts the hash.
    person = subscriptions.find_or_create_subscriber(session, address)
    subscription = subscriptions.subscribe(session, letter, person, confirmed=False, source="form")
    signup.confirm(session, subscription)
    assert session.scalars(select(Suppression.email)).all() == []
