"""Results of an edition, from requests shaped like the ones that really come back.

An edition goes over real SMTP to six readers; the URLs are taken from the mail
each reader received and requested through the real endpoints with the request
shapes of Apple's Mail Privacy Protection proxy, Gmail's image proxy, a link
scanner at the receiving gateway, and people. Time between a person's actions is
simulated by moving their delivery's stored times back (the endpoints read the
clock; a test cannot wait minutes). The figures are then read where editors read
them: `hebdo editions results --json` and the results page.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.cli import cli
from service.config import Settings
from service.editions import store
from service.models import Actor, Delivery, Edition, Event, EventKind, Newsletter
from service.sending import loop
from service.team import editors
from tests import factories
from tests.support.smtp import RecordedMessage, RecordingSmtpServer

# Recorded request shapes.
APPLE_MPP = {"User-Agent": "Mozilla/5.0"}, "17.58.101.12"
GMAIL_PROXY = (
    {
        "User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
        "(via ggpht.com GoogleImageProxy)"
    },
    "66.249.84.10",
)
# Safe Links-style scanner: a browser's user agent, Microsoft's network, within a second.
SCANNER = (
    {
        "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    },
    "40.94.5.6",
)
PERSON_FIREFOX = (
    {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
    "2a01:e0a:1f:2::4",
)
PERSON_IPHONE = (
    {
        "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
    },
    "198.51.100.23",
)
PERSON_CHROME = (
    {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    },
    "203.0.113.7",
)
EXTRA_LINK = "https://example.org/deepseek-annexe"


@dataclass
class Sent:
    """An edition delivered to six readers, and the mail each one got."""

    app: Flask
    sessions: sessionmaker[Session]
    settings: Settings
    env: dict[str, str]
    edition_id: int
    links: list[str]
    mail: dict[str, RecordedMessage]

    def reader(self, n: int) -> str:
        return f"r{n}@example.org"

    def urls(self, n: int, kind: str) -> list[str]:
        """The paths of this kind in reader n's mail (pixel, click, feedback, unsubscribe)."""
        message = self.mail[self.reader(n)].parsed()
        part = message.get_body(("html",))
        assert part is not None
        text = html.unescape(part.get_content())
        base = re.escape(self.settings.base_url)
        pattern = {
            "pixel": r"/o/[\w-]+\.gif",
            "click": r"/c/[\w-]+/\d+",
            "feedback": r"/f/[\w-]+/(?:yes|no)",
            "unsubscribe": r"/u/[\w-]+",
        }[kind]
        found = re.findall(base + "(" + pattern + ")", text)
        return list(dict.fromkeys(found))  # in mail order, once each

    def click_url(self, n: int, url: str) -> str:
        index = self.links.index(url)
        (path,) = [p for p in self.urls(n, "click") if p.endswith(f"/{index}")]
        return path

    def get(self, path: str, shape: tuple[dict[str, str], str], method: str = "GET") -> int:
        headers, address = shape
        client: FlaskClient = self.app.test_client(use_cookies=False)
        response = client.open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": address}
        )
        assert response.status_code in (200, 302), (path, response.status_code)
        return response.status_code

    def delivered_ago(self, n: int, seconds: float) -> None:
        """The relay accepted reader n's message this long ago."""
        with self.sessions.begin() as session:
            delivery = session.scalars(
                select(Delivery).where(
                    Delivery.email == self.reader(n), Delivery.edition_id == self.edition_id
                )
            ).one()
            assert delivery.sent_at is not None
            delivery.sent_at = delivery.sent_at - timedelta(seconds=seconds)
            edition = session.get(Edition, self.edition_id)
            assert edition is not None
            assert edition.send_started_at is not None
            # The send started before its first message was accepted.
            edition.send_started_at = min(edition.send_started_at, delivery.sent_at)

    def later(self, n: int, seconds: float = 90) -> None:
        """Let time pass for reader n: their delivery and events move back."""
        self.delivered_ago(n, seconds)
        with self.sessions.begin() as session:
            delivery_id = session.scalars(
                select(Delivery.id).where(
                    Delivery.email == self.reader(n), Delivery.edition_id == self.edition_id
                )
            ).one()
            events = session.scalars(select(Event).where(Event.delivery_id == delivery_id)).all()
            for event in events:
                event.created_at = event.created_at - timedelta(seconds=seconds)

    def results(self) -> dict[str, Any]:
        result = CliRunner(env=self.env).invoke(
            cli, ["editions", "results", str(self.edition_id), "--json"]
        )
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.output)
        return data


