"""Editor accounts: passwords are only ever stored hashed (scrypt)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from service.addresses import normalise
from service.models import Editor, EditorRole, utcnow

MIN_PASSWORD_LENGTH = 10


def create(
    session: Session,
    email: str,
    password: str,
    *,
    name: str = "",
    role: EditorRole = EditorRole.EDITOR,
) -> Editor:
    """Create an editor account."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    editor = Editor(
        email=normalise(email), name=name, role=role, password_hash=generate_password_hash(password)
    )
    session.add(editor)
    session.flush()
    return editor


def authenticate(session: Session, email: str, password: str) -> Editor | None:
    """The editor with these credentials, or None (same work whether the address exists)."""
    editor = session.scalar(select(Editor).where(Editor.email == email.strip().lower()))
    if editor is None:
        check_password_hash(_DUMMY_HASH, password)  # keep timing the same for unknown addresses
        return None
    if not check_password_hash(editor.password_hash, password):
        return None
    editor.last_login_at = utcnow()
    return editor


_DUMMY_HASH = generate_password_hash("not-a-real-password")
