"""A team at work in headless Chromium, against a real worker with beat and SMTP server.

The admin invites an editor and a viewer by mail; the editor composes, schedules and the
beat sends; the viewer follows the edition to the end but every action they try is
refused and changes nothing; the admin finds all of it in the audit log. Screenshots of
the audit log go to test-artifacts/audit.png (the README shows docs/screenshots/audit.png).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import AuditEntry, Edition, EditionStatus, EditorRole
from service.team import editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in
from tests.support.smtp import RecordedMessage, RecordingSmtpServer
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.browser

ADMIN = "direction@exemple.fr"
EDITOR = "plume@exemple.fr"
VIEWER = "lecture@exemple.fr"
PASSWORD = "une-phrase-de-passe"
READERS = 5
TITLE = "Toute la rédaction en une semaine"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _welcome_link(message: RecordedMessage) -> str:
    body = message.parsed().get_body(("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/welcome/[\w-]+", body.get_content())
    assert found is not None, body.get_content()
    return found.group(0)


def _invite(page: Page, base_url: str, email: str, role: str) -> None:
    page.goto(f"{base_url}/team/invite")
    page.fill("#email", email)
    page.check(f"input[name=role][value={role}]")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    expect(page.locator(".sb-flash.ok")).to_contain_text(email)


def _join(browser: Browser, base_url: str, link: str, email: str) -> BrowserContext:
    """Follow the welcome link, choose a password, log in, read the pages in English."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(link)
    page.fill("#new_password", PASSWORD)
    page.fill("#confirm_password", PASSWORD)
    with page.expect_navigation():
        page.click("main button[type=submit]")
    log_in(page, base_url, email, PASSWORD)
    page.goto(f"{base_url}/?lang=en")
    return context


def _status(sessions: sessionmaker[Session], edition_id: int) -> EditionStatus:
    with sessions() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        return found.status


def test_admin_invites_an_editor_who_sends_and_a_viewer_who_can_only_watch(
    browser: Browser,
    base_url: str,
    env: dict[str, str],
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    tmp_path: Path,
) -> None:
    with sessions.begin() as session:
        editors.create(session, ADMIN, PASSWORD, role=EditorRole.ADMIN).language = "en"
        letter = factories.newsletter(session)
        factories.readers(session, letter, READERS)
        edition_id = factories.edition(session, letter).id
        zone = ZoneInfo(letter.timezone)

    admin = browser.new_context(viewport={"width": 1200, "height": 900})
    page = admin.new_page()
    log_in(page, base_url, ADMIN, PASSWORD)
    _invite(page, base_url, EDITOR, "editor")
    _invite(page, base_url, VIEWER, "viewer")
    invitations = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(2)}
    assert set(invitations) == {EDITOR, VIEWER}

    with WorkerProcess(env, tmp_path / "worker.log", beat=True):
        # The editor composes, then schedules for now: the beat starts the send.
        editor = _join(browser, base_url, _welcome_link(invitations[EDITOR]), EDITOR)
        page = editor.new_page()
        page.goto(f"{base_url}/compose/editions/{edition_id}")
        page.fill("input[name=title]", TITLE)
        with page.expect_navigation():
            page.click("#save")
        page.goto(f"{base_url}/editions/{edition_id}")
        now = datetime.now(zone).strftime("%Y-%m-%dT%H:%M")
        page.fill("#at", now)
        with page.expect_navigation():
            page.click(".schedule-form button[type=submit]")
        assert _status(sessions, edition_id) in {EditionStatus.SCHEDULED, EditionStatus.SENDING}
        delivered = smtp_server.wait_for(2 + READERS, timeout=90)
        assert sorted(m.rcpt_tos[0] for m in delivered[2:]) == [
            f"r{n}@example.org" for n in range(READERS)
        ]
        for message in delivered[2:]:
            text = message.parsed().get_body(("plain",))
            assert text is not None
            assert TITLE in text.get_content()  # what the editor typed went out

        # The viewer follows the edition to the end, and can do nothing to it.
        viewer = _join(browser, base_url, _welcome_link(invitations[VIEWER]), VIEWER)
        page = viewer.new_page()
        page.goto(f"{base_url}/editions/{edition_id}")
        expect(page.locator("#controls")).not_to_contain_text("Pause")
        expect(page.locator("form.schedule-form")).to_have_count(0)
        for _ in range(60):
            if _status(sessions, edition_id) is EditionStatus.SENT:
                break
            page.wait_for_timeout(500)
        page.reload()
        expect(page.locator("main")).to_contain_text(str(READERS))
        token = CSRF.search(page.content())
        assert token is not None
        form = {"csrf_token": token.group(1)}
        refused = {
            path: page.request.post(f"{base_url}{path}", form=form).status
            for path in (
                f"/editions/{edition_id}/schedule",
                f"/editions/{edition_id}/pause",
                f"/editions/{edition_id}/cancel",
                f"/compose/editions/{edition_id}",
                "/newsletters/lettre/settings",
                "/team/invite",
            )
        }
        assert refused == dict.fromkeys(refused, 403), refused
    assert _status(sessions, edition_id) is EditionStatus.SENT
    assert len(smtp_server.messages) == 2 + READERS

    # The admin sees who did what.
    page = admin.new_page()
    page.goto(f"{base_url}/audit/")
    rows = page.locator("#audit tbody tr")
    audit_rows = "\n".join(rows.all_inner_texts())
    for actor, action in [
        (ADMIN, "editor.invite"),
        (EDITOR, "editor.welcome"),
        (VIEWER, "editor.welcome"),
        (EDITOR, "login"),
        (VIEWER, "login"),
        (EDITOR, "edition.schedule"),
        ("scheduler", "edition.send"),
    ]:
        assert re.search(rf"{re.escape(actor)}\s+{re.escape(action)}\b", audit_rows), (
            actor,
            action,
        )
    with sessions() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert {"editor.invite", "editor.welcome", "edition.schedule", "edition.send"} <= actions
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit.png"))
    for context in (admin, editor, viewer):
        context.close()