def send(
    app: Flask,
    sessions: sessionmaker[Session],
    settings: Settings,
    env: dict[str, str],
    smtp_server: RecordingSmtpServer,
    *,
    readers: int = 6,
) -> Sent:
    """Send the sample edition, with a second link in the first news item, over SMTP.

    The newsletter and its readers are made the first time; later calls send its next edition.
    """
    data = factories.sample_data()
    data["items"][0]["body"] += f"\n\nVoir aussi [l'annexe]({EXTRA_LINK})."
    smtp_server.clear()
    with sessions.begin() as session:
        letter = session.scalars(select(Newsletter).where(Newsletter.slug == "lettre")).first()
        if letter is None:
            letter = factories.newsletter(session)
            factories.readers(session, letter, readers)
        edition = store.create(session, letter, data)
        factories.begin_sending(session, settings, edition, batch_size=50)
        edition_id, links = edition.id, list(edition.tracked_links)
    with sessions() as session:
        expected = len(
            session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id)).all()
        )
    assert loop.send_pending(sessions, settings, edition_id).sent == expected
    mail = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(expected)}
    return Sent(app, sessions, settings, env, edition_id, links, mail)


@pytest.fixture
def sent(
    app: Flask,
    sessions: sessionmaker[Session],
    settings: Settings,
    env: dict[str, str],
    smtp_server: RecordingSmtpServer,
) -> Sent:
    return send(app, sessions, settings, env, smtp_server)


