"""Render an edition once: Jinja2, premailer, tracked links and a text part.

The result is frozen on the edition with a few placeholders (greeting, one
token per link purpose) that service.mail.mime substitutes per recipient. Nothing here touches
the network or the database session; it turns data into strings.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import nh3
import premailer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from service.mail.links import url as public_url
from service.mail.wording import date_label, join_names, week_label
from service.models import Edition, Newsletter
from service.translations import translator

# Per-recipient placeholders: plain ASCII words that survive premailer, lxml and
# quoted-printable untouched, so personalisation is a string replacement.
GREETING = "HEBDOxGREETINGx"
# One placeholder per link purpose, so a link can do one thing only (see mime.py).
OPEN_TOKEN = "HEBDOxOPENx"  # noqa: S105 - placeholders, not secrets
CLICK_TOKEN = "HEBDOxCLICKx"  # noqa: S105
FEEDBACK_TOKEN = "HEBDOxFEEDBACKx"  # noqa: S105
UNSUBSCRIBE_TOKEN = "HEBDOxUNSUBSCRIBEx"  # noqa: S105
PREFS_TOKEN = "HEBDOxPREFSx"  # noqa: S105
# Editions frozen before tokens had purposes carry this one in every link; it is
# still filled (with the legacy delivery token) so their sends can finish.
TOKEN = "HEBDOxTOKENx"  # noqa: S105

_SAFE_TAGS = {
    "p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li", "h2", "h3", "h4",
    "blockquote", "code", "pre", "hr", "img", "sup", "sub", "table", "thead",
    "tbody", "tr", "th", "td",
}  # fmt: skip
_SAFE_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
_HREF = re.compile(r'(<a\b[^>]*?\bhref=")(https?://[^"]+)(")', re.IGNORECASE)


@dataclass(frozen=True)
class RenderedEdition:
    """An edition rendered once, with placeholders for each recipient."""

    subject: str
    html: str
    text: str
    tracked_links: list[str]


@dataclass(frozen=True)
class PublicUrls:
    """The per-recipient URLs, each with the placeholder of its own purpose."""

    base_url: str
    personal: bool  # False: the archive copy, which carries no personal link
    tracking: bool = True  # False: the newsletter's tracking is off, no open pixel

    def as_context(self, web_version: str) -> dict[str, str | None]:
        """The `urls` mapping the email templates expect."""
        if not self.personal:
            return {
                "unsubscribe": None,
                "preferences": None,
                "web_version": web_version,
                "feedback_yes": None,
                "feedback_no": None,
                "open_pixel": None,
            }
        base = self.base_url
        return {
            "unsubscribe": public_url(base, "unsubscribe", token=UNSUBSCRIBE_TOKEN),
            "preferences": public_url(base, "preferences", token=PREFS_TOKEN),
            "web_version": web_version,
            "feedback_yes": public_url(base, "feedback", token=FEEDBACK_TOKEN, answer="yes"),
            "feedback_no": public_url(base, "feedback", token=FEEDBACK_TOKEN, answer="no"),
            "open_pixel": public_url(base, "open", token=OPEN_TOKEN) if self.tracking else None,
        }


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # html=False: raw HTML typed by an editor is shown as text, never executed.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def markdown_to_html(source: str) -> Markup:
    """Editor Markdown to HTML that is safe to put in a page or an email."""
    rendered = _markdown().render(source or "")
    cleaned = nh3.clean(
        rendered,
        tags=_SAFE_TAGS,
        attributes=_SAFE_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener",
    )
    return Markup(cleaned)  # noqa: S704 - sanitised by nh3 just above


_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")


def markdown_to_text(source: str) -> str:
    """Editor Markdown as readable plain text: links spelled out, emphasis dropped."""

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        return label if url in ("#", "") else f"{label} <{url}>"

    text = _MD_LINK.sub(link, source or "")
    return _MD_EMPHASIS.sub(r"\2", text).strip()


def resolve_image_url(url: str | None, base_url: str) -> str | None:
    """Map sample:NAME to the app's static sample files; keep absolute URLs."""
    if not url:
        return None
    if url.startswith("sample:"):
        return f"{base_url}/static/sample/{url.removeprefix('sample:')}.png"
    return url


def _image(image: dict[str, Any] | None, base_url: str) -> dict[str, Any] | None:
    if not image:
        return None
    url = resolve_image_url(image.get("url"), base_url)
    if not url:
        return None
    return {"url": url, "alt": image.get("alt") or "", "credit": image.get("credit") or ""}


