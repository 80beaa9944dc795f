"""Property-based test of CSV import: any rows, hostile ones included, through import_csv.

Each example imports into a fresh newsletter inside a transaction that is rolled back,
so examples do not see each other's readers.
"""

from __future__ import annotations

import csv
import io
import itertools

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import newsletters, text
from service.addresses import InvalidAddress, normalise
from service.audience import imports
from service.models import Subscriber

_slugs = itertools.count()

HOSTILE = st.text(st.characters(codec="utf-8"), max_size=40).filter(
    lambda cell: not cell.startswith("'")  # the export's formula quote, undone on import
)
EMAILS = st.one_of(
    st.emails(),
    st.sampled_from(
        ["lectrice@exämple.fr", "josé@exemple.fr", "Dup@Example.org", "dup@example.org"]
    ),
    HOSTILE,
)
NAMES = st.one_of(
    HOSTILE,
    st.sampled_from(["Jeanne\r\nBcc: x@evil.example", "Nu\x00l", "Tab\tulé", "Léa\u2028Fin", ""]),
)


def _expected(rows: list[tuple[str, str]]) -> tuple[int, int, dict[str, str]]:
    """(rows counted, rows rejected, stored name by address) the import must give."""
    counted = rejected = 0
    names: dict[str, str] = {}
    for email, name in rows:
        if not (email.strip() or name.strip()):
            continue  # a blank record is no row at all
        counted += 1
        try:
            address = normalise(email)
            clean = text.person_name(name.strip())
        except (InvalidAddress, text.UnusableText):
            rejected += 1
            continue
        names[address] = names.get(address) or clean  # the first name given wins
    return counted, rejected, names


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(st.tuples(EMAILS, NAMES), max_size=12),
    batch_size=st.sampled_from([1, 3, 1000]),
)
@example(
    rows=[
        ("ok@example.org", "Ligne\r\nCassée"),
        ("nul@example.org", "Nu\x00l"),
        ("lectrice@exämple.fr", "Léa"),
        ("pas une adresse", "Rien"),
        ("OK@example.org", "Autre nom"),
    ],
    batch_size=3,
)
def test_any_csv_rows_import_without_raising_and_every_valid_row_is_kept(
    sessions: sessionmaker[Session], rows: list[tuple[str, str]], batch_size: int
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    counted, rejected, names = _expected(rows)

    with sessions() as session:
        letter = newsletters.create(
            session, slug=f"prop-{next(_slugs)}", name="Propriétés", sender_email="p@hebdo.example"
        )
        report = imports.import_csv(
            session,
            letter,
            io.BytesIO(buffer.getvalue().encode("utf-8")),
            confirmed=True,
            confirmed_reason="property test",
            batch_size=batch_size,
        )
        stored = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
        session.rollback()

    assert report.rows_read == counted
    assert report.rejected_count == rejected
    assert report.added + report.merged + report.skipped + report.rejected_count == counted
    assert stored == names
    lines = [row.line for row in report.rejected]
    assert lines == sorted(lines)
    assert all(line >= 2 and row.reason for line, row in zip(lines, report.rejected, strict=True))
