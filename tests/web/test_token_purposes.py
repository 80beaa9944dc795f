"""Every kind of token against every door: only the door of its purpose acts.

The tokens come from where readers get them: an edition delivered over real SMTP
(pixel, click, feedback, List-Unsubscribe URL and mailto, preference link), the
"already subscribed" notice (the subscriber-scoped preference link), and the
notices the preference centre mails on request (export and erase links). The
legacy delivery token is the one every link of mail sent before purposes were
split carries. For each door, every kind is tried: the door either does its one
thing, or answers 404 (the mailto: "ignored") and changes nothing at all. Refused
kinds go first; after an allowed kind changed something, the next one gets a
fresh world (its own newsletter, edition and readers) so each acts from the start.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import tokens
from service.audience import signup
from service.config import Settings
from service.mail.mime import DELIVERY_PURPOSE
from service.mail.render import (
    CLICK_TOKEN,
    FEEDBACK_TOKEN,
    OPEN_TOKEN,
    PREFS_TOKEN,
    TOKEN,
    UNSUBSCRIBE_TOKEN,
)
from service.models import Delivery, Event, Subscriber, Subscription, Suppression
from service.sending import loop
from service.tracking import inbound
from tests import factories
from tests.support.smtp import RecordedMessage, RecordingSmtpServer
from tests.support.waits import flush_events

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
KINDS = ("open", "click", "feedback", "unsubscribe", "prefs", "notice-prefs", "export", "erase")
LEGACY = "legacy"
ALL_KINDS = (*KINDS, LEGACY)


@dataclass(frozen=True)
class State:
    """Everything a door could change."""

    events: tuple[tuple[str, int | None, str | None], ...]
    subscriptions: tuple[tuple[str, str, bool], ...]  # address, status, paused
    names: tuple[tuple[str, str], ...]
    suppressions: int
    mails: int


@dataclass
class World:
    """A delivered edition and the tokens of one reader."""

    client: FlaskClient  # keeps cookies: the CSRF token of the session
    robot: FlaskClient  # no cookies: a mail provider's one-click request
    sessions: sessionmaker[Session]
    settings: Settings
    smtp: RecordingSmtpServer
    slug: str
    reader: str  # the address whose tokens are tried
    other: str  # a reader of the same edition, whom nothing may touch
    delivery_id: int
    newsletter_id: int
    first_link: str
    message: RecordedMessage
    tokens: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def state(self) -> State:
        flush_events(self.client.application)  # what the endpoints handed to the buffer
        with self.sessions() as session:
            events = session.execute(
                select(Event.kind, Event.delivery_id, Event.value).order_by(Event.id)
            ).all()
            subscriptions = session.execute(
                select(Subscriber.email, Subscription.status, Subscription.paused_until)
                .join(Subscription)
                .order_by(Subscriber.email)
            ).all()
            names = session.execute(
                select(Subscriber.email, Subscriber.name).order_by(Subscriber.email)
            ).all()
            suppressions = len(session.scalars(select(Suppression.id)).all())
        return State(
            tuple((kind.value, delivery, value) for kind, delivery, value in events),
            tuple(
                (email, status.value, paused is not None) for email, status, paused in subscriptions
            ),
            tuple((email, name) for email, name in names),
            suppressions,
            len(self.smtp.messages),
        )


def _paths(message: RecordedMessage, pattern: str) -> set[str]:
    parts = [message.parsed().get_body((kind,)) for kind in ("html", "plain")]
    text = "".join(html.unescape(p.get_content()) for p in parts if p is not None)
    return set(re.findall(pattern, text))


def _one(found: set[str]) -> str:
    (value,) = found
    return value


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, path
    match = CSRF.search(page.get_data(as_text=True))
    assert match is not None
    return match.group(1)


def _notice_link(world: World, marker: str) -> str:
    (message,) = world.smtp.wait_for(1)
    world.smtp.clear()
    assert list(message.rcpt_tos) == [world.reader]
    return _one(_paths(message, rf"https?://[^\s\"<>]*{marker}[^\s\"<>]*"))


@dataclass(frozen=True)
class Instance:
    """The test instance that worlds are built in."""

    app: Flask
    sessions: sessionmaker[Session]
    settings: Settings
    smtp: RecordingSmtpServer


def _deliver(instance: Instance, n: int, *, legacy_edition: bool = False) -> World:
    """World number n: its own newsletter and edition, delivered over SMTP to two readers."""
    sessions, settings, smtp = instance.sessions, instance.settings, instance.smtp
    slug, prefix = f"lettre{n}", f"w{n}r"
    reader, other = f"{prefix}0@example.org", f"{prefix}1@example.org"
    with sessions.begin() as session:
        letter = factories.newsletter(session, slug)
        factories.readers(session, letter, 2, prefix=prefix)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=50)
        if legacy_edition:
            # An edition frozen before tokens had purposes: one placeholder everywhere.
            for hole in (OPEN_TOKEN, CLICK_TOKEN, FEEDBACK_TOKEN, UNSUBSCRIBE_TOKEN, PREFS_TOKEN):
                edition.rendered_html = (edition.rendered_html or "").replace(hole, TOKEN)
                edition.rendered_text = (edition.rendered_text or "").replace(hole, TOKEN)
        edition_id, letter_id = edition.id, letter.id
        first_link = (edition.tracked_links or [""])[0]
    assert loop.send_pending(sessions, settings, edition_id).sent == 2
    messages = {m.rcpt_tos[0]: m for m in smtp.wait_for(2)}
    smtp.clear()
    with sessions() as session:
        delivery_id = session.scalars(select(Delivery.id).where(Delivery.email == reader)).one()
    return World(
        instance.app.test_client(),
        instance.app.test_client(use_cookies=False),
        sessions,
        settings,
        smtp,
        slug,
        reader,
        other,
        delivery_id,
        letter_id,
        first_link,
        messages[reader],
    )


def _token(world: World, kind: str) -> str:
    """The token of this kind, taken from the mail that carries it."""
    if kind in world.tokens:
        return world.tokens[kind]
    message, found, base = world.message, "", re.escape(world.settings.base_url)
    if kind == "open":
        found = _one(_paths(message, base + r"/o/([\w-]+)\.gif"))
    elif kind == "click":
        found = _one(_paths(message, base + r"/c/([\w-]+)/\d+"))  # the same for every link
    elif kind == "feedback":
        found = _one(_paths(message, base + r"/f/([\w-]+)/(?:yes|no)"))
    elif kind == "unsubscribe":
        https, mailto = re.findall(r"<([^>]+)>", message.parsed()["List-Unsubscribe"])
        found = urlsplit(https).path.removeprefix("/u/")
        assert mailto.startswith(f"mailto:unsubscribe+{found}@")
        assert found in _paths(message, base + r"/u/([\w-]+)")  # the footer link too
    elif kind == "prefs":
        found = _one(_paths(message, base + r"/p/([\w-]+)"))
    elif kind == LEGACY:
        # What every link of mail sent before purposes were split carries.
        found = tokens.sign(world.settings.secret_key, DELIVERY_PURPOSE, world.delivery_id)
    elif kind == "notice-prefs":
        # Signing up again with a known address mails the "already subscribed" notice.
        path = f"/n/{world.slug}/subscribe"
        data = {"email": world.reader, "csrf_token": _csrf(world.client, path)}
        assert world.client.post(path, data=data).status_code == 200
        found = urlsplit(_notice_link(world, "/p/")).path.removeprefix("/p/")
    elif kind in ("export", "erase"):
        # The buttons of the preference centre mail the link to the reader's address.
        prefs = "/p/" + _token(world, "prefs")
        data = {"csrf_token": _csrf(world.client, prefs), "action": kind}
        assert world.client.post(prefs + "/data", data=data).status_code == 303
        link = urlsplit(_notice_link(world, "/d/")).path
        found = link.removeprefix("/d/").rsplit("/", 1)[0]
    assert found, kind
    world.tokens[kind] = found
    return found


def _unsubscribe_mail(world: World, token: str) -> bytes:
    domain = world.message.mail_from.rpartition("@")[2]
    return (
        f"From: Lecteur <{world.reader}>\r\nTo: unsubscribe+{token}@{domain}\r\n"
        "Subject: unsubscribe\r\n\r\nStop.\r\n"
    ).encode()


# --- The doors --------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What a door answered."""

    status: int
    body: bytes = b""
    location: str = ""
    inbound: str = ""  # the mailto door: what hebdo inbound made of the message


