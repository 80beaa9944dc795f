"""The public web archive: every sent edition at a stable URL, an index and an Atom feed.

The archive copy is rendered with personal=False: no greeting, no tracking pixel,
no tracked links, no token. A sent edition no longer changes, so its rendering
(premailer is slow) is kept in process per (edition id, updated_at).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, render_template, url_for
from markupsafe import Markup
from sqlalchemy import select

from service import newsletters
from service.mail import links
from service.mail.render import PublicUrls, build_context, render_edition
from service.mail.wording import week_label
from service.models import Edition, EditionStatus, Newsletter
from service.web import i18n
from service.web.deps import db, settings

blueprint = Blueprint("archive", __name__)

ATOM = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
FEED_ENTRIES = 50
PUBLISHED = (EditionStatus.SENT, EditionStatus.SENDING)
ET.register_namespace("", ATOM)  # Atom as the default namespace: <feed xmlns="…">


@dataclass(frozen=True)
class _Version:
    """Cache key of an archive page; the edition rides along without being compared."""

    edition_id: int
    updated_at: datetime
    newsletter: tuple[str | None, ...]
    base_url: str
    templates_path: Path
    edition: Edition = field(compare=False, hash=False, repr=False)


@lru_cache(maxsize=64)
def _archive_html(version: _Version) -> str:
    edition = version.edition
    return render_edition(
        edition,
        edition.newsletter,
        base_url=version.base_url,
        templates_path=version.templates_path,
        personal=False,
    ).html


def archive_html(edition: Edition) -> str:
    """The archive copy of a sent edition: its email HTML with nothing personal in it."""
    config = settings()
    n = edition.newsletter
    version = _Version(
        edition.id,
        edition.updated_at,
        (n.slug, n.name, n.language, n.postal_address, n.website_url),
        config.base_url,
        config.email_templates_path,
        edition,
    )
    return _archive_html(version)


def _newsletter(slug: str) -> Newsletter:
    try:
        return newsletters.get_by_slug(db(), slug)
    except newsletters.UnknownNewsletter:
        abort(404)


def _sent(newsletter: Newsletter, limit: int | None = None) -> list[Edition]:
    query = (
        select(Edition)
        .where(Edition.newsletter_id == newsletter.id, Edition.status == EditionStatus.SENT)
        .order_by(Edition.number.desc())
        .limit(limit)
    )
    return list(db().scalars(query))


def _week(edition: Edition, language: str) -> str:
    if edition.week_start and edition.week_end:
        return week_label(edition.week_start, edition.week_end, language)
    return ""


@blueprint.get(links.ROUTES["archive"])
def index(slug: str) -> str:
    """Every sent edition of a newsletter, newest first."""
    newsletter = _newsletter(slug)
    i18n.use_locale(newsletter.language)
    rows = [(e, _week(e, newsletter.language)) for e in _sent(newsletter)]
    return render_template("web/archive_index.html", newsletter=newsletter, rows=rows)


@blueprint.get(links.ROUTES["archive_edition"])
def edition(slug: str, number: int) -> Markup:
    """A sent edition as a web page: the email's HTML with nothing personal in it."""
    newsletter = _newsletter(slug)
    found = db().scalar(
        select(Edition).where(
            Edition.newsletter_id == newsletter.id,
            Edition.number == number,
            Edition.status.in_(PUBLISHED),
        )
    )
    if found is None:
        abort(404)
    page = with_main_landmark(archive_html(found))
    return Markup(page)  # noqa: S704 - our own template over sanitised Markdown


_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def with_main_landmark(html: str) -> str:
    """The email's HTML with its body inside <main>, for the web page only.

    A mail client ignores landmarks (and some strip <main>), so the email keeps
    its bytes; a web page needs one for screen readers to jump to the content.
    """
    opened = _BODY_OPEN.search(html)
    closing = html.lower().rfind("</body>")
    if opened is None or closing < opened.end():
        return html
    return f"{html[: opened.end()]}<main>{html[opened.end() : closing]}</main>{html[closing:]}"


def _tag(base_url: str, newsletter: Newsletter, path: str) -> str:
    # RFC 4151 tag URIs: stable ids even if the archive moves to another URL scheme.
    host = urlsplit(base_url).hostname or "localhost"
    return f"tag:{host},{newsletter.created_at:%Y-%m-%d}:{path}"


def _updated(edition: Edition) -> datetime:
    return edition.sent_at or edition.send_started_at or edition.updated_at


def _entry_html(edition: Edition, newsletter: Newsletter, base_url: str) -> str:
    web_version = f"{base_url}/archive/{newsletter.slug}/{edition.number}"
    context = build_context(
        edition, newsletter, base_url, PublicUrls(base_url, personal=False).as_context(web_version)
    )
    return render_template("web/archive_entry.html", **context)


def _add(parent: ET.Element, name: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{name}", attributes)
    if text is not None:
        element.text = text
    return element


@blueprint.get(links.ROUTES["archive_feed"])
def feed(slug: str) -> Response:
    """An Atom 1.0 feed of the sent editions, with their content and no tracking."""
    newsletter = _newsletter(slug)
    i18n.use_locale(newsletter.language)
    base_url = settings().base_url
    entries = _sent(newsletter, FEED_ENTRIES)
    index_url = base_url + url_for("archive.index", slug=slug)
    root = ET.Element(f"{{{ATOM}}}feed", {XML_LANG: newsletter.language})
    _add(root, "id", _tag(base_url, newsletter, f"archive/{slug}"))
    _add(root, "title", newsletter.name)
    if newsletter.description:
        _add(root, "subtitle", newsletter.description)
    updated = max((_updated(e) for e in entries), default=newsletter.created_at)
    _add(root, "updated", updated.isoformat())
    _add(root, "link", rel="self", type="application/atom+xml", href=f"{index_url}feed.atom")
    _add(root, "link", rel="alternate", type="text/html", href=index_url)
    _add(_add(root, "author"), "name", newsletter.sender_name or newsletter.name)
    _add(root, "generator", "Hebdo")
    for found in entries:
        url = f"{base_url}/archive/{slug}/{found.number}"
        entry = _add(root, "entry")
        _add(entry, "id", _tag(base_url, newsletter, f"archive/{slug}/{found.number}"))
        _add(entry, "title", found.subject or found.title)
        _add(entry, "updated", _updated(found).isoformat())
        if found.sent_at:
            _add(entry, "published", found.sent_at.isoformat())
        _add(entry, "link", rel="alternate", type="text/html", href=url)
        for name in found.authors:
            _add(_add(entry, "author"), "name", name)
        if found.preheader:
            _add(entry, "summary", found.preheader)
        _add(entry, "content", _entry_html(found, newsletter, base_url), type="html")
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, mimetype="application/atom+xml")
