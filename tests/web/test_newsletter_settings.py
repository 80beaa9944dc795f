"""The newsletter settings page: admins change every field at once or none; others read.

Requests go through the real app (CSRF on, accounts logged in through the login form)
against a migrated database; the audit log is read back from its table.
"""

from __future__ import annotations

import json
from datetime import time

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import AuditEntry, EditorRole, Newsletter
from tests import factories
from tests.web.logins import log_in, token

PAGE = "/newsletters/lettre/settings"
GOOD = {
    "name": "La Lettre du samedi",
    "description": "Ce qui a compté cette semaine.",
    "sender_name": "Rédaction",
    "sender_email": "Redaction@Hebdo.Example",
    "reply_to": "",
    "postal_address": "12 rue des Lilas\r\n75011 Paris",
    "language": "en",
    "timezone": "America/Montreal",
    "send_weekday": "sunday",
    "send_time": "07:30",
    "tracking": "",  # unchecked box: a browser leaves it out; the form then means off
    "website_url": "https://lettre.example/",
}


@pytest.fixture(autouse=True)
def letter(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session)


def _newsletter(sessions: sessionmaker[Session]) -> Newsletter:
    with sessions() as session:
        found = session.scalars(select(Newsletter)).one()
        session.expunge(found)
        return found


def _audit(sessions: sessionmaker[Session]) -> list[AuditEntry]:
    with sessions() as session:
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action == "newsletter.settings"))
        )
        session.expunge_all()
        return rows


def _post(client: FlaskClient, values: dict[str, str]) -> tuple[int, str]:
    data = {k: v for k, v in values.items() if not (k == "tracking" and not v)}
    response = client.post(PAGE, data={**data, "csrf_token": token(client, PAGE)})
    return response.status_code, response.get_data(as_text=True)


def test_an_admin_changes_every_setting_and_the_audit_log_has_before_and_after(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    status, _ = _post(client, GOOD)

    assert status == 302
    saved = _newsletter(sessions)
    assert (saved.name, saved.sender_email, saved.language) == (
        "La Lettre du samedi",
        "redaction@hebdo.example",
        "en",
    )
    assert (saved.timezone, saved.send_weekday, saved.send_time) == (
        "America/Montreal",
        6,
        time(7, 30),
    )
    assert saved.postal_address == "12 rue des Lilas\n75011 Paris"
    assert saved.tracking is False
    assert saved.website_url == "https://lettre.example/"
    [entry] = _audit(sessions)
    assert entry.actor == "admin@hebdo.example"
    changes = json.loads(entry.detail)["changes"]
    assert changes["timezone"] == ["Europe/Paris", "America/Montreal"]
    assert changes["send_weekday"] == ["saturday", "sunday"]
    assert changes["send_time"] == ["08:00", "07:30"]
    assert changes["tracking"] == [True, False]
    assert "reply_to" not in changes  # unchanged fields are not listed
    page = client.get(PAGE).get_data(as_text=True)
    assert 'value="America/Montreal"' in page


def test_bad_values_are_named_beside_their_fields_and_nothing_is_saved(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN, language="en")
    bad = {
        **GOOD,
        "timezone": "Europe/Atlantis",
        "send_time": "25:61",
        "sender_email": "not an address",
        "website_url": "javascript:alert(1)",
        "send_weekday": "caturday",
    }

    status, html = _post(client, bad)

    assert status == 422
    for field in ("timezone", "send_time", "sender_email", "website_url", "send_weekday"):
        assert f'id="f-{field}-error"' in html
    assert 'aria-describedby="f-timezone-error"' in html
    assert "not a known time zone" in html
    assert 'value="Europe/Atlantis"' in html  # what was typed stays in the form
    saved = _newsletter(sessions)
    assert (saved.name, saved.timezone, saved.language) == (
        "Intelligence & Société",
        "Europe/Paris",
        "fr",
    )
    assert _audit(sessions) == []


def test_a_header_breaking_name_is_cleaned_to_one_line(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    status, _ = _post(client, {**GOOD, "name": "Lettre\r\nBcc: x@evil.example", "sender_name": ""})

    assert status == 302
    saved = _newsletter(sessions)
    assert "\n" not in saved.name
    assert "\r" not in saved.name
    assert saved.sender_name == saved.name


@pytest.mark.parametrize("role", [EditorRole.EDITOR, EditorRole.VIEWER])
def test_editors_and_viewers_read_the_settings_but_a_change_is_refused(
    client: FlaskClient, sessions: sessionmaker[Session], role: EditorRole
) -> None:
    log_in(client, sessions, role, language="en")

    page = client.get(PAGE)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'value="lettre@hebdo.example"' in html
    assert "<fieldset disabled>" in html
    assert "Save settings" not in html

    status, _ = _post(client, GOOD)

    assert status == 403
    assert _newsletter(sessions).timezone == "Europe/Paris"
    assert _audit(sessions) == []


def test_an_unknown_newsletter_is_404(client: FlaskClient, sessions: sessionmaker[Session]) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    assert client.get("/newsletters/nope/settings").status_code == 404


ODD = ["x" * 10_000, "a\r\nBcc: x@evil.example", "٣", "-1", "99999999999999999999", "🙂" * 300]


def test_odd_values_in_any_field_are_refused_or_cleaned_never_a_5xx(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)
    csrf = token(client, PAGE)

    for field in GOOD:
        for value in ODD:
            response = client.post(PAGE, data={**GOOD, field: value, "csrf_token": csrf})
            assert response.status_code in (302, 422), (field, value[:20], response.status_code)
        listed = client.post(PAGE, data={**GOOD, "csrf_token": csrf, field: ["a", "b"]})
        assert listed.status_code in (302, 422)
    for value in ODD:
        added = client.post(
            "/suppressions/add", data={"target": value, "reason": value, "csrf_token": csrf}
        )
        assert added.status_code in (302, 422), value[:20]
    saved = _newsletter(sessions)
    assert len(saved.name) <= 200
    assert "\n" not in saved.sender_name
