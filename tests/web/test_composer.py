"""The composer: editors write an edition in the browser, and paste drafts into one.

Every request goes through the real app (CSRF on, a logged-in editor) against a
migrated database (SQLite; the saves that lock the row also on PostgreSQL); what was
saved is read back with a separate, short session.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import MultiDict

from service.config import Settings
from service.editions import store
from service.editions.drafts import parse_draft
from service.mail.render import RenderedEdition, render_edition
from service.models import Edition, EditionStatus, Newsletter
from service.team import editors
from tests import factories

DRAFT = Path(__file__).parents[1] / "fixtures" / "draft_fr.txt"
PASSWORD = "un mot de passe solide"

Fields = list[tuple[str, str]]


class _ComposerForm(HTMLParser):
    """The named fields of the page's composer form, in page order, as a browser sends them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: Fields = []
        self._in_form = False
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and "composer" in a.get("class", "").split():
            self._in_form = True
        if not self._in_form:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "textarea" and a.get("name"):
            self._textarea, self._text = a["name"], []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            # As browsers do (HTML spec): a newline right after <textarea> is not content.
            text = "".join(self._text)
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "form":
            self._in_form = False


class _Markup(HTMLParser):
    """Every start tag of a page, to look for script elements and dangerous attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def page_fields(html: str) -> Fields:
    """What submitting the composer form unchanged would send."""
    parser = _ComposerForm()
    parser.feed(html)
    return parser.fields


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on the page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def item_rows(fields: Fields) -> tuple[Fields, list[Fields]]:
    """Split the fields into the ones outside news items and one list per item."""
    other: Fields = []
    rows: list[Fields] = []
    for name, value in fields:
        if name.startswith("item_"):
            if name == "item_date":
                rows.append([])
            rows[-1].append((name, value))
        else:
            other.append((name, value))
    return other, rows


def set_field(fields: Fields, name: str, value: str) -> Fields:
    """The fields with the first one called `name` changed."""
    index = next(i for i, (n, _) in enumerate(fields) if n == name)
    return [*fields[:index], (name, value), *fields[index + 1 :]]


def item(title: str, body: str = "", **extra: str) -> Fields:
    """The fields of one news item card."""
    values = {
        "date": "2025-01-20",
        "title": title,
        "body": body,
        "source_name": "",
        "source_url": "",
        "image_url": "",
        "image_alt": "",
        "image_credit": "",
    } | extra
    return [(f"item_{k}", v) for k, v in values.items()]


def tag_problems(html: str, *, own_script: str = "/static/composer.js") -> list[str]:
    """Script elements, on* handlers and javascript: URLs that are not the app's own."""
    parser = _Markup()
    parser.feed(html)
    found = []
    for tag, attrs in parser.tags:
        if tag == "script" and attrs.get("src") != own_script:
            found.append(f"<script {attrs}>")
        found.extend(f"{tag} {name}=" for name in attrs if name.startswith("on"))
        found.extend(
            f"{tag} {name}={value}"
            for name, value in attrs.items()
            if name in ("href", "src", "action") and value.strip().lower().startswith("javascript")
        )
    return found