def _http(response: Any) -> Result:
    return Result(response.status_code, response.get_data(), response.headers.get("Location", ""))


def _pixel(w: World, t: str) -> Result:
    return _http(w.client.get(f"/o/{t}.gif"))


def _click(w: World, t: str) -> Result:
    return _http(w.client.get(f"/c/{t}/0"))


def _feedback(w: World, t: str) -> Result:
    return _http(w.client.get(f"/f/{t}/yes"))


def _unsubscribe_page(w: World, t: str) -> Result:
    return _http(w.client.get(f"/u/{t}"))


def _one_click(w: World, t: str) -> Result:
    return _http(w.robot.post(f"/u/{t}", data=ONE_CLICK, content_type=FORM))


def _mailto(w: World, t: str) -> Result:
    with w.sessions.begin() as session:
        result = inbound.process_message(session, w.settings.secret_key, _unsubscribe_mail(w, t))
    return Result(200 if result.kind != "ignored" else 404, inbound=result.kind)


def _prefs_page(w: World, t: str) -> Result:
    return _http(w.client.get(f"/p/{t}"))


def _prefs_save(w: World, t: str) -> Result:
    data = {"csrf_token": w.csrf, "name": "Changé", "language": "fr"}
    data["newsletter"] = str(w.newsletter_id)  # kept: only the name changes
    return _http(w.client.post(f"/p/{t}", data=data))


