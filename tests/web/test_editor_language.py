"""Editor pages speak French or English: ?lang= first, then the session, then Accept-Language.

Requests go through the real app (CSRF on, an editor logged in through the login form)
against a migrated database.
"""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from service.models import Edition, EditionStatus
from service.team import editors
from tests import factories

PASSWORD = "un mot de passe solide"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FRENCH_NAV = ("Éditions", "Rédiger", "Abonnés", "Boîte d&#39;envoi", "Se déconnecter")
ENGLISH_NAV = ("Editions", "Compose", "Subscribers", "Outbox", "Log out")


def _token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match[1]


def _log_in(client: FlaskClient, login_path: str = "/login") -> None:
    page = client.get(login_path).get_data(as_text=True)
    response = client.post(
        login_path,
        data={"csrf_token": _token(page), "email": "redaction@hebdo.example", "password": PASSWORD},
    )
    assert response.status_code == 302


def _nav(html: str) -> str:
    match = re.search(r"<nav\b[^>]*>(.*?)</nav>", html, re.DOTALL)
    assert match, "no navigation on the page"
    return match[1]


@pytest.fixture
def editor_account(sessions: sessionmaker[Session]) -> None:
    """An editor who can log in with PASSWORD."""
    with sessions() as session, session.begin():
        editors.create(session, "redaction@hebdo.example", PASSWORD, name="Rédaction")


@pytest.fixture
def editor(client: FlaskClient, editor_account: None) -> FlaskClient:
    """The client, logged in through the login form, with no language chosen yet."""
    _log_in(client)
    return client


@pytest.fixture
def draft_id(sessions: sessionmaker[Session]) -> int:
    """A draft edition of the French newsletter."""
    with sessions() as session, session.begin():
        return factories.edition(session, factories.newsletter(session)).id


def test_dashboard_with_lang_fr_is_in_french(editor: FlaskClient) -> None:
    html = editor.get("/?lang=fr", headers={"Accept-Language": "en"}).get_data(as_text=True)

    assert '<html lang="fr">' in html
    nav = _nav(html)
    for word in FRENCH_NAV[:4]:
        assert f">{word}</a>" in nav
    assert ">Se déconnecter</button>" in html
    assert "<title>Éditions · Hebdo</title>" in html
    assert ">Compose<" not in html
    assert ">Log out<" not in html


def test_dashboard_follows_accept_language_english(editor: FlaskClient) -> None:
    html = editor.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)

    assert '<html lang="en">' in html
    nav = _nav(html)
    for word in ENGLISH_NAV[:4]:
        assert f">{word}</a>" in nav
    assert ">Log out</button>" in html
    assert "Rédiger" not in html


def test_dashboard_follows_accept_language_french(editor: FlaskClient) -> None:
    html = editor.get("/", headers={"Accept-Language": "fr-FR,fr;q=0.9"}).get_data(as_text=True)

    assert '<html lang="fr">' in html
    assert ">Rédiger</a>" in _nav(html)


def test_the_switch_links_to_this_page_in_each_language_and_the_choice_sticks(
    editor: FlaskClient,
) -> None:
    html = editor.get("/subscribers/?q=martin&lang=fr").get_data(as_text=True)
    links = re.findall(r'<a href="([^"]+)" lang="\w+" hreflang="(\w+)"([^>]*)>', html)
    assert links == [
        ("/subscribers/?q=martin&amp;lang=fr", "fr", ' aria-current="true"'),
        ("/subscribers/?q=martin&amp;lang=en", "en", ""),
    ]

    # No ?lang= any more, and a browser asking for English: the choice wins.
    later = editor.get("/compose/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in later
    assert '<h1 class="page-title">Rédiger</h1>' in later

    back = editor.get("/compose/?lang=en", headers={"Accept-Language": "fr"})
    assert '<h1 class="page-title">Compose</h1>' in back.get_data(as_text=True)


def test_french_chosen_on_the_login_page_stays_after_logging_in(
    client: FlaskClient, editor_account: None
) -> None:
    login = client.get("/login?lang=fr", headers={"Accept-Language": "en"})
    page = login.get_data(as_text=True)
    assert '<html lang="fr">' in page
    assert ">Mot de passe</label>" in page
    assert ">Se connecter</button>" in page

    _log_in(client)
    html = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert ">Se déconnecter</button>" in html


def test_a_wrong_password_is_refused_in_the_editors_language(
    client: FlaskClient, editor_account: None
) -> None:
    page = client.get("/login?lang=fr").get_data(as_text=True)
    response = client.post(
        "/login",
        data={"csrf_token": _token(page), "email": "redaction@hebdo.example", "password": "non"},
    )
    assert response.status_code == 401
    assert "Adresse inconnue ou mot de passe erroné." in response.get_data(as_text=True)


def test_edition_page_links_a_draft_to_the_composer(editor: FlaskClient, draft_id: int) -> None:
    html = editor.get(f"/editions/{draft_id}?lang=fr").get_data(as_text=True)

    assert (
        f'<a href="/compose/editions/{draft_id}" id="edit-content">Modifier le contenu</a>' in html
    )
    assert '<span class="badge draft" id="status">brouillon</span>' in html
    assert ">Programmer</button>" in html
    # The date of the next weekly slot is spelled in French too.
    slot = re.search(r"Prochain créneau hebdomadaire : (\w+) ", html)
    assert slot, "no next weekly slot"
    assert slot[1] in ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def test_edition_page_offers_no_composer_link_once_the_edition_is_cancelled(
    editor: FlaskClient, draft_id: int, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        edition = session.get(Edition, draft_id)
        assert edition is not None
        edition.status = EditionStatus.CANCELLED

    html = editor.get(f"/editions/{draft_id}").get_data(as_text=True)

    assert "edit-content" not in html
    assert f"/compose/editions/{draft_id}" not in html


@pytest.mark.parametrize(
    ("path", "french"),
    [
        ("/compose/", "Nouvelle édition"),
        ("/compose/editions/{draft}", "Enregistrement automatique toutes les 20 s"),
        ("/compose/lettre/paste", "Texte du brouillon"),
        ("/editions/{draft}/preview", "Aperçu de l&#39;édition n° 1"),
        ("/subscribers/", "Aucun abonné ne correspond."),
        ("/subscribers/import", "Importer des abonnés"),
    ],
)
def test_every_editor_page_answers_in_french(
    editor: FlaskClient, draft_id: int, path: str, french: str
) -> None:
    response = editor.get(path.format(draft=draft_id), query_string={"lang": "fr"})

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert french in html
