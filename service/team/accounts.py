"""Managing editor accounts: list them, change roles, give newsletters, disable, enable.

Every change is one row of the audit log, written in the caller's transaction with the
`who` it is given. Creating an account and logging in are in editors.py (which uses the
newsletter rules here); this module never hashes a password.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service import newsletters as newsletter_rules
from service.addresses import InvalidAddress, normalise
from service.models import Editor, EditorNewsletter, EditorRole, EditorSession, Newsletter
from service.team import audit


class AccountError(ValueError):
    """An account operation that cannot be done; the message says why, in one line."""


@dataclass(frozen=True)
class Account:
    """One editor as the team page and `hebdo editors list` show them."""

    id: int
    email: str
    name: str
    role: str
    newsletters: tuple[str, ...]  # slugs; empty: every newsletter
    last_login_at: datetime | None
    is_disabled: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the CLI's --json)."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "role": self.role,
            "newsletters": list(self.newsletters),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
            "disabled": self.is_disabled,
        }


def find(session: Session, email: str) -> Editor:
    """The editor with this address; AccountError when there is none."""
    try:
        name = normalise(email)
    except InvalidAddress:
        name = email.strip().lower()
    found = None if "\x00" in name else session.scalar(select(Editor).where(Editor.email == name))
    if found is None:
        raise AccountError(f"no editor with the address {email.strip()[:320]!r}")
    return found


def role_named(value: str) -> EditorRole:
    """The role spelled `value` (admin, editor, viewer); AccountError otherwise."""
    try:
        return EditorRole(value.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in EditorRole)
        raise AccountError(f"unknown role {value[:40]!r} (one of {names})") from None


def list_all(session: Session) -> list[Account]:
    """Every editor, by address, with their newsletters' slugs."""
    given: dict[int, list[str]] = {}
    for editor_id, slug in session.execute(
        select(EditorNewsletter.editor_id, Newsletter.slug)
        .join(Newsletter, Newsletter.id == EditorNewsletter.newsletter_id)
        .order_by(Newsletter.slug)
    ):
        given.setdefault(editor_id, []).append(slug)
    return [
        Account(
            e.id,
            e.email,
            e.name,
            e.role.value,
            tuple(given.get(e.id, ())),
            e.last_login_at,
            e.is_disabled,
        )
        for e in session.scalars(select(Editor).order_by(Editor.email))
    ]


def slugs_of(session: Session, editor: Editor) -> list[str]:
    """The slugs of the newsletters given to this editor (empty: all of them)."""
    return list(
        session.scalars(
            select(Newsletter.slug)
            .join(EditorNewsletter, EditorNewsletter.newsletter_id == Newsletter.id)
            .where(EditorNewsletter.editor_id == editor.id)
            .order_by(Newsletter.slug)
        )
    )


def set_role(session: Session, editor: Editor, role: EditorRole, *, who: audit.Who) -> None:
    """Change the editor's role. The last active admin keeps theirs."""
    before = editor.role
    if before is role:
        return
    if before is EditorRole.ADMIN and not editor.is_disabled:
        _keep_an_admin(session, editor)
    editor.role = role
    session.flush()
    audit.record(
        session,
        who,
        "editor.role",
        object_type="editor",
        object_id=editor.id,
        detail={"email": editor.email, "from": before.value, "to": role.value},
    )


def disable(session: Session, editor: Editor, *, who: audit.Who) -> int:
    """Disable the account: no login, and every live session ends now. How many ended."""
    if editor.is_disabled:
        return 0
    if editor.role is EditorRole.ADMIN:
        _keep_an_admin(session, editor)
    editor.is_disabled = True
    ended = session.execute(
        delete(EditorSession)
        .where(EditorSession.editor_id == editor.id)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    count = int(getattr(ended, "rowcount", 0) or 0)
    audit.record(
        session,
        who,
        "editor.disable",
        object_type="editor",
        object_id=editor.id,
        detail={"email": editor.email, "sessions_ended": count},
    )
    return count


def enable(session: Session, editor: Editor, *, who: audit.Who) -> None:
    """Let a disabled editor log in again."""
    if not editor.is_disabled:
        return
    editor.is_disabled = False
    session.flush()
    audit.record(
        session,
        who,
        "editor.enable",
        object_type="editor",
        object_id=editor.id,
        detail={"email": editor.email},
    )


def give_newsletters(
    session: Session, editor: Editor, slugs: Iterable[str], *, who: audit.Who | None = None
) -> list[str]:
    """Give exactly these newsletters to the editor (none: every newsletter); their slugs.

    AccountError names an unknown slug; nothing changes then.
    """
    wanted: dict[int, str] = {}
    for slug in slugs:
        clean = slug.strip()
        if not clean:
            continue
        try:
            letter = newsletter_rules.get_by_slug(session, clean)
        except newsletter_rules.UnknownNewsletter:
            raise AccountError(f"no newsletter {clean[:80]!r}") from None
        wanted[letter.id] = letter.slug
    before = slugs_of(session, editor)
    session.execute(delete(EditorNewsletter).where(EditorNewsletter.editor_id == editor.id))
    session.add_all(EditorNewsletter(editor_id=editor.id, newsletter_id=n) for n in wanted)
    session.flush()
    after = sorted(wanted.values())
    if who is not None and after != before:
        audit.record(
            session,
            who,
            "editor.newsletters",
            object_type="editor",
            object_id=editor.id,
            detail={"email": editor.email, "from": before, "to": after},
        )
    return after


def _keep_an_admin(session: Session, leaving: Editor) -> None:
    others = session.scalar(
        select(Editor.id).where(
            Editor.role == EditorRole.ADMIN,
            Editor.is_disabled.is_(False),
            Editor.id != leaving.id,
        )
    )
    if others is None:
        raise AccountError(f"{leaving.email} is the last active admin: make another admin first")
