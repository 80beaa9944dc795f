"""The suppression list by hand: an address or a whole domain, added and lifted with a
reason (audited); a domain entry keeps each of its addresses out of a real send and of
signup. The send runs in the test process against the real SMTP server."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import signup, subscriptions, suppressions
from service.config import Settings
from service.models import AuditEntry, Delivery, Edition, SuppressionReason
from service.sending import loop
from service.team import audit
from tests import factories
from tests.support.smtp import RecordingSmtpServer

WHO = audit.Who(None, "admin@hebdo.example", "192.0.2.1")


def test_a_suppressed_domain_gets_no_message_from_a_real_send(
    backend: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    smtp_server: RecordingSmtpServer,
) -> None:
    with sessions() as session, session.begin():
        letter = factories.newsletter(session)
        factories.readers(session, letter, 3)  # r0…r2@example.org
        for name in ("ana", "Bob"):
            reader = subscriptions.find_or_create_subscriber(session, f"{name}@Bloque.Example", "")
            subscriptions.subscribe(session, letter, reader, confirmed=True, source="test")
        suppressions.add(session, "@BLOQUE.example", "spam trap domain", WHO)
        edition_id = factories.edition(session, letter).id
    with sessions() as session, session.begin():
        edition = session.get(Edition, edition_id)
        assert edition is not None
        factories.begin_sending(session, settings, edition)

    loop.send_pending(sessions, settings, edition_id)

    received = sorted(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == ["r0@example.org", "r1@example.org", "r2@example.org"]
    with sessions() as session:
        snapshot = set(session.scalars(select(Delivery.email)))
    assert snapshot == set(received)  # the domain's readers were never in the snapshot


def test_signup_from_a_suppressed_domain_sends_no_confirmation(session: Session) -> None:
    letter = factories.newsletter(session)
    suppressions.add(session, "@bloque.example", "abuse", WHO)

    blocked = signup.request(session, letter, email="Nouveau@bloque.example", source="form")
    welcome = signup.request(session, letter, email="nouveau@ailleurs.example", source="form")

    assert blocked.notice is None
    assert welcome.notice is not None


def test_add_and_lift_are_audited_with_their_reasons(session: Session) -> None:
    entry = suppressions.add(session, " Marie@Example.ORG ", "asked by phone", WHO)
    assert entry.email == "marie@example.org"
    assert entry.reason is SuppressionReason.MANUAL

    lifted = suppressions.lift(session, entry.id, "she subscribed again on paper", WHO)

    assert lifted == "marie@example.org"
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.action, r.actor, r.client_network) for r in rows] == [
        ("suppression.add", "admin@hebdo.example", "192.0.2.1"),
        ("suppression.lift", "admin@hebdo.example", "192.0.2.1"),
    ]
    assert json.loads(rows[0].detail)["reason"] == "asked by phone"
    assert json.loads(rows[1].detail) == {
        "email": "marie@example.org",
        "newsletter": "all",
        "reason": "she subscribed again on paper",
        "was": "manual",
    }
    assert suppressions.search(session).total == 0


@pytest.mark.parametrize(
    ("target", "reason"),
    [("@", "x"), ("not an address", "x"), ("@exa mple.com", "x"), ("a@example.org", "  ")],
)
def test_unusable_entries_are_refused(session: Session, target: str, reason: str) -> None:
    with pytest.raises(suppressions.BadSuppression):
        suppressions.add(session, target, reason, WHO)
    assert session.scalars(select(AuditEntry)).all() == []


def test_an_erased_readers_entry_cannot_be_lifted(session: Session) -> None:
    marker = subscriptions.suppress(
        session, subscriptions.erased_marker("gone@example.org"), SuppressionReason.ERASED
    )
    with pytest.raises(suppressions.BadSuppression):
        suppressions.lift(session, marker.id, "oops", WHO)
    assert suppressions.search(session).total == 0  # not an address: not listed


def test_search_by_domain_or_address_pages_and_exports(session: Session) -> None:
    for n in range(7):
        suppressions.add(session, f"p{n}@bloque.example", "bounced by hand", WHO)
    suppressions.add(session, "@bloque.example", "the whole domain", WHO)
    suppressions.add(session, "x@ailleurs.example", '=HYPERLINK("http://evil")', WHO)

    domain = suppressions.search(session, "@bloque.example", per_page=5)
    assert (domain.total, domain.pages, len(domain.rows)) == (8, 2, 5)
    assert suppressions.search(session, "@bloque.example", page=2, per_page=5).rows[-1].email == (
        "p0@bloque.example"
    )
    assert [r.email for r in suppressions.search(session, "AILLEURS").rows] == [
        "x@ailleurs.example"
    ]
    assert suppressions.search(session, "100%_").total == 0  # LIKE wildcards are literal

    lines = "".join(suppressions.export_csv(session)).splitlines()
    assert lines[0] == "email,newsletter,reason,detail,created_at"
    assert len(lines) == 10
    assert any(line.startswith("@bloque.example,*,manual,the whole domain,") for line in lines)
    assert "'=HYPERLINK" in lines[-1]  # a formula stays text in a spreadsheet
