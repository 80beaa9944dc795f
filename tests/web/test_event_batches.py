"""Public-link events are written in batches, with their evidence and verdict.

The pixel, click and feedback endpoints only verify the token and hand the event
to the app's buffer; a thread writes the buffer about once a second with one bulk
INSERT, and gunicorn's graceful stop writes what is left. These tests drive the
real endpoints (and a real gunicorn), then read the rows and count the statements
the database received.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service import tokens
from service.app import create_app
from service.config import Settings
from service.mail.mime import CLICK_PURPOSE, FEEDBACK_PURPOSE, OPEN_PURPOSE
from service.models import Actor, Delivery, DeliveryStatus, Event, EventKind, utcnow
from service.tracking import events
from service.tracking.buffer import EventBuffer
from tests import factories
from tests.support import free_port
from tests.support.waits import flush_events, wait_for_events

PERSON = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}
SCANNER = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}


def delivered(
    sessions: sessionmaker[Session], settings: Settings, readers: int, ago: float = 3600
) -> list[int]:
    """An edition the relay accepted `ago` seconds ago for `readers` readers; their delivery ids."""
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        factories.readers(session, letter, readers)
        edition = factories.edition(session, letter)
        factories.begin_sending(session, settings, edition, batch_size=100)
        session.execute(
            update(Delivery)
            .where(Delivery.edition_id == edition.id)
            .values(status=DeliveryStatus.SENT, sent_at=utcnow() - timedelta(seconds=ago))
        )
        return list(
            session.scalars(
                select(Delivery.id).where(Delivery.edition_id == edition.id).order_by(Delivery.id)
            )
        )


def pixel(settings: Settings, delivery_id: int) -> str:
    return f"/o/{tokens.sign(settings.secret_key, OPEN_PURPOSE, delivery_id)}.gif"


def click(settings: Settings, delivery_id: int, index: int) -> str:
    return f"/c/{tokens.sign(settings.secret_key, CLICK_PURPOSE, delivery_id)}/{index}"


def stored(sessions: sessionmaker[Session]) -> list[Event]:
    with sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


@pytest.fixture
def quiet(settings: Settings) -> Iterator[Flask]:
    """The app with a buffer whose thread waits an hour: only an explicit flush writes."""
    app = create_app(replace(settings, event_flush_seconds=3600))
    yield app
    app.extensions["hebdo.events"].close()


@pytest.fixture
def statements(quiet: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends from now on."""
    engine: Engine = quiet.extensions["hebdo.sessions"].kw["bind"]
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine, "before_cursor_execute", note)


def test_a_burst_of_requests_is_answered_at_once_and_written_by_one_insert(
    backend: str,
    quiet: Flask,
    sessions: sessionmaker[Session],
    settings: Settings,
    statements: list[str],
) -> None:
    ids = delivered(sessions, settings, 40)
    client = quiet.test_client(use_cookies=False)
    statements.clear()
    for n, delivery_id in enumerate(ids):
        response = client.get(
            pixel(settings, delivery_id),
            headers=PERSON,
            environ_base={"REMOTE_ADDR": "203.0.113.9"},
        )
        assert (response.status_code, response.mimetype) == (200, "image/gif")
        response = client.get(click(settings, delivery_id, n % 3), headers=PERSON)
        assert response.status_code == 302
    # The endpoints answered while every event still waits in the buffer.
    assert not any(s.upper().startswith("INSERT") for s in statements)
    assert stored(sessions) == []
    buffer: EventBuffer = quiet.extensions["hebdo.events"]
    assert buffer.pending() == 80

    statements.clear()
    assert flush_events(quiet) == 80
    inserts = [s for s in statements if s.upper().startswith("INSERT INTO EVENT")]
    assert len(inserts) == 1, inserts  # one bulk INSERT (executemany) for the whole batch
    rows = stored(sessions)
    assert len(rows) == 80
    opens = [e for e in rows if e.kind == EventKind.OPEN]
    assert {e.delivery_id for e in opens} == set(ids)
    for e in opens:
        assert (e.method, e.user_agent, e.network) == (
            "GET",
            PERSON["User-Agent"],
            "203.0.113.0/24",
        )
        assert e.seconds_after is not None
        assert 3600 <= e.seconds_after < 3700
        assert (e.actor, e.actor_rule) == (Actor.HUMAN, "person")
        assert e.edition_id is not None
        assert e.newsletter_id is not None
        assert e.subscriber_id is not None
    assert sorted(e.link_index or 0 for e in rows if e.kind == EventKind.CLICK) == sorted(
        n % 3 for n in range(40)
    )
    assert buffer.pending() == 0


