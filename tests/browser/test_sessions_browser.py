"""Logging out in a real headless Chromium ends the session on the server: a cookie saved
before, replayed in a fresh browser context, opens nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, BrowserContext, Cookie
from sqlalchemy.orm import Session, sessionmaker

from service.team import editors
from tests.support.browser import log_in

EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"


@pytest.fixture
def account(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"


def _replayed(browser: Browser, cookies: list[Cookie], base_url: str) -> str:
    """Where /subscribers/ lands in a fresh context holding only the saved cookies."""
    context = browser.new_context()
    try:
        context.add_cookies(cookies)  # type: ignore[arg-type]
        page = context.new_page()
        page.goto(f"{base_url}/subscribers/")
        return page.url.removeprefix(base_url)
    finally:
        context.close()


def _logged_in(browser: Browser, base_url: str) -> BrowserContext:
    context = browser.new_context()
    log_in(context.new_page(), base_url, EDITOR, PASSWORD)
    return context


@pytest.mark.browser
def test_a_cookie_saved_before_logout_no_longer_works(
    browser: Browser, base_url: str, account: None
) -> None:
    context = _logged_in(browser, base_url)
    page = context.pages[0]
    saved = context.cookies()
    assert [c["name"] for c in saved] == ["session"]
    assert _replayed(browser, saved, base_url) == "/subscribers/"

    with page.expect_navigation():
        page.click("header form button[type=submit]")  # Log out
    assert page.url.startswith(f"{base_url}/login")
    context.close()

    assert _replayed(browser, saved, base_url).startswith("/login?next=")


@pytest.mark.browser
def test_log_out_everywhere_ends_a_session_saved_in_another_browser(
    browser: Browser, base_url: str, account: None
) -> None:
    first = _logged_in(browser, base_url)
    saved = first.cookies()
    second = _logged_in(browser, base_url)
    page = second.pages[0]
    page.goto(f"{base_url}/account/")
    with page.expect_navigation():
        page.get_by_role("button", name="Log out everywhere").click()
    assert page.url.startswith(f"{base_url}/login")

    assert _replayed(browser, saved, base_url).startswith("/login?next=")
    first.pages[0].goto(f"{base_url}/subscribers/")
    assert first.pages[0].url.startswith(f"{base_url}/login")
    first.close()
    second.close()
