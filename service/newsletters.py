"""Newsletters: create, find and list."""

from __future__ import annotations

from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.addresses import normalise
from service.models import Newsletter


class UnknownNewsletter(LookupError):
    """No newsletter has that slug."""


def create(
    session: Session,
    *,
    slug: str,
    name: str,
    sender_email: str,
    sender_name: str | None = None,
    language: str = "fr",
    reply_to: str | None = None,
    postal_address: str = "",
    website_url: str | None = None,
    description: str = "",
    send_weekday: int = 5,
    send_time: time = time(8, 0),
    timezone: str = "Europe/Paris",
) -> Newsletter:
    """Create a newsletter; the slug names it in URLs and on the command line."""
    if language not in ("fr", "en"):
        raise ValueError(f"unsupported language {language!r} (fr or en)")
    newsletter = Newsletter(
        slug=slug,
        name=name,
        sender_email=normalise(sender_email),
        sender_name=sender_name or name,
        language=language,
        reply_to=reply_to,
        postal_address=postal_address,
        website_url=website_url,
        description=description,
        send_weekday=send_weekday,
        send_time=send_time,
        timezone=timezone,
    )
    session.add(newsletter)
    session.flush()
    return newsletter


def get_by_slug(session: Session, slug: str) -> Newsletter:
    """The newsletter with this slug, or UnknownNewsletter."""
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise UnknownNewsletter(f"no newsletter with slug {slug!r}")
    return newsletter


def list_all(session: Session) -> list[Newsletter]:
    """Every newsletter, by name."""
    return list(session.scalars(select(Newsletter).order_by(Newsletter.name)))