def act(sent: Sent) -> None:
    """Six readers, six ways a message is met."""
    # r0 reads in Apple Mail with Privacy Protection: the proxy fetches the pixel on arrival.
    sent.delivered_ago(0, 40)
    sent.get(sent.urls(0, "pixel")[0], APPLE_MPP)
    # r1 opens in Gmail (the image proxy fetches on a real open), then clicks the first link.
    sent.delivered_ago(1, 600)
    sent.get(sent.urls(1, "pixel")[0], GMAIL_PROXY)
    sent.later(1)
    sent.get(sent.click_url(1, sent.links[1]), PERSON_CHROME)
    # r2's gateway scans within a second: HEAD then GET on every link, both feedback answers.
    sent.delivered_ago(2, 0.5)
    for path in sent.urls(2, "click"):
        sent.get(path, SCANNER, method="HEAD")
    for path in [*sent.urls(2, "click"), *sent.urls(2, "feedback")]:
        sent.get(path, SCANNER)
    sent.get(sent.urls(2, "pixel")[0], SCANNER)
    # r3 is a person: opens, clicks the item's source twice, its second link, answers no then yes.
    sent.delivered_ago(3, 3600)
    sent.get(sent.urls(3, "pixel")[0], PERSON_FIREFOX)
    for url in (sent.links[1], sent.links[1], EXTRA_LINK):
        sent.later(3)
        sent.get(sent.click_url(3, url), PERSON_FIREFOX)
    no, yes = sorted(sent.urls(3, "feedback"))
    for path in (no, yes):
        sent.later(3)
        sent.get(path, PERSON_FIREFOX)
    # r4 reads with images off and clicks the fifth item's link: a click is an open.
    sent.delivered_ago(4, 7200)
    sent.get(sent.click_url(4, sent.links[5]), PERSON_IPHONE)
    # r5 unsubscribes in one click from their mail client (RFC 8058).
    client = sent.app.test_client(use_cookies=False)
    (unsubscribe,) = sent.urls(5, "unsubscribe")
    response = client.post(unsubscribe, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert response.status_code == 200


def test_request_facts_are_stored_with_the_network_never_the_address(sent: Sent) -> None:
    act(sent)
    with sent.sessions() as session:
        events = session.scalars(select(Event).where(Event.kind != EventKind.UNSUBSCRIBE)).all()
        by_reader: dict[str, list[Event]] = {}
        emails: dict[int | None, str] = dict(
            session.execute(select(Delivery.id, Delivery.email)).all()
        )
        for event in events:
            by_reader.setdefault(emails[event.delivery_id], []).append(event)
    (apple,) = by_reader["r0@example.org"]
    assert (apple.method, apple.user_agent, apple.network) == (
        "GET",
        "Mozilla/5.0",
        "17.58.101.0/24",
    )
    assert apple.seconds_after is not None
    assert 40 <= apple.seconds_after < 60
    assert (apple.actor, apple.actor_rule) == (Actor.MACHINE, "apple_mpp")
    gmail_open = by_reader["r1@example.org"][0]
    assert gmail_open.network == "66.249.84.0/24"
    assert (gmail_open.actor, gmail_open.actor_rule) == (Actor.HUMAN, "image_proxy_open")
    person = by_reader["r3@example.org"]
    assert {e.network for e in person} == {"2a01:e0a:1f::/48"}
    assert {e.actor for e in person} == {Actor.HUMAN}
    scanner = by_reader["r2@example.org"]
    assert {e.method for e in scanner} == {"GET", "HEAD"}
    assert {e.actor for e in scanner} == {Actor.MACHINE}
    assert {e.actor_rule for e in scanner} <= {"head_request", "link_burst", "within_seconds"}
    assert "link_burst" in {e.actor_rule for e in scanner}
    for event in events:  # no column holds a full client address
        values = [event.network or "", event.user_agent or "", json.dumps(event.detail)]
        for address in ("17.58.101.12", "66.249.84.10", "40.94.5.6", "2a01:e0a:1f:2::4"):
            assert all(address not in value for value in values)


def test_results_json_tells_people_from_machines(sent: Sent) -> None:
    act(sent)
    data = sent.results()
    assert data["edition"] == sent.edition_id
    assert (data["delivered"], data["failed"], data["bounced"], data["complaints"]) == (6, 0, 0, 0)
    assert data["unsubscribes"] == 1
    # People: r1 (Gmail), r3, r4 (a click is an open). Machines: Apple's proxy and the scanner.
    assert data["opens"] == {"human_unique": 3, "machine": 2, "machine_readers": 2, "rate": 0.5}
    links = len(sent.links)
    assert data["clicks"]["human_unique"] == 3
    assert data["clicks"]["human_total"] == 5
    assert data["clicks"]["machine"] == 2 * links  # HEAD and GET of every link
    assert data["feedback"] == {
        "yes": 1,
        "no": 0,
        "rate": 1.0,
    }  # r3's last answer; not the scanner's
    first, *_, fifth, sixth = data["items"]
    assert [item["position"] for item in data["items"]] == [1, 2, 3, 4, 5, 6]
    assert first["title"].startswith("DeepSeek")
    assert first["clicks"] == {"human_unique": 2, "human_total": 4, "machine": 4}
    assert [link["url"] for link in first["links"]] == [EXTRA_LINK, sent.links[1]]
    extra, source = first["links"]
    assert (extra["human_unique"], extra["human_total"], extra["machine"]) == (1, 1, 2)
    assert (source["human_unique"], source["human_total"], source["machine"]) == (2, 3, 2)
    assert fifth["clicks"] == {"human_unique": 1, "human_total": 1, "machine": 2}
    assert sixth["clicks"]["human_unique"] == 0
    assert data["other_links"]["position"] == 0  # related reads
    assert data["tracking"] is True
    assert sum(day["opens"] for day in data["days"]) == 3


def test_reclassify_applies_changed_rules_to_stored_events(
    sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    act(sent)
    with sent.sessions.begin() as session:  # as if an earlier rule had called everyone human
        session.execute(update(Event).values(actor=Actor.HUMAN, actor_rule="person"))
    assert sent.results()["opens"]["machine"] == 0
    result = CliRunner(env=sent.env).invoke(cli, ["editions", "reclassify", str(sent.edition_id)])
    assert result.exit_code == 0, result.output
    changed = int(result.output.split()[0])
    # Two pixels, the scanner's clicks and answers; and Gmail's open gets its own rule back.
    assert changed == 2 + 2 * len(sent.links) + 2 + 1
    assert sent.results()["opens"]["machine"] == 2


def editor(app: Flask, sessions: sessionmaker[Session]) -> FlaskClient:
    """A client logged in as an editor."""
    client = app.test_client()
    with sessions.begin() as session:
        found = editors.create(session, "redaction@hebdo.example", "un mot de passe solide")
        found.language = "en"  # English pages (else: the newsletter's language)
        token = editors.open_session(session, found)
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    return client


def cells(page: str) -> dict[str, str]:
    """The summary's figures by their data-key, as the page shows them."""
    return {
        key: " ".join(html.unescape(value).split())
        for key, value in re.findall(r'<td data-key="([\w.]+)">(.*?)</td>', page, re.DOTALL)
    }


def test_results_page_shows_the_same_figures_with_charts_and_tables(
    sent: Sent, app: Flask, sessions: sessionmaker[Session], settings: Settings,
    env: dict[str, str], smtp_server: RecordingSmtpServer,
) -> None:  # fmt: skip
    act(sent)
    first = sent.edition_id
    # The next edition (r5 left): only the Gmail reader opens it.
    second = send(app, sessions, settings, env, smtp_server)
    second.delivered_ago(1, 3600)
    second.get(second.urls(1, "pixel")[0], GMAIL_PROXY)
    client = editor(app, sessions)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"

    page = client.get(f"/editions/{first}/results?lang=en").get_data(as_text=True)
    shown = cells(page)
    assert shown["delivered"] == "6"
    assert shown["opens.human_unique"] == "3 · 50.0%"
    assert shown["opens.machine"] == "2"
    assert shown["clicks.human_unique"] == "3 · 50.0%"
    assert shown["clicks.human_total"] == "5"
    assert shown["clicks.machine"] == str(2 * len(sent.links))
    assert shown["feedback"] == "1 / 0 · 100.0%"
    assert shown["unsubscribes"] == "1 (1 / 0)"
    assert page.count('<svg role="img"') == 3  # days, items, editions side by side
    assert "<script" not in page
    for section in ("days", "items", "history"):
        assert f'id="{section}"' in page
    assert EXTRA_LINK in page  # the links of each item, in the table

    page = client.get(f"/editions/{second.edition_id}/results?lang=en").get_data(as_text=True)
    history = page[page.index('id="history"') :]
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", history, re.DOTALL)
    assert [re.sub(r"<[^>]+>", "", r).split()[:2] for r in rows] == [["No.", "2"], ["No.", "1"]]
    assert "20.0%" in rows[0]  # 1 of the 5 still subscribed
    assert "50.0%" in rows[1]
    assert f'href="/editions/{first}/results"' in rows[1]

    csv_response = client.get(f"/editions/{first}/results.csv")
    assert csv_response.status_code == 200
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).splitlines()
    assert lines[0] == "edition,position,item,link_index,url,human_unique,human_total,machine"
    extra_index = sent.links.index(EXTRA_LINK)
    assert lines[1].startswith(f"{first},1,")
    assert lines[1].endswith(",,,2,4,4")
    assert lines[2].endswith(f",{extra_index},{EXTRA_LINK},1,1,2")

    audience = client.get("/newsletters/lettre/audience?lang=en").get_data(as_text=True)
    assert audience.count('<svg role="img"') == 2
    this_week = re.findall(r"<tr><th scope=\"row\">[\d-]+</th>(.*?)</tr>", audience)[-1]
    # Six readers, one of whom left this week: five readers, six new, one unsubscribed.
    assert re.findall(r"<td>(\d+)</td>", this_week) == ["5", "6", "6", "1", "0"]

    assert client.get("/editions/999999/results").status_code == 404
    assert client.get("/newsletters/nothing/audience").status_code == 404
    visitor = app.test_client()
    assert visitor.get(f"/editions/{first}/results").status_code in (302, 303)
    assert visitor.get(f"/editions/{first}/results.csv").status_code in (302, 303)


def test_tracking_off_sends_no_pixel_and_no_tracked_links(
    app: Flask, sessions: sessionmaker[Session], settings: Settings,
    env: dict[str, str], smtp_server: RecordingSmtpServer,
) -> None:  # fmt: skip
    with sessions.begin() as session:
        factories.readers(session, factories.newsletter(session), 2)
    result = CliRunner(env=env).invoke(cli, ["newsletters", "tracking", "lettre", "off"])
    assert result.exit_code == 0, result.output
    sent = send(app, sessions, settings, env, smtp_server, readers=2)
    for address in (sent.reader(0), sent.reader(1)):
        message = sent.mail[address].parsed()
        for kind in ("html", "plain"):
            part = message.get_body((kind,))
            assert part is not None
            body = html.unescape(part.get_content())
            assert "/o/" not in body
            assert "/c/" not in body
        assert sent.urls(0, "pixel") == []
        assert sent.urls(0, "click") == []
        html_part = message.get_body(("html",))
        assert html_part is not None
        assert f'href="{EXTRA_LINK}"' in html_part.get_content()  # the link itself, untouched
        assert sent.urls(0, "feedback")  # the reader's own answer still works
    data = sent.results()
    assert data["tracking"] is False
    assert data["delivered"] == 2
    client = editor(app, sessions)
    page = client.get(f"/editions/{sent.edition_id}/results?lang=en").get_data(as_text=True)
    assert 'id="tracking-off"' in page
    assert "opens.human_unique" not in page  # no zeros where nothing could be known
    assert 'id="items"' not in page
    listed = CliRunner(env=env).invoke(cli, ["newsletters", "list", "--json"])
    assert json.loads(listed.output)[0]["tracking"] is False
