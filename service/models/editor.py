"""Editor accounts of the web app (readers never get one)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, str_enum, utcnow


class EditorRole(enum.Enum):
    """What an editor may do: the rules are in service/team/permissions.py."""

    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class Editor(Base):
    __tablename__ = "editor"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[EditorRole] = mapped_column(str_enum(EditorRole), default=EditorRole.EDITOR)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A disabled account cannot log in; its rows (audit, editions) keep pointing at it.
    is_disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The editor's own choice of page language; empty: the newsletter's language.
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # TOTP second factor (RFC 6238): the shared secret, and the SHA-256 of each unused
    # recovery code, space-separated. Both empty while the factor is off.
    totp_secret: Mapped[str] = mapped_column(String(64), default="", server_default="")
    totp_recovery: Mapped[str] = mapped_column(Text, default="", server_default="")


class EditorNewsletter(Base):
    """A newsletter given to an editor. An editor given none acts on every newsletter
    (a one-newsletter site needs no assignment); once given some, only on those."""

    __tablename__ = "editor_newsletter"

    editor_id: Mapped[int] = mapped_column(
        ForeignKey("editor.id", ondelete="CASCADE"), primary_key=True
    )
    newsletter_id: Mapped[int] = mapped_column(
        ForeignKey("newsletter.id", ondelete="CASCADE"), primary_key=True
    )


class EditorSession(Base):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is kept here,
    so a copy of this table opens no session."""

    __tablename__ = "editor_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    editor_id: Mapped[int] = mapped_column(ForeignKey("editor.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    client_network: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
