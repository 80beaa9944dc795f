"""Reader pages through the real app (CSRF on): signup, confirmation, preference centre.

Confirmation messages reach the recording SMTP server over real SMTP; the database is
arranged and checked in short transactions so the app's requests never wait on a lock.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import tokens
from service.audience import signup, subscriptions
from service.config import Settings
from service.models import (
    Delivery,
    Event,
    EventKind,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from service.sending import loop
from service.web import i18n
from tests import factories
from tests.support.messages import ROOT, extract
from tests.support.smtp import RecordedMessage, RecordingSmtpServer

T = TypeVar("T")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TEMPLATES = Path(__file__).resolve().parents[2] / "service" / "web" / "templates" / "web" / "reader"
IP = "203.0.113.7"


def _read(sessions: sessionmaker[Session], fn: Callable[[Session], T]) -> T:
    with sessions() as session:
        return fn(session)


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _csrf(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    match = CSRF.search(_text(response))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def _subscription(sessions: sessionmaker[Session], email: str, slug: str = "lettre") -> Any:
    def find(session: Session) -> Any:
        return session.execute(
            select(Subscription, Subscriber)
            .join(Subscriber)
            .where(Subscriber.email == email, Subscription.newsletter.has(slug=slug))
        ).one_or_none()

    return _read(sessions, find)


def _link(message: RecordedMessage, marker: str) -> str:
    body = message.parsed().get_body(("plain",))
    assert body is not None
    (link,) = {u for u in re.findall(r"https?://\S+", body.get_content()) if marker in u}
    return str(urlsplit(link).path)


def _sign_up(
    client: FlaskClient, email: str, *, ip: str = IP, name: str = "", slug: str = "lettre"
) -> Any:
    path = f"/n/{slug}/subscribe"
    data = {"email": email, "name": name, "language": "fr", "csrf_token": _csrf(client, path)}
    return client.post(path, data=data, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def letter(sessions: sessionmaker[Session]) -> int:
    """The French newsletter "lettre"; returns its id."""
    with sessions.begin() as session:
        return factories.newsletter(session).id


def test_signup_page_has_a_csrf_protected_form_in_the_newsletter_language(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session]
) -> None:
    page = client.get("/n/lettre/subscribe")
    body = _text(page)
    assert page.status_code == 200
    assert '<html lang="fr">' in body
    assert "S'abonner à Intelligence & Société" in body
    assert CSRF.search(body)
    assert 'name="email" type="email" required' in body

    refused = client.post("/n/lettre/subscribe", data={"email": "a@exemple.fr"})
    assert refused.status_code == 400
    assert _read(sessions, lambda s: s.scalar(select(func.count()).select_from(Subscriber))) == 0
    assert client.get("/n/inconnue/subscribe").status_code == 404


def test_signup_records_consent_and_the_emailed_link_confirms_once(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    response = client.post(
        "/n/lettre/subscribe",
        data={
            "email": "Jeanne.Moreau@Exemple.fr",
            "name": "Jeanne",
            "language": "fr",
            "csrf_token": _csrf(client, "/n/lettre/subscribe"),
        },
        environ_base={"REMOTE_ADDR": IP},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux) Test"},
    )
    assert response.status_code == 200
    assert "Regardez votre boîte de réception" in _text(response)
    subscription, subscriber = _subscription(sessions, "jeanne.moreau@exemple.fr")
    assert subscription.status is SubscriptionStatus.PENDING
    assert (subscription.consent_ip, subscription.consent_user_agent) == (
        IP, "Mozilla/5.0 (X11; Linux) Test",
    )  # fmt: skip
    assert subscription.consent_source == "signup page /n/lettre/subscribe"
    assert subscriber.name == "Jeanne"

    (message,) = smtp_server.wait_for(1)
    assert message.rcpt_tos == ("jeanne.moreau@exemple.fr",)
    path = _link(message, "/confirm/")

    # Following the link asks for a click and changes nothing by itself.
    page = client.get(path)
    assert page.status_code == 200
    assert "Je confirme mon abonnement" in _text(page)
    assert _subscription(sessions, subscriber.email)[0].status is SubscriptionStatus.PENDING

    token = CSRF.search(_text(page))
    assert token is not None
    done = client.post(path, data={"csrf_token": token.group(1)})
    assert done.status_code == 200
    assert "Bienvenue" in _text(done)
    assert _subscription(sessions, subscriber.email)[0].status is SubscriptionStatus.CONFIRMED

    # Twice is harmless, and the link now says so.
    again = client.post(path, data={"csrf_token": token.group(1)})
    assert again.status_code == 200
    assert "était déjà confirmé" in _text(again)
    assert "était déjà confirmé" in _text(client.get(path))
    assert _subscription(sessions, subscriber.email)[0].status is SubscriptionStatus.CONFIRMED


def test_the_answer_never_tells_whether_an_address_is_known(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        newsletter = factories.newsletter(session, slug="autre")
        for email, state in [
            ("confirmed@exemple.fr", "confirmed"),
            ("pending@exemple.fr", "pending"),
            ("left@exemple.fr", "unsubscribed"),
            ("bounced@exemple.fr", "bounced"),
        ]:
            person = subscriptions.find_or_create_subscriber(session, email)
            sub = subscriptions.subscribe(
                session, newsletter, person, confirmed=state != "pending", source="test"
            )
            if state == "unsubscribed":
                subscriptions.unsubscribe(session, sub)
            if state == "bounced":
                subscriptions.record_hard_bounce(session, email, "550 5.1.1 unknown")
        subscriptions.suppress(session, "blocked@exemple.fr", SuppressionReason.MANUAL)

    answers = set()
    for email in ("new@exemple.fr", "confirmed@exemple.fr", "pending@exemple.fr",
                  "left@exemple.fr", "bounced@exemple.fr", "blocked@exemple.fr"):  # fmt: skip
        response = _sign_up(client, email, slug="autre")
        answers.add((response.status_code, _text(response)))
    assert len(answers) == 1
    ((status, _),) = answers
    assert status == 200

    # Behind the identical answers: links for those who need one, a notice for the
    # confirmed reader, nothing for the blocked address, and no state revealed or changed.
    smtp_server.wait_for(5)
    subjects = {m.rcpt_tos[0]: m.parsed()["Subject"] for m in smtp_server.messages}
    assert "blocked@exemple.fr" not in subjects
    assert subjects["confirmed@exemple.fr"].startswith("Vous recevez déjà")
    for email in ("new@", "pending@", "left@", "bounced@"):
        assert subjects[email + "exemple.fr"].startswith("Confirmez votre abonnement")
    confirmed = _subscription(sessions, "confirmed@exemple.fr", "autre")[0]
    assert confirmed.status is SubscriptionStatus.CONFIRMED
    left = _subscription(sessions, "left@exemple.fr", "autre")[0]
    assert left.status is SubscriptionStatus.PENDING  # back only once the link is used
    assert _read(sessions, lambda s: s.scalar(select(func.count()).select_from(Suppression))) == 3


def test_resubscribing_after_leaving_and_bouncing_goes_through_the_emailed_link(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        newsletter = factories.newsletter(session, slug="autre")
        (reader,) = factories.readers(session, newsletter, 1)
        sub = session.scalars(select(Subscription)).one()
        subscriptions.unsubscribe(session, sub, reason="vacances")
        subscriptions.record_hard_bounce(session, reader.email, "550 5.1.1 unknown")
    _sign_up(client, "r0@example.org", slug="autre")
    path = _link(smtp_server.wait_for(1)[0], "/confirm/")
    client.post(path, data={"csrf_token": _csrf(client, path)})

    subscription, subscriber = _subscription(sessions, "r0@example.org", "autre")
    assert subscription.status is SubscriptionStatus.CONFIRMED
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert _read(sessions, lambda s: s.scalar(select(func.count()).select_from(Suppression))) == 0


def test_expired_and_forged_confirmation_links_explain_what_to_do(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session], settings: Settings
) -> None:
    with sessions.begin() as session:
        result = signup.request(
            session, session.get_one(Newsletter, letter),
            email="late@exemple.fr", source="test",
        )  # fmt: skip
    old = signup.confirmation_token(
        settings.secret_key, result.subscription_id, utcnow().replace(year=utcnow().year - 1)
    )
    expired = client.get(f"/n/lettre/confirm/{old}")
    assert expired.status_code == 410
    assert "Ce lien a expiré" in _text(expired)
    assert 'href="/n/lettre/subscribe"' in _text(expired)

    fresh = signup.confirmation_token(settings.secret_key, result.subscription_id)
    forged = fresh[:-3] + ("xyz" if not fresh.endswith("xyz") else "abc")
    page = client.get(f"/n/lettre/confirm/{forged}")
    assert page.status_code == 404
    assert "Ce lien ne fonctionne pas" in _text(page)
    token = _csrf(client, "/n/lettre/subscribe")
    assert client.post(f"/n/lettre/confirm/{forged}", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/n/lettre/confirm/{old}", data={"csrf_token": token}).status_code == 410
    assert client.get(f"/n/autre/confirm/{fresh}").status_code == 404
    assert _subscription(sessions, "late@exemple.fr")[0].status is SubscriptionStatus.PENDING


def test_signups_are_limited_per_ip_address(
    client: FlaskClient, letter: int, sessions: sessionmaker[Session]
) -> None:
    limit = signup.SIGNUPS_PER_IP_PER_HOUR
    codes = [_sign_up(client, f"p{n}@exemple.fr").status_code for n in range(limit + 1)]
    assert codes == [200] * limit + [429]
    assert "Trop de tentatives" in _text(_sign_up(client, "x@exemple.fr"))
    assert _sign_up(client, "other@exemple.fr", ip="198.51.100.20").status_code == 200
    count = _read(sessions, lambda s: s.scalar(select(func.count()).select_from(Subscription)))
    assert count == limit + 1


def test_embedded_form_needs_no_csrf_token_and_only_ever_mails_a_link(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
    settings: Settings,
) -> None:
    embed = _text(client.get("/n/lettre/embed"))
    assert f'action="{settings.base_url}/n/lettre/subscribe/embed"' in embed
    assert 'name="website"' in embed

    # A fresh client: no cookie, no CSRF token, as from a form on another site.
    outsider = client.application.test_client(use_cookies=False)
    response = outsider.post(
        "/n/lettre/subscribe/embed",
        data={"email": "lectrice@exemple.fr", "name": "Inès", "language": "fr", "website": ""},
        headers={"Origin": "https://blog.exemple.org"},
        environ_base={"REMOTE_ADDR": IP},
    )
    assert response.status_code == 200
    subscription, _ = _subscription(sessions, "lectrice@exemple.fr")
    assert subscription.status is SubscriptionStatus.PENDING
    assert subscription.consent_source == "embedded form on blog.exemple.org"
    assert smtp_server.wait_for(1)[0].rcpt_tos == ("lectrice@exemple.fr",)

    robot = outsider.post(
        "/n/lettre/subscribe/embed",
        data={"email": "robot@exemple.fr", "website": "http://spam.example"},
        environ_base={"REMOTE_ADDR": IP},
    )
    assert (robot.status_code, _text(robot)) == (
        200,
        _text(response),
    )
    assert _subscription(sessions, "robot@exemple.fr") is None
    assert len(smtp_server.messages) == 1


# --- Preference centre ----------------------------------------------------------------


def _deliver(
    sessions: sessionmaker[Session], settings: Settings, smtp_server: RecordingSmtpServer
) -> dict[str, RecordedMessage]:
    """Send the sample edition of "lettre" to its two readers; their messages by address."""
    with sessions.begin() as session:
        newsletter = session.scalars(select(Newsletter)).one()
        factories.readers(session, newsletter, 2)
        edition = factories.edition(session, newsletter)
        factories.begin_sending(session, settings, edition, batch_size=50)
        edition_id = edition.id
    loop.send_pending(sessions, settings, edition_id)
    return {m.rcpt_tos[0]: m for m in smtp_server.wait_for(2)}


@pytest.fixture
def prefs(
    client: FlaskClient,
    letter: int,
    sessions: sessionmaker[Session],
    settings: Settings,
    smtp_server: RecordingSmtpServer,
) -> str:
    """The preference-centre path from the edition r0@example.org received."""
    messages = _deliver(sessions, settings, smtp_server)
    smtp_server.clear()
    return _link(messages["r0@example.org"], f"{settings.base_url}/p/")


def test_preference_link_of_an_edition_opens_that_readers_page(
    client: FlaskClient, prefs: str, settings: Settings
) -> None:
    page = client.get(prefs)
    body = _text(page)
    assert page.status_code == 200
    assert "Vos préférences" in body
    assert "Pour r0@example.org" in body
    assert 'value="Lecteur 0"' in body
    assert "r1@example.org" not in body
    assert page.headers["Cache-Control"] == "no-store"

    forged = prefs[:-2] + ("AA" if not prefs.endswith("AA") else "BB")
    assert client.get(forged).status_code == 404
    assert client.get("/p/" + tokens.sign("other-secret", "prefs", 1)).status_code == 404
    # Every form needs its CSRF token.
    assert client.post(prefs, data={"name": "Pirate"}).status_code == 400


def test_changing_name_language_and_newsletters(
    client: FlaskClient,
    prefs: str,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions.begin() as session:
        other = factories.newsletter(session, slug="weekly", language="en").id
    letter_id = _subscription(sessions, "r0@example.org")[0].newsletter_id
    response = client.post(
        prefs,
        data={"csrf_token": _csrf(client, prefs), "name": "Zoé", "language": "en",
              "newsletter": [str(letter_id), str(other)]},
    )  # fmt: skip
    assert response.status_code == 303
    page = _text(client.get(prefs))
    assert "Saved. We sent you an email" in page
    assert "Waiting for your confirmation" in page
    _, subscriber = _subscription(sessions, "r0@example.org")
    assert (subscriber.name, subscriber.locale) == ("Zoé", "en")
    weekly, _ = _subscription(sessions, "r0@example.org", "weekly")
    assert weekly.status is SubscriptionStatus.PENDING
    assert weekly.consent_source == "preference centre"
    (message,) = smtp_server.wait_for(1)
    assert message.parsed()["Subject"] == "Please confirm your subscription to AI Weekly"

    # Unticking "lettre" unsubscribes at once.
    client.post(prefs, data={"csrf_token": _csrf(client, prefs), "name": "Zoé",
                             "language": "en", "newsletter": [str(other)]})  # fmt: skip
    assert _subscription(sessions, "r0@example.org")[0].status is SubscriptionStatus.UNSUBSCRIBED


def test_pause_and_resume(client: FlaskClient, prefs: str, sessions: sessionmaker[Session]) -> None:
    client.post(prefs + "/pause", data={"csrf_token": _csrf(client, prefs), "weeks": "4"})
    subscription, _ = _subscription(sessions, "r0@example.org")
    assert subscription.paused_until is not None
    assert 27 <= (subscription.paused_until - utcnow()).days <= 28
    assert "Vos lettres sont en pause jusqu" in _text(client.get(prefs))

    bad = client.post(prefs + "/pause", data={"csrf_token": _csrf(client, prefs), "weeks": "99"})
    assert bad.status_code == 303
    client.post(prefs + "/pause", data={"csrf_token": _csrf(client, prefs), "action": "resume"})
    assert _subscription(sessions, "r0@example.org")[0].paused_until is None


def test_unsubscribe_with_a_reason_then_come_back_through_the_double_opt_in(
    client: FlaskClient,
    prefs: str,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    response = client.post(
        prefs + "/unsubscribe",
        data={"csrf_token": _csrf(client, prefs), "newsletter": "all", "reason": "Trop dense"},
    )
    assert response.status_code == 303
    subscription, _ = _subscription(sessions, "r0@example.org")
    assert subscription.status is SubscriptionStatus.UNSUBSCRIBED
    assert subscription.unsubscribe_reason == "Trop dense"
    events = _read(sessions, lambda s: s.scalars(select(Event.kind)).all())
    assert events == [EventKind.UNSUBSCRIBE]
    page = _text(client.get(prefs))
    assert "Vous êtes désabonné·e" in page
    assert "Vous avez changé d'avis ?" in page

    client.post(
        f"{prefs}/resubscribe/{subscription.newsletter_id}",
        data={"csrf_token": _csrf(client, prefs)},
    )
    assert _subscription(sessions, "r0@example.org")[0].status is SubscriptionStatus.PENDING
    path = _link(smtp_server.wait_for(1)[0], "/confirm/")
    client.post(path, data={"csrf_token": _csrf(client, path)})
    assert _subscription(sessions, "r0@example.org")[0].status is SubscriptionStatus.CONFIRMED
    assert _read(sessions, lambda s: s.scalar(select(func.count()).select_from(Suppression))) == 0


def _data_link(
    client: FlaskClient, prefs: str, smtp_server: RecordingSmtpServer, action: str
) -> tuple[str, RecordedMessage]:
    """Press "Email me my data" or "Erase my data"; the link path the mailed notice holds."""
    response = client.post(
        prefs + "/data", data={"csrf_token": _csrf(client, prefs), "action": action}
    )
    assert response.status_code == 303
    (message,) = smtp_server.wait_for(1)
    smtp_server.clear()
    return _link(message, "/d/"), message


def test_the_export_link_is_mailed_to_the_reader_and_downloads_their_data(
    client: FlaskClient, prefs: str, smtp_server: RecordingSmtpServer
) -> None:
    path, message = _data_link(client, prefs, smtp_server, "export")

    assert list(message.rcpt_tos) == ["r0@example.org"]
    assert message.parsed()["Subject"] == "Vos données chez Intelligence & Société"
    assert "Nous avons envoyé un lien à r0@example.org" in _text(client.get(prefs))
    html_body = message.parsed().get_body(("html",))
    assert html_body is not None
    html_part = html_body.get_content()
    assert f'href="http://hebdo.test{path}"' in html_part
    assert "valable 24 heures" in html_part
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    data = json.loads(response.get_data(as_text=True))
    assert data["subscriber"]["email"] == "r0@example.org"
    assert data["subscriptions"][0]["consent"]["source"] == "test"
    assert [d["status"] for d in data["deliveries"]] == ["sent"]
    assert data["deliveries"][0]["sent_at"]
    assert "r1@example.org" not in _text(response)


def test_the_erase_link_asks_for_the_checkbox_then_deletes_the_person_only(
    client: FlaskClient,
    prefs: str,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    path, message = _data_link(client, prefs, smtp_server, "erase")
    assert message.parsed()["Subject"] == "Effacer vos données chez Intelligence & Société"
    assert _subscription(sessions, "r0@example.org") is not None  # asking erases nothing

    page = client.get(path)  # a link scanner's GET erases nothing either
    assert page.status_code == 200
    assert "J'ai compris : effacez tout" in _text(page)
    assert _subscription(sessions, "r0@example.org") is not None
    unticked = client.post(path, data={"csrf_token": _csrf(client, path)})
    assert unticked.status_code == 400
    assert "Cochez la case" in _text(unticked)
    assert client.post(path, data={"confirm": "yes"}).status_code == 400  # no CSRF token
    assert _subscription(sessions, "r0@example.org") is not None

    goodbye = client.post(path, data={"csrf_token": _csrf(client, path), "confirm": "yes"})
    assert goodbye.status_code == 200
    assert "Vos données sont effacées" in _text(goodbye)
    assert _subscription(sessions, "r0@example.org") is None
    emails = _read(sessions, lambda s: sorted(s.scalars(select(Delivery.email))))
    assert emails == ["", "r1@example.org"]  # the row stays for the counts, without the person
    assert client.get(prefs).status_code == 404
    assert client.get(path).status_code == 404


def test_data_links_are_limited_per_reader(
    client: FlaskClient, prefs: str, smtp_server: RecordingSmtpServer
) -> None:
    for action in ("export", "erase", "export"):
        _data_link(client, prefs, smtp_server, action)

    refused = client.post(
        prefs + "/data", data={"csrf_token": _csrf(client, prefs), "action": "erase"}
    )
    assert refused.status_code == 303
    assert "Vous avez déjà fait plusieurs demandes" in _text(client.get(prefs))
    assert smtp_server.messages == []
    odd = client.post(prefs + "/data", data={"csrf_token": _csrf(client, prefs), "action": "x"})
    assert odd.status_code == 303
    assert smtp_server.messages == []


def test_every_message_of_the_reader_templates_has_a_french_translation() -> None:
    reader = TEMPLATES.relative_to(ROOT).as_posix() + "/"
    messages = {f.msgid for f in extract() if f.path.startswith(reader)}
    assert messages
    missing = sorted(messages - set(i18n.catalogue("fr")))
    assert missing == []