def build_context(
    edition: Edition, newsletter: Newsletter, base_url: str, urls: dict[str, str | None]
) -> dict[str, Any]:
    """The template context of an edition (the contract of templates/email/edition)."""
    lang = newsletter.language  # the edition speaks its newsletter's language
    _ = translator(lang)
    synthesis_title, synthesis_body = _split_title(edition.synthesis)
    return {
        "lang": lang,
        "_": _,
        "ngettext": _.ngettext,
        "newsletter": {
            "name": newsletter.name,
            "postal_address": newsletter.postal_address,
            "sender_name": newsletter.sender_name,
            "website_url": newsletter.website_url,
        },
        "edition": {
            "number": edition.number,
            "title": edition.title,
            "week_label": _week(edition.week_start, edition.week_end, lang),
            "authors_label": join_names(edition.authors, lang) if edition.authors else "",
            "subject": edition.subject,
            "preheader": edition.preheader,
            "image": _image(edition.image, base_url),
            "synthesis_title": synthesis_title,
            "synthesis_html": markdown_to_html(synthesis_body),
            "synthesis_text": markdown_to_text(synthesis_body),
            "items": [
                {
                    "date_label": date_label(item.date, lang) if item.date else "",
                    "title": item.title,
                    "body_html": markdown_to_html(item.body),
                    "body_text": markdown_to_text(item.body),
                    "source_name": item.source_name,
                    "source_url": item.source_url,
                    "image": _image(item.image, base_url),
                }
                for item in edition.items
            ],
            "related": [
                {
                    "title": r.get("title", ""),
                    "date_label": _related_date(r.get("date"), lang),
                    "kind": r.get("kind", ""),
                    "url": r.get("url", ""),
                }
                for r in edition.related
            ],
        },
        "urls": urls,
        "greeting": Markup(GREETING),  # noqa: S704 - a constant placeholder, replaced per recipient with escaped text
    }


def _week(start: date | None, end: date | None, lang: str) -> str:
    if start and end:
        return week_label(start, end, lang)
    return ""


def _related_date(value: str | None, lang: str) -> str:
    if not value:
        return ""
    try:
        return date_label(date.fromisoformat(value), lang)
    except ValueError:
        return value


def _split_title(synthesis: str) -> tuple[str | None, str]:
    # A synthesis that opens with "# Title" gets that title shown as its headline.
    first, _, rest = (synthesis or "").lstrip().partition("\n")
    if first.startswith("# "):
        return first[2:].strip(), rest
    return None, synthesis or ""


@lru_cache(maxsize=8)
def environment(templates_path: Path) -> Environment:
    """The one Jinja environment of the email templates (editions and notices)."""
    return Environment(
        loader=FileSystemLoader(str(templates_path)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def inline_css(html_source: str, css: str) -> str:
    """Inline the stylesheet into the HTML (premailer), once per edition."""
    inlined = str(
        premailer.Premailer(
            html_source,
            css_text=css,
            keep_style_tags=True,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            allow_network=False,
            # premailer copies CSS widths and heights into attributes, overwriting the
            # template's: <body width="100%"> and <img width="100%" height="auto"> are
            # invalid HTML, and Outlook needs an image's width in pixels. The templates
            # write the width attributes Outlook needs themselves.
            disable_basic_attributes=["width", "height"],
        ).transform(pretty_print=False)
    )
    # HTML5 has one style language; the Nu Html Checker flags the type premailer writes.
    return inlined.replace('<style type="text/css">', "<style>")


def track_links(html_source: str, base_url: str, token: str) -> tuple[str, list[str]]:
    """Rewrite outbound links to signed click URLs; return the HTML and the link list."""
    links: list[str] = []
    positions: dict[str, int] = {}

    def rewrite(match: re.Match[str]) -> str:
        target = html.unescape(match.group(2))
        if target.startswith(base_url + "/"):
            return match.group(0)  # our own pages (unsubscribe, archive…) are not tracked
        index = positions.setdefault(target, len(links))
        if index == len(links):
            links.append(target)
        click = public_url(base_url, "click", token=token, index=index)
        return f"{match.group(1)}{click}{match.group(3)}"

    return _HREF.sub(rewrite, html_source), links


def render_edition(
    edition: Edition,
    newsletter: Newsletter,
    *,
    base_url: str,
    templates_path: Path,
    personal: bool = True,
) -> RenderedEdition:
    """Render the edition's email once: subject, inlined HTML and text.

    With personal=True the links carry the placeholder of their purpose and
    outbound links are tracked; with personal=False (the web archive) nothing is personal.
    A newsletter with tracking off gets neither the open pixel nor rewritten links
    (feedback and unsubscribe links stay: the reader acts on them on purpose).
    """
    tracking = personal and newsletter.tracking is not False
    env = environment(templates_path)
    web_version = public_url(
        base_url, "archive_edition", slug=newsletter.slug, number=edition.number
    )
    urls = PublicUrls(base_url, personal, tracking).as_context(web_version)
    context = build_context(edition, newsletter, base_url, urls)
    if not personal:
        context["greeting"] = Markup("")
    subject = env.get_template("edition/subject.txt").render(context).strip()
    css = (templates_path / "edition" / "style.css").read_text(encoding="utf-8")
    html_body = inline_css(env.get_template("edition/body.html").render(context), css)
    links: list[str] = []
    if tracking:
        html_body, links = track_links(html_body, base_url, CLICK_TOKEN)
    text_body = env.get_template("edition/body.txt").render(context)
    return RenderedEdition(
        subject=" ".join(subject.split()),
        html=html_body,
        text=text_body.strip() + "\n",
        tracked_links=links,
    )
