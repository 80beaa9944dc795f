"""The settings and suppressions pages in a real headless Chromium (screenshots for the README)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import suppressions
from service.models import EditorRole, Newsletter
from service.team import audit, editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in

ADMIN = "admin@exemple.fr"
PASSWORD = "une-phrase-de-passe"


@pytest.fixture
def site_data(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        editors.create(session, ADMIN, PASSWORD, role=EditorRole.ADMIN)  # no choice: French
        factories.newsletter(session)
        suppressions.add(session, "@spam.example", "domaine piège à spam", audit.Who.cli())
        suppressions.add(session, "ancien@example.org", "demandé par téléphone", audit.Who.cli())


@pytest.mark.browser
def test_an_admin_fixes_a_bad_time_zone_beside_its_field_then_saves(
    browser: Browser, base_url: str, sessions: sessionmaker[Session], site_data: None
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    log_in(page, base_url, ADMIN, PASSWORD, next_path="/newsletters/lettre/settings")
    expect(page.locator("html")).to_have_attribute("lang", "fr")  # the newsletter's language

    page.fill("#f-timezone", "Europe/Atlantide")
    page.click("button[type=submit] >> text=Enregistrer les réglages")
    field = page.locator("#f-timezone")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-timezone-error")).to_contain_text("fuseau horaire inconnu")

    field.fill("America/Montreal")
    page.select_option("#f-send_weekday", "sunday")
    page.click("button[type=submit] >> text=Enregistrer les réglages")
    expect(page.locator("p.alert.ok")).to_contain_text("Réglages enregistrés")
    page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)
    with sessions() as session:
        letter = session.scalars(select(Newsletter)).one()
        assert (letter.timezone, letter.send_weekday) == ("America/Montreal", 6)

    page.goto(f"{base_url}/suppressions/")
    expect(page.locator("#count")).to_contain_text("2 entrées")
    page.screenshot(path=str(ARTIFACTS / "suppressions.png"), full_page=True)
    page.goto(f"{base_url}/")
    expect(page.locator("#slot-lettre")).to_contain_text("Prochain créneau dimanche")
