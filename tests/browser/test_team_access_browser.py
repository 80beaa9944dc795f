"""A new site in headless Chromium, from the first admin to an invited editor with
two-step sign-in: the setup form from loopback, an invitation through the real SMTP
server, its welcome link, the authenticator's code at login. The two pages that need a
state the page walker cannot make (an empty site, a password just typed) are checked
here with axe-core and at 320 px.
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Editor, EditorRole
from service.team import editors
from tests.browser.test_every_page_browser import AXE_TAGS, OVERFLOW, _violations, axe_source
from tests.support.browser import log_in
from tests.support.smtp import RecordingSmtpServer

pytestmark = pytest.mark.browser

ADMIN = "premiere@exemple.fr"
EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
EDITOR_PASSWORD = "la-phrase-de-la-redaction"


def _checked(page: Page, where: str) -> list[str]:
    """axe-core's serious findings on the page, and whether it scrolls sideways at 320 px."""
    page.evaluate(axe_source())
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    problems = _violations(page.evaluate("o => axe.run(document, o)", options), where)
    size = page.viewport_size
    page.set_viewport_size({"width": 320, "height": 800})
    scroll_width, inner_width, culprits = page.evaluate(OVERFLOW)
    if scroll_width > inner_width:
        problems.append(f"{where}: {scroll_width} > {inner_width} px at 320 px: {culprits}")
    if size is not None:
        page.set_viewport_size(size)
    return problems


def test_first_admin_invites_an_editor_who_signs_in_with_two_steps(
    browser: Browser,
    base_url: str,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    problems: list[str] = []
    # An empty site, visited from this machine: the login page is the first admin's form.
    admin = browser.new_context()
    page = admin.new_page()
    page.goto(f"{base_url}/login")
    assert page.locator("h1").inner_text() == "Create the first administrator"
    problems += _checked(page, "/login (empty site)")
    page.fill("#email", ADMIN)
    page.fill("#name", "Première")
    page.fill("#new_password", PASSWORD)
    page.fill("#confirm_password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url == f"{base_url}/"

    # The admin invites an editor.
    page.goto(f"{base_url}/team/invite")
    page.fill("#email", EDITOR)
    page.fill("#name", "Rédaction")
    page.check("input[name=role][value=editor]")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert EDITOR in page.locator(".sb-flash.ok").inner_text()
    [received] = smtp_server.wait_for(1)
    text = received.parsed().get_body(("plain",))
    assert text is not None
    link = re.search(re.escape(base_url) + r"/welcome/[\w-]+", text.get_content())
    assert link is not None
    admin.close()

    # The invitee follows the link, chooses a password and logs in.
    invitee = browser.new_context()
    page = invitee.new_page()
    page.goto(link.group(0))
    page.fill("#new_password", EDITOR_PASSWORD)
    page.fill("#confirm_password", EDITOR_PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url.startswith(f"{base_url}/login")
    log_in(page, base_url, EDITOR, EDITOR_PASSWORD)

    # Two-step sign-in: the key from the page into an "authenticator", a code back.
    page.goto(f"{base_url}/account/")
    with page.expect_navigation():
        page.click("text=Turn on two-step sign-in")
    secret = page.locator("#totp-secret").inner_text().strip()
    assert page.locator("a[href^='otpauth://totp/']").count() == 1
    page.fill("#password", EDITOR_PASSWORD)
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.click("main button[type=submit]")
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    with page.expect_navigation():
        page.click("header form button[type=submit]")  # Log out

    # The password alone asks for the code; the next step's code opens the session.
    page.fill("#email", EDITOR)
    page.fill("#password", EDITOR_PASSWORD)
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert page.url == f"{base_url}/login/code"
    problems += _checked(page, "/login/code")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + 30))
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert page.url == f"{base_url}/"
    invitee.close()

    with sessions() as session:
        editor = session.scalar(select(Editor).where(Editor.email == EDITOR))
        assert editor is not None
        assert editor.role is EditorRole.EDITOR
        assert editor.totp_secret == secret
    assert not problems, "\n".join(problems)


def test_forgotten_password_from_the_login_page_to_a_new_one(
    browser: Browser,
    base_url: str,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        editors.create(session, EDITOR, EDITOR_PASSWORD)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base_url}/login")
    with page.expect_navigation():
        page.click("text=Forgot your password?")
    page.fill("#email", EDITOR)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "If an account exists" in page.locator("main").inner_text()
    # The served app mails once the answer has left (the server closes the response).
    [received] = smtp_server.wait_for(1)
    text = received.parsed().get_body(("plain",))
    assert text is not None
    link = re.search(re.escape(base_url) + r"/reset/[\w-]+", text.get_content())
    assert link is not None
    page.goto(link.group(0))
    page.fill("#new_password", PASSWORD)
    page.fill("#confirm_password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    log_in(page, base_url, EDITOR, PASSWORD)
    context.close()
