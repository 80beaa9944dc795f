"""The suppression list: addresses, and whole domains, that nothing may mail.

A row's `email` is either one address (normalised, see service.addresses) or a whole
domain written `@example.com` (its domain normalised the same way). Every door that
mails or subscribes asks `applies` (SQL) or `is_suppressed` (one address), so a domain
entry keeps each of its addresses out of the send snapshot, the confirmation outbox,
imports and signup. Editors add and lift entries by hand, with a reason, recorded in
the audit log (`suppression.add`, `suppression.lift`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from service import text
from service.addresses import InvalidAddress, normalise
from service.models import Newsletter, Suppression, SuppressionReason
from service.team import audit

DOMAIN_MARK = "@"
REASON_MAX = 500
PER_PAGE = 50
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # as service.audience.imports


class BadSuppression(ValueError):
    """An entry cannot be added or lifted; the message says why."""


class AlreadySuppressed(BadSuppression):
    """The address or domain is already on the list (for that scope)."""


class email_domain(FunctionElement[str]):  # noqa: N801 - named like the SQL function it is
    """SQL: the `@domain` part of an address column (from its one @ to the end)."""

    type = String()
    inherit_cache = True


@compiles(email_domain)
def _domain_default(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    return f"substr({column}, strpos({column}, '@'))"


@compiles(email_domain, "sqlite")
def _domain_sqlite(element: email_domain, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(next(iter(element.clauses)), **kw)
    return f"substr({column}, instr({column}, '@'))"


def domain_key(address: str) -> str:
    """The list's entry for the whole domain of a normalised address: `@example.com`."""
    return DOMAIN_MARK + address.rsplit("@", 1)[-1]


def applies(email: SQLColumnExpression[str], newsletter_id: Any) -> ColumnElement[bool]:
    """SQL: an entry (the address or its domain) keeps `email` from this newsletter."""
    return exists().where(
        or_(Suppression.email == email, Suppression.email == email_domain(email)),
        or_(Suppression.newsletter_id.is_(None), Suppression.newsletter_id == newsletter_id),
    )


def is_suppressed(
    session: Session,
    email: str,
    newsletter_id: int,
    reasons: Sequence[SuppressionReason] = tuple(SuppressionReason),
) -> bool:
    """Whether an entry of one of `reasons` (for the address or its domain) applies."""
    found = session.scalar(
        select(Suppression.id)
        .where(
            Suppression.email.in_([email, domain_key(email)]),
            or_(Suppression.newsletter_id.is_(None), Suppression.newsletter_id == newsletter_id),
            Suppression.reason.in_(list(reasons)),
        )
        .limit(1)
    )
    return found is not None


def parse_target(value: str) -> str:
    """An address, or a whole domain given as `@example.com`, in the list's form."""
    raw = value.strip()
    if "\x00" in raw:
        raise BadSuppression("the address contains a NUL character")
    try:
        if raw.startswith(DOMAIN_MARK):
            return domain_key(normalise("postmaster" + raw))
        return normalise(raw)
    except InvalidAddress as exc:
        raise BadSuppression(f"{raw[:80]!r} is neither an address nor @domain: {exc}") from exc


def _reason(value: str) -> str:
    try:
        reason = text.one_line(value, limit=REASON_MAX, field="reason")
    except text.UnusableText as exc:
        raise BadSuppression(str(exc)) from exc
    if not reason:
        raise BadSuppression("give a reason")
    return reason


def _scope(session: Session, newsletter_id: int | None) -> str:
    if newsletter_id is None:
        return "all"
    return session.scalar(select(Newsletter.slug).where(Newsletter.id == newsletter_id)) or "?"


