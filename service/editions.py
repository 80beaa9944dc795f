"""Editions: load and save structured content, and freeze the rendering."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import text
from service.mail.render import RenderedEdition, render_edition
from service.models import Edition, EditionStatus, NewsItem, Newsletter, utcnow


class EditionError(ValueError):
    """The edition data is not usable; the message says where."""


class EditionLocked(EditionError):
    """The edition has started sending; its content can no longer change."""


def _date(value: Any, where: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise EditionError(f"{where}: {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _image(value: Any, where: str) -> dict[str, Any] | None:
    if value in (None, {}):
        return None
    if not isinstance(value, dict):
        raise EditionError(f"{where}: expected an object with url, alt and credit")
    return {
        "url": value.get("url"),
        "alt": value.get("alt") or "",
        "credit": value.get("credit") or "",
    }


_HTTP = re.compile(r"^https?://[^\s/?#]+\S*$", re.IGNORECASE)
_SAMPLE_IMAGE = re.compile(r"^sample:[a-z0-9_-]+$")


def check_links(data: dict[str, Any]) -> None:
    """Refuse links and images that are not http(s): no javascript:, data: or file: URLs."""

    def link(where: str, url: str | None) -> None:
        if url and not _HTTP.match(url):
            raise EditionError(f"{where}: only http:// and https:// links are allowed")

    def image(where: str, value: dict[str, Any] | None) -> None:
        url = (value or {}).get("url")
        if url and not (_HTTP.match(url) or _SAMPLE_IMAGE.match(url)):
            raise EditionError(f"{where}.url: only http:// and https:// images are allowed")

    image("image", data.get("image"))
    for i, item in enumerate(data.get("items") or []):
        link(f"items[{i}].source_url", item.get("source_url"))
        image(f"items[{i}].image", item.get("image"))
    for i, read in enumerate(data.get("related") or []):
        link(f"related[{i}].url", read.get("url"))


def _line(value: Any, where: str) -> str:
    try:
        return text.subject(str(value or ""), field=where)
    except text.UnusableText as exc:
        raise EditionError(str(exc)) from exc


def apply_data(edition: Edition, data: dict[str, Any]) -> None:
    """Set an edition's content from the edition JSON (see README), validating it."""
    check_links(data)
    if edition.status not in (EditionStatus.DRAFT, EditionStatus.SCHEDULED):
        raise EditionLocked(f"edition {edition.number} is {edition.status.value}")
    # Title, subject and preheader can reach the Subject header: one clean line each.
    title = _line(data.get("title"), "title")
    if not title:
        raise EditionError("title: required")
    items = data.get("items") or []
    if not isinstance(items, list):
        raise EditionError("items: expected a list")
    edition.title = title
    edition.week_start = _date(data.get("week_start"), "week_start")
    edition.week_end = _date(data.get("week_end"), "week_end")
    edition.authors = [str(a) for a in data.get("authors") or []]
    edition.subject = _line(data.get("subject"), "subject") or title
    edition.preheader = _line(data.get("preheader"), "preheader")
    edition.image = _image(data.get("image"), "image")
    edition.synthesis = str(data.get("synthesis") or "")
    edition.related = [dict(r) for r in data.get("related") or []]
    new_items = []
    for position, raw in enumerate(items):
        where = f"items[{position}]"
        item_title = str(raw.get("title") or "").strip()
        if not item_title:
            raise EditionError(f"{where}.title: required")
        new_items.append(
            NewsItem(
                position=position,
                date=_date(raw.get("date"), f"{where}.date"),
                title=item_title,
                body=str(raw.get("body") or ""),
                source_name=str(raw.get("source_name") or ""),
                source_url=raw.get("source_url") or None,
                image=_image(raw.get("image"), f"{where}.image"),
            )
        )
    edition.items = new_items


def create(session: Session, newsletter: Newsletter, data: dict[str, Any]) -> Edition:
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


def get(session: Session, edition_id: int) -> Edition:
    """The edition with this id, or EditionError."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise EditionError(f"no edition with id {edition_id}")
    return edition
