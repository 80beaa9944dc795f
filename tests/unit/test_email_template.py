"""The edition email template renders the sample editions into a lean, accessible email.

The context is built here from the sample JSON, following the contract that
service/mail/render.py fills in (see templates/email/edition/body.html).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import premailer
import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from service.mail.wording import date_label, join_names, week_label
from service.translations import translator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates" / "email"
SAMPLES = ROOT / "service" / "sample"
GMAIL_CLIP_BYTES = 102 * 1024

URLS = {
    "unsubscribe": "https://hebdo.example.org/u/TOKEN",
    "preferences": "https://hebdo.example.org/p/TOKEN",
    "web_version": "https://hebdo.example.org/archive/intelligence/12",
    "feedback_yes": "https://hebdo.example.org/f/TOKEN/yes",
    "feedback_no": "https://hebdo.example.org/f/TOKEN/no",
    "open_pixel": "https://hebdo.example.org/o/TOKEN.gif",
}
ARCHIVE_URLS = dict.fromkeys(URLS) | {"web_version": URLS["web_version"]}


def _environment() -> Environment:
    # Same escaping, whitespace and undefined handling as service/mail/render.py.
    return Environment(
        autoescape=select_autoescape(["html"]),
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _split_title(markdown: str) -> tuple[str | None, str]:
    first, _, rest = markdown.lstrip().partition("\n")
    if first.startswith("# "):
        return first[2:].strip(), rest
    return None, markdown


def _image(image: dict[str, str] | None) -> dict[str, str] | None:
    if not image or not image.get("url"):
        return None
    url = image["url"]
    if url.startswith("sample:"):
        url = f"https://hebdo.example.org/static/sample/{url.removeprefix('sample:')}.png"
    return {"url": url, "alt": image.get("alt", ""), "credit": image.get("credit", "")}


def build_context(
    sample: str, lang: str, urls: dict[str, str | None] | None = None, *, greeting: str = ""
) -> dict[str, Any]:
    """Context of templates/email/edition/* for a sample edition JSON file."""
    data = json.loads((SAMPLES / sample).read_text(encoding="utf-8"))
    md = MarkdownIt("commonmark")
    _ = translator(lang)
    synthesis_title, synthesis = _split_title(data["synthesis"])
    return {
        "lang": lang,
        "_": _,
        "ngettext": _.ngettext,
        "newsletter": {
            "name": "La Lettre Hebdo" if lang == "fr" else "The Hebdo Letter",
            "postal_address": "Hebdo, 12 rue des Lilas\n75011 Paris, France",
            "sender_name": "Paul Jorion",
            "website_url": "https://hebdo.example.org",
        },
        "edition": {
            "number": 12,
            "title": data["title"],
            "week_label": week_label(
                date.fromisoformat(data["week_start"]), date.fromisoformat(data["week_end"]), lang
            ),
            "authors_label": join_names(data["authors"], lang),
            "subject": data["subject"],
            "preheader": data["preheader"],
            "image": _image(data["image"]),
            "synthesis_title": synthesis_title,
            "synthesis_html": Markup(md.render(synthesis)),  # noqa: S704 - sample content
            "synthesis_text": synthesis.strip(),
            "items": [
                {
                    "date_label": date_label(date.fromisoformat(item["date"]), lang),
                    "title": item["title"],
                    "body_html": Markup(md.render(item["body"])),  # noqa: S704 - sample content
                    "body_text": item["body"].strip(),
                    "source_name": item["source_name"],
                    "source_url": item["source_url"],
                    "image": _image(item["image"]),
                }
                for item in data["items"]
            ],
            "related": [
                {
                    "title": read["title"],
                    "date_label": date_label(date.fromisoformat(read["date"]), lang),
                    "kind": read["kind"],
                    "url": read["url"],
                }
                for read in data["related"]
            ],
        },
        "urls": URLS if urls is None else urls,
        "greeting": Markup(greeting or _("Hello {name},", name="Marie")),  # noqa: S704 - constant
    }


def render_html(context: dict[str, Any]) -> str:
    """body.html rendered and inlined with the production premailer options."""
    source = _environment().get_template("edition/body.html").render(context)
    css = (TEMPLATES / "edition" / "style.css").read_text(encoding="utf-8")
    return str(
        premailer.Premailer(
            source,
            css_text=css,
            keep_style_tags=True,
            strip_important=False,
            remove_classes=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    )


def render_text(context: dict[str, Any], name: str = "body.txt") -> str:
    return _environment().get_template(f"edition/{name}").render(context)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def french() -> str:
    return render_html(build_context("edition_fr.json", "fr"))


@pytest.fixture(scope="module")
def english() -> str:
    return render_html(build_context("edition_en.json", "en"))


def test_french_sample_stays_under_gmail_clipping_size(french: str) -> None:
    assert len(french.encode("utf-8")) < GMAIL_CLIP_BYTES


def test_every_image_has_alt_text_and_the_pixel_an_empty_one(french: str) -> None:
    images = [attrs for tag, attrs in _parse(french).tags if tag == "img"]
    assert all("alt" in attrs for attrs in images)
    pixel = [attrs for attrs in images if attrs["src"] == URLS["open_pixel"]]
    assert pixel == [pixel[0]]
    assert pixel[0]["alt"] == ""
    assert pixel[0]["width"] == pixel[0]["height"] == "1"


def test_document_declares_language_and_color_schemes(french: str, english: str) -> None:
    assert '<html lang="fr"' in french
    assert '<html lang="en"' in english
    assert 'name="color-scheme" content="light dark"' in french
    assert 'name="supported-color-schemes" content="light dark"' in french


def test_responsive_and_dark_mode_rules_survive_inlining(french: str) -> None:
    assert "@media only screen and (max-width: 620px)" in french
    assert "@media (prefers-color-scheme: dark)" in french


def test_stylesheet_is_inlined_on_elements(french: str) -> None:
    h1 = next(attrs for tag, attrs in _parse(french).tags if tag == "h1")
    assert "font-size:34px" in (h1["style"] or "").replace(" ", "")


def test_layout_tables_are_presentational(french: str) -> None:
    tables = [attrs for tag, attrs in _parse(french).tags if tag == "table"]
    assert tables
    assert all(attrs.get("role") == "presentation" for attrs in tables)


def test_headings_follow_one_h1_then_h2_and_h3(french: str) -> None:
    levels = [int(tag[1]) for tag, _ in _parse(french).tags if re.fullmatch(r"h[1-6]", tag)]
    assert levels.count(1) == 1
    assert levels[0] == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels))


def test_masthead_shows_title_week_and_authors(french: str) -> None:
    text = " ".join(_parse(french).text)
    assert "Intelligence & Société" in text
    assert "Semaine du 18 au 25 janvier 2025" in text
    assert "Par Paul Jorion et Jueun Ahn" in text
    assert "Bonjour Marie," in text


def test_preheader_is_first_and_hidden(french: str) -> None:
    body = french.split("<body", 1)[1]
    first_div = re.search(r"<div[^>]*>", body)
    assert first_div is not None
    assert 'class="preheader"' in first_div.group(0)
    assert "display:none" in first_div.group(0).replace(" ", "")
    assert "Sobriété chinoise, gigantisme américain" in body[: body.index("</div>")]


def test_every_news_item_appears_with_date_and_source_link(french: str) -> None:
    data = json.loads((SAMPLES / "edition_fr.json").read_text(encoding="utf-8"))
    text = " ".join(_parse(french).text)
    links = {attrs.get("href") for tag, attrs in _parse(french).tags if tag == "a"}
    for item in data["items"]:
        assert item["title"] in text
        assert item["source_url"] in links
    assert "Le 27 novembre 2024" in text
    assert text.count("Lire plus ?") == len(data["items"])


def test_feedback_buttons_and_related_reads_are_present(french: str) -> None:
    data = json.loads((SAMPLES / "edition_fr.json").read_text(encoding="utf-8"))
    text = " ".join(_parse(french).text)
    links = {attrs.get("href") for tag, attrs in _parse(french).tags if tag == "a"}
    assert "Avez-vous apprécié ce contenu ?" in text
    assert {URLS["feedback_yes"], URLS["feedback_no"]} <= links
    assert "À lire également" in text
    for read in data["related"]:
        assert read["title"] in text
        assert read["url"] in links


def test_footer_links_to_preferences_unsubscribe_and_web_version(french: str) -> None:
    links = {attrs.get("href") for tag, attrs in _parse(french).tags if tag == "a"}
    assert {URLS["preferences"], URLS["unsubscribe"], URLS["web_version"]} <= links
    assert "75011 Paris, France" in french


def test_english_sample_uses_english_wording(english: str) -> None:
    text = " ".join(_parse(english).text)
    assert "Week of 25 January \u2013 1 February 2025" in text
    assert "By Hannah Mercer and David Okafor" in text
    assert "Did you enjoy this edition?" in text
    assert "Further reading" in text
    assert "Read more:" in text
    assert "Semaine du" not in text


def test_archive_copy_has_no_pixel_feedback_or_personal_links() -> None:
    html = render_html(build_context("edition_fr.json", "fr", ARCHIVE_URLS, greeting=""))
    assert "None" not in html
    assert "TOKEN" not in html
    assert "Avez-vous apprécié" not in html
    assert 'width="1" height="1"' not in html
    assert URLS["web_version"] in html


def test_missing_image_is_skipped() -> None:
    context = build_context("edition_fr.json", "fr")
    context["edition"]["image"] = None
    html = render_html(context)
    assert 'class="hero"' not in html
    assert "atelier Hebdo" not in html


def test_plain_text_reads_as_a_letter() -> None:
    text = render_text(build_context("edition_fr.json", "fr"))
    assert text.startswith("La Lettre Hebdo · N° 12\n\nIntelligence & Société\n======")
    assert "Semaine du 18 au 25 janvier 2025\nPar Paul Jorion et Jueun Ahn\n" in text
    assert "\nSYNTHÈSE\n========\n" in text
    assert "\nNOUVELLES\n=========\n" in text
    assert "Lire plus ? France Info : https://www.francetvinfo.fr/" in text
    assert "Oui, beaucoup : " + URLS["feedback_yes"] in text
    assert "Se désabonner : " + URLS["unsubscribe"] in text
    assert "\nÀ LIRE ÉGALEMENT\n================\n" in text
    assert "&amp;" not in text
    assert "&#39;" not in text
    assert "None" not in text
    assert "\n\n\n\n" not in text


def test_plain_text_archive_copy_omits_personal_links() -> None:
    text = render_text(build_context("edition_fr.json", "fr", ARCHIVE_URLS, greeting=""))
    assert "None" not in text
    assert "Se désabonner" not in text
    assert "AVEZ-VOUS APPRÉCIÉ" not in text


def test_subject_is_the_edition_subject() -> None:
    subject = render_text(build_context("edition_en.json", "en"), "subject.txt")
    assert subject.strip() == "DeepSeek shakes the markets, OpenAI answers, Europe sets limits"


def test_english_plain_text_spells_source_links_in_angle_brackets() -> None:
    text = render_text(build_context("edition_en.json", "en"))
    assert "Week of 25 January \u2013 1 February 2025\nBy Hannah Mercer and David Okafor\n" in text
    assert "Read more: Reuters <https://www.reuters.com/" in text
    assert "Unsubscribe: " + URLS["unsubscribe"] in text
