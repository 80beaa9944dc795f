"""The weekly rhythm on the pages: the dashboard's countdown and warning, the next-issue button."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Edition, EditorRole, Newsletter, utcnow
from tests import factories
from tests.web.logins import log_in, token


def _slot_in(sessions: sessionmaker[Session], hours: float) -> None:
    """Move the newsletter's weekly slot to `hours` from now (on its own wall clock)."""
    with sessions() as session, session.begin():
        letter = session.scalars(select(Newsletter)).one()
        local = (utcnow() + timedelta(hours=hours)).astimezone(ZoneInfo(letter.timezone))
        letter.send_weekday = local.weekday()
        letter.send_time = local.time().replace(second=0, microsecond=0)


def test_the_dashboard_counts_down_and_warns_a_day_before_an_empty_slot(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        edition_id = factories.edition(session, factories.newsletter(session)).id
    log_in(client, sessions, EditorRole.EDITOR, language="en")
    _slot_in(sessions, 50)

    html = client.get("/").get_data(as_text=True)
    line = re.search(r'<p class="slot-line" id="slot-lettre">([^<]*)</p>', html)
    assert line, "no next slot on the dashboard"
    assert re.fullmatch(
        r"Next slot \w+ \d{1,2} \w+ \d\d:\d\d \(Europe/Paris\), in 2 days [01] h\.", line[1]
    )
    assert "slot-warning-lettre" not in html

    _slot_in(sessions, 5)
    html = client.get("/").get_data(as_text=True)
    assert 'id="slot-warning-lettre"' in html
    assert "Nothing is ready for the next slot." in html

    # Marking the (ready) draft as the next issue covers the slot: the warning goes.
    page = f"/editions/{edition_id}"
    response = client.post(
        f"{page}/next-issue", data={"on": "on", "csrf_token": token(client, page)}
    )
    assert response.status_code == 302
    with sessions() as session:
        assert session.get(Edition, edition_id).is_next_issue  # type: ignore[union-attr]
    assert "This edition is the next issue" in client.get(page).get_data(as_text=True)
    assert "slot-warning-lettre" not in client.get("/").get_data(as_text=True)


def test_a_viewer_cannot_mark_the_next_issue(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        edition_id = factories.edition(session, factories.newsletter(session)).id
    log_in(client, sessions, EditorRole.VIEWER)
    page = f"/editions/{edition_id}"

    response = client.post(
        f"{page}/next-issue", data={"on": "on", "csrf_token": token(client, page)}
    )

    assert response.status_code == 403
    with sessions() as session:
        assert not session.get(Edition, edition_id).is_next_issue  # type: ignore[union-attr]
