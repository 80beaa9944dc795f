"""Editions: load and save structured content, and freeze the rendering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.editions import schema
from service.editions.schema import EditionError as EditionError
from service.editions.schema import EditionInvalid as EditionInvalid
from service.mail.render import OPEN_TOKEN, TOKEN, RenderedEdition, render_edition
from service.models import Edition, EditionStatus, NewsItem, Newsletter, utcnow
from service.sending import lifecycle


class EditionLocked(EditionError):
    """The edition has started sending; its content can no longer change."""


def apply_data(edition: Edition, data: object) -> None:
    """Set an edition's content from the edition JSON (see README), validating it.

    The rules are the edition document's (service.editions.schema): every door goes
    through here, so the CLI, the composer, a pasted draft and the demo agree.
    """
    document = schema.validate(data)
    if not lifecycle.is_editable(edition):
        raise EditionLocked(f"edition {edition.number} is {edition.status.value}")
    edition.title = document.title
    edition.week_start = document.week_start
    edition.week_end = document.week_end
    edition.authors = list(document.authors)
    edition.subject = document.subject or document.title
    edition.preheader = document.preheader
    edition.image = document.image.as_json() if document.image else None
    edition.synthesis = document.synthesis
    edition.related = [read.as_json() for read in document.related]
    edition.items = [
        NewsItem(
            position=position,
            date=item.date,
            title=item.title,
            body=item.body,
            source_name=item.source_name,
            source_url=item.source_url,
            image=item.image.as_json() if item.image else None,
        )
        for position, item in enumerate(document.items)
    ]


def create(session: Session, newsletter: Newsletter, data: object) -> Edition:
    """Create a draft edition with the next number of its newsletter."""
    last = session.scalar(
        select(func.max(Edition.number)).where(Edition.newsletter_id == newsletter.id)
    )
    edition = Edition(newsletter=newsletter, number=(last or 0) + 1, status=EditionStatus.DRAFT)
    apply_data(edition, data)
    session.add(edition)
    session.flush()
    return edition


def to_data(edition: Edition) -> dict[str, Any]:
    """The edition as the JSON the CLI loads and saves."""
    return {
        "title": edition.title,
        "week_start": edition.week_start.isoformat() if edition.week_start else None,
        "week_end": edition.week_end.isoformat() if edition.week_end else None,
        "authors": list(edition.authors),
        "subject": edition.subject,
        "preheader": edition.preheader,
        "image": edition.image,
        "synthesis": edition.synthesis,
        "items": [
            {
                "date": item.date.isoformat() if item.date else None,
                "title": item.title,
                "body": item.body,
                "source_name": item.source_name,
                "source_url": item.source_url,
                "image": item.image,
            }
            for item in edition.items
        ],
        "related": list(edition.related),
    }


def render(edition: Edition, *, base_url: str, templates_path: Path) -> RenderedEdition:
    """Render the edition as subscribers will get it (placeholders included)."""
    return render_edition(
        edition, edition.newsletter, base_url=base_url, templates_path=templates_path
    )


def freeze(session: Session, edition: Edition, *, base_url: str, templates_path: Path) -> None:
    """Render once and store the result on the edition; sending reads only this."""
    rendered = render(edition, base_url=base_url, templates_path=templates_path)
    edition.rendered_subject = rendered.subject
    edition.rendered_html = rendered.html
    edition.rendered_text = rendered.text
    edition.tracked_links = rendered.tracked_links
    edition.rendered_at = utcnow()
    session.flush()


def is_tracked(edition: Edition) -> bool:
    """Whether the edition went out with the open pixel (tracking on when it was frozen)."""
    html = edition.rendered_html or ""
    return OPEN_TOKEN in html or f"/o/{TOKEN}.gif" in html


def get(session: Session, edition_id: int) -> Edition:
    """The edition with this id, or EditionError."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionError(f"no edition with id {edition_id}")
    return edition


# Gmail clips an HTML part above 102 KB; past 90 KB an editor should start cutting.
SIZE_LIMIT_BYTES = 102 * 1024
SIZE_WARN_BYTES = 90 * 1024


def size_level(html_bytes: int) -> str:
    """ok, warn (past 90 KB) or over (Gmail clips it)."""
    if html_bytes > SIZE_LIMIT_BYTES:
        return "over"
    if html_bytes > SIZE_WARN_BYTES:
        return "warn"
    return "ok"


def html_size(edition: Edition, *, base_url: str, templates_path: Path) -> int:
    """Bytes of the HTML part subscribers will get (with tracked links)."""
    rendered = render_edition(
        edition,
        edition.newsletter,
        base_url=base_url,
        templates_path=templates_path,
        personal=True,
    )
    return len(rendered.html.encode("utf-8"))


def revision(edition: Edition) -> str:
    """A fingerprint of the saved content, to notice another tab or editor saving meanwhile."""
    content = json.dumps(to_data(edition), sort_keys=True, default=str)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:20]
