"""The sample publication of `hebdo demo`: newsletters, readers and an edition."""

from __future__ import annotations

import csv
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service import newsletters
from service.audience import subscriptions
from service.editions import store
from service.models import EditorRole
from service.team import editors

SAMPLE = Path(__file__).resolve().parent.parent / "sample"
DEMO_EDITOR = "editor@example.org"


@dataclass(frozen=True)
class DemoData:
    """What the demo created."""

    newsletter_slug: str
    edition_id: int
    edition_number: int
    subscribers: int
    editor_email: str
    editor_password: str


def seed(session: Session) -> DemoData:
    """Create the sample newsletter, its confirmed readers, an editor and an edition."""
    newsletter = newsletters.create(
        session,
        slug="intelligence-societe",
        name="Intelligence & Société",
        sender_email="lettre@intelligence-societe.example",
        sender_name="Intelligence & Société",
        language="fr",
        postal_address="Intelligence & Société, 12 rue des Lilas, 75011 Paris, France",
        website_url="https://intelligence-societe.example",
        description="Chaque samedi, l'essentiel de la semaine en intelligence artificielle.",
    )
    count = 0
    with (SAMPLE / "subscribers.csv").open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            subscriber = subscriptions.find_or_create_subscriber(
                session, row["email"], row.get("name", ""), row.get("locale") or "fr"
            )
            subscriptions.subscribe(
                session, newsletter, subscriber, confirmed=True, source="demo: sample readers"
            )
            count += 1
    data = json.loads((SAMPLE / "edition_fr.json").read_text(encoding="utf-8"))
    edition = store.create(session, newsletter, data)
    password = secrets.token_urlsafe(12)
    editors.create(session, DEMO_EDITOR, password, name="Demo editor", role=EditorRole.ADMIN)
    return DemoData(newsletter.slug, edition.id, edition.number, count, DEMO_EDITOR, password)
