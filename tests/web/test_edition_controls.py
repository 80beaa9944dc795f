"""The edition page's controls: schedule in the newsletter's zone, pause, resume, cancel.

Requests go through the real app (CSRF on, an editor logged in through the form);
resuming puts a real send task on the test instance's broker, read back from it.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.models import Delivery, DeliveryStatus, Edition, EditionStatus, utcnow
from service.sending import controls, schedule
from service.team import editors
from tests import factories
from worker.celery_app import app as celery_app

PASSWORD = "un mot de passe solide"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def editor(client: FlaskClient, sessions: sessionmaker[Session]) -> FlaskClient:
    """The client, logged in through the login form."""
    with sessions() as session, session.begin():
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, "redaction@hebdo.example", PASSWORD).language = "en"
    response = client.post(
        "/login",
        data={
            "email": "redaction@hebdo.example",
            "password": PASSWORD,
            "csrf_token": _token(client, "/login"),
        },
    )
    assert response.status_code == 302
    return client


@pytest.fixture
def edition_id(sessions: sessionmaker[Session]) -> int:
    """A draft edition of a Paris newsletter with ten confirmed readers."""
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 10)
        return factories.edition(session, letter).id


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match[1]


def _page(client: FlaskClient, edition_id: int) -> str:
    response = client.get(f"/editions/{edition_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _post(client: FlaskClient, edition_id: int, action: str, **form: str) -> str:
    """Submit one of the page's forms, the way the browser does, and follow the redirect."""
    token = _token(client, f"/editions/{edition_id}")
    response = client.post(
        f"/editions/{edition_id}/{action}",
        data={"csrf_token": token, **form},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert response.request.path == f"/editions/{edition_id}"
    return response.get_data(as_text=True)


def _edition(sessions: sessionmaker[Session], edition_id: int) -> Edition:
    with sessions() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        return found


def _begin(sessions: sessionmaker[Session], settings: Settings, edition_id: int) -> None:
    with sessions() as session, session.begin():
        found = session.get(Edition, edition_id)
        assert found is not None
        factories.begin_sending(session, settings, found)


def _queued_sends(broker_url: str) -> list[int]:
    """Take every message off the broker's hebdo queue; the editions they ask to send."""
    sent_for = []
    with celery_app.connection_for_read(broker_url) as connection:
        channel: Any = connection.default_channel
        while (message := channel.basic_get("hebdo", no_ack=True)) is not None:
            assert message.headers["task"] == "hebdo.send_pending"
            args, _kwargs, _embed = message.decode()
            sent_for.append(args[0])
    return sent_for


def test_controls_need_an_editor_and_the_csrf_token(
    client: FlaskClient, sessions: sessionmaker[Session], settings: Settings, edition_id: int
) -> None:
    _begin(sessions, settings, edition_id)
    for action in ("pause", "cancel", "resume", "schedule", "unschedule"):
        anonymous = client.post(f"/editions/{edition_id}/{action}")
        assert anonymous.status_code in (302, 400), action
        if anonymous.status_code == 302:
            assert anonymous.headers["Location"].startswith("/login"), action

    with sessions() as session, session.begin():
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, "redaction@hebdo.example", PASSWORD).language = "en"
    client.post(
        "/login",
        data={
            "email": "redaction@hebdo.example",
            "password": PASSWORD,
            "csrf_token": _token(client, "/login"),
        },
    )
    for action in ("pause", "cancel"):
        assert client.post(f"/editions/{edition_id}/{action}").status_code == 400
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING


def test_scheduling_speaks_the_newsletters_wall_clock_time(
    editor: FlaskClient, sessions: sessionmaker[Session], edition_id: int
) -> None:
    page = _page(editor, edition_id)
    assert 'type="datetime-local"' in page
    assert "time in Europe/Paris" in page
    with sessions() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        slot = schedule.next_slot(found.newsletter, utcnow())
    # The form proposes the next weekly slot, in Paris time.
    assert f'value="{slot.astimezone(ZoneInfo("Europe/Paris")):%Y-%m-%dT%H:%M}"' in page

    # Summer, then winter: the same wall-clock hour is a different UTC hour.
    page = _post(editor, edition_id, "schedule", at="2031-07-05T08:00")
    assert _edition(sessions, edition_id).scheduled_at == datetime(2031, 7, 5, 6, 0, tzinfo=UTC)
    assert "Goes out on <strong>Saturday 05 July 2031, 08:00 (Europe/Paris)</strong>" in page
    assert ">Reschedule</button>" in page
    assert ">Unschedule</button>" in page
    _post(editor, edition_id, "schedule", at="2031-12-06T08:00")
    assert _edition(sessions, edition_id).scheduled_at == datetime(2031, 12, 6, 7, 0, tzinfo=UTC)

    page = _post(editor, edition_id, "schedule", at="2020-01-04T08:00")
    assert "is in the past" in page
    page = _post(editor, edition_id, "schedule", at="le week-end prochain")
    assert "Give a date and a time." in page
    assert _edition(sessions, edition_id).scheduled_at == datetime(2031, 12, 6, 7, 0, tzinfo=UTC)

    _post(editor, edition_id, "schedule", slot="next")
    found = _edition(sessions, edition_id)
    assert (found.status, found.scheduled_at) == (EditionStatus.SCHEDULED, slot)

    page = _post(editor, edition_id, "unschedule")
    found = _edition(sessions, edition_id)
    assert (found.status, found.scheduled_at) == (EditionStatus.DRAFT, None)
    assert "Back to draft." in page
    assert "Unschedule" not in page