def stored_items(parsed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parsed items as the edition stores them (a missing source name is "")."""
    return [{**news, "source_name": news["source_name"] or ""} for news in parsed]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def letter(session: Session) -> Newsletter:
    """The French newsletter, committed."""
    found = factories.newsletter(session)
    session.commit()
    return found


@pytest.fixture
def draft(session: Session, letter: Newsletter) -> Edition:
    """A draft edition with the sample content, committed."""
    found = factories.edition(session, letter)
    session.commit()
    return found


@pytest.fixture
def editor(client: FlaskClient, session: Session) -> FlaskClient:
    """The client, logged in through the login form like an editor would."""
    # This editor reads English pages (else: the newsletter's language).
    editors.create(session, "redaction@hebdo.example", PASSWORD, name="Rédaction").language = "en"
    session.commit()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"csrf_token": token, "email": "redaction@hebdo.example", "password": PASSWORD},
    )
    assert response.status_code == 302
    return client


class Reader:
    """Reads what the app saved, each time in a short session of its own.

    On SQLite every transaction takes the write lock (BEGIN IMMEDIATE), so a test
    must never keep one open while the app handles a request.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def data(self, edition_id: int) -> dict[str, Any]:
        """The edition JSON as stored now."""
        with self.sessions() as fresh:
            found = fresh.get(Edition, edition_id)
            assert found is not None
            return store.to_data(found)

    def edition(self, edition_id: int) -> Edition:
        """The stored edition with its items and newsletter loaded, detached."""
        with self.sessions() as fresh:
            found = fresh.get(Edition, edition_id)
            assert found is not None
            _ = (found.items, found.newsletter)
            return found

    def count(self) -> int:
        """How many editions exist."""
        with self.sessions() as fresh:
            return len(fresh.scalars(select(Edition)).all())

    def rendered(self, edition_id: int, settings: Settings) -> RenderedEdition:
        """The email subscribers would get now."""
        with self.sessions() as fresh:
            found = fresh.get(Edition, edition_id)
            assert found is not None
            return render_edition(
                found,
                found.newsletter,
                base_url=settings.base_url,
                templates_path=settings.email_templates_path,
                personal=True,
            )


@pytest.fixture
def reader(sessions: sessionmaker[Session]) -> Reader:
    """Reads what the app saved."""
    return Reader(sessions)


def saved(reader: Reader, edition_id: int) -> dict[str, Any]:
    """The edition JSON as stored now."""
    return reader.data(edition_id)


def open_composer(client: FlaskClient, edition_id: int) -> tuple[str, Fields]:
    """The edit page and its form fields."""
    response = client.get(f"/compose/editions/{edition_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, page_fields(html)


# --- access and CSRF ----------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_login_page(client: FlaskClient, draft: Edition) -> None:
    for path in ["/compose/", f"/compose/editions/{draft.id}", "/compose/lettre/paste"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path

    token = csrf_token(client.get("/login").get_data(as_text=True))
    for path in [f"/compose/editions/{draft.id}", "/compose/lettre/new"]:
        response = client.post(path, data={"csrf_token": token, "title": "Intrus"})
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    # The page's script cannot follow a redirect: it gets a 401 it can explain.
    response = client.post(
        f"/compose/editions/{draft.id}/autosave",
        data={"title": "Intrus"},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 401
    assert "logged out" in response.get_json()["message"]
    assert draft.title != "Intrus"


def test_saving_without_the_csrf_token_is_refused(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)
    without_token = [(n, v) for n, v in fields if n != "csrf_token"]
    changed = set_field(without_token, "title", "Titre jamais enregistré")

    assert editor.post(f"/compose/editions/{draft.id}", data=MultiDict(changed)).status_code == 400
    assert (
        editor.post(f"/compose/editions/{draft.id}/autosave", data=MultiDict(changed)).status_code
        == 400
    )
    assert editor.post("/compose/markdown", json={"text": "**x**"}).status_code == 400
    assert saved(reader, draft.id) == before


def test_autosave_accepts_the_token_in_the_x_csrftoken_header(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    html, fields = open_composer(editor, draft.id)
    body = [(n, v) for n, v in fields if n != "csrf_token"]
    body = set_field(body, "preheader", "Un préheader écrit pendant l'autosave")

    response = editor.post(
        f"/compose/editions/{draft.id}/autosave",
        data=MultiDict(body),
        headers={"X-CSRFToken": csrf_token(html)},
    )

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["ok"] is True
    assert answer["size"]["label"].endswith("KB of 102 KB")
    assert answer["revision"] != dict(fields)["revision"]
    assert saved(reader, draft.id)["preheader"] == "Un préheader écrit pendant l'autosave"


# --- saving -------------------------------------------------------------------------------


def test_saving_an_unchanged_page_keeps_the_edition_as_it_was(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)

    response = editor.post(f"/compose/editions/{draft.id}", data=MultiDict(fields))

    assert response.status_code == 302
    assert saved(reader, draft.id) == before


def test_saving_the_form_stores_the_news_items_in_page_order(
    editor: FlaskClient, draft: Edition, reader: Reader, backend: str
) -> None:
    _, fields = open_composer(editor, draft.id)
    other, _ = item_rows(fields)
    news = [
        *item("Premier sujet", "Un corps **gras**.", source_name="Le Monde",
              source_url="https://www.lemonde.fr/a"),
        *item("Deuxième sujet", "### Sous-titre\n\n- un\n- deux", date="2025-01-22"),
        *item("Troisième sujet", "", image_url="https://images.example/x.png",
              image_alt="Un schéma", image_credit="Photo : rédaction"),
    ]  # fmt: skip

    response = editor.post(f"/compose/editions/{draft.id}", data=MultiDict(other + news))

    assert response.status_code == 302
    items = saved(reader, draft.id)["items"]
    assert [i["title"] for i in items] == ["Premier sujet", "Deuxième sujet", "Troisième sujet"]
    assert items[0]["source_url"] == "https://www.lemonde.fr/a"
    assert items[1]["date"] == "2025-01-22"
    assert items[1]["body"] == "### Sous-titre\n\n- un\n- deux"
    assert items[2]["image"] == {
        "url": "https://images.example/x.png",
        "alt": "Un schéma",
        "credit": "Photo : rédaction",
    }
    page = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved." in page


def test_textarea_line_endings_are_stored_as_plain_newlines(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    _, fields = open_composer(editor, draft.id)
    fields = set_field(fields, "synthesis", "# Titre\r\n\r\n## Partie\r\nTexte")

    editor.post(f"/compose/editions/{draft.id}", data=MultiDict(fields))

    assert saved(reader, draft.id)["synthesis"] == "# Titre\n\n## Partie\nTexte"


def test_moving_item_cards_reorders_the_saved_items_with_their_bodies(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    before = saved(reader, draft.id)["items"]
    _, fields = open_composer(editor, draft.id)
    other, rows = item_rows(fields)
    # What the script does in the page: the third card moves to the top.
    rows.insert(0, rows.pop(2))

    response = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(other + [f for r in rows for f in r])
    )

    assert response.status_code == 302
    after = saved(reader, draft.id)["items"]
    assert after == [before[2], before[0], before[1], *before[3:]]


def test_row_buttons_work_without_javascript_and_save_nothing_until_save(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)

    moved = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict([*fields, ("op", "item-up-1")])
    )

    assert moved.status_code == 200
    _, rows = item_rows(page_fields(moved.get_data(as_text=True)))
    titles = [dict(r)["item_title"] for r in rows]
    assert titles[:2] == [before["items"][1]["title"], before["items"][0]["title"]]
    assert "Not saved yet" in moved.get_data(as_text=True)
    assert saved(reader, draft.id) == before

    added = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict([*fields, ("op", "item-add")])
    )
    _, rows = item_rows(page_fields(added.get_data(as_text=True)))
    assert len(rows) == len(before["items"]) + 1
    assert dict(rows[-1])["item_title"] == ""


def test_a_refused_save_answers_422_and_shows_the_typed_text_again(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)
    other, rows = item_rows(fields)
    other = set_field(other, "synthesis", "# Ma synthèse\n\nUn paragraphe tapé à l'instant.")
    rows[1] = set_field(rows[1], "item_title", "")
    rows[1] = set_field(rows[1], "item_body", "Un corps écrit sans titre, à ne pas perdre.")

    response = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(other + [f for r in rows for f in r])
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "News item 2, title: required" in html
    assert "Un paragraphe tapé à l&#39;instant." in html
    assert "Un corps écrit sans titre, à ne pas perdre." in html
    # The page is the typed form, ready to be fixed and posted again.
    again_other, again_rows = item_rows(page_fields(html))
    assert dict(again_other)["synthesis"] == "# Ma synthèse\n\nUn paragraphe tapé à l'instant."
    assert dict(again_rows[1])["item_body"] == "Un corps écrit sans titre, à ne pas perdre."
    assert re.search(r'name="item_title" value=""[^>]*aria-invalid="true"', html)
    assert saved(reader, draft.id) == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("week_start", "2025-02-30", "week start: &#39;2025-02-30&#39; is not an ISO date"),
        ("title", "   ", "title: required"),
        ("image_url", "javascript:alert(1)", "image URL: only http:// and https://"),
    ],
)
def test_edition_rules_refuse_bad_fields(
    editor: FlaskClient, draft: Edition, reader: Reader, field: str, value: str, message: str
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)

    response = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(set_field(fields, field, value))
    )

    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert saved(reader, draft.id) == before


def test_autosave_reports_a_refusal_in_json_with_the_field(
    editor: FlaskClient, draft: Edition
) -> None:
    html, fields = open_composer(editor, draft.id)
    other, rows = item_rows(fields)
    rows[0] = set_field(rows[0], "item_date", "2025-13-01")

    response = editor.post(
        f"/compose/editions/{draft.id}/autosave",
        data=MultiDict(other + [f for r in rows for f in r]),
        headers={"X-CSRFToken": csrf_token(html)},
    )

    assert response.status_code == 422
    answer = response.get_json()
    assert answer["ok"] is False
    assert answer["error"]["where"] == "items[0].date"
    assert answer["message"].startswith("News item 1, date:")


def test_a_save_from_a_stale_page_is_refused_and_keeps_the_text(
    editor: FlaskClient, draft: Edition, reader: Reader, backend: str
) -> None:
    _, stale = open_composer(editor, draft.id)
    _, fresh = open_composer(editor, draft.id)
    editor.post(
        f"/compose/editions/{draft.id}",
        data=MultiDict(set_field(fresh, "subject", "Sujet enregistré dans l'autre onglet")),
    )

    response = editor.post(
        f"/compose/editions/{draft.id}",
        data=MultiDict(set_field(stale, "subject", "Sujet de l'onglet resté ouvert")),
    )

    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "saved elsewhere" in html
    assert "Sujet de l&#39;onglet resté ouvert" in html
    assert saved(reader, draft.id)["subject"] == "Sujet enregistré dans l'autre onglet"
    # Saving the page it got back is a deliberate overwrite.
    overwrite = editor.post(f"/compose/editions/{draft.id}", data=MultiDict(page_fields(html)))
    assert overwrite.status_code == 302
    assert saved(reader, draft.id)["subject"] == "Sujet de l'onglet resté ouvert"


def test_an_edition_that_has_started_sending_is_read_only(
    editor: FlaskClient, draft: Edition, session: Session, reader: Reader
) -> None:
    _, fields = open_composer(editor, draft.id)
    draft.status = EditionStatus.SENT
    session.commit()
    before = saved(reader, draft.id)

    html, _ = open_composer(editor, draft.id)
    assert '<fieldset class="plain" disabled>' in html
    assert 'value="save"' not in html
    assert "composer.js" not in html
    assert "can no longer change" in html

    response = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(set_field(fields, "title", "Trop tard"))
    )
    assert response.status_code == 409
    assert saved(reader, draft.id) == before