def add(
    session: Session,
    target: str,
    reason: str,
    who: audit.Who,
    *,
    newsletter_id: int | None = None,
) -> Suppression:
    """Put an address or a whole `@domain` on the list by hand, with a reason (audited)."""
    email = parse_target(target)
    why = _reason(reason)
    scope = (
        Suppression.newsletter_id.is_(None)
        if newsletter_id is None
        else Suppression.newsletter_id == newsletter_id
    )
    if session.scalar(select(Suppression.id).where(Suppression.email == email, scope)):
        raise AlreadySuppressed(f"{email} is already on the list")
    entry = Suppression(
        email=email, newsletter_id=newsletter_id, reason=SuppressionReason.MANUAL, detail=why
    )
    session.add(entry)
    session.flush()
    audit.record(
        session,
        who,
        "suppression.add",
        object_type="suppression",
        object_id=entry.id,
        detail={"email": email, "newsletter": _scope(session, newsletter_id), "reason": why},
    )
    return entry


def lift(session: Session, suppression_id: int, reason: str, who: audit.Who) -> str:
    """Take an entry off the list, with a reason (audited); returns the address or domain.

    An erased reader's entry cannot be lifted: it is all that keeps them from coming back
    through an import.
    """
    why = _reason(reason)
    entry = session.get(Suppression, suppression_id)
    if entry is None:
        raise BadSuppression(f"no suppression with id {suppression_id}")
    if entry.reason is SuppressionReason.ERASED:
        raise BadSuppression("an erased reader's entry cannot be lifted")
    email = entry.email
    detail = {
        "email": email,
        "newsletter": _scope(session, entry.newsletter_id),
        "was": entry.reason.value,
        "reason": why,
    }
    session.delete(entry)
    session.flush()
    audit.record(
        session,
        who,
        "suppression.lift",
        object_type="suppression",
        object_id=suppression_id,
        detail=detail,
    )
    return email


@dataclass(frozen=True)
class Row:
    """One entry as the page and the export show it."""

    id: int
    email: str
    newsletter: str  # a slug, or "" for every newsletter
    reason: SuppressionReason
    detail: str
    created_at: datetime

    @property
    def is_domain(self) -> bool:
        return self.email.startswith(DOMAIN_MARK)


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int
    page: int
    pages: int


def _filtered(query: str):  # type: ignore[no-untyped-def]
    statement = (
        select(
            Suppression.id,
            Suppression.email,
            func.coalesce(Newsletter.slug, ""),
            Suppression.reason,
            Suppression.detail,
            Suppression.created_at,
        )
        .outerjoin(Newsletter, Newsletter.id == Suppression.newsletter_id)
        .where(Suppression.reason != SuppressionReason.ERASED)
    )
    wanted = text.one_line(query.replace("\x00", ""), limit=320).lower()
    if wanted.startswith(DOMAIN_MARK):
        # A domain: its entry and every address entry in it.
        statement = statement.where(Suppression.email.endswith(wanted, autoescape=True))
    elif wanted:
        statement = statement.where(Suppression.email.contains(wanted, autoescape=True))
    return statement


def search(session: Session, query: str = "", *, page: int = 1, per_page: int = PER_PAGE) -> Page:
    """Entries whose address contains `query` (or, for `@domain`, in that domain), newest first."""
    statement = _filtered(query)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    rows = session.execute(
        statement.order_by(Suppression.id.desc()).offset((page - 1) * per_page).limit(per_page)
    )
    return Page([Row(*row) for row in rows], total, page, pages)


def export_csv(session: Session, query: str = "") -> Iterator[str]:
    """The matching entries as CSV lines (header first), streamed."""
    yield from _csv_lines(
        Row(*row) for row in session.execute(_filtered(query).order_by(Suppression.id))
    )


def _csv_lines(rows: Iterable[Row]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "newsletter", "reason", "detail", "created_at"])
    for row in rows:
        writer.writerow(
            [
                _safe_cell(row.email),
                row.newsletter or "*",
                row.reason.value,
                _safe_cell(row.detail),
                row.created_at.isoformat(),
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def _safe_cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula (CSV injection);
    # a leading quote keeps it text. Domain entries start with @ on purpose: kept as typed.
    if value[:1] in ("=", "+", "-") or (value[:1] == "@" and " " in value):
        return "'" + value
    return value
