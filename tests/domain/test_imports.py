"""Subscriber import and export, on SQLite and on PostgreSQL, against migrated databases."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import newsletters
from service.audience import exports, imports
from service.audience.imports import ImportAborted, ImportProgress
from service.audience.subscriptions import (
    find_or_create_subscriber,
    subscribe,
    suppress,
    unsubscribe,
)
from service.cli.context import CliContext
from service.cli.subscribers import subscribers_group
from service.db import make_engine, session_factory, transaction
from service.models import (
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from service.tools.migrate import upgrade
from tests.support.postgres import PostgresCluster

pytest_plugins = ["tests.support.fixtures"]

MESSY = Path(__file__).resolve().parent.parent / "fixtures" / "import_messy.csv"
MESSY_VALID = {
    "claire.martin@exemple.fr",
    "bruno.lefevre@exemple.fr",
    "sophie.durand@exemple.org",
    "nadia.benali@exemple.fr",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database built by the migrations: SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hebdo.sqlite'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database(f"imports_{uuid.uuid4().hex[:12]}")
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def newsletter_id(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as session:
        newsletter = newsletters.create(
            session, slug="la-semaine", name="La Semaine", sender_email="redaction@exemple.fr"
        )
        suppress(session, "ne-plus-ecrire@exemple.fr", SuppressionReason.HARD_BOUNCE)
        return newsletter.id


def _newsletter(session: Session, newsletter_id: int) -> Newsletter:
    newsletter = session.get(Newsletter, newsletter_id)
    assert newsletter is not None
    return newsletter


def _subscriptions(session: Session, newsletter_id: int) -> dict[str, Subscription]:
    rows = session.execute(
        select(Subscriber.email, Subscription)
        .join(Subscription.subscriber)
        .where(Subscription.newsletter_id == newsletter_id)
    )
    return {email: subscription for email, subscription in rows}  # noqa: C416 (Row, not tuple)


def _csv_bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))


def test_messy_file_reports_each_bad_line_and_keeps_every_valid_row(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with transaction(factory) as session:
        report = imports.import_csv(
            session,
            _newsletter(session, newsletter_id),
            MESSY,
            confirmed=False,
            confirmed_reason=None,
        )

    assert report.delimiter == ";"
    rejected = {row.line: (row.email, row.reason) for row in report.rejected}
    assert sorted(rejected) == [6, 7, 8, 10, 11]
    assert rejected[6][0] == "jean.dupont@@exemple.fr"
    assert "'@'" in rejected[6][1]
    assert rejected[7] == ("", "the email cell is empty")
    assert "must have an @-sign" in rejected[8][1]
    assert "7 fields where the header has 6" in rejected[10][1]
    assert rejected[11][0] == "hugo.moreau@exemple☃.fr"
    assert "U+2603" in rejected[11][1]
    assert report.rejected_count == 5
    assert [(row.line, row.email, row.reason) for row in report.skipped_rows] == [
        (14, "ne-plus-ecrire@exemple.fr", "suppressed")
    ]
    assert (report.rows_read, report.added, report.merged, report.skipped) == (12, 4, 2, 1)
    assert report.subscribed == 4

    with factory() as session:
        emails = list(session.scalars(select(Subscriber.email)))
        assert sorted(emails) == sorted(MESSY_VALID)  # one row each: case variants merged
        subscriptions = _subscriptions(session, newsletter_id)
        assert set(subscriptions) == MESSY_VALID
        assert {s.status for s in subscriptions.values()} == {SubscriptionStatus.PENDING}
        assert {s.consent_source for s in subscriptions.values()} == {"import"}
        people = {s.email: s for s in session.scalars(select(Subscriber))}

    bruno = people["bruno.lefevre@exemple.fr"]
    assert bruno.name == "Bruno Lefèvre"
    assert bruno.locale == "fr"
    # The later duplicate row updated the note, the first one gave the city.
    assert bruno.attributes == {"Ville": "Paris, 11e", "Notes": "Mise à jour de la fiche"}
    sophie = people["sophie.durand@exemple.org"]
    assert sophie.locale == "en"
    assert sophie.attributes["Notes"] == "Préfère la version courte;\narrive le samedi"
    assert people["nadia.benali@exemple.fr"].attributes == {"Ville": "Aix-en-Provence"}


def test_reimporting_the_same_file_adds_nothing(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    first = imports.import_csv_batched(
        factory, newsletter_id, MESSY, confirmed=False, confirmed_reason=None
    )
    again = imports.import_csv_batched(
        factory, newsletter_id, MESSY, confirmed=False, confirmed_reason=None
    )

    assert first.added == 4
    assert (again.added, again.subscribed, again.merged, again.skipped) == (0, 0, 6, 1)
    assert again.rejected_count == 5
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 4
        assert session.scalar(select(func.count()).select_from(Subscription)) == 4


def test_confirmed_import_records_the_reason_as_consent_source(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    report = imports.import_csv_batched(
        factory,
        newsletter_id,
        MESSY,
        confirmed=True,
        confirmed_reason="fichier de l'ancien outil, double opt-in fait",
    )

    assert report.subscribed == 4
    with factory() as session:
        subscriptions = _subscriptions(session, newsletter_id).values()
    assert {s.status for s in subscriptions} == {SubscriptionStatus.CONFIRMED}
    assert {s.consent_source for s in subscriptions} == {
        "import: fichier de l'ancien outil, double opt-in fait"
    }
    assert all(s.confirmed_at is not None and s.consent_at is not None for s in subscriptions)


def test_confirmed_import_without_a_reason_is_refused_before_reading(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with pytest.raises(ValueError, match="reason"):
        imports.import_csv_batched(
            factory, newsletter_id, MESSY, confirmed=True, confirmed_reason="  "
        )
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_unsubscribed_and_suppressed_readers_are_not_subscribed_again(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with transaction(factory) as session:
        newsletter = _newsletter(session, newsletter_id)
        parti = find_or_create_subscriber(session, "parti@exemple.fr")
        unsubscribe(session, subscribe(session, newsletter, parti, confirmed=True, source="form"))
        rebond = find_or_create_subscriber(session, "rebond@exemple.fr")
        rebond.status = SubscriberStatus.BOUNCED
        suppress(
            session, "pas-ici@exemple.fr", SuppressionReason.MANUAL, newsletter_id=newsletter_id
        )

    report = imports.import_csv_batched(
        factory,
        newsletter_id,
        _csv_bytes(
            "email\nParti@Exemple.fr\nrebond@exemple.fr\npas-ici@exemple.fr\nnouvelle@exemple.fr\n"
        ),
        confirmed=True,
        confirmed_reason="liste du salon",
    )

    assert [(row.line, row.email, row.reason) for row in report.skipped_rows] == [
        (2, "parti@exemple.fr", "unsubscribed"),
        (3, "rebond@exemple.fr", "suppressed"),
        (4, "pas-ici@exemple.fr", "suppressed"),
    ]
    assert (report.added, report.merged, report.skipped, report.subscribed) == (1, 0, 3, 1)
    with factory() as session:
        subscriptions = _subscriptions(session, newsletter_id)
        assert "pas-ici@exemple.fr" not in set(session.scalars(select(Subscriber.email)))
    assert subscriptions["parti@exemple.fr"].status == SubscriptionStatus.UNSUBSCRIBED
    assert set(subscriptions) == {"parti@exemple.fr", "nouvelle@exemple.fr"}


def test_existing_subscribers_keep_their_status_and_gain_attributes(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with transaction(factory) as session:
        newsletter = _newsletter(session, newsletter_id)
        fidele = find_or_create_subscriber(session, "fidele@exemple.fr", name="Odile Fidèle")
        fidele.attributes = {"origine": "formulaire", "ville": "Caen"}
        subscribe(session, newsletter, fidele, confirmed=True, source="form")
        attente = find_or_create_subscriber(session, "attente@exemple.fr")
        subscribe(session, newsletter, attente, confirmed=False, source="form")

    pending_import = imports.import_csv_batched(
        factory,
        newsletter_id,
        _csv_bytes("e-mail,nom,ville,métier\nfidele@exemple.fr,Autre Nom,Rouen,libraire\n"),
        confirmed=False,
        confirmed_reason=None,
    )
    confirmed_import = imports.import_csv_batched(
        factory,
        newsletter_id,
        _csv_bytes("Email Address\nattente@exemple.fr\n"),
        confirmed=True,
        confirmed_reason="confirmé par téléphone",
    )

    assert (pending_import.merged, pending_import.subscribed) == (1, 0)
    assert (confirmed_import.merged, confirmed_import.confirmed) == (1, 1)
    with factory() as session:
        subscriptions = _subscriptions(session, newsletter_id)
        kept = subscriptions["fidele@exemple.fr"]
        assert kept.status == SubscriptionStatus.CONFIRMED
        assert kept.consent_source == "form"
        assert kept.subscriber.name == "Odile Fidèle"  # a name already known is kept
        assert kept.subscriber.attributes == {
            "origine": "formulaire",
            "ville": "Rouen",
            "métier": "libraire",
        }
        upgraded = subscriptions["attente@exemple.fr"]
        assert upgraded.status == SubscriptionStatus.CONFIRMED
        assert upgraded.consent_source == "import: confirmé par téléphone"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_detected_with_quoted_delimiters_inside_values(
    factory: sessionmaker[Session], newsletter_id: int, delimiter: str
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["Full Name", "Mail", "Langue", "Adresse postale"])
    writer.writerow(
        [f"Durand{delimiter} Léa", "lea@exemple.fr", "English", f"1 rue A{delimiter} B"]
    )
    writer.writerow(["Noé", "noe@exemple.fr", "fr_CA", ""])
    writer.writerow(["Jonas", "jonas@exemple.fr", "Deutsch", ""])

    report = imports.import_csv_batched(
        factory,
        newsletter_id,
        _csv_bytes(buffer.getvalue()),
        confirmed=False,
        confirmed_reason=None,
    )

    assert report.delimiter == delimiter
    assert (report.added, report.rejected_count) == (3, 0)
    with factory() as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
    # A tab in a name is a control character: the name rule makes it a space.
    assert people["lea@exemple.fr"].name == " ".join(f"Durand{delimiter} Léa".split())
    assert people["lea@exemple.fr"].locale == "en"
    assert people["lea@exemple.fr"].attributes == {"Adresse postale": f"1 rue A{delimiter} B"}
    assert people["noe@exemple.fr"].locale == "fr"
    # Not a language we send in: the newsletter's language, and the value kept as typed.
    assert people["jonas@exemple.fr"].locale == "fr"
    assert people["jonas@exemple.fr"].attributes == {"Langue": "Deutsch"}


def test_a_line_that_is_not_utf8_is_rejected_and_the_others_imported(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    data = (
        "email,prénom\n".encode()
        + b"ok@exemple.fr,Zo\xc3\xa9\n"
        + b"cp1252@exemple.fr,H\xe9l\xe8ne\n"
        + b"aussi@exemple.fr,Lo\xc3\xafc\n"
    )

    report = imports.import_csv_batched(
        factory, newsletter_id, io.BytesIO(data), confirmed=False, confirmed_reason=None
    )

    assert [(row.line, row.email) for row in report.rejected] == [(3, "cp1252@exemple.fr")]
    assert report.rejected[0].reason.startswith("not UTF-8 (byte 0xE9)")
    with factory() as session:
        names = {
            row.email: row.name
            for row in session.execute(select(Subscriber.email, Subscriber.name))
        }
    assert names == {"ok@exemple.fr": "Zoé", "aussi@exemple.fr": "Loïc"}


def test_excel_unicode_text_and_text_streams_are_read(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    utf16 = "courriel\tnom\r\nanais@exemple.fr\tAnaïs\r\n".encode("utf-16")
    first = imports.import_csv_batched(
        factory, newsletter_id, io.BytesIO(utf16), confirmed=False, confirmed_reason=None
    )
    second = imports.import_csv_batched(
        factory,
        newsletter_id,
        io.StringIO("\ufeffEMAIL;Nom\nrene@exemple.fr;René\n"),
        confirmed=False,
        confirmed_reason=None,
    )

    assert (first.added, second.added) == (1, 1)
    with factory() as session:
        names = {
            row.email: row.name
            for row in session.execute(select(Subscriber.email, Subscriber.name))
        }
    assert names == {"anais@exemple.fr": "Anaïs", "rene@exemple.fr": "René"}


def test_an_unclosed_quote_is_reported_with_the_lines_it_swallowed(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    text = 'email,nom\navant@exemple.fr,A\n"casse@exemple.fr,B\nperdu@exemple.fr,C\n'

    report = imports.import_csv_batched(
        factory, newsletter_id, _csv_bytes(text), confirmed=False, confirmed_reason=None
    )

    assert report.added == 1
    assert [row.line for row in report.rejected] == [3]
    assert "spans lines 3 to 4" in report.rejected[0].reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"nom;ville\nJean;Lyon\n", "no email column"),
        (b"email;pr\xe9nom\nzoe@exemple.fr;Zo\xe9\n", r"not UTF-8 \(byte 0xE9 in the header"),
    ],
)
def test_a_file_without_an_email_column_is_refused(
    factory: sessionmaker[Session], newsletter_id: int, content: bytes, message: str
) -> None:
    with pytest.raises(ImportAborted, match=message):
        imports.import_csv_batched(
            factory, newsletter_id, io.BytesIO(content), confirmed=False, confirmed_reason=None
        )


def test_batches_merge_duplicates_across_batches_and_report_progress(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    lines = ["email"] + [f"lecteur{n % 7}@exemple.fr" for n in range(20)] + ["pas une adresse"]
    seen: list[ImportProgress] = []

    report = imports.import_csv_batched(
        factory,
        newsletter_id,
        _csv_bytes("\n".join(lines)),
        confirmed=False,
        confirmed_reason=None,
        progress=seen.append,
        batch_size=3,
    )

    assert (report.rows_read, report.added, report.merged, report.rejected_count) == (21, 7, 13, 1)
    assert [p.rows_read for p in seen] == [3, 6, 9, 12, 15, 18, 21]
    assert seen[-1] == report.progress()
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 7


def test_the_report_lists_the_first_thousand_rejections_and_counts_them_all(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    text = "email\n" + "\n".join(f"faux{n}.exemple.fr" for n in range(1005)) + "\nbon@exemple.fr\n"

    report = imports.import_csv_batched(
        factory, newsletter_id, _csv_bytes(text), confirmed=False, confirmed_reason=None
    )

    assert report.rejected_count == 1005
    assert len(report.rejected) == imports.MAX_LISTED
    assert report.rejected[-1].line == 1001
    assert report.added == 1
    assert report.summary_lines()[-1] == "  … and 5 more not listed"


def test_add_address_follows_the_import_rules(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with transaction(factory) as session:
        newsletter = _newsletter(session, newsletter_id)
        added = imports.add_address(
            session,
            newsletter,
            "Marie@Exemple.fr",
            name="Marie",
            confirmed=False,
            confirmed_reason=None,
        )
        refused = imports.add_address(
            session,
            newsletter,
            "ne-plus-ecrire@exemple.fr",
            confirmed=True,
            confirmed_reason="demande orale",
        )
        invalid = imports.add_address(
            session, newsletter, "marie@", confirmed=False, confirmed_reason=None
        )

    assert (added.added, added.subscribed) == (1, 1)
    assert refused.skipped_rows[0].reason == "suppressed"
    assert invalid.rejected_count == 1
    with factory() as session:
        assert list(session.scalars(select(Subscriber.email))) == ["marie@exemple.fr"]


def test_export_streams_every_subscription_and_reads_back_with_import(
    factory: sessionmaker[Session], newsletter_id: int
) -> None:
    with transaction(factory) as session:
        newsletter = _newsletter(session, newsletter_id)
        imports.import_csv(session, newsletter, MESSY, confirmed=False, confirmed_reason=None)
        malin = find_or_create_subscriber(session, "malin@exemple.fr", name="=HYPERLINK(1)")
        malin.attributes = {"ville": "Paris"}
        unsubscribe(session, subscribe(session, newsletter, malin, confirmed=True, source="form"))
        other = newsletters.create(
            session, slug="autre", name="Autre", sender_email="autre@exemple.fr"
        )
        other_id = other.id

    with factory() as session:
        out = io.StringIO()
        count = exports.export_csv(session, _newsletter(session, newsletter_id), out)
        pending_out = io.StringIO()
        pending = exports.export_csv(
            session,
            _newsletter(session, newsletter_id),
            pending_out,
            status=SubscriptionStatus.UNSUBSCRIBED,
        )

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 5
    assert list(rows[0]) == list(exports.EXPORT_COLUMNS)
    by_email = {row["email"]: row for row in rows}
    assert by_email["malin@exemple.fr"]["name"] == "'=HYPERLINK(1)"  # never a live formula
    assert by_email["malin@exemple.fr"]["status"] == "unsubscribed"
    assert json.loads(by_email["sophie.durand@exemple.org"]["attributes"]) == {
        "Notes": "Préfère la version courte;\narrive le samedi",
        "Ville": "Nantes",
    }
    assert by_email["bruno.lefevre@exemple.fr"]["consent_source"] == "import"
    assert pending == 1
    assert "malin@exemple.fr" in pending_out.getvalue()

    report = imports.import_csv_batched(
        factory,
        other_id,
        io.StringIO(out.getvalue()),
        confirmed=True,
        confirmed_reason="copie de la liste principale",
    )
    assert [(row.email, row.reason) for row in report.skipped_rows] == [
        ("malin@exemple.fr", "unsubscribed")
    ]
    assert (report.merged, report.subscribed) == (4, 4)
    with factory() as session:
        copied = _subscriptions(session, other_id)
        assert set(copied) == MESSY_VALID
        malin_back = session.scalar(
            select(Subscriber).where(Subscriber.email == "malin@exemple.fr")
        )
        assert malin_back is not None
        assert malin_back.name == "=HYPERLINK(1)"
        assert malin_back.attributes == {"ville": "Paris"}  # the export's own columns stay out


# --- The command line -----------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An instance folder and SQLite database of our own, with one newsletter."""
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        newsletters.create(
            session, slug="la-semaine", name="La Semaine", sender_email="redaction@exemple.fr"
        )
        suppress(session, "ne-plus-ecrire@exemple.fr", SuppressionReason.HARD_BOUNCE)
    engine.dispose()
    return {"HEBDO_INSTANCE": str(tmp_path / "instance"), "DATABASE_URL": url}


