"""The subscriber list in a real headless Chromium: search, select rows, bulk-tag them."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscribers, subscriptions
from service.config import Settings
from service.models import Delivery, Subscriber, SubscriberStatus
from service.sending.controls import begin
from service.team import editors
from service.tracking import events
from tests import factories
from tests.support.browser import ARTIFACTS, log_in

EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
PEOPLE = [
    ("amelie.roux@exemple.fr", "Amélie Roux", "lettre", True),
    ("bastien.morel@exemple.fr", "Bastien Morel", "lettre", False),
    ("chloe.petit@autre.org", "Chloé Petit", "lettre", True),
    ("damien.roussel@autre.org", "Damien Roussel", "weekly", True),
    ("elsa.garnier@exemple.fr", "Elsa Garnier", "lettre", True),
    ("farid.haddad@exemple.fr", "Farid Haddad", "weekly", False),
    ("gaelle.lambert@exemple.fr", "Gaëlle Lambert", "lettre", True),
    ("hugo.fontaine@exemple.fr", "Hugo Fontaine", "lettre", True),
]


@pytest.fixture
def readers(sessions: sessionmaker[Session], settings: Settings) -> None:
    """An editor, two newsletters, readers in different states, one edition queued."""
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        letters = {
            "lettre": factories.newsletter(session, "lettre"),
            "weekly": factories.newsletter(session, "weekly", language="en"),
        }
        for email, name, slug, confirmed in PEOPLE:
            person = subscriptions.find_or_create_subscriber(session, email, name)
            subscriptions.subscribe(
                session, letters[slug], person, confirmed=confirmed, source="formulaire"
            )
            if email.startswith("farid"):
                person.status = SubscriberStatus.BOUNCED
        ids = [p.id for p in session.query(Subscriber).filter(Subscriber.email.like("%autre%"))]
        subscribers.tag(session, ids, "partenaires")
        edition = factories.edition(session, letters["lettre"])
        begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=50,
        )
        for delivery in session.scalars(select(Delivery).where(Delivery.email.like("amelie%"))):
            events.record_open(session, delivery.id)
            events.record_click(session, delivery.id, 0)
            events.record_feedback(session, delivery.id, liked=True)


def _log_in(page: Page, base_url: str) -> None:
    log_in(page, base_url, EDITOR, PASSWORD, "/subscribers/")
    expect(page.locator("h1")).to_have_text("Subscribers")


@pytest.mark.browser
def test_editor_searches_selects_two_rows_and_tags_them(
    browser: Browser, base_url: str, readers: None
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url)
    expect(page.locator("a.sb-email")).to_have_count(len(PEOPLE))

    page.fill("#q", "rou")
    page.click("text=Filter")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("a.sb-email")).to_have_text(
        ["damien.roussel@autre.org", "amelie.roux@exemple.fr"]
    )

    page.check("input[aria-label='Select amelie.roux@exemple.fr']")
    page.check("input[aria-label='Select damien.roussel@autre.org']")
    expect(page.locator("#scope option").first).to_have_text("selected rows (2)")
    page.select_option("#action", "tag")
    expect(page.locator("#bulk-tag")).to_be_visible()
    page.fill("#bulk-tag", "salon du livre")
    page.click("#bulk button[type=submit]")

    expect(page.locator(".sb-flash.ok")).to_have_text("Tagged 2 subscribers “salon du livre”.")
    expect(page.locator("#q")).to_have_value("rou")  # back on the list the editor was on
    for email in ("amelie.roux@exemple.fr", "damien.roussel@autre.org"):
        row = page.locator("tbody tr", has=page.locator(f"text={email}"))
        expect(row.locator(".sb-tag", has_text="salon du livre")).to_be_visible()

    page.goto(f"{base_url}/subscribers/")
    expect(page.locator(".sb-tag", has_text="salon du livre")).to_have_count(2)
    page.check("input[aria-label='Select chloe.petit@autre.org']")
    page.check("input[aria-label='Select elsa.garnier@exemple.fr']")
    page.screenshot(path=str(ARTIFACTS / "subscribers.png"), full_page=True)

    page.click("text=amelie.roux@exemple.fr")
    expect(page.locator("h1")).to_have_text("amelie.roux@exemple.fr")
    expect(page.locator(".sb-tag-editor")).to_contain_text("salon du livre")
    expect(page.locator("text=Deliveries (1)")).to_be_visible()
    expect(page.locator(".badge.sb-b-click")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "subscriber-detail.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_editor_uploads_a_csv_and_reads_the_rejected_lines(
    browser: Browser, base_url: str, readers: None, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    upload = tmp_path / "contacts.csv"
    upload.write_text(
        "courriel;prénom;nom;ville\n"
        "iris.mercier@exemple.fr;Iris;Mercier;Rennes\n"
        "pas-une-adresse;Jules;Vidal;Brest\n"
        "IRIS.MERCIER@exemple.fr;Iris;Mercier;Rennes\n"
        "jules@;Jules;Vidal;Brest\n",
        encoding="utf-8",
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _log_in(page, base_url)

    page.click("text=Import CSV")
    page.select_option("#newsletter", "lettre")
    page.set_input_files("#file", str(upload))
    page.screenshot(path=str(ARTIFACTS / "subscribers-import-form.png"), full_page=True)
    page.click("button:has-text('Import')")

    expect(page.locator("h1")).to_have_text("Import into Intelligence & Société")
    expect(page.locator(".sb-import-line")).to_have_text(["4 rows read…"])
    expect(page.locator(".sb-import-bar")).to_be_hidden()  # the report has arrived
    rejected = page.locator("table.sb-rejected tbody tr")
    expect(rejected).to_have_count(2)
    expect(rejected.nth(0).locator("td").first).to_have_text("3")
    expect(rejected.nth(1).locator("td").first).to_have_text("5")
    page.screenshot(path=str(ARTIFACTS / "subscribers-import.png"), full_page=True)

    page.click("text=See the subscribers")
    expect(page.locator("a.sb-email", has_text="iris.mercier@exemple.fr")).to_have_count(1)
    page.close()