def test_pause_resume_and_cancel_from_the_edition_page(
    backend: str,
    editor: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    edition_id: int,
) -> None:
    _begin(sessions, settings, edition_id)
    page = _page(editor, edition_id)
    assert ">Pause</button>" in page
    assert ">Cancel sending</button>" in page
    assert ">Resume</button>" not in page

    page = _post(editor, edition_id, "pause")
    found = _edition(sessions, edition_id)
    assert (found.status, found.status_detail, found.resume_at) == (
        EditionStatus.PAUSED,
        "paused by an editor",
        None,
    )
    # The counts once the workers let go (none hold rows here): the final ones.
    assert "Paused: 0 sent, 10 left." in page
    assert ">Resume</button>" in page
    assert ">Pause</button>" not in page

    page = _post(editor, edition_id, "resume")
    assert _edition(sessions, edition_id).status == EditionStatus.SENDING
    assert "Resumed: 10 messages to go." in page
    # The workers are told at once, through the instance's own broker.
    assert _queued_sends(settings.broker_url) == [edition_id]

    page = _post(editor, edition_id, "cancel")
    assert _edition(sessions, edition_id).status == EditionStatus.CANCELLED
    with sessions() as session:
        statuses = set(session.scalars(select(Delivery.status)))
    assert statuses == {DeliveryStatus.CANCELLED}
    assert "Cancelled: 10 will not go out, 0 sent." in page
    assert "Cancel sending" not in page

    page = _post(editor, edition_id, "resume")
    assert "only a paused edition can be resumed (cancelled)" in page
    assert _queued_sends(settings.broker_url) == []


def test_a_send_paused_by_a_relay_outage_says_when_it_resumes(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings, edition_id: int
) -> None:
    _begin(sessions, settings, edition_id)
    with sessions() as session, session.begin():
        found = session.get(Edition, edition_id)
        assert found is not None
        controls.pause_for_relay(session, found, "no SMTP relay reachable (127.0.0.1:1)")

    page = _page(editor, edition_id)
    assert "paused: SMTP relay unavailable (no SMTP relay reachable (127.0.0.1:1))" in page
    assert "it resumes by itself on" in page
    # Pausing it turns the outage pause into an editor's pause: it stays stopped.
    _post(editor, edition_id, "pause")
    found = _edition(sessions, edition_id)
    assert (found.status, found.resume_at) == (EditionStatus.PAUSED, None)
    assert "resumes by itself" not in _page(editor, edition_id)


def test_a_send_paused_by_a_full_relay_says_why_and_when_it_resumes(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings, edition_id: int
) -> None:
    _begin(sessions, settings, edition_id)
    with sessions() as session, session.begin():
        found = session.get(Edition, edition_id)
        assert found is not None
        controls.pause_for_fault(
            session, found, "the SMTP relay's storage is full (452 4.3.1 Insufficient storage)"
        )

    page = html.unescape(_page(editor, edition_id))
    assert "paused: the SMTP relay's storage is full (452 4.3.1 Insufficient storage)" in page
    assert "it resumes by itself on" in page
    progress = editor.get(f"/editions/{edition_id}/progress.json").get_json()
    assert progress["status"] == "paused"
    assert "storage is full" in progress["detail"]
    assert progress["resume_at"]


def test_progress_reports_counts_rate_and_time_left(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings, edition_id: int
) -> None:
    _begin(sessions, settings, edition_id)
    now = utcnow()
    with sessions() as session, session.begin():
        session.execute(
            update(Edition)
            .where(Edition.id == edition_id)
            .values(send_started_at=now - timedelta(seconds=20))
        )
        first_four = select(Delivery.id).order_by(Delivery.id).limit(4).scalar_subquery()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(first_four))
            .values(status=DeliveryStatus.SENT, sent_at=now - timedelta(seconds=5))
        )

    progress = editor.get(f"/editions/{edition_id}/progress.json").get_json()

    assert {k: progress[k] for k in ("status", "sent", "queued", "failed", "total")} == {
        "status": "sending",
        "sent": 4,
        "queued": 6,
        "failed": 0,
        "total": 10,
    }
    # Four messages in twenty seconds: six more take about thirty.
    assert progress["per_second"] == pytest.approx(0.2, abs=0.01)
    assert 28 <= progress["seconds_left"] <= 31
    assert progress["resume_at"] is None
    assert 'id="eta"' in _page(editor, edition_id)


def test_the_edition_page_lists_failed_deliveries_with_their_reasons(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings, edition_id: int
) -> None:
    _begin(sessions, settings, edition_id)
    assert 'id="failures"' not in _page(editor, edition_id)
    with sessions() as session, session.begin():
        first_three = select(Delivery.id).order_by(Delivery.id).limit(3).scalar_subquery()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(first_three))
            .values(status=DeliveryStatus.FAILED, last_error="550 5.1.1 <x> no such user")
        )
        emails = list(session.scalars(select(Delivery.email).order_by(Delivery.id).limit(3)))

    page = _page(editor, edition_id)
    assert "Failed deliveries (3)" in page
    for address in emails:
        assert f"<td>{address}</td><td>550 5.1.1 &lt;x&gt; no such user</td>" in page
    assert "lists them all" not in page
    assert "3 failed" in page
