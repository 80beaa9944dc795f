"""The results page in a real headless Chromium, after real requests to the served app.

Two editions go over SMTP to 30 readers; every URL is taken from the mail a reader
received and fetched over HTTP from the served app with the user agent of Apple's
proxy, Gmail's proxy, a link scanner or a person. Days are simulated by moving
each reader's stored times back (a test cannot wait a week). The page must show
the figures of `hebdo editions results --json`, three charts, and a table of
numbers under each.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.models import Delivery, Edition, Event, utcnow
from service.sending import loop
from service.team import editors
from tests import factories
from tests.support.browser import ARTIFACTS, log_in
from tests.support.smtp import RecordedMessage, RecordingSmtpServer

EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
APPLE = "Mozilla/5.0"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
READERS = 30
DAY = 86400.0


def _fetch(url: str, agent: str, method: str = "GET") -> None:
    """One request to the served app, as a mail client or scanner makes it (no proxy)."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, method=method, headers={"User-Agent": agent})  # noqa: S310 - http to the served app only (checked above)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None  # the click's target is out on the internet: stop at our 302

    opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))
    status = 0
    try:
        with opener.open(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status in (200, 302), (url, status)


def _urls(message: RecordedMessage, base_url: str, pattern: str) -> list[str]:
    part = message.parsed().get_body(("html",))
    assert part is not None
    found = re.findall(re.escape(base_url) + "(" + pattern + ")", html.unescape(part.get_content()))
    return [base_url + path for path in dict.fromkeys(found)]


def _send(
    sessions: sessionmaker[Session], settings: Settings, smtp: RecordingSmtpServer, edition_id: int
) -> dict[str, RecordedMessage]:
    smtp.clear()
    report = loop.send_pending(sessions, settings, edition_id)
    mail = {m.rcpt_tos[0]: m for m in smtp.wait_for(report.sent)}
    # The send started a week ago; each reader's message was accepted then.
    week = timedelta(days=7)
    with sessions.begin() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.send_started_at is not None
        edition.send_started_at -= week
        if edition.sent_at is not None:
            edition.sent_at -= week
        for delivery in session.scalars(select(Delivery).where(Delivery.edition_id == edition_id)):
            assert delivery.sent_at is not None
            delivery.sent_at -= week
    return mail


def _on_day(sessions: sessionmaker[Session], edition_id: int, address: str, day: float) -> None:
    """Move what reader `address` just did back to `day` days after the send started."""
    with sessions.begin() as session:
        delivery_id = session.scalars(
            select(Delivery.id).where(Delivery.edition_id == edition_id, Delivery.email == address)
        ).one()
        now = utcnow()
        for event in session.scalars(select(Event).where(Event.delivery_id == delivery_id)):
            if now - event.created_at < timedelta(minutes=5):
                event.created_at -= timedelta(seconds=(7 - day) * DAY)


def _readers_act(
    sessions: sessionmaker[Session],
    edition_id: int,
    mail: dict[str, RecordedMessage],
    base_url: str,
    opening: int,
) -> None:
    """Readers 0-5 behind Apple's proxy, 6-8 scanned, then `opening` people read, some click."""
    addresses = sorted(mail)
    for address in addresses[:6]:
        _fetch(_urls(mail[address], base_url, r"/o/[\w-]+\.gif")[0], APPLE)
    for address in addresses[6:9]:
        with sessions.begin() as session:  # the gateway scans as the message arrives
            session.execute(
                update(Delivery)
                .where(Delivery.edition_id == edition_id, Delivery.email == address)
                .values(sent_at=utcnow())
            )
        for url in _urls(mail[address], base_url, r"/c/[\w-]+/\d+"):
            _fetch(url, SCANNER, "HEAD")
            _fetch(url, SCANNER)
    for n, address in enumerate(addresses[9 : 9 + opening]):
        agent = GMAIL if n % 3 == 0 else PERSON
        _fetch(_urls(mail[address], base_url, r"/o/[\w-]+\.gif")[0], agent)
        clicks = _urls(mail[address], base_url, r"/c/[\w-]+/\d+")
        if n % 2 == 0:
            _fetch(clicks[n % 6], PERSON)
        if n % 5 == 0:
            _fetch(_urls(mail[address], base_url, r"/f/[\w-]+/yes")[0], PERSON)
        _on_day(sessions, edition_id, address, [0.2, 0.4, 0.6, 1.5, 2.5, 4.5][n % 6])


@pytest.mark.browser
def test_results_page_shows_charts_and_their_tables(
    browser: Browser,
    site: tuple[str, Settings],
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    env: dict[str, str],
) -> None:
    base_url, served = site
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        letter = factories.newsletter(session)
        factories.readers(session, letter, READERS)
        ids = []
        for _ in range(2):
            edition = factories.edition(session, letter)
            factories.begin_sending(session, served, edition, batch_size=100)
            ids.append(edition.id)
    first, second = ids
    _readers_act(sessions, first, _send(sessions, served, smtp_server, first), base_url, 12)
    _readers_act(sessions, second, _send(sessions, served, smtp_server, second), base_url, 16)

    result = CliRunner(env=env).invoke(cli, ["editions", "results", str(second), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["delivered"] == READERS
    assert data["opens"]["human_unique"] == 16
    assert data["opens"]["machine"] == 6
    assert data["clicks"]["machine"] == 3 * 2 * 9  # three readers scanned, HEAD + GET, 9 links
    assert data["clicks"]["human_unique"] == 8

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    log_in(page, base_url, EDITOR, PASSWORD, f"/editions/{second}/results?lang=en")
    expect(page.locator("h1")).to_contain_text("Results")
    expect(page.locator('[data-key="delivered"]')).to_have_text(str(READERS))
    expect(page.locator('[data-key="opens.human_unique"]')).to_have_text("16 · 53.3%")
    expect(page.locator('[data-key="opens.machine"]')).to_have_text("6")
    expect(page.locator('[data-key="clicks.machine"]')).to_have_text("54")
    for section, chart in (
        ("#days", "Opens and clicks over the first 7 days"),
        ("#items", "Clicks per news item"),
        ("#history", "This edition and the previous ones"),
    ):
        figure = page.locator(f"{section} svg[role=img]")
        expect(figure).to_have_attribute("aria-label", chart)
        box = figure.bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 150
        expect(page.locator(f"{section} table tbody tr").first).to_be_visible()
    day_rows = page.locator("#days tbody tr")
    expect(day_rows).to_have_count(7)
    opened = [int(day_rows.nth(n).locator("td").first.inner_text()) for n in range(7)]
    assert sum(opened) == 16
    assert opened[0] > opened[3]
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_contain_text("40.0%")  # 12 of 30 opened the first edition
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "results.png"), full_page=True)
