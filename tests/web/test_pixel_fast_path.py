"""The open pixel answered in front of Flask (service.web.beacon) answers as Flask would.

The fast path takes GET and HEAD of the open route; a query string sends the same
request through Flask's view instead, which calls the same function. So each check
asks both and compares: status, headers and bytes must be the same, the event the
same, and Flask's own machinery (its before_request hooks) must not have run for the
fast one. The events are read from the table after the app's buffer is flushed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from service import tokens
from service.app import create_app
from service.config import Settings
from service.mail.mime import CLICK_PURPOSE, OPEN_PURPOSE, UNSUBSCRIBE_PURPOSE
from service.models import Actor, EventKind
from service.web import beacon
from tests.support.waits import flush_events
from tests.web.test_event_batches import PERSON, click, delivered, pixel, stored

HARDENING = (
    "X-Content-Type-Options",
    "Referrer-Policy",
    "X-Frame-Options",
    "Strict-Transport-Security",
)


class Counted:
    """The app, and the paths of the requests Flask's request machinery saw."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.through_flask: list[str] = []
        app.before_request(lambda: self.through_flask.append(request.full_path))

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client(use_cookies=False)


Make = Callable[..., Counted]


@pytest.fixture
def make(settings: Settings) -> Iterator[Make]:
    """Apps of these settings changed so, with a buffer only an explicit flush writes."""
    made: list[Flask] = []

    def build(**changes: Any) -> Counted:
        made.append(create_app(replace(settings, event_flush_seconds=3600, **changes)))
        return Counted(made[-1])

    yield build
    for app in made:
        app.extensions["hebdo.events"].close()


@pytest.fixture
def web(make: Make) -> Counted:
    return make()


