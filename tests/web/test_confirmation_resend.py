"""The subscribers page's "re-send the confirmation email" action (CSRF on, no worker needed).

What goes out is checked end to end in tests/integration/test_confirmation_mails.py;
here: which readers a selection queues, and that the page refuses what it must.
"""

from __future__ import annotations

import html
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscriptions
from service.models import ConfirmationMail, Subscriber, Subscription
from service.team import editors
from tests import factories

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"


def _token(client: FlaskClient, path: str) -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


@pytest.fixture
def people(client: FlaskClient, sessions: sessionmaker[Session]) -> dict[str, int]:
    """An editor logged in; two pending readers and a confirmed one; ids by name."""
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
        letter = factories.newsletter(session)
        ids = {}
        for key, confirmed in [("lea", False), ("marc", False), ("nora", True)]:
            reader = subscriptions.find_or_create_subscriber(session, f"{key}@exemple.fr", key)
            subscriptions.subscribe(session, letter, reader, confirmed=confirmed, source="site")
            ids[key] = reader.id
    response = client.post(
        "/login",
        data={"email": EDITOR, "password": PASSWORD, "csrf_token": _token(client, "/login")},
    )
    assert response.status_code == 302
    return ids


def _queued_for(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return sorted(
            session.scalars(
                select(Subscriber.email)
                .join(Subscription, Subscription.subscriber_id == Subscriber.id)
                .join(ConfirmationMail, ConfirmationMail.subscription_id == Subscription.id)
            )
        )


def test_resending_to_a_selection_queues_only_its_pending_readers_after_a_confirmation(
    backend: str, client: FlaskClient, sessions: sessionmaker[Session], people: dict[str, int]
) -> None:
    form = {
        "csrf_token": _token(client, "/subscribers/?newsletter=lettre"),
        "newsletter": "lettre",
        "scope": "selected",
        "action": "resend",
        "id": [str(people["lea"]), str(people["nora"])],
    }
    ask = client.post("/subscribers/bulk", data=form)
    page = html.unescape(ask.get_data(as_text=True))
    assert ask.status_code == 200
    assert "Re-send the confirmation email to 1 reader?" in page
    assert "lea@exemple.fr" in page
    assert "nora@exemple.fr" not in page  # confirmed: left out
    assert _queued_for(sessions) == []  # asking changes nothing

    done = client.post("/subscribers/bulk", data={**form, "confirm": "yes"})
    assert done.status_code == 302
    assert "1 confirmation email queued." in html.unescape(
        client.get(done.headers["Location"]).get_data(as_text=True)
    )
    assert _queued_for(sessions) == ["lea@exemple.fr"]

    # Pressed again: lea already has one queued, so nothing more.
    client.post("/subscribers/bulk", data={**form, "confirm": "yes"})
    assert _queued_for(sessions) == ["lea@exemple.fr"]


def test_resend_needs_a_newsletter_and_a_csrf_token(
    backend: str, client: FlaskClient, sessions: sessionmaker[Session], people: dict[str, int]
) -> None:
    form = {"scope": "matching", "action": "resend", "confirm": "yes"}
    assert client.post("/subscribers/bulk", data=form).status_code == 400  # no CSRF token

    form["csrf_token"] = _token(client, "/subscribers/")
    done = client.post("/subscribers/bulk", data=form)
    assert done.status_code == 302
    assert "Choose a newsletter to re-send its confirmation emails." in html.unescape(
        client.get(done.headers["Location"]).get_data(as_text=True)
    )
    assert _queued_for(sessions) == []


def test_the_subscribers_page_counts_confirmation_emails_by_state(
    client: FlaskClient, sessions: sessionmaker[Session], people: dict[str, int]
) -> None:
    page = client.get("/subscribers/?newsletter=lettre&lang=fr").get_data(as_text=True)
    assert "E-mails de confirmation pour" in page
    assert "<strong>0 en attente</strong>" in page
    assert "Renvoyer l&#39;e-mail de confirmation aux lecteurs en attente…" in page