def _pause(w: World, t: str) -> Result:
    return _http(w.client.post(f"/p/{t}/pause", data={"csrf_token": w.csrf, "weeks": "4"}))


def _prefs_unsubscribe(w: World, t: str) -> Result:
    data = {"csrf_token": w.csrf, "newsletter": "all"}
    return _http(w.client.post(f"/p/{t}/unsubscribe", data=data))


def _data_request(w: World, t: str) -> Result:
    return _http(w.client.post(f"/p/{t}/data", data={"csrf_token": w.csrf, "action": "export"}))


def _old_export(w: World, t: str) -> Result:
    return _http(w.client.get(f"/p/{t}/export.json"))


def _old_erase(w: World, t: str) -> Result:
    data = {"csrf_token": w.csrf, "confirm": "yes"}
    return _http(w.client.post(f"/p/{t}/erase", data=data))


def _export(w: World, t: str) -> Result:
    return _http(w.client.get(f"/d/{t}/export.json"))


def _erase_page(w: World, t: str) -> Result:
    return _http(w.client.get(f"/d/{t}/erase"))


def _erase(w: World, t: str) -> Result:
    return _http(w.client.post(f"/d/{t}/erase", data={"csrf_token": w.csrf, "confirm": "yes"}))


def _status(states: State, address: str) -> str:
    return next(status for email, status, _ in states.subscriptions if email == address)