def _invoke(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        subscribers_group, list(args), env=env, obj=CliContext(), input=stdin
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_import_prints_the_report_and_exits_zero_despite_rejections(
    cli_env: dict[str, str],
) -> None:
    code, out, err = _invoke(
        cli_env,
        "import",
        str(MESSY),
        "--newsletter",
        "la-semaine",
        "--confirmed",
        "--reason",
        "ancienne liste",
    )

    assert code == 0, err
    assert "rows read: 12" in out
    assert "added: 4 new subscribers" in out
    assert "merged: 2" in out
    assert "skipped: 1 (suppressed/unsubscribed)" in out
    assert "rejected: 5" in out
    assert "  line 7: (empty): the email cell is empty" in out
    assert "  line 8: marc.blanc.exemple.fr: An email address must have an @-sign." in out
    assert "done: 12 rows read, 4 added, 2 merged, 1 skipped, 5 rejected" in err

    code, out, err = _invoke(
        cli_env, "export", "--newsletter", "la-semaine", "--status", "confirmed"
    )
    assert code == 0, err
    exported = list(csv.DictReader(io.StringIO(out)))
    assert {row["email"] for row in exported} == MESSY_VALID
    assert {row["consent_source"] for row in exported} == {"import: ancienne liste"}
    assert "exported 4 subscribers" in err


def test_cli_import_reads_standard_input(cli_env: dict[str, str]) -> None:
    code, out, _err = _invoke(
        cli_env, "import", "-", "--newsletter", "la-semaine", stdin="email\nlu@exemple.fr\n"
    )
    assert code == 0
    assert "added: 1 new subscribers" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "cannot read missing.csv"),
        (["NO-EMAIL"], "no email column"),
        ([str(MESSY), "--newsletter", "inconnue"], "no newsletter with slug 'inconnue'"),
    ],
)
def test_cli_import_fails_clearly_when_the_file_cannot_be_used(
    cli_env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    no_email = tmp_path / "no-email.csv"
    no_email.write_text("nom;ville\nJean;Lyon\n")
    args = [str(no_email) if arg == "NO-EMAIL" else arg for arg in args]
    if "--newsletter" not in args:
        args += ["--newsletter", "la-semaine"]

    code, _out, err = _invoke(cli_env, "import", *args)

    assert code == 1
    assert message in err


def test_cli_confirmed_needs_a_reason(cli_env: dict[str, str]) -> None:
    code, _out, err = _invoke(
        cli_env, "import", str(MESSY), "--newsletter", "la-semaine", "--confirmed"
    )
    assert code == 2
    assert "--confirmed needs --reason" in err


def test_cli_add_subscribes_one_address_and_refuses_a_suppressed_one(
    cli_env: dict[str, str],
) -> None:
    code, out, _err = _invoke(
        cli_env, "add", "Jeanne@Exemple.fr", "--newsletter", "la-semaine", "--name", "Jeanne"
    )
    assert code == 0
    assert out.strip() == "subscribed Jeanne@Exemple.fr to la-semaine (pending confirmation)"

    code, out, _err = _invoke(cli_env, "add", "jeanne@exemple.fr", "--newsletter", "la-semaine")
    assert (code, out.strip()) == (0, "jeanne@exemple.fr was already subscribed to la-semaine")

    code, _out, err = _invoke(
        cli_env, "add", "ne-plus-ecrire@exemple.fr", "--newsletter", "la-semaine"
    )
    assert code == 1
    assert "is suppressed" in err

    code, _out, err = _invoke(cli_env, "add", "jeanne@", "--newsletter", "la-semaine")
    assert code == 1
    assert "There must be something after the @-sign" in err
