"""Builders for test data, going through the same domain functions as the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service import newsletters
from service.audience import subscriptions
from service.config import Settings
from service.editions import store
from service.models import (
    Edition,
    Newsletter,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from service.sending import controls

SAMPLE = Path(__file__).resolve().parents[1] / "service" / "sample"


def newsletter(session: Session, slug: str = "lettre", language: str = "fr") -> Newsletter:
    """A newsletter with a sender and a postal address."""
    return newsletters.create(
        session,
        slug=slug,
        name="Intelligence & Société" if language == "fr" else "AI Weekly",
        sender_email=f"{slug}@hebdo.example",
        language=language,
        postal_address="12 rue des Lilas, 75011 Paris",
    )


def readers(
    session: Session, letter: Newsletter, count: int, *, confirmed: bool = True, prefix: str = "r"
) -> list[Subscriber]:
    """`count` subscribers named Lecteur N with addresses rN@example.org."""
    people = []
    for n in range(count):
        subscriber = subscriptions.find_or_create_subscriber(
            session, f"{prefix}{n}@example.org", f"Lecteur {n}"
        )
        subscriptions.subscribe(session, letter, subscriber, confirmed=confirmed, source="test")
        people.append(subscriber)
    return people


def legacy_reader(session: Session, letter: Newsletter, email: str, name: str) -> int:
    """A confirmed reader written straight into the tables, as old or imported data may be.

    No domain rule sees the values: this is how a row no door would accept today
    can still be in the database. Returns the subscriber id.
    """
    now = utcnow()
    subscriber_id = session.scalars(
        insert(Subscriber).returning(Subscriber.id), [{"email": email, "name": name}]
    ).one()
    session.execute(
        insert(Subscription),
        [
            {
                "newsletter_id": letter.id,
                "subscriber_id": subscriber_id,
                "status": SubscriptionStatus.CONFIRMED,
                "consent_at": now,
                "consent_source": "legacy",
                "confirmed_at": now,
            }
        ],
    )
    return int(subscriber_id)


def sample_data(language: str = "fr") -> dict[str, Any]:
    """The sample edition JSON."""
    data: dict[str, Any] = json.loads((SAMPLE / f"edition_{language}.json").read_text("utf-8"))
    return data


def edition(session: Session, letter: Newsletter, language: str = "fr") -> Edition:
    """A draft edition with the sample content."""
    return store.create(session, letter, sample_data(language))


def begin_sending(
    session: Session, settings: Settings, edition: Edition, batch_size: int | None = None
) -> controls.SendStarted:
    """Freeze the edition and snapshot its readers, with the test instance's settings."""
    return controls.begin(
        session,
        edition,
        base_url=settings.base_url,
        templates_path=settings.email_templates_path,
        batch_size=settings.batch_size if batch_size is None else batch_size,
    )