def test_the_burst_rule_holds_within_a_batch_and_across_batches(
    backend: str, quiet: Flask, sessions: sessionmaker[Session], settings: Settings
) -> None:
    first, second, person = delivered(sessions, settings, 3)
    client = quiet.test_client(use_cookies=False)
    # A scanner follows three links of one message: all in one batch.
    for index in (0, 1, 2):
        assert client.get(click(settings, first, index), headers=SCANNER).status_code == 302
    # Another scanner's fetches land in two batches: two links, then a third.
    for index in (0, 1):
        assert client.get(click(settings, second, index), headers=PERSON).status_code == 302
    # A person clicks the same link twice: no burst.
    for _ in range(2):
        assert client.get(click(settings, person, 4), headers=PERSON).status_code == 302
    flush_events(quiet)
    assert {(e.delivery_id, e.actor_rule) for e in stored(sessions)} == {
        (first, "link_burst"),
        (second, "person"),
        (person, "person"),
    }
    feedback = tokens.sign(settings.secret_key, FEEDBACK_PURPOSE, second)
    assert client.get(f"/f/{feedback}/no", headers=PERSON).status_code == 200
    flush_events(quiet)
    by_delivery = {(e.delivery_id, e.kind, e.actor_rule) for e in stored(sessions)}
    assert (second, EventKind.CLICK, "person") not in by_delivery  # re-judged when the third came
    assert {rule for d, _, rule in by_delivery if d == second} == {"link_burst"}
    assert {rule for d, _, rule in by_delivery if d == person} == {"person"}


def test_the_verdict_uses_the_time_of_the_request_not_of_the_write(
    quiet: Flask, sessions: sessionmaker[Session], settings: Settings
) -> None:
    (delivery_id,) = delivered(sessions, settings, 1, ago=2)
    client = quiet.test_client(use_cookies=False)
    assert client.get(pixel(settings, delivery_id), headers=PERSON).status_code == 200
    time.sleep(3.5)  # written 5.5 s after the relay accepted it; requested at 2 s
    flush_events(quiet)
    (found,) = stored(sessions)
    assert found.seconds_after is not None
    assert found.seconds_after < 3
    assert (found.actor, found.actor_rule) == (Actor.MACHINE, "within_seconds")


def test_the_buffer_thread_writes_within_a_second_or_so(
    app: Flask, sessions: sessionmaker[Session], settings: Settings
) -> None:
    ids = delivered(sessions, settings, 5)
    client = app.test_client(use_cookies=False)
    asked = time.monotonic()
    for delivery_id in ids:
        assert client.get(pixel(settings, delivery_id), headers=PERSON).status_code == 200
    wait_for_events(sessions, 5, timeout=10)  # nobody flushes: the thread does
    assert time.monotonic() - asked < 5


def test_a_failed_write_keeps_its_events_for_the_next_one(
    app: Flask, sessions: sessionmaker[Session], settings: Settings
) -> None:
    ids = delivered(sessions, settings, 4)
    buffer = EventBuffer(app.extensions["hebdo.sessions"], interval=3600)  # no thread tick
    for delivery_id in ids:
        buffer.add(events.pending(EventKind.OPEN, delivery_id, events.Seen(user_agent="x")))
    with sessions.begin() as session:  # the table goes away for a while
        session.execute(text("ALTER TABLE event RENAME TO event_away"))
    with pytest.raises(Exception, match="event"):
        buffer.flush()
    assert buffer.pending() == 4
    with sessions.begin() as session:
        session.execute(text("ALTER TABLE event_away RENAME TO event"))
    assert buffer.flush() == 4
    assert len(stored(sessions)) == 4
    buffer.close()


def test_an_event_of_a_delivery_gone_meanwhile_is_dropped_quietly(
    quiet: Flask, sessions: sessionmaker[Session], settings: Settings
) -> None:
    keep, gone = delivered(sessions, settings, 2)
    client = quiet.test_client(use_cookies=False)
    assert client.get(pixel(settings, keep), headers=PERSON).status_code == 200
    assert client.get(pixel(settings, gone), headers=PERSON).status_code == 200
    with sessions.begin() as session:
        session.delete(session.get(Delivery, gone))
    assert flush_events(quiet) == 1
    assert [e.delivery_id for e in stored(sessions)] == [keep]
    # A forged token is still refused at the door, and nothing is buffered.
    assert client.get("/o/forged.gif").status_code == 404
    assert quiet.extensions["hebdo.events"].pending() == 0


def test_with_flush_seconds_zero_the_event_is_written_in_the_request(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    settings = Settings.from_env({**env, "HEBDO_EVENT_FLUSH_SECONDS": "0"}, testing=True)
    app = create_app(settings)  # an app of its own settings
    (delivery_id,) = delivered(sessions, settings, 1)
    assert app.test_client().get(pixel(settings, delivery_id), headers=PERSON).status_code == 200
    assert len(stored(sessions)) == 1


def test_gunicorn_stopped_gracefully_writes_every_answered_event(
    env: dict[str, str], sessions: sessionmaker[Session], settings: Settings
) -> None:
    ids = delivered(sessions, settings, 60)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "2",
         "-b", f"127.0.0.1:{port}", "service.app:create_app()"],
        env={**os.environ, **env, "HEBDO_EVENT_FLUSH_SECONDS": "3600"},  # only the exit writes
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while True:
            try:
                opener.open(f"http://127.0.0.1:{port}/login", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        for delivery_id in ids:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{pixel(settings, delivery_id)}", headers=PERSON
            )
            with opener.open(request, timeout=10) as response:
                assert response.status == 200
        assert stored(sessions) == []  # all still in the two workers' buffers
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert sorted(e.delivery_id or 0 for e in stored(sessions)) == ids
