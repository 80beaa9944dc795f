"""The preview in a real headless Chromium, at phone (375 px) and desktop (1200 px) widths.

The app is served over HTTP on a free port with BASE_URL pointing at it, so the
email's images load from the app as they would from the real site. Screenshots
of the email at both widths are kept in test-artifacts/.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session, sessionmaker

from service.team import editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in

pytestmark = pytest.mark.browser

EDITOR = "redaction@exemple.fr"
PASSWORD = "une phrase de passe"
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture
def edition_id(sessions: sessionmaker[Session]) -> int:
    """An editor and the French sample edition, as a draft."""
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        edition = factories.edition(session, factories.newsletter(session))
        return edition.id


def _log_in(page: Page, base_url: str) -> None:
    log_in(page, base_url, EDITOR, PASSWORD)


@pytest.mark.parametrize("width", [375, 1200])
def test_preview_fits_the_width_and_shows_the_email(
    browser: Browser, base_url: str, edition_id: int, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    _log_in(page, base_url)

    response = page.goto(f"{base_url}/editions/{edition_id}/preview")
    assert response is not None
    assert response.ok
    assert page.evaluate(OVERFLOW) <= 0, "the preview page itself scrolls sideways"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"preview-page-{width}.png"))
    frame = page.locator(f"iframe.email-frame[width='{width}']")
    assert frame.count() == 1
    src = frame.get_attribute("src")
    assert src

    email = context.new_page()
    shown = email.goto(base_url + src)
    assert shown is not None
    assert shown.ok
    assert "sandbox" in shown.headers["content-security-policy"]
    email.wait_for_load_state("load")
    assert email.evaluate(OVERFLOW) <= 0, f"the email overflows horizontally at {width} px"
    assert "Bonjour Marie Exemple," in email.inner_text("body")
    hero = email.locator("img.hero")
    assert hero.evaluate("img => img.complete && img.naturalWidth") == 1200
    assert 0 < hero.bounding_box()["width"] <= min(width, 600)  # type: ignore[index]
    email.screenshot(path=str(ARTIFACTS / f"preview-{width}.png"), full_page=True)
    context.close()