def test_new_edition_starts_a_draft_with_the_next_number_and_the_last_authors(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    index = editor.get("/compose/").get_data(as_text=True)
    assert str(escape(draft.subject)) in index

    response = editor.post("/compose/lettre/new", data={"csrf_token": csrf_token(index)})

    assert response.status_code == 302
    new_id = int(response.headers["Location"].rsplit("/", 1)[1])
    created = reader.edition(new_id)
    assert created.number == draft.number + 1
    assert created.status == EditionStatus.DRAFT
    assert created.authors == draft.authors
    assert created.week_start is not None
    assert created.week_end is not None
    assert (created.week_end - created.week_start).days == 7
    assert created.items == []


# --- size budget --------------------------------------------------------------------------


def _with_body(fields: Fields, body: str) -> Fields:
    other, rows = item_rows(fields)
    rows[0] = set_field(rows[0], "item_body", body)
    return other + [f for r in rows for f in r]


def _paragraphs(kilobytes: int) -> str:
    sentence = "Une phrase d'essai qui remplit la lettre pour mesurer son poids. "
    paragraph = sentence * 8
    count = kilobytes * 1024 // len(paragraph.encode()) + 1
    return "\n\n".join([paragraph] * count)


def test_the_size_indicator_shows_the_html_part_against_gmails_limit(
    editor: FlaskClient, draft: Edition, settings: Settings, reader: Reader
) -> None:
    html, _ = open_composer(editor, draft.id)
    expected = reader.rendered(draft.id, settings)
    kb = -(-len(expected.html.encode()) // 1024)
    assert f"{kb} KB of 102 KB" in html
    assert 'class="size ok"' in html


@pytest.mark.parametrize(("extra_kb", "level"), [(45, "warn"), (70, "over")])
def test_the_size_indicator_warns_near_and_past_the_limit(
    editor: FlaskClient, draft: Edition, extra_kb: int, level: str
) -> None:
    html, fields = open_composer(editor, draft.id)
    grown = _with_body(fields, _paragraphs(extra_kb))

    saved_page = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(grown), follow_redirects=True
    ).get_data(as_text=True)
    autosave = editor.post(
        f"/compose/editions/{draft.id}/autosave",
        data=MultiDict([(n, v) for n, v in page_fields(saved_page) if n != "csrf_token"]),
        headers={"X-CSRFToken": csrf_token(html)},
    ).get_json()

    assert f'class="size {level}"' in saved_page
    assert autosave["size"]["level"] == level
    assert autosave["size"]["bytes"] > 90 * 1024
    if level == "over":
        assert "Gmail will clip this edition" in saved_page


# --- hostile content ----------------------------------------------------------------------

HOSTILE_BODY = (
    "Avant <script>alert('corps')</script> après.\n\n"
    '<img src="x" onerror="alert(\'img\')">\n\n'
    "[un lien piégé](javascript:alert('lien')) et [un vrai](https://example.org/ok)\n\n"
    '<a href="javascript:alert(1)" onclick="alert(2)">brut</a>'
)


def test_script_in_editor_content_never_reaches_the_page_or_the_email_unescaped(
    editor: FlaskClient, draft: Edition, settings: Settings, reader: Reader
) -> None:
    html, fields = open_composer(editor, draft.id)
    other, rows = item_rows(fields)
    other = set_field(other, "title", "Titre <script>alert('titre')</script>")
    other = set_field(other, "synthesis", HOSTILE_BODY)
    rows[0] = set_field(rows[0], "item_title", '<img src=x onerror="alert(1)">')
    rows[0] = set_field(rows[0], "item_body", HOSTILE_BODY)
    rows[0] = set_field(rows[0], "item_source_name", "<script>alert('source')</script>")

    response = editor.post(
        f"/compose/editions/{draft.id}",
        data=MultiDict(other + [f for r in rows for f in r]),
        follow_redirects=True,
    )

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert tag_problems(page) == []
    assert "&lt;script&gt;alert(&#39;corps&#39;)&lt;/script&gt;" in page
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")

    email = reader.rendered(draft.id, settings)
    assert tag_problems(email.html) == []
    assert "<script" not in email.html
    # Raw HTML and the refused link stay visible as text, never as markup.
    assert '&lt;a href="javascript:alert(1)" onclick="alert(2)"&gt;' in email.html
    assert "https://example.org/ok" in email.tracked_links

    preview = editor.post(
        "/compose/markdown", json={"text": HOSTILE_BODY}, headers={"X-CSRFToken": csrf_token(html)}
    ).get_json()["html"]
    assert tag_problems(preview) == []
    assert '<a href="https://example.org/ok"' in preview


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("item_source_url", "javascript:alert(document.cookie)"),
        ("item_source_url", "data:text/html,<script>alert(1)</script>"),
        ("item_image_url", "javascript:alert(1)"),
        ("related_url", " JavaScript:alert(1)"),
    ],
)
def test_links_other_than_http_are_refused(
    editor: FlaskClient, draft: Edition, reader: Reader, field: str, url: str
) -> None:
    before = saved(reader, draft.id)
    _, fields = open_composer(editor, draft.id)

    response = editor.post(
        f"/compose/editions/{draft.id}", data=MultiDict(set_field(fields, field, url))
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "only http:// and https://" in html
    assert tag_problems(html) == []
    assert saved(reader, draft.id) == before


# --- paste a draft ------------------------------------------------------------------------


def test_pasting_a_draft_shows_every_item_and_every_line_left_out(
    editor: FlaskClient, letter: Newsletter
) -> None:
    text = DRAFT.read_text("utf-8")
    parsed = parse_draft(text, language="fr")
    page = editor.get("/compose/lettre/paste").get_data(as_text=True)

    response = editor.post(
        "/compose/lettre/paste", data={"csrf_token": csrf_token(page), "draft": text}
    )

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert len(parsed.edition["items"]) >= 6
    assert f'<span id="item-total">{len(parsed.edition["items"])}</span> news items' in html
    for news in parsed.edition["items"]:
        assert str(escape(news["title"])) in html
        assert (news["date"] or "—") in html
        assert str(escape(news["source_name"] or "—")) in html
    assert parsed.problems, "the fixture has lines the parser cannot place"
    assert f"{len(parsed.problems)} lines not placed" in html
    for problem in parsed.problems:
        assert f'data-line="{problem.line}"' in html
        assert str(escape(problem.text)) in html
        assert str(escape(problem.reason)) in html
    # The pasted text stays in the box, to fix and read again.
    assert str(escape(text.strip()))[:200] in html


def test_creating_from_a_pasted_draft_stores_what_the_parser_read(
    editor: FlaskClient, letter: Newsletter, reader: Reader
) -> None:
    text = DRAFT.read_text("utf-8")
    page = editor.get("/compose/lettre/paste").get_data(as_text=True)
    token = csrf_token(page)
    review = editor.post("/compose/lettre/paste", data={"csrf_token": token, "draft": text})
    reviewed = re.search(r'name="reviewed" value="([^"]+)"', review.get_data(as_text=True))
    assert reviewed

    response = editor.post(
        "/compose/lettre/paste",
        data={"csrf_token": token, "draft": text, "reviewed": reviewed.group(1), "op": "create"},
    )

    assert response.status_code == 302
    edition_id = int(response.headers["Location"].rsplit("/", 1)[1])
    expected = parse_draft(text, language="fr").edition
    stored = saved(reader, edition_id)
    assert stored["items"] == stored_items(expected["items"])
    assert stored["title"] == expected["title"]
    assert (stored["week_start"], stored["week_end"]) == ("2024-12-28", "2025-01-04")
    assert stored["related"] == expected["related"]
    follow = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{len(expected['items'])} news items" in follow


def test_creating_from_a_draft_changed_since_its_review_asks_for_a_new_review(
    editor: FlaskClient, letter: Newsletter, reader: Reader
) -> None:
    text = DRAFT.read_text("utf-8")
    token = csrf_token(editor.get("/compose/lettre/paste").get_data(as_text=True))
    review = editor.post("/compose/lettre/paste", data={"csrf_token": token, "draft": text})
    reviewed = re.search(r'name="reviewed" value="([^"]+)"', review.get_data(as_text=True))
    assert reviewed

    response = editor.post(
        "/compose/lettre/paste",
        data={
            "csrf_token": token,
            "draft": text + "\n\nUne ligne ajoutée après la relecture",
            "reviewed": reviewed.group(1),
            "op": "create",
        },
    )

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "changed since the last review" in html
    assert "Une ligne ajoutée après la relecture" in html
    assert reader.count() == 0


def test_pasting_into_a_draft_replaces_its_content(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    text = DRAFT.read_text("utf-8")
    token = csrf_token(editor.get(f"/compose/editions/{draft.id}/paste").get_data(as_text=True))
    review = editor.post(
        f"/compose/editions/{draft.id}/paste", data={"csrf_token": token, "draft": text}
    )
    assert f"Replace edition {draft.number} with this" in review.get_data(as_text=True)
    reviewed = re.search(r'name="reviewed" value="([^"]+)"', review.get_data(as_text=True))
    assert reviewed

    response = editor.post(
        f"/compose/editions/{draft.id}/paste",
        data={"csrf_token": token, "draft": text, "reviewed": reviewed.group(1), "op": "create"},
    )

    assert response.headers["Location"].endswith(f"/compose/editions/{draft.id}")
    assert saved(reader, draft.id)["items"] == stored_items(parse_draft(text).edition["items"])
    assert reader.count() == 1


def test_a_draft_that_cannot_become_an_edition_is_refused_with_the_text_kept(
    editor: FlaskClient, letter: Newsletter, reader: Reader
) -> None:
    text = "NOUVELLES\n\nUn sujet\n\nLe 3 janvier 2025\n\nLire plus ? [piège](javascript:alert(1))"
    token = csrf_token(editor.get("/compose/lettre/paste").get_data(as_text=True))
    review = editor.post("/compose/lettre/paste", data={"csrf_token": token, "draft": text})
    reviewed = re.search(r'name="reviewed" value="([^"]+)"', review.get_data(as_text=True))
    assert reviewed
    assert tag_problems(review.get_data(as_text=True)) == []

    response = editor.post(
        "/compose/lettre/paste",
        data={"csrf_token": token, "draft": text, "reviewed": reviewed.group(1), "op": "create"},
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "cannot become an edition" in html
    assert str(escape(text)) in html
    assert reader.count() == 0


def test_a_pasted_draft_with_a_related_read_without_link_is_refused_like_a_save(
    editor: FlaskClient, letter: Newsletter, reader: Reader
) -> None:
    # The related-reads rule lives in the edition document now, so paste enforces it too.
    text = "Ma lettre\n\nÀ lire également\n\nUn article sans lien\n"
    token = csrf_token(editor.get("/compose/lettre/paste").get_data(as_text=True))
    review = editor.post("/compose/lettre/paste", data={"csrf_token": token, "draft": text})
    reviewed = re.search(r'name="reviewed" value="([^"]+)"', review.get_data(as_text=True))
    assert reviewed

    response = editor.post(
        "/compose/lettre/paste",
        data={"csrf_token": token, "draft": text, "reviewed": reviewed.group(1), "op": "create"},
    )

    assert response.status_code == 422
    assert "Related read 1, URL: required" in response.get_data(as_text=True)
    assert reader.count() == 0


def test_a_save_past_the_bounds_names_the_field_and_keeps_the_text(
    editor: FlaskClient, draft: Edition, reader: Reader
) -> None:
    _, fields = open_composer(editor, draft.id)
    other, _ = item_rows(fields)
    many = [field for n in range(51) for field in item(f"Nouvelle {n}")]
    response = editor.post(f"/compose/editions/{draft.id}", data=MultiDict([*other, *many]))

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "at most 50 entries" in page
    assert "Nouvelle 50" in page
    assert saved(reader, draft.id)["items"] == store.to_data(draft)["items"]
