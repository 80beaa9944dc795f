"""The JSON API: tokens and scopes, problems for every bad input, subscribers, editions.

Tokens are made by the real `hebdo tokens create`; requests go through the Flask app
and the rows they leave are read back from the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import newsletters
from service.access import tokens
from service.cli import cli
from service.models import (
    ApiToken,
    AuditEntry,
    ConfirmationMail,
    Edition,
    EditionStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from service.team.audit import Who
from tests import factories

SAMPLE = Path(__file__).resolve().parents[2] / "service" / "sample" / "edition_fr.json"


def make_token(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["tokens", "create", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def letter(session: Session) -> str:
    factories.newsletter(session, "lettre")
    factories.newsletter(session, "autre", language="en")
    session.commit()
    return "lettre"


def test_tokens_are_shown_once_stored_hashed_listed_and_revoked(
    backend: str, env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "site", "--scope", "read,write", "--newsletter", letter)
    assert token.startswith("hebdo_")
    row = session.scalars(select(ApiToken)).one()
    assert token.split("_", 2)[2] not in json.dumps(
        {"h": row.secret_sha256, "n": row.name, "s": row.scopes}
    )
    assert row.scopes == ["read", "write"]
    assert row.last_used_at is None
    row_id = row.id
    session.rollback()  # every SQLite transaction here holds the write lock: end it

    assert client.get("/api/v1/newsletters", headers=auth(token)).status_code == 200
    session.expire_all()
    assert session.get(ApiToken, row_id).last_used_at is not None  # type: ignore[union-attr]
    session.rollback()

    listed = CliRunner().invoke(cli, ["tokens", "list", "--json"], env=env)
    assert json.loads(listed.stdout)[0]["last_used_at"] is not None
    plain = CliRunner().invoke(cli, ["tokens", "list"], env=env)
    assert f"{row_id}\tsite\tread,write\t{letter}\tlast used 20" in plain.stdout

    revoked = CliRunner().invoke(cli, ["tokens", "revoke", str(row_id)], env=env)
    assert revoked.exit_code == 0, revoked.output
    answer = client.get("/api/v1/newsletters", headers=auth(token))
    assert answer.status_code == 401
    assert answer.content_type == "application/problem+json"
    assert answer.json["type"] == "https://hebdo.dev/problems/unauthorized"  # type: ignore[index]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["token.create", "token.revoke"]


def test_unknown_or_malformed_tokens_get_401(client: FlaskClient, letter: str) -> None:
    for header in ("", "Bearer", "Bearer hebdo_1_nope", "Bearer hebdo_99999999999_x", "Basic x"):
        answer = client.get("/api/v1/newsletters", headers={"Authorization": header})
        assert answer.status_code == 401, header


def test_a_read_token_gets_403_on_a_write(
    env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "reader", "--scope", "read")
    answer = client.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.org", "newsletter": letter},
        headers=auth(token),
    )
    assert answer.status_code == 403
    assert answer.json["type"] == "https://hebdo.dev/problems/forbidden"  # type: ignore[index]
    assert session.scalars(select(Subscriber)).all() == []


def test_a_token_limited_to_a_newsletter_sees_no_other(
    env: dict[str, str], client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "one", "--scope", "read,write", "--newsletter", letter)
    listed = client.get("/api/v1/newsletters", headers=auth(token)).json
    assert [n["slug"] for n in listed["newsletters"]] == [letter]  # type: ignore[index]
    assert client.get("/api/v1/newsletters/autre", headers=auth(token)).status_code == 403
    answer = client.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.org", "newsletter": "autre"},
        headers=auth(token),
    )
    assert answer.status_code == 403


def test_subscriber_created_with_double_opt_in_is_pending_and_owed_a_confirmation(
    backend: str, env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "site", "--scope", "read,write")
    answer = client.post(
        "/api/v1/subscribers",
        json={"email": "Ana@Example.org", "newsletter": letter, "name": "Ana", "tags": ["vip"]},
        headers=auth(token),
    )
    assert answer.status_code == 201, answer.json
    body: Any = answer.json
    assert body["email"] == "ana@example.org"
    assert body["tags"] == ["vip"]
    assert body["subscriptions"][0]["status"] == "pending"
    assert session.scalars(select(ConfirmationMail)).one()
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "subscriber.create"))
    assert entry.one().actor == "api:site"
    session.rollback()

    by_address = client.get(
        "/api/v1/subscribers/lookup", query_string={"email": "ANA@example.org"}, headers=auth(token)
    )
    assert by_address.json["id"] == body["id"]  # type: ignore[index]
    patched = client.patch(
        f"/api/v1/subscribers/{body['id']}", json={"name": "Ana B."}, headers=auth(token)
    )
    assert patched.json["name"] == "Ana B."  # type: ignore[index]
    erased = client.delete(f"/api/v1/subscribers/{body['id']}", headers=auth(token))
    assert erased.status_code == 204
    assert client.get(f"/api/v1/subscribers/{body['id']}", headers=auth(token)).status_code == 404


def test_confirmed_needs_a_consent_reason(
    env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "site", "--scope", "write")
    refused = client.post(
        "/api/v1/subscribers",
        json={"email": "ana@example.org", "newsletter": letter, "confirmed": True},
        headers=auth(token),
    )
    assert refused.status_code == 422
    assert refused.json["errors"][0]["field"] == "consent_reason"  # type: ignore[index]
    done = client.post(
        "/api/v1/subscribers",
        json={
            "email": "ana@example.org",
            "newsletter": letter,
            "confirmed": True,
            "consent_reason": "paper form at the fair",
        },
        headers=auth(token),
    )
    assert done.status_code == 201
    status = session.scalars(select(Subscription.status)).one()
    assert status == SubscriptionStatus.CONFIRMED


def test_bulk_create_reports_bad_rows_by_index_and_keeps_the_good_ones(
    backend: str, env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "crm", "--scope", "read,write")
    rows = [
        {"email": "a@example.org"},
        {"email": "not an address"},
        {"email": "b@example.org", "name": "Bea"},
        {"email": "c@exa\u0000mple.org"},
        {"email": "a@example.org"},
    ]
    answer = client.post(
        "/api/v1/subscribers/bulk",
        json={"newsletter": letter, "subscribers": rows},
        headers=auth(token),
    )
    assert answer.status_code == 200, answer.json
    report: Any = answer.json
    assert [(r["index"], r["status"]) for r in report["rows"]] == [
        (0, "created"),
        (1, "rejected"),
        (2, "created"),
        (3, "rejected"),
        (4, "created"),
    ]
    assert report["rejected"] == 2
    assert report["rows"][1]["reason"]
    emails = session.scalars(select(Subscriber.email).order_by(Subscriber.email)).all()
    assert emails == ["a@example.org", "b@example.org"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind"),
    [
        (b"{", "application/json", 400, "malformed-json"),
        (b'{"email": NaN}', "application/json", 400, "malformed-json"),
        (b"[" * 100_000, "application/json", 400, "malformed-json"),
        (b'{"email": 1, "newsletter": "lettre"}', "application/json", 422, "validation"),
        (
            b'{"email": "a@b.org", "newsletter": "lettre", "x": 1}',
            "application/json",
            422,
            "validation",
        ),
        (b'{"email": "a@b.org"}', "text/plain", 415, "unsupported-media-type"),
        (b'{"email": "' + b"a" * (1024 * 1024) + b'"}', "application/json", 413, "too-large"),
    ],
)
def test_bad_bodies_are_problems_not_errors(
    env: dict[str, str],
    client: FlaskClient,
    letter: str,
    body: bytes,
    content_type: str,
    status: int,
    kind: str,
) -> None:
    token = make_token(env, "--name", "site", "--scope", "write")
    answer = client.post(
        "/api/v1/subscribers", data=body, content_type=content_type, headers=auth(token)
    )
    assert answer.status_code == status
    assert answer.content_type == "application/problem+json"
    assert answer.json["type"] == f"https://hebdo.dev/problems/{kind}"  # type: ignore[index]


def test_huge_numbers_and_unknown_fields_name_the_field(
    env: dict[str, str], client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "site", "--scope", "read")
    answer = client.get(
        "/api/v1/subscribers", query_string={"limit": "9" * 5000}, headers=auth(token)
    )
    assert answer.status_code == 422
    assert answer.json["errors"][0]["field"] == "limit"  # type: ignore[index]
    answer = client.get("/api/v1/subscribers", query_string={"colour": "red"}, headers=auth(token))
    assert answer.json["errors"] == [{"field": "colour", "message": "unknown field"}]  # type: ignore[index]


def test_rate_limit_answers_429_with_headers(
    env: dict[str, str], client: FlaskClient, letter: str
) -> None:
    client.application.extensions["hebdo.settings"] = client.application.extensions[
        "hebdo.settings"
    ].__class__(
        **{**client.application.extensions["hebdo.settings"].__dict__, "api_rate_per_minute": 2}
    )
    token = make_token(env, "--name", "busy", "--scope", "read")
    first = client.get("/api/v1/newsletters", headers=auth(token))
    assert first.headers["RateLimit-Policy"] == '"per-token";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"per-token";r=1;t=')
    client.get("/api/v1/newsletters", headers=auth(token))
    third = client.get("/api/v1/newsletters", headers=auth(token))
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1


def test_editions_from_the_document_scheduled_sent_paused_and_cancelled(
    backend: str, env: dict[str, str], session: Session, client: FlaskClient, letter: str
) -> None:
    token = make_token(env, "--name", "cms", "--scope", "read,write,send")
    document = json.loads(SAMPLE.read_text(encoding="utf-8"))
    created = client.post(
        f"/api/v1/newsletters/{letter}/editions", json=document, headers=auth(token)
    )
    assert created.status_code == 201, created.json
    edition_id = created.json["id"]  # type: ignore[index]
    assert created.json["document"]["title"] == document["title"]  # type: ignore[index]

    bad = client.put(
        f"/api/v1/editions/{edition_id}", json={**document, "title": ""}, headers=auth(token)
    )
    assert bad.status_code == 422
    assert bad.json["errors"][0]["field"] == "title"  # type: ignore[index]

    preview = client.get(f"/api/v1/editions/{edition_id}/preview", headers=auth(token)).json
    assert "<html" in preview["html"].lower()  # type: ignore[index]

    scheduled = client.post(
        f"/api/v1/editions/{edition_id}/schedule",
        json={"at": "2099-03-29T08:00:00+01:00"},
        headers=auth(token),
    )
    assert scheduled.status_code == 200, scheduled.json
    assert scheduled.json["scheduled_at"].startswith("2099-03-29T07:00")  # type: ignore[index]
    factories.readers(session, session.get(Edition, edition_id).newsletter, 3)  # type: ignore[union-attr]
    session.commit()
    sent = client.post(f"/api/v1/editions/{edition_id}/send", headers=auth(token))
    assert sent.status_code == 202, sent.json
    assert sent.json["total"] == 3  # type: ignore[index]
    paused = client.post(f"/api/v1/editions/{edition_id}/pause", headers=auth(token))
    assert paused.json["status"] == "paused"  # type: ignore[index]
    cancelled = client.post(f"/api/v1/editions/{edition_id}/cancel", headers=auth(token))
    assert cancelled.json["status"] == "cancelled"  # type: ignore[index]
    assert cancelled.json["cancelled"] == 3  # type: ignore[index]
    again = client.post(f"/api/v1/editions/{edition_id}/cancel", headers=auth(token))
    assert again.status_code == 409
    session.expire_all()
    assert session.get(Edition, edition_id).status == EditionStatus.CANCELLED  # type: ignore[union-attr]
    session.rollback()
    results = client.get(f"/api/v1/editions/{edition_id}/results", headers=auth(token))
    assert results.status_code == 200
    events = client.get(f"/api/v1/editions/{edition_id}/events", headers=auth(token))
    assert events.json == {"events": [], "next_cursor": None}
    actions = session.scalars(
        select(AuditEntry.action).where(AuditEntry.actor == "api:cms").order_by(AuditEntry.id)
    ).all()
    assert actions == [
        "edition.create",
        "edition.schedule",
        "edition.send",
        "edition.pause",
        "edition.cancel",
    ]


def test_token_domain_refuses_nameless_and_scopeless_tokens(session: Session, letter: str) -> None:
    with pytest.raises(tokens.BadTokenRequest):
        tokens.parse_scopes(["read,admin"])
    with pytest.raises(tokens.BadTokenRequest):
        tokens.create(session, "  ", [tokens.Scope.READ], actor=Who.cli())


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2030-01-01T08:00:00"]
)
def test_a_time_past_the_calendar_or_without_offset_is_refused_by_field(
    env: dict[str, str], session: Session, client: FlaskClient, letter: str, at: str
) -> None:
    edition_id = factories.edition(session, newsletters.get_by_slug(session, letter)).id
    session.commit()
    token = make_token(env, "--name", "cms", "--scope", "send")
    answer = client.post(
        f"/api/v1/editions/{edition_id}/schedule", json={"at": at}, headers=auth(token)
    )
    assert answer.status_code == 422
    assert answer.json["errors"][0]["field"] == "at"  # type: ignore[index]
