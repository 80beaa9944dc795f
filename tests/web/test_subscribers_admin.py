"""Editor pages for subscribers: list, search, history, tags, bulk actions, import, export.

Everything goes through the real app with CSRF on; the database is arranged and checked
through short transactions so the app's own requests never wait on a test's lock.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import subscribers, subscriptions
from service.config import Settings
from service.models import (
    Delivery,
    DeliveryStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from service.sending.controls import begin
from service.team import editors
from service.tracking import events
from tests import factories

EDITOR = "redaction@exemple.fr"
PASSWORD = "une-phrase-de-passe"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _token(client: FlaskClient, path: str = "/subscribers/") -> str:
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


@pytest.fixture
def editor(client: FlaskClient, sessions: sessionmaker[Session]) -> FlaskClient:
    """The test client, logged in as an editor."""
    with sessions.begin() as session:
        # This editor reads English pages (else: the newsletter's language).
        editors.create(session, EDITOR, PASSWORD).language = "en"
    response = client.post(
        "/login",
        data={"email": EDITOR, "password": PASSWORD, "csrf_token": _token(client, "/login")},
    )
    assert response.status_code == 302
    return client


@pytest.fixture
def cast(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Two newsletters and a handful of readers in different states; returns ids by name."""
    with sessions.begin() as session:
        lettre = factories.newsletter(session, "lettre")
        weekly = factories.newsletter(session, "weekly", language="en")
        people = {}
        for key, email, name in [
            ("amelie", "amelie.roux@exemple.fr", "Amélie Roux"),
            ("bastien", "bastien.morel@exemple.fr", "Bastien Morel"),
            ("chloe", "chloe@autre.org", "Chloé Petit"),
            ("damien", "damien@autre.org", "Damien Roussel"),
        ]:
            people[key] = subscriptions.find_or_create_subscriber(session, email, name)
        subscriptions.subscribe(session, lettre, people["amelie"], confirmed=True, source="site")
        subscriptions.subscribe(session, lettre, people["bastien"], confirmed=False, source="site")
        subscriptions.subscribe(session, lettre, people["chloe"], confirmed=True, source="site")
        subscriptions.subscribe(session, weekly, people["damien"], confirmed=True, source="site")
        subscribers.tag(session, [people["chloe"].id], "presse")
        return {key: person.id for key, person in people.items()} | {
            "lettre": lettre.id,
            "weekly": weekly.id,
        }


def _listed(html: str) -> set[str]:
    return set(re.findall(r'class="sb-email"[^>]*>([^<]+)</a>', html))


def _tags(sessions: sessionmaker[Session], subscriber_id: int) -> set[str]:
    with sessions() as session:
        person = session.get(Subscriber, subscriber_id)
        assert person is not None
        return {tag.name for tag in person.tags}


def test_anonymous_visitors_are_sent_to_login(client: FlaskClient, cast: dict[str, int]) -> None:
    for path in (
        "/subscribers/",
        f"/subscribers/{cast['amelie']}",
        "/subscribers/import",
        "/subscribers/export.csv?newsletter=lettre",
    ):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next=")


