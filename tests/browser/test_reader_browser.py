"""A reader in headless Chromium, on a phone-sized screen: sign up, confirm from the
message the SMTP server received, change preferences, unsubscribe.

The app runs on a real HTTP server whose address is its BASE_URL, so the link in the
confirmation message leads back to it. Screenshots go to test-artifacts/reader-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db import make_engine, session_factory
from service.models import Subscriber, Subscription, SubscriptionStatus
from tests import factories
from tests.support.browser import ARTIFACTS
from tests.support.smtp import RecordingSmtpServer

PHONE: ViewportSize = {"width": 390, "height": 844}
EMAIL = "jeanne.moreau@exemple.fr"


@pytest.fixture
def db(site: tuple[str, Settings]) -> Iterator[sessionmaker[Session]]:
    """Sessions on the served app's database."""
    engine = make_engine(site[1].database_url)
    yield session_factory(engine)
    engine.dispose()


def _subscription(db: sessionmaker[Session]) -> tuple[Subscription, Subscriber]:
    with db() as session:
        row = session.execute(
            select(Subscription, Subscriber).join(Subscriber).where(Subscriber.email == EMAIL)
        ).one()
        return row[0], row[1]


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reader-{name}.png"), full_page=True)


@pytest.mark.browser
def test_reader_signs_up_confirms_changes_preferences_and_unsubscribes(
    site: tuple[str, Settings],
    db: sessionmaker[Session],
    browser: Browser,
    smtp_server: RecordingSmtpServer,
) -> None:
    base_url, _settings = site
    with db.begin() as session:
        factories.newsletter(session)
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="fr-FR"
    )
    page = context.new_page()

    # Sign up through the public page.
    page.goto(f"{base_url}/n/lettre/subscribe")
    expect(page.get_by_role("heading", level=1)).to_have_text("S'abonner à Intelligence & Société")
    _shot(page, "1-signup")
    page.get_by_label("Adresse e-mail").fill("Jeanne.Moreau@Exemple.fr")
    page.get_by_label("Prénom").fill("Jeanne")
    page.get_by_role("button", name="S'abonner").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Regardez votre boîte de réception")
    _shot(page, "2-check-inbox")
    subscription, subscriber = _subscription(db)
    assert subscription.status is SubscriptionStatus.PENDING
    assert subscription.consent_ip == "127.0.0.1"
    assert "Chrom" in (subscription.consent_user_agent or "")
    assert subscriber.name == "Jeanne"

    # The confirmation message, as the SMTP server received it.
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == (EMAIL,)
    message = received.parsed()
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    (link,) = re.findall(rf"{re.escape(base_url)}/n/lettre/confirm/\S+", text.get_content())
    mail = context.new_page()
    mail.set_content(html.get_content())
    _shot(mail, "0-confirmation-email")
    mail.close()

    # Following the link asks for one click, which confirms.
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirmez votre abonnement")
    assert _subscription(db)[0].status is SubscriptionStatus.PENDING
    _shot(page, "3-confirm")
    page.get_by_role("button", name="Je confirme mon abonnement").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Abonnement confirmé")
    expect(page.get_by_role("status")).to_contain_text("Bienvenue")
    _shot(page, "4-confirmed")
    assert _subscription(db)[0].status is SubscriptionStatus.CONFIRMED

    # The preference centre: change the name.
    page.get_by_role("link", name="Gérer mes préférences").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Vos préférences")
    expect(page.get_by_text(f"Pour {EMAIL}")).to_be_visible()
    expect(page.get_by_role("checkbox", name=re.compile("Intelligence & Société"))).to_be_checked()
    _shot(page, "5-preferences")
    page.get_by_label("Prénom").fill("Jeanne M.")
    page.get_by_role("button", name="Enregistrer mes préférences").click()
    expect(page.get_by_role("status")).to_have_text("Vos préférences sont enregistrées.")
    expect(page.get_by_label("Prénom")).to_have_value("Jeanne M.")
    assert _subscription(db)[1].name == "Jeanne M."
    assert _subscription(db)[0].status is SubscriptionStatus.CONFIRMED

    # Unsubscribe, with a reason.
    page.get_by_label("Pourquoi partez-vous ?").fill("Je manque de temps pour lire.")
    page.get_by_role("button", name="Se désabonner").click()
    expect(page.get_by_role("status")).to_have_text("Vous êtes désabonné·e, avec effet immédiat.")
    expect(page.get_by_role("heading", name="Vous avez changé d'avis ?")).to_be_visible()
    expect(
        page.get_by_role("checkbox", name=re.compile("Intelligence & Société"))
    ).not_to_be_checked()
    _shot(page, "6-unsubscribed")
    subscription, _ = _subscription(db)
    assert subscription.status is SubscriptionStatus.UNSUBSCRIBED
    assert subscription.unsubscribe_reason == "Je manque de temps pour lire."
    context.close()
