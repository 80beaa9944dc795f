"""The edition page in a real headless Chromium: live progress with an ETA, and its buttons."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Dialog, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, utcnow
from service.sending import controls
from service.team import editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in

EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"


@pytest.fixture
def edition_id(sessions: sessionmaker[Session], settings: Settings) -> int:
    """An edition half-way through its send: 4 of 10 messages out in the last 20 seconds."""
    now = utcnow()
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        letter = factories.newsletter(session)
        factories.readers(session, letter, 10)
        edition = factories.edition(session, letter)
        controls.begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=settings.batch_size,
            now=now - timedelta(seconds=20),
        )
        first_four = select(Delivery.id).order_by(Delivery.id).limit(4).scalar_subquery()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(first_four))
            .values(status=DeliveryStatus.SENT, sent_at=now - timedelta(seconds=5))
        )
        return edition.id


def _status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    with sessions() as session:
        status = session.scalar(select(Edition.status).where(Edition.id == edition_id))
        assert status is not None
        return status


@pytest.mark.browser
def test_editor_watches_the_send_pauses_it_sees_it_resumed_elsewhere_and_cancels_it(
    browser: Browser, base_url: str, sessions: sessionmaker[Session], edition_id: int
) -> None:
    page = browser.new_page()
    log_in(page, base_url, EDITOR, PASSWORD, f"/editions/{edition_id}")

    expect(page.locator("#status")).to_have_text("sending")
    expect(page.locator("#counts")).to_contain_text("4 sent · 6 queued")
    # Four messages in the twenty-odd seconds since the start: six more take half a minute or so.
    expect(page.locator("#eta")).to_have_text(
        re.compile(r"About [34]\d s left at 0\.\d+ messages/s\.")
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "edition-sending.png"), full_page=True)

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_have_text("paused")
    expect(page.get_by_role("status")).to_have_text("Paused: 4 sent, 6 left.")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    assert _status(sessions, edition_id) == EditionStatus.PAUSED

    # Someone resumes it from the command line: the open page follows within seconds.
    with sessions.begin() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        controls.resume(session, edition, batch_size=500)
    expect(page.get_by_role("button", name="Pause")).to_be_visible(timeout=10_000)
    expect(page.locator("#status")).to_have_text("sending")

    # Cancelling asks first; saying no changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Cancel sending").click()
    assert _status(sessions, edition_id) == EditionStatus.SENDING

    def accept(dialog: Dialog) -> None:
        assert "never go out" in dialog.message
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Cancel sending").click()
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#counts")).to_contain_text("4 sent · 0 queued · 0 failed · 6 cancelled")
    expect(page.get_by_role("button", name="Cancel sending")).to_have_count(0)
    assert _status(sessions, edition_id) == EditionStatus.CANCELLED
    page.screenshot(path=str(ARTIFACTS / "edition-cancelled.png"), full_page=True)