def _shape(response: TestResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    return response.status, sorted(response.headers.items()), response.data


@pytest.mark.parametrize("base_url", ["http://hebdo.test", "https://hebdo.example"])
def test_the_fast_path_answers_the_bytes_flask_answers(
    make: Make, settings: Settings, sessions: sessionmaker[Session], base_url: str
) -> None:
    web = make(base_url=base_url)
    (delivery_id,) = delivered(sessions, settings, 1)
    forged = "/o/" + "A" * 27 + ".gif"
    client = web.client
    login = client.get("/login")
    for path in (pixel(settings, delivery_id), forged):
        for method in ("GET", "HEAD"):
            fast = client.open(path, method=method, headers=PERSON)
            slow = client.open(path + "?via=flask", method=method, headers=PERSON)
            assert _shape(fast) == _shape(slow)
            assert fast.status_code == (200 if path != forged else 404)
            assert fast.headers["Content-Type"] == "image/gif"
            assert fast.headers["Cache-Control"] == "no-store, max-age=0"
            assert fast.data == (beacon.PIXEL if method == "GET" else b"")
            # The same hardening headers as any Flask page (HSTS only over https).
            for name in HARDENING:
                assert fast.headers.get(name) == login.headers.get(name), name
    assert ("Strict-Transport-Security" in login.headers) == base_url.startswith("https:")
    # Only the requests with a query string (and the login page) went through Flask.
    assert all(p == "/login?" or p.endswith("?via=flask") for p in web.through_flask)
    assert len(web.through_flask) == 5
    assert flush_events(web.app) == 4  # the genuine token's GET and HEAD, both ways


def test_get_and_head_are_recorded_with_their_network_head_as_a_machine(
    web: Counted, sessions: sessionmaker[Session], settings: Settings
) -> None:
    ids = delivered(sessions, settings, 3)
    client = web.client
    for delivery_id, method, address in zip(
        ids,
        ("GET", "HEAD", "GET"),
        ("198.51.100.7", "198.51.100.200", "2001:db8:1234:5678::1"),
        strict=True,
    ):
        response = client.open(
            pixel(settings, delivery_id),
            method=method,
            headers=PERSON,
            environ_base={"REMOTE_ADDR": address},
        )
        assert response.status_code == 200
    assert web.through_flask == []
    assert web.app.extensions["hebdo.events"].pending() == 3  # the app's own buffer
    assert flush_events(web.app) == 3
    rows = {e.delivery_id: e for e in stored(sessions)}
    assert [
        (rows[i].kind, rows[i].method, rows[i].network, rows[i].actor, rows[i].actor_rule)
        for i in ids
    ] == [
        (EventKind.OPEN, "GET", "198.51.100.0/24", Actor.HUMAN, "person"),
        (EventKind.OPEN, "HEAD", "198.51.100.0/24", Actor.MACHINE, "head_request"),
        (EventKind.OPEN, "GET", "2001:db8:1234::/48", Actor.HUMAN, "person"),
    ]
    assert {rows[i].user_agent for i in ids} == {PERSON["User-Agent"]}


def test_a_forged_token_or_one_of_another_purpose_gets_a_404_and_writes_nothing(
    web: Counted, sessions: sessionmaker[Session], settings: Settings
) -> None:
    (delivery_id,) = delivered(sessions, settings, 1)
    secret = settings.secret_key
    client = web.client
    genuine_open = tokens.sign(secret, OPEN_PURPOSE, delivery_id)
    for token in (
        "forged",
        genuine_open[:-2] + ("AA" if not genuine_open.endswith("AA") else "BB"),  # tampered
        tokens.sign("another-secret", OPEN_PURPOSE, delivery_id),
        tokens.sign(secret, CLICK_PURPOSE, delivery_id),
        tokens.sign(secret, UNSUBSCRIBE_PURPOSE, delivery_id),
    ):
        response = client.get(f"/o/{token}.gif", headers=PERSON)
        assert (response.status_code, response.data) == (404, beacon.PIXEL)
    # An open token is refused at the click door (Flask's view), and records nothing.
    assert client.get(f"/c/{genuine_open}/0", headers=PERSON).status_code == 404
    assert web.app.extensions["hebdo.events"].pending() == 0
    assert flush_events(web.app) == 0
    assert stored(sessions) == []
    # The genuine click token still works there: the door, not the data, refused.
    assert client.get(click(settings, delivery_id, 0), headers=PERSON).status_code == 302


def test_what_the_fast_path_does_not_recognise_goes_to_flask(
    web: Counted, sessions: sessionmaker[Session], settings: Settings
) -> None:
    (delivery_id,) = delivered(sessions, settings, 1)
    client = web.client
    path = pixel(settings, delivery_id)
    assert client.post(path).status_code == 405  # Flask's answer to another method
    assert client.get(path + "/").status_code == 404
    assert client.get(path.replace(".gif", "%00.gif")).status_code == 400  # NUL: Flask refuses
    assert client.get(path + "?lang=fr").status_code == 200  # Flask's view, same function
    # Through Flask (the NUL one stopped by its first hook, before ours counted it).
    assert [p.rsplit(".gif", 1)[1] for p in web.through_flask] == ["?", "/?", "?lang=fr"]
    assert flush_events(web.app) == 1


@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_recorded(
    make: Make, settings: Settings, sessions: sessionmaker[Session], proxies: int
) -> None:
    web = make(proxies=proxies)
    (delivery_id,) = delivered(sessions, settings, 1)
    forwarded = {**PERSON, "X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https"}
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    path = pixel(settings, delivery_id)
    client = web.client
    assert client.get(path, headers=forwarded, environ_base=loopback).status_code == 200
    # The same request through Flask's view: Flask's request.remote_addr, for comparison.
    assert client.get(path + "?x=1", headers=forwarded, environ_base=loopback).status_code == 200
    assert flush_events(web.app) == 2
    networks = [e.network for e in stored(sessions)]
    # Trusted, the proxy's X-Forwarded-For; not trusted, the connection's own address.
    assert networks == ["203.0.113.0/24" if proxies else "127.0.0.0/24"] * 2