def _acted_open(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 200
    assert after.events == (*before.events, ("open", w.delivery_id, None))


def _acted_click(w: World, r: Result, before: State, after: State) -> None:
    assert (r.status, r.location) == (302, w.first_link)
    assert after.events == (*before.events, ("click", w.delivery_id, None))


def _acted_feedback(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 200
    assert after.events == (*before.events, ("feedback", w.delivery_id, "yes"))


def _unchanged(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 200
    assert after == before


def _shows_the_one_click_form(w: World, r: Result, before: State, after: State) -> None:
    _unchanged(w, r, before, after)
    assert b'<form method="post" action="/u/' in r.body


def _unsubscribed(w: World, r: Result, before: State, after: State) -> None:
    assert r.status in (200, 303)
    assert (_status(before, w.reader), _status(after, w.reader)) == ("confirmed", "unsubscribed")
    assert _status(after, w.other) == "confirmed"


def _shows_preferences(w: World, r: Result, before: State, after: State) -> None:
    _unchanged(w, r, before, after)
    assert f"Pour {w.reader}".encode() in r.body


def _renamed(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 303
    assert dict(after.names)[w.reader] == "Changé"


def _paused(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 303
    assert [paused for email, _, paused in after.subscriptions if email == w.reader] == [True]


def _mailed_a_data_link(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 303
    assert after.mails == before.mails + 1
    assert list(w.smtp.messages[-1].rcpt_tos) == [w.reader]


def _exported(w: World, r: Result, before: State, after: State) -> None:
    _unchanged(w, r, before, after)
    assert json.loads(r.body)["subscriber"]["email"] == w.reader


def _shows_the_erase_form(w: World, r: Result, before: State, after: State) -> None:
    _unchanged(w, r, before, after)
    assert b'name="confirm"' in r.body


def _erased(w: World, r: Result, before: State, after: State) -> None:
    assert r.status == 200
    assert w.reader not in dict(after.names)
    assert w.other in dict(after.names)


Acted = Callable[[World, Result, State, State], None]


@dataclass(frozen=True)
class Door:
    """An endpoint, the token kinds that may use it, and what using it does."""

    knock: Callable[[World, str], Result]
    allowed: frozenset[str]
    acted: Acted


def _door(knock: Callable[[World, str], Result], allowed: str, acted: Acted) -> Door:
    return Door(knock, frozenset(allowed.split()), acted)


# Mail sent before purposes were split: its one token still does all these, except the data.
DOORS = {
    "pixel": _door(_pixel, "open legacy", _acted_open),
    "click": _door(_click, "click legacy", _acted_click),
    "feedback": _door(_feedback, "feedback legacy", _acted_feedback),
    "unsubscribe GET": _door(_unsubscribe_page, "unsubscribe legacy", _shows_the_one_click_form),
    "unsubscribe POST": _door(_one_click, "unsubscribe legacy", _unsubscribed),
    "mailto unsubscribe": _door(_mailto, "unsubscribe legacy", _unsubscribed),
    "preferences GET": _door(_prefs_page, "prefs notice-prefs legacy", _shows_preferences),
    "preferences save": _door(_prefs_save, "prefs notice-prefs legacy", _renamed),
    "preferences pause": _door(_pause, "prefs notice-prefs legacy", _paused),
    "preferences unsubscribe": _door(
        _prefs_unsubscribe, "prefs notice-prefs legacy", _unsubscribed
    ),
    "preferences data link": _door(_data_request, "prefs notice-prefs legacy", _mailed_a_data_link),
    "old /p/…/export.json": _door(_old_export, "", _exported),
    "old /p/…/erase": _door(_old_erase, "", _erased),
    "export": _door(_export, "export", _exported),
    "erase GET": _door(_erase_page, "erase", _shows_the_erase_form),
    "erase POST": _door(_erase, "erase", _erased),
}


@pytest.fixture
def instance(
    app: Flask,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> Instance:
    """The test instance, where worlds are built."""
    return Instance(app, sessions, settings, smtp_server)


@pytest.fixture
def world(instance: Instance) -> World:
    """The sample edition delivered to two readers over real SMTP."""
    return _deliver(instance, 0)


def _refused(result: Result) -> bool:
    if result.inbound:
        return result.inbound == "ignored"
    # A NUL anywhere in a request is refused by every door (400) before a token is read.
    return result.status in (404, 400)


@pytest.mark.parametrize("door", DOORS)
def test_each_door_opens_only_to_the_tokens_of_its_purpose(instance: Instance, door: str) -> None:
    spec = DOORS[door]
    worlds = 1
    world = _deliver(instance, 0)
    for kind in sorted(ALL_KINDS, key=lambda k: k in spec.allowed):  # refused kinds first
        token = _token(world, kind)
        world.csrf = _csrf(world.client, "/p/" + _token(world, "prefs"))
        before = world.state()

        result = spec.knock(world, token)

        after = world.state()
        if kind in spec.allowed:
            spec.acted(world, result, before, after)
            if after != before:
                world, worlds = _deliver(instance, worlds), worlds + 1
        else:
            assert _refused(result), f"{door} took a {kind} token: {result.status}"
            assert after == before, f"{door} with a {kind} token changed something"


def _tampered(token: str) -> list[str]:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    other_id = raw[:7] + bytes([raw[7] ^ 1]) + raw[8:]  # the neighbour's id, this signature
    other_mac = raw[:-1] + bytes([raw[-1] ^ 1])
    return [encode(other_id), encode(other_mac), token[:-3], token + "AAAA", "%00", "…"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_forged_or_tampered_tokens_of_every_kind_open_nothing(world: World, kind: str) -> None:
    genuine = _token(world, kind)
    world.csrf = _csrf(world.client, "/p/" + _token(world, "prefs"))
    before = world.state()

    for door in (d for d in DOORS.values() if kind in d.allowed):
        for bad in [*_tampered(genuine), tokens.sign("another secret", kind, world.delivery_id)]:
            result = door.knock(world, bad)
            assert _refused(result), (door, bad, result.status)

    assert world.state() == before


@pytest.mark.parametrize("kind", ["export", "erase"])
def test_data_links_work_for_24_hours_and_not_after(world: World, kind: str) -> None:
    _token(world, "prefs")
    world.csrf = _csrf(world.client, "/p/" + world.tokens["prefs"])
    secret = world.settings.secret_key
    purpose = signup.EXPORT_PURPOSE if kind == "export" else signup.ERASE_PURPOSE
    with world.sessions() as session:
        reader = session.scalars(select(Subscriber).where(Subscriber.email == world.reader)).one()
        reader_id = reader.id
    day, now, email = 24 * 3600, int(time.time()), world.reader
    old = signup.data_link_token(secret, purpose, reader_id, email, now - day - 60)
    recent = signup.data_link_token(secret, purpose, reader_id, email, now - day + 60)
    before = world.state()

    doors = ("export",) if kind == "export" else ("erase GET", "erase POST")
    for door in doors:
        expired = DOORS[door].knock(world, old)
        assert expired.status == 410
        assert "Ce lien a expiré" in html.unescape(expired.body.decode())
    assert world.state() == before

    result = DOORS[doors[-1]].knock(world, recent)
    DOORS[doors[-1]].acted(world, result, before, world.state())


def test_a_data_link_dies_when_the_reader_changes_address(world: World) -> None:
    token = _token(world, "export")
    with world.sessions.begin() as session:
        reader = session.scalars(select(Subscriber).where(Subscriber.email == world.reader)).one()
        reader.email = "zoe@example.org"

    assert _export(world, token).status == 404


def test_an_edition_frozen_before_purposes_still_goes_out_with_the_legacy_token(
    instance: Instance,
) -> None:
    world = _deliver(instance, 0, legacy_edition=True)
    settings = world.settings
    legacy = tokens.sign(settings.secret_key, DELIVERY_PURPOSE, world.delivery_id)

    # Every link of the body carries the legacy token; the header the unsubscribe one.
    base = re.escape(settings.base_url)
    assert _paths(world.message, base + r"/(?:o|c|f|p|u)/([\w-]+)") == {legacy}
    https = re.findall(r"<([^>]+)>", world.message.parsed()["List-Unsubscribe"])[0]
    assert urlsplit(https).path != f"/u/{legacy}"
    world.csrf = _csrf(world.client, f"/p/{legacy}")
    before = world.state()
    assert _pixel(world, legacy).status == 200
    assert _old_export(world, legacy).status == 404
    assert _export(world, legacy).status == 404
    assert [e[0] for e in world.state().events] == [*(e[0] for e in before.events), "open"]


def test_an_unsubscribe_token_in_the_bounce_address_is_ignored(world: World) -> None:
    # The VERP address takes only bounce tokens: an unsubscribe token there does nothing.
    token = _token(world, "unsubscribe")
    domain = world.message.mail_from.rpartition("@")[2]
    raw = f"From: MAILER-DAEMON@{domain}\r\nTo: bounces+{token}@{domain}\r\n\r\nx\r\n".encode()
    before = world.state()
    with world.sessions.begin() as session:
        result = inbound.process_message(session, world.settings.secret_key, raw)
    assert result.kind == "ignored"
    assert world.state() == before
