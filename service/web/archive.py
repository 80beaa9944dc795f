"""The public web archive: every sent edition at a stable URL, without tracking."""

from __future__ import annotations

from flask import Blueprint, abort
from markupsafe import Markup
from sqlalchemy import select

from service import newsletters
from service.mail.render import render_edition
from service.models import Edition, EditionStatus
from service.web.deps import db, settings

blueprint = Blueprint("archive", __name__, url_prefix="/archive")


@blueprint.get("/<slug>/<int:number>")
def edition(slug: str, number: int) -> Markup:
    """A sent edition as a web page: the email's HTML with nothing personal in it."""
    session = db()
    try:
        newsletter = newsletters.get_by_slug(session, slug)
    except newsletters.UnknownNewsletter:
        abort(404)
    found = session.scalar(
        select(Edition).where(
            Edition.newsletter_id == newsletter.id,
            Edition.number == number,
            Edition.status.in_([EditionStatus.SENT, EditionStatus.SENDING]),
        )
    )
    if found is None:
        abort(404)
    config = settings()
    rendered = render_edition(
        found,
        newsletter,
        base_url=config.base_url,
        templates_path=config.email_templates_path,
        personal=False,
    )
    return Markup(rendered.html)  # noqa: S704 - our own template over sanitised Markdown
