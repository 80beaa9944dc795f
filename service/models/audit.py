"""The audit log: who did what to which object, when and from where."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base
from service.models._types import UtcDateTime, utcnow


class AuditEntry(Base):
    """One action. The actor's address is copied so the row still reads after the account
    is gone; rows are only ever added."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    editor_id: Mapped[int | None] = mapped_column(
        ForeignKey("editor.id", ondelete="SET NULL"), index=True
    )
    # "alice@example.org", "cli" (the command line), "api:<token name>", or the address
    # typed into a failed login.
    actor: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(40), index=True)  # see team/audit.py ACTIONS
    object_type: Mapped[str] = mapped_column(String(40), default="")
    object_id: Mapped[str] = mapped_column(String(100), default="")
    client_network: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON object, small
