"""Editor pages speak the newsletter's language until the editor chooses their own.

Order: ?lang= (kept in the editor's account), the editor's saved choice, the language of
the newsletter the page is about (else the first newsletter), then Accept-Language.
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.models import Editor, EditorRole
from tests import factories
from tests.web.logins import PASSWORD, log_in, token


def test_a_french_newsletters_dashboard_opens_in_french_for_an_editor_with_no_choice(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session, language="fr")
    client = log_in(app.test_client(), sessions, EditorRole.EDITOR)

    html = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)

    assert '<html lang="fr">' in html
    assert ">Rédiger</a>" in html


def test_lang_is_saved_in_the_account_and_wins_over_the_newsletter_next_time(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session, language="fr")
    first = log_in(app.test_client(), sessions, EditorRole.EDITOR)

    assert '<html lang="en">' in first.get("/?lang=en").get_data(as_text=True)

    with sessions() as session:
        saved = session.scalars(select(Editor.language)).one()
    assert saved == "en"
    # Another browser, no ?lang= and no cookie choice: the account's choice still holds.
    other = app.test_client()

    other.post(
        "/login",
        data={
            "email": "editor@hebdo.example",
            "password": PASSWORD,
            "csrf_token": token(other, "/login"),
        },
    )
    html = other.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in html
    assert ">Compose</a>" in html


def test_a_page_about_an_english_newsletter_is_in_english_beside_a_french_one(
    app: Flask, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session, slug="lettre", language="fr")
        english = factories.newsletter(session, slug="weekly", language="en")
        edition_id = factories.edition(session, english, language="en").id
    client = log_in(app.test_client(), sessions, EditorRole.EDITOR)

    edition_page = client.get(f"/editions/{edition_id}").get_data(as_text=True)
    dashboard = client.get("/").get_data(as_text=True)

    assert '<html lang="en">' in edition_page
    assert '<html lang="fr">' in dashboard  # about no newsletter: the first one's language
