"""The suppressions page: every role searches and exports; only admins add and lift.

Requests go through the real app (CSRF on, accounts logged in through the login form).
"""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.audience import suppressions
from service.models import AuditEntry, EditorRole, Suppression
from service.team import audit
from tests import factories
from tests.web.logins import log_in, token

WHO = audit.Who.cli()


@pytest.fixture(autouse=True)
def entries(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        factories.newsletter(session)
        for n in range(55):
            suppressions.add(session, f"p{n}@bloque.example", "bounced by hand", WHO)
        suppressions.add(session, "marie@example.org", "asked by phone", WHO)


def _emails(sessions: sessionmaker[Session]) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(Suppression.email)))


def test_search_pages_in_a_labelled_scroll_region_and_exports_csv(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.VIEWER, language="en")

    html = client.get("/suppressions/?q=@bloque.example").get_data(as_text=True)
    assert '<div class="table-scroll" role="region" tabindex="0" aria-label="Suppressions">' in html
    assert "55 entries" in html
    assert "Page 1 of 2" in html
    assert "marie@example.org" not in html
    assert "Lift…" not in html  # a viewer reads, changes nothing
    assert 'action="/suppressions/add"' not in html
    second = client.get("/suppressions/?q=@bloque.example&page=2").get_data(as_text=True)
    assert second.count("@bloque.example</td>") == 5
    assert client.get("/suppressions/?page=abc").status_code == 200

    export = client.get("/suppressions/export.csv?q=marie")
    assert export.status_code == 200
    assert export.mimetype == "text/csv"
    lines = export.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "email,newsletter,reason,detail,created_at"
    assert lines[1].startswith("marie@example.org,*,manual,asked by phone,")
    assert len(lines) == 2


@pytest.mark.parametrize("role", [EditorRole.VIEWER, EditorRole.EDITOR])
def test_only_an_admin_adds_or_lifts(
    client: FlaskClient, sessions: sessionmaker[Session], role: EditorRole
) -> None:
    log_in(client, sessions, role)
    with sessions() as session:
        marie = session.scalars(
            select(Suppression.id).where(Suppression.email == "marie@example.org")
        ).one()
    csrf = token(client, "/suppressions/")

    added = client.post(
        "/suppressions/add", data={"target": "@x.example", "reason": "r", "csrf_token": csrf}
    )
    lifted = client.post(f"/suppressions/{marie}/lift", data={"reason": "r", "csrf_token": csrf})

    assert (added.status_code, lifted.status_code) == (403, 403)
    assert "@x.example" not in _emails(sessions)
    assert "marie@example.org" in _emails(sessions)


def test_an_admin_adds_a_domain_and_lifts_an_address_with_reasons(
    client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    log_in(client, sessions, EditorRole.ADMIN, language="en")
    csrf = token(client, "/suppressions/")

    added = client.post(
        "/suppressions/add",
        data={"target": "@Spam.Example", "reason": "a spam trap domain", "csrf_token": csrf},
    )
    assert added.status_code == 302
    assert "@spam.example" in _emails(sessions)
    listed = client.get("/suppressions/?q=@spam.example").get_data(as_text=True)
    assert "(whole domain)" in listed

    with sessions() as session:
        marie = session.scalars(
            select(Suppression.id).where(Suppression.email == "marie@example.org")
        ).one()
    form = client.get(f"/suppressions/{marie}/lift").get_data(as_text=True)
    assert "Once lifted" in form
    refused = client.post(f"/suppressions/{marie}/lift", data={"reason": " ", "csrf_token": csrf})
    assert refused.status_code == 422
    assert 'id="f-reason-error"' in refused.get_data(as_text=True)
    lifted = client.post(
        f"/suppressions/{marie}/lift", data={"reason": "subscribed again", "csrf_token": csrf}
    )
    assert lifted.status_code == 302
    assert "marie@example.org" not in _emails(sessions)

    with sessions() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.actor == "admin@hebdo.example")
            .order_by(AuditEntry.id)
        ).all()
        assert [r.action for r in rows] == ["suppression.add", "suppression.lift"]
        assert json.loads(rows[0].detail)["reason"] == "a spam trap domain"
        assert json.loads(rows[1].detail)["reason"] == "subscribed again"


@pytest.mark.parametrize(
    ("target", "reason", "field"),
    [
        ("not an address", "why", "target"),
        ("marie@example.org", "again", "target"),  # already on the list
        ("@ok.example", "", "reason"),
    ],
)
def test_a_bad_entry_is_named_beside_its_field(
    client: FlaskClient, sessions: sessionmaker[Session], target: str, reason: str, field: str
) -> None:
    log_in(client, sessions, EditorRole.ADMIN)

    response = client.post(
        "/suppressions/add",
        data={"target": target, "reason": reason, "csrf_token": token(client, "/suppressions/")},
    )

    assert response.status_code == 422
    assert f'id="f-{field}-error"' in response.get_data(as_text=True)
    assert "@ok.example" not in _emails(sessions)
