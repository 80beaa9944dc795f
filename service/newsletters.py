"""Newsletters: create, find and list."""

from __future__ import annotations

import re
from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import text
from service.addresses import InvalidAddress, for_sending, normalise
from service.models import Newsletter

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")


class BadNewsletter(ValueError):
    """A value given for a new newsletter is unusable; the message says which and why."""


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
    """Create a newsletter; the slug names it in URLs and on the command line.

    Raises BadNewsletter (a ValueError) saying which value is unusable; the
    name and sender name pass the header rule of service.text.
    """
    if language not in ("fr", "en"):
        raise BadNewsletter(f"unsupported language {language!r} (fr or en)")
    if not _SLUG.fullmatch(slug):
        raise BadNewsletter(
            f"slug {slug!r}: use 1 to 80 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    try:
        clean_name = text.newsletter_name(name)
        clean_sender_name = text.sender_name(sender_name or "") or clean_name
        address = normalise(sender_email)
        reply_address = normalise(reply_to) if reply_to else None
    except (text.UnusableText, InvalidAddress) as exc:
        raise BadNewsletter(str(exc)) from exc
    if not clean_name:
        raise BadNewsletter("name: required")
    if reply_address and not for_sending(reply_address).isascii():
        raise BadNewsletter(f"reply-to {reply_address}: the part before the @ must be ASCII")
    if not for_sending(address).isascii():
        # Every message would then need SMTPUTF8 from the relay; a sender is chosen once.
        raise BadNewsletter(f"sender {address}: the part before the @ must be ASCII")
    newsletter = Newsletter(
        slug=slug,
        name=clean_name,
        sender_email=address,
        sender_name=clean_sender_name,
        language=language,
        reply_to=reply_address,
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


def set_tracking(session: Session, slug: str, on: bool) -> Newsletter:
    """Turn open and click tracking on or off for editions frozen from now on.

    Editions already sent keep what they went out with (service.editions.store.is_tracked).
    """
    newsletter = get_by_slug(session, slug)
    newsletter.tracking = on
    session.flush()
    return newsletter
