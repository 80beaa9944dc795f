"""The composer in a real headless Chromium: rows move, autosave keeps the text, drafts paste."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from service.editions import store
from service.models import Edition
from service.team import editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in

DRAFT = Path(__file__).resolve().parents[1] / "fixtures" / "draft_fr.txt"
EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"


@pytest.fixture
def edition_id(sessions: sessionmaker[Session]) -> int:
    """A draft with the sample content, and an editor to write it."""
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        letter = factories.newsletter(session)
        return factories.edition(session, letter).id


def _stored(sessions: sessionmaker[Session], edition_id: int) -> dict[str, object]:
    with sessions() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        return store.to_data(found)


def _log_in(page: Page, base_url: str, next_path: str) -> None:
    log_in(page, base_url, EDITOR, PASSWORD, next_path)


def _autosave_after(page: Page, seconds: int) -> None:
    # The page reads its autosave delay from the form on every tick; 20 s is too slow for a test.
    page.locator("form[data-composer]").evaluate(
        f"form => {{ form.dataset.autosaveSeconds = '{seconds}'; }}"
    )


@pytest.mark.browser
def test_editor_adds_an_item_moves_it_up_and_autosave_keeps_it_after_reload(
    browser: Browser, base_url: str, sessions: sessionmaker[Session], edition_id: int
) -> None:
    before = _stored(sessions, edition_id)["items"]
    assert isinstance(before, list)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url, f"/compose/editions/{edition_id}")
    cards = page.locator("#items [data-row=item]")
    expect(cards).to_have_count(len(before))
    expect(page.locator("#size-label")).to_contain_text("KB of 102 KB")
    _autosave_after(page, 1)

    page.get_by_role("button", name="+ Add a news item").click()
    expect(cards).to_have_count(len(before) + 1)
    new_card = cards.nth(len(before))
    new_card.get_by_role("button", name="Move this item up").click()
    moved = cards.nth(len(before) - 1)
    expect(moved.locator(".row-number")).to_have_text(str(len(before)))
    moved.locator("input[name=item_date]").fill("2025-01-24")
    moved.locator("input[name=item_title]").fill("Une nouvelle ajoutée dans le navigateur")
    moved.locator("textarea[name=item_body]").fill(
        "Un premier paragraphe **important**.\n\n### Un intertitre\n\n- un point\n- un autre"
    )
    moved.locator("input[name=item_source_name]").fill("La rédaction")
    moved.locator("input[name=item_source_url]").fill("https://exemple.fr/nouvelle")

    expect(page.locator("#save-status")).to_contain_text("Saved at", timeout=15_000)
    stored = _stored(sessions, edition_id)["items"]
    assert isinstance(stored, list)
    assert [i["title"] for i in stored] == [
        *[i["title"] for i in before[:-1]],
        "Une nouvelle ajoutée dans le navigateur",
        before[-1]["title"],
    ]

    # The preview is the server's sanitised HTML of what was typed.
    moved.get_by_role("button", name="Preview").click()
    expect(moved.locator(".md-preview strong")).to_have_text("important")
    expect(moved.locator(".md-preview h3")).to_have_text("Un intertitre")

    page.reload()
    cards = page.locator("#items [data-row=item]")
    expect(cards).to_have_count(len(before) + 1)
    again = cards.nth(len(before) - 1)
    expect(again.locator("input[name=item_title]")).to_have_value(
        "Une nouvelle ajoutée dans le navigateur"
    )
    expect(again.locator("input[name=item_date]")).to_have_value("2025-01-24")
    expect(again.locator("textarea[name=item_body]")).to_have_value(
        "Un premier paragraphe **important**.\n\n### Un intertitre\n\n- un point\n- un autre"
    )
    expect(cards.nth(len(before)).locator("input[name=item_title]")).to_have_value(
        before[-1]["title"]
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "composer.png"))
    page.screenshot(path=str(ARTIFACTS / "composer-full.png"), full_page=True)


@pytest.mark.browser
def test_autosave_refusal_names_the_field_and_keeps_what_was_typed(
    browser: Browser, base_url: str, sessions: sessionmaker[Session], edition_id: int
) -> None:
    before = _stored(sessions, edition_id)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url, f"/compose/editions/{edition_id}")
    _autosave_after(page, 1)
    second = page.locator("#items [data-row=item]").nth(1)

    second.locator("input[name=item_title]").fill("")
    second.locator("textarea[name=item_body]").fill("Un texte écrit sans titre, à garder.")

    expect(page.locator("#save-status")).to_contain_text(
        "Not saved: News item 2, title: required", timeout=15_000
    )
    expect(second.locator("input[name=item_title]")).to_have_attribute("aria-invalid", "true")
    expect(second.locator(".field-error")).to_have_text("required")
    expect(second.locator("textarea[name=item_body]")).to_have_value(
        "Un texte écrit sans titre, à garder."
    )
    assert _stored(sessions, edition_id) == before

    second.locator("input[name=item_title]").fill("Un titre, enfin")
    expect(page.locator("#save-status")).to_contain_text("Saved at", timeout=15_000)
    expect(second.locator("input[name=item_title]")).not_to_have_attribute("aria-invalid", "true")
    expect(second.locator(".field-error")).to_have_count(0)
    items = _stored(sessions, edition_id)["items"]
    assert isinstance(items, list)
    assert items[1]["title"] == "Un titre, enfin"
    assert items[1]["body"] == "Un texte écrit sans titre, à garder."


@pytest.mark.browser
def test_editor_pastes_a_draft_reviews_it_and_opens_the_new_edition(
    browser: Browser, base_url: str, edition_id: int
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url, "/compose/")
    page.get_by_role("link", name="Paste a draft").click()
    page.fill("#draft", DRAFT.read_text("utf-8"))
    page.get_by_role("button", name="Read the draft").click()

    expect(page.locator("#item-total")).to_have_text("6")
    expect(page.locator("table.problems tbody tr")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "composer-paste.png"), full_page=True)
    # A problem's line number shows that line in the pasted text.
    page.locator("a[data-line='57']").click()
    selected = page.locator("#draft").evaluate(
        "d => d.value.substring(d.selectionStart, d.selectionEnd)"
    )
    assert selected == "Partager cet article sur LinkedIn"

    page.get_by_role("button", name="Create the draft edition").click()
    expect(page.locator("#items [data-row=item]")).to_have_count(6)
    expect(page.get_by_role("status").first).to_contain_text("6 news items")


@pytest.mark.browser
def test_going_to_the_preview_saves_the_typed_text_first(
    browser: Browser, base_url: str, sessions: sessionmaker[Session], edition_id: int
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url, f"/compose/editions/{edition_id}")
    _autosave_after(page, 600)

    page.fill("input[name=subject]", "Un objet tapé juste avant l'aperçu")
    page.get_by_role("link", name="Preview and test send").click()

    page.wait_for_url(f"{base_url}/editions/{edition_id}/preview")
    assert _stored(sessions, edition_id)["subject"] == "Un objet tapé juste avant l'aperçu"
