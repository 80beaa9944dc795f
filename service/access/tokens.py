"""API tokens: created by an admin, shown once, stored as a SHA-256 of the secret.

A token reads `hebdo_<id>_<secret>`: the id finds the row in one lookup, the secret
is compared in constant time with the stored hash. Scopes say what it may do (read,
write, send); a token tied to a newsletter sees no other. Its last use is written at
most once a minute, so a busy client does not turn every read into a write.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import ApiToken, Newsletter, utcnow
from service.numbers import int_or_none
from service.team import audit
from service.text import UnusableText, one_line

PREFIX = "hebdo"
LAST_USE_EVERY = timedelta(minutes=1)
NAME_LIMIT = 80


class Scope(enum.Enum):
    READ = "read"  # every GET
    WRITE = "write"  # subscribers, editions, suppressions
    SEND = "send"  # test sends, schedule, send, pause, resume, cancel


class BadTokenRequest(ValueError):
    """A token cannot be made as asked (no name, an unknown scope …)."""


class UnknownToken(LookupError):
    """No token has this id."""


@dataclass(frozen=True)
class Created:
    """A new token and its one and only readable copy."""

    token: ApiToken
    secret: str  # the full `hebdo_<id>_<secret>` string


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Scopes from their names (comma lists allowed), or BadTokenRequest."""
    found: list[Scope] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            try:
                scope = Scope(name)
            except ValueError as exc:
                raise BadTokenRequest(f"unknown scope {name[:40]!r} (read, write, send)") from exc
            if scope not in found:
                found.append(scope)
    if not found:
        raise BadTokenRequest("give at least one scope: read, write or send")
    return found


def who(token: ApiToken, client_network: str = "") -> audit.Who:
    """The audit log's name for what this token does: `api:<name>`."""
    return audit.Who(None, f"api:{token.name}", client_network)


def create(
    session: Session,
    name: str,
    scopes: Iterable[Scope],
    *,
    newsletter: Newsletter | None = None,
    actor: audit.Who,
) -> Created:
    """Make a token; its secret is returned here once and never stored."""
    try:
        clean = one_line(name, limit=NAME_LIMIT, field="name").strip()
    except UnusableText as exc:
        raise BadTokenRequest(str(exc)) from exc
    if not clean:
        raise BadTokenRequest("give the token a name (who or what uses it)")
    chosen = [scope.value for scope in Scope if scope in set(scopes)]
    if not chosen:
        raise BadTokenRequest("give at least one scope: read, write or send")
    secret = secrets.token_urlsafe(32)
    token = ApiToken(
        name=clean,
        scopes=chosen,
        newsletter_id=newsletter.id if newsletter else None,
        secret_sha256=_digest(secret),
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        object_type="api_token",
        object_id=token.id,
        detail={
            "name": clean,
            "scopes": chosen,
            "newsletter": newsletter.slug if newsletter else None,
        },
    )
    return Created(token, f"{PREFIX}_{token.id}_{secret}")


def revoke(session: Session, token_id: int, *, actor: audit.Who) -> ApiToken:
    """Revoke a token for good (a second revoke changes nothing)."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UnknownToken(f"no API token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
        audit.record(
            session,
            actor,
            "token.revoke",
            object_type="api_token",
            object_id=token.id,
            detail={"name": token.name},
        )
    return token


def list_all(session: Session) -> list[ApiToken]:
    """Every token, newest first (revoked ones too: the list says when)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def authenticate(session: Session, presented: str, now: datetime | None = None) -> ApiToken | None:
    """The live token this string is, or None; records its last use (flushes, at most once a
    minute)."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    token_id = int_or_none(parts[1], minimum=1)
    if token_id is None:
        return None
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.secret_sha256, _digest(parts[2])):
        return None
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_EVERY:
        token.last_used_at = now
        session.flush()
    return token


def allows(token: ApiToken, scope: Scope) -> bool:
    """Whether the token carries this scope."""
    return scope.value in token.scopes


def sees(token: ApiToken, newsletter_id: int) -> bool:
    """Whether the token may act on this newsletter."""
    return token.newsletter_id is None or token.newsletter_id == newsletter_id