def test_anonymous_post_with_a_valid_token_is_sent_to_login(
    client: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    response = client.post(
        "/subscribers/bulk",
        data={
            "csrf_token": _token(client, "/login"),
            "action": "tag",
            "tag_name": "intrus",
            "scope": "matching",
        },
    )

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert _tags(sessions, cast["amelie"]) == set()


def test_list_search_and_filters_show_the_right_rows(
    editor: FlaskClient, cast: dict[str, int]
) -> None:
    def listed(query: str) -> set[str]:
        response = editor.get(f"/subscribers/?{query}")
        assert response.status_code == 200
        return _listed(response.get_data(as_text=True))

    everyone = {
        "amelie.roux@exemple.fr",
        "bastien.morel@exemple.fr",
        "chloe@autre.org",
        "damien@autre.org",
    }
    assert listed("") == everyone
    assert listed("q=ROUX") == {"amelie.roux@exemple.fr"}
    assert listed("q=rou") == {"amelie.roux@exemple.fr", "damien@autre.org"}
    assert listed("q=autre.org") == {"chloe@autre.org", "damien@autre.org"}
    assert listed("newsletter=weekly") == {"damien@autre.org"}
    assert listed("newsletter=lettre&status=pending") == {"bastien.morel@exemple.fr"}
    assert listed("status=confirmed&q=autre") == {"chloe@autre.org", "damien@autre.org"}
    assert listed("tag=presse") == {"chloe@autre.org"}
    assert listed("state=bounced") == set()
    assert editor.get("/subscribers/?status=nonsense").status_code == 400
    assert editor.get("/subscribers/?newsletter=nowhere").status_code == 404


def test_list_pages_fifty_rows_at_a_time(
    editor: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        factories.readers(session, letter, 120)

    seen: list[str] = []
    path = "/subscribers/?newsletter=lettre"
    sizes = []
    while path:
        html = editor.get(path).get_data(as_text=True)
        rows = _listed(html)
        sizes.append(len(rows))
        seen.extend(rows)
        older = re.search(r'href="([^"]+)" rel="next"', html)
        path = older.group(1).replace("&amp;", "&") if older else ""

    assert sizes == [50, 50, 20]
    assert len(set(seen)) == 120
    assert "<strong>120</strong> matching" in html
    assert 'rel="prev"' in html


def test_history_page_shows_consent_deliveries_events_and_suppressions(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        person = subscriptions.find_or_create_subscriber(
            session, "gaelle@exemple.fr", "Gaëlle Lambert"
        )
        person.attributes = {"ville": "Lyon"}
        subscriptions.subscribe(
            session,
            letter,
            person,
            confirmed=True,
            source="formulaire de la page d'accueil",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        )
        edition = factories.edition(session, letter)
        begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=10,
        )
        delivery_id = session.scalars(select(Delivery.id)).one()
        events.record_open(session, delivery_id)
        events.record_click(session, delivery_id, 0)
        events.unsubscribe(session, delivery_id, reason="je lis déjà tout en ligne")
        person_id, number = person.id, edition.number

    html = editor.get(f"/subscribers/{person_id}").get_data(as_text=True)

    for expected in (
        "gaelle@exemple.fr",
        "Gaëlle Lambert",
        "ville",
        "Lyon",
        "203.0.113.9",
        "Firefox/130.0",
        "formulaire de la page d&#39;accueil",
        "je lis déjà tout en ligne",
        f"#{number}",
        "sb-b-cancelled",  # the unsubscribe cancelled the queued delivery
        "sb-b-open",
        "sb-b-click",
        "sb-b-unsubscribe",
        "Suppressions for this address",
    ):
        assert expected in html, expected
    assert "Not suppressed" not in html
    assert editor.get(f"/subscribers/{person_id + 999}").status_code == 404


def test_tags_are_added_and_removed_on_one_subscriber(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    page = f"/subscribers/{cast['amelie']}"
    token = _token(editor, page)

    added = editor.post(f"{page}/tags", data={"csrf_token": token, "tag": " Abonnée  fidèle "})
    assert added.status_code == 302
    assert _tags(sessions, cast["amelie"]) == {"Abonnée fidèle"}
    assert "Abonnée fidèle" in editor.get(page).get_data(as_text=True)

    editor.post(f"{page}/tags/remove", data={"csrf_token": token, "tag": "Abonnée fidèle"})
    assert _tags(sessions, cast["amelie"]) == set()
    empty = editor.post(
        f"{page}/tags", data={"csrf_token": token, "tag": "  "}, follow_redirects=True
    )
    assert "a tag needs a name" in empty.get_data(as_text=True)


def test_bulk_tag_selected_rows_and_untag_all_matching(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    token = _token(editor)

    tagged = editor.post(
        "/subscribers/bulk",
        data={
            "csrf_token": token,
            "action": "tag",
            "tag_name": "salon 2025",
            "scope": "selected",
            "id": [str(cast["amelie"]), str(cast["damien"])],
        },
        follow_redirects=True,
    )

    assert "Tagged 2 subscribers “salon 2025”." in tagged.get_data(as_text=True)
    assert _tags(sessions, cast["amelie"]) == {"salon 2025"}
    assert _tags(sessions, cast["damien"]) == {"salon 2025"}
    assert _tags(sessions, cast["bastien"]) == set()
    assert _listed(editor.get("/subscribers/?tag=salon+2025").get_data(as_text=True)) == {
        "amelie.roux@exemple.fr",
        "damien@autre.org",
    }

    editor.post(
        "/subscribers/bulk",
        data={
            "csrf_token": token,
            "action": "untag",
            "tag_name": "salon 2025",
            "scope": "matching",
            "q": "autre.org",  # the filter the editor was looking at
        },
    )
    assert _tags(sessions, cast["damien"]) == set()
    assert _tags(sessions, cast["amelie"]) == {"salon 2025"}


def test_bulk_tag_all_matching_a_tag_filter_tags_only_those_rows(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    listed = editor.get("/subscribers/?tag=presse").get_data(as_text=True)
    assert _listed(listed) == {"chloe@autre.org"}

    editor.post(
        "/subscribers/bulk",
        data={
            "csrf_token": _token(editor),
            "action": "tag",
            "tag_name": "relance",
            "scope": "matching",
            "tag": "presse",  # the list's filter, sent back as a hidden field
        },
    )

    assert _tags(sessions, cast["chloe"]) == {"presse", "relance"}
    for other in ("amelie", "bastien", "damien"):
        assert _tags(sessions, cast[other]) == set()


def test_bulk_action_without_csrf_token_is_refused(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    response = editor.post(
        "/subscribers/bulk",
        data={"action": "delete", "scope": "matching", "confirm": "yes"},
    )

    assert response.status_code == 400
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 4


def test_bulk_unsubscribe_confirms_then_cancels_queued_deliveries(
    editor: FlaskClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    with sessions.begin() as session:
        letter = factories.newsletter(session)
        people = factories.readers(session, letter, 3)
        edition = factories.edition(session, letter)
        begin(
            session,
            edition,
            base_url=settings.base_url,
            templates_path=settings.email_templates_path,
            batch_size=10,
        )
        ids = [people[0].id, people[1].id]
    token = _token(editor)
    form = {
        "csrf_token": token,
        "action": "unsubscribe",
        "scope": "selected",
        "id": [str(i) for i in ids],
        "newsletter": "lettre",
    }

    asked = editor.post("/subscribers/bulk", data=form)

    html = asked.get_data(as_text=True)
    assert asked.status_code == 200
    assert "Unsubscribe 2 subscribers?" in html
    assert "r0@example.org" in html
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Subscription)
                .where(Subscription.status == SubscriptionStatus.UNSUBSCRIBED)
            )
            == 0
        )

    done = editor.post("/subscribers/bulk", data=form | {"confirm": "yes"}, follow_redirects=True)

    assert "Ended 2 subscriptions." in done.get_data(as_text=True)
    with sessions() as session:
        statuses = dict(session.execute(select(Delivery.subscriber_id, Delivery.status)).all())
        suppressed = set(session.scalars(select(Suppression.email)))
    assert statuses == {
        people[0].id: DeliveryStatus.CANCELLED,
        people[1].id: DeliveryStatus.CANCELLED,
        people[2].id: DeliveryStatus.QUEUED,
    }
    assert suppressed == {"r0@example.org", "r1@example.org"}


def test_bulk_delete_confirms_then_erases_all_matching(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    token = _token(editor)
    form = {"csrf_token": token, "action": "delete", "scope": "matching", "q": "autre.org"}

    asked = editor.post("/subscribers/bulk", data=form)

    html = asked.get_data(as_text=True)
    assert "Delete 2 subscribers?" in html
    assert "chloe@autre.org" in html
    assert "damien@autre.org" in html
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 4

    done = editor.post("/subscribers/bulk", data=form | {"confirm": "yes"}, follow_redirects=True)

    assert "Deleted 2 subscribers and their personal data." in done.get_data(as_text=True)
    with sessions() as session:
        left = set(session.scalars(select(Subscriber.email)))
    assert left == {"amelie.roux@exemple.fr", "bastien.morel@exemple.fr"}


def test_import_upload_reports_bad_lines_and_keeps_valid_rows(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    rows = (
        "\ufeffcourriel;prénom;nom;ville\n"
        "helene.faure@exemple.fr;Hélène;Faure;Nantes\n"
        "pas-une-adresse;Jean;Dupont;Lille\n"
        "HELENE.FAURE@exemple.fr;Hélène;Faure;Nantes\n"
        '"ines@exemple.fr";"Inès";"Bernard, dite Nénette";Lyon\n'
        "ines@;Inès;Bis;Lyon\n"
        "amelie.roux@exemple.fr;Amélie;Roux;Paris\n"
    )
    token = _token(editor, "/subscribers/import")

    response = editor.post(
        "/subscribers/import",
        data={
            "csrf_token": token,
            "newsletter": "weekly",
            "consent": "pending",
            "file": (io.BytesIO(rows.encode("utf-8")), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    rejected = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]+)</td></tr>", html)
    assert [(line, email) for line, email, _ in rejected] == [
        ("3", "pas-une-adresse"),
        ("6", "ines@"),
    ]
    assert all(reason.strip() for _, _, reason in rejected)
    assert "<strong>6</strong> rows read" in html
    with sessions() as session:
        subscribed = dict(
            session.execute(
                select(Subscriber.email, Subscription.status)
                .join(Subscription, Subscription.subscriber_id == Subscriber.id)
                .where(Subscription.newsletter_id == cast["weekly"])
            ).all()
        )
        helene = session.scalars(
            select(Subscriber).where(Subscriber.email == "helene.faure@exemple.fr")
        ).one()
        assert helene.attributes == {"ville": "Nantes"}
    assert subscribed == {
        "damien@autre.org": SubscriptionStatus.CONFIRMED,
        "helene.faure@exemple.fr": SubscriptionStatus.PENDING,
        "ines@exemple.fr": SubscriptionStatus.PENDING,
        "amelie.roux@exemple.fr": SubscriptionStatus.PENDING,
    }


def test_import_streams_a_progress_line_per_batch_then_the_report(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    assert editor.application is not None
    editor.application.config["HEBDO_IMPORT_BATCH"] = 2
    lines = ["adresse électronique,prénom"]
    lines += [f"lectrice{i:02d}@exemple.fr,Lectrice {i}" for i in range(7)]
    lines.insert(4, "pas-une-adresse,Personne")  # line 5 of the file
    token = _token(editor, "/subscribers/import")

    response = editor.post(
        "/subscribers/import",
        data={
            "csrf_token": token,
            "newsletter": "lettre",
            "consent": "pending",
            "file": (io.BytesIO("\n".join(lines).encode("utf-8")), "lectrices.csv"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 200
    assert response.is_streamed
    html = response.get_data(as_text=True)
    progress = re.findall(r'<p class="sb-import-line">(\d+) rows read…</p>', html)
    # Two valid rows per batch: one line after each full batch, one at the end.
    assert progress == ["2", "5", "7", "8"]
    assert "Reading lectrices.csv…" in html
    report = html.index('class="sb-import-end"')
    assert report > html.rindex("sb-import-line")
    assert "<strong>8</strong> rows read" in html[report:]
    assert "<strong>7</strong> added" in html[report:]
    assert re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td>", html) == [("5", "pas-une-adresse")]
    assert html.rstrip().endswith("</html>")
    with sessions() as session:
        imported = set(
            session.scalars(
                select(Subscriber.email)
                .join(Subscription, Subscription.subscriber_id == Subscriber.id)
                .where(Subscription.newsletter_id == cast["lettre"])
                .where(Subscriber.email.like("lectrice%"))
            )
        )
    assert imported == {f"lectrice{i:02d}@exemple.fr" for i in range(7)}


def test_import_of_an_unreadable_file_ends_the_stream_with_the_reason(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    response = editor.post(
        "/subscribers/import?lang=fr",
        data={
            "csrf_token": _token(editor, "/subscribers/import"),
            "newsletter": "lettre",
            "consent": "pending",
            "file": (io.BytesIO(b"ville;code\nNantes;44000\n"), "villes.csv"),
        },
        content_type="multipart/form-data",
    )

    html = response.get_data(as_text=True)
    alert = re.search(r'<p class="sb-flash error" role="alert">([^<]+)</p>', html)
    assert alert is not None, html
    assert "email" in alert.group(1).lower()
    assert "Importation dans Intelligence" in html  # the page still speaks French
    assert "<strong>" not in html[html.index("sb-import-end") :]
    assert html.rstrip().endswith("</html>")


def test_import_confirmed_without_reason_is_refused(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    response = editor.post(
        "/subscribers/import",
        data={
            "csrf_token": _token(editor, "/subscribers/import"),
            "newsletter": "weekly",
            "consent": "confirmed",
            "reason": " ",
            "file": (io.BytesIO(b"email\nnoe@exemple.fr\n"), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "already consented" in response.get_data(as_text=True)
    with sessions() as session:
        assert (
            session.scalar(select(Subscriber.id).where(Subscriber.email == "noe@exemple.fr"))
            is None
        )


def test_import_confirmed_with_reason_records_it(
    editor: FlaskClient, sessions: sessionmaker[Session], cast: dict[str, int]
) -> None:
    response = editor.post(
        "/subscribers/import",
        data={
            "csrf_token": _token(editor, "/subscribers/import"),
            "newsletter": "weekly",
            "consent": "confirmed",
            "reason": "liste de l'ancien outil",
            "file": (io.BytesIO(b"email\nnoe@exemple.fr\n"), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 200
    assert "sb-import-end" in response.get_data(as_text=True)  # the stream ends with the import
    with sessions() as session:
        subscription = session.scalars(
            select(Subscription)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == "noe@exemple.fr")
        ).one()
    assert subscription.status == SubscriptionStatus.CONFIRMED
    assert "liste de l'ancien outil" in subscription.consent_source


def test_export_downloads_the_newsletter_rows_with_that_status(
    editor: FlaskClient, cast: dict[str, int]
) -> None:
    response = editor.get("/subscribers/export.csv?newsletter=lettre&status=confirmed")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "lettre-confirmed" in response.headers["Content-Disposition"]
    body = response.get_data(as_text=True).removeprefix("\ufeff")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {row["email"] for row in rows} == {"amelie.roux@exemple.fr", "chloe@autre.org"}
    assert {row["status"] for row in rows} == {"confirmed"}

    everyone = editor.get("/subscribers/export.csv?newsletter=lettre").get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(everyone.removeprefix("\ufeff"))))) == 3
    assert editor.get("/subscribers/export.csv").status_code == 400


def test_nav_links_to_subscribers(editor: FlaskClient) -> None:
    html = editor.get("/").get_data(as_text=True)

    assert 'href="/subscribers/"' in html
